//! The request headers that tell a backend who the client is:
//! `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto` and
//! `X-Forwarded-Port` (issue 16, item 2).
//!
//! [`rewrite`] is a pure function: it reads the request's headers and
//! returns the [`Edit`]s to make, because Pingora's request header hands out
//! no `&mut HeaderMap` (its own `insert_header` and `remove_header` keep the
//! header names' case); [`Rewrite::apply`] makes them on a plain
//! [`HeaderMap`].
//!
//! What each setting does:
//! - `X-Forwarded-For`, `append`: every `X-Forwarded-For` line the client
//!   sent, trimmed, empty ones left out, joined with `", "`, then the
//!   client's address (nginx's `$proxy_add_x_forwarded_for`). An incoming
//!   line that is not visible ASCII cannot be extended faithfully: the
//!   header becomes the client's address alone, and
//!   [`Rewrite::malformed_xff`] says so, for the caller to count.
//!   `replace`: the client's address alone. `remove`: no header at all.
//! - `X-Real-IP`, `X-Forwarded-Proto` (`http` or `https`) and
//!   `X-Forwarded-Port` (the listener's port): when on, whatever the client
//!   sent is replaced. When off, the balancer does not touch that header:
//!   what the client sent reaches the backend as sent. This is what nginx
//!   (`proxy_set_header`) and HAProxy (`option forwardfor`,
//!   `http-request set-header`) do, and it is deliberate for `X-Real-IP`
//!   too: a listener turns a header off when something else owns it, such
//!   as a trusted proxy in front of the balancer, and dropping it would
//!   break that chain. A backend that must not trust a client's claim is
//!   protected by turning the option on, which replaces the claim with
//!   the truth.
//!
//! Addresses are written without brackets and without a port, IPv6 in
//! RFC 5952's compressed form (`2001:db8::1`, as nginx writes it); an
//! IPv4-mapped IPv6 client (`::ffff:192.0.2.1`, from a dual-stack
//! socket) is written as the IPv4 address it is.

// The no-panic contract of the data path (see the workspace's lints).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{Forwarded, L7Listener, XffMode};

// Statics, not consts: a custom `HeaderName` holds `Bytes` (interior
// mutability). `from_static` runs at compile time here, so a typo fails
// the build rather than a request.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");

/// The scheme a listener serves, as `X-Forwarded-Proto` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `Https` when the listener has TLS, else `Http`.
    pub fn of(listener: &L7Listener) -> Scheme {
        if listener.tls.is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        }
    }

    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One change to the request's headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace every line of the header with this one value.
    Set(HeaderName, HeaderValue),
    /// Remove every line of the header.
    Remove(HeaderName),
}

/// What [`rewrite`] decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Rewrite {
    /// The changes, in order; headers not named are left as they are.
    pub edits: Vec<Edit>,
    /// In `append` mode, an incoming `X-Forwarded-For` line was not
    /// visible ASCII, so the header was replaced by the client's address
    /// instead of extended (the caller counts these).
    pub malformed_xff: bool,
}

impl Rewrite {
    /// Makes the edits on a plain header map (Pingora's request header has
    /// its own `insert_header` and `remove_header` for them).
    pub fn apply(self, headers: &mut HeaderMap) {
        for edit in self.edits {
            match edit {
                Edit::Set(name, value) => {
                    headers.insert(name, value);
                }
                Edit::Remove(name) => {
                    headers.remove(name);
                }
            }
        }
    }
}

/// The header edits for a request from `client` on a listener serving
/// `scheme` on `port`, as `config` asks (see the module's documentation).
pub fn rewrite(
    headers: &HeaderMap,
    client: IpAddr,
    scheme: Scheme,
    port: u16,
    config: &Forwarded,
) -> Rewrite {
    let client = client.to_canonical().to_string();
    let mut edits = Vec::with_capacity(4);
    let mut malformed_xff = false;
    match config.xff {
        XffMode::Append => {
            let (value, malformed) = appended(headers, &client);
            malformed_xff = malformed;
            edits.push(Edit::Set(X_FORWARDED_FOR.clone(), value));
        }
        XffMode::Replace => edits.push(Edit::Set(X_FORWARDED_FOR.clone(), text(&client))),
        XffMode::Remove => edits.push(Edit::Remove(X_FORWARDED_FOR.clone())),
    }
    if config.real_ip {
        edits.push(Edit::Set(X_REAL_IP.clone(), text(&client)));
    }
    if config.proto {
        edits.push(Edit::Set(
            X_FORWARDED_PROTO.clone(),
            HeaderValue::from_static(scheme.as_str()),
        ));
    }
    if config.port {
        edits.push(Edit::Set(X_FORWARDED_PORT.clone(), HeaderValue::from(port)));
    }
    Rewrite {
        edits,
        malformed_xff,
    }
}

/// The incoming `X-Forwarded-For` lines joined, then `client`; and whether
/// an incoming line was not visible ASCII (then `client` alone).
fn appended(headers: &HeaderMap, client: &str) -> (HeaderValue, bool) {
    let mut list = String::new();
    for line in headers.get_all(&X_FORWARDED_FOR) {
        let Ok(line) = line.to_str() else {
            return (text(client), true);
        };
        let line = line.trim_matches([' ', '\t']);
        if !line.is_empty() {
            list.push_str(line);
            list.push_str(", ");
        }
    }
    list.push_str(client);
    match HeaderValue::try_from(list) {
        Ok(value) => (value, false),
        // Unreachable: visible ASCII lines, ", " and an address.
        Err(_) => (text(client), true),
    }
}

/// A header value of an address's text. An address is visible ASCII, so
/// the conversion cannot fail; were it to, the value would be empty.
fn text(address: &str) -> HeaderValue {
    HeaderValue::from_str(address).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const V4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
    const V6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));

    fn config(xff: XffMode, on: bool) -> Forwarded {
        Forwarded {
            xff,
            real_ip: on,
            proto: on,
            port: on,
        }
    }

    fn request(lines: &[(&str, &[u8])]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in lines {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        headers
    }

    /// The headers after the rewrite, and the malformed flag.
    fn after(
        lines: &[(&str, &[u8])],
        client: IpAddr,
        scheme: Scheme,
        port: u16,
        config: &Forwarded,
    ) -> (HeaderMap, bool) {
        let mut headers = request(lines);
        let rewrite = rewrite(&headers, client, scheme, port, config);
        let malformed = rewrite.malformed_xff;
        rewrite.apply(&mut headers);
        (headers, malformed)
    }

    fn all<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a [u8]> {
        headers
            .get_all(name)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect()
    }

    #[test]
    fn append_with_nothing_incoming_is_the_client() {
        let (h, bad) = after(&[], V4, Scheme::Http, 80, &Forwarded::default());
        assert!(!bad);
        assert_eq!(all(&h, "x-forwarded-for"), [b"192.0.2.7"]);
        assert_eq!(all(&h, "x-real-ip"), [b"192.0.2.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), [b"http"]);
        assert_eq!(all(&h, "x-forwarded-port"), [b"80"]);
    }

    #[test]
    fn append_joins_every_incoming_line_then_the_client() {
        let (h, bad) = after(
            &[
                ("X-Forwarded-For", b"203.0.113.1, 198.51.100.2"),
                ("host", b"example.com"),
                ("x-forwarded-for", b"  2001:db8::9 "),
                ("x-forwarded-for", b""),
            ],
            V6,
            Scheme::Https,
            443,
            &Forwarded::default(),
        );
        assert!(!bad);
        assert_eq!(
            all(&h, "x-forwarded-for"),
            [b"203.0.113.1, 198.51.100.2, 2001:db8::9, 2001:db8::1" as &[u8]]
        );
        assert_eq!(all(&h, "x-real-ip"), [b"2001:db8::1"]);
        assert_eq!(all(&h, "x-forwarded-proto"), [b"https"]);
        assert_eq!(all(&h, "x-forwarded-port"), [b"443"]);
        assert_eq!(all(&h, "host"), [b"example.com"]);
    }

    #[test]
    fn append_over_non_ascii_replaces_and_flags() {
        let (h, bad) = after(
            &[
                ("x-forwarded-for", b"203.0.113.1"),
                ("x-forwarded-for", b"10.0.0.1, \xff\xfe"),
            ],
            V4,
            Scheme::Http,
            8080,
            &Forwarded::default(),
        );
        assert!(bad);
        assert_eq!(all(&h, "x-forwarded-for"), [b"192.0.2.7"]);
    }

    #[test]
    fn replace_drops_what_came_in() {
        let (h, bad) = after(
            &[
                ("x-forwarded-for", b"203.0.113.1"),
                ("x-forwarded-for", b"\xff"),
            ],
            V4,
            Scheme::Http,
            80,
            &config(XffMode::Replace, true),
        );
        assert!(!bad, "replace does not read the incoming header");
        assert_eq!(all(&h, "x-forwarded-for"), [b"192.0.2.7"]);
    }

    #[test]
    fn remove_sends_no_header() {
        let (h, bad) = after(
            &[
                ("x-forwarded-for", b"203.0.113.1"),
                ("x-forwarded-for", b"10.0.0.1"),
            ],
            V4,
            Scheme::Http,
            80,
            &config(XffMode::Remove, true),
        );
        assert!(!bad);
        assert!(all(&h, "x-forwarded-for").is_empty());
    }

    #[test]
    fn on_replaces_what_the_client_sent() {
        let (h, _) = after(
            &[
                ("x-real-ip", b"6.6.6.6"),
                ("x-real-ip", b"7.7.7.7"),
                ("x-forwarded-proto", b"https"),
                ("x-forwarded-port", b"1"),
            ],
            V4,
            Scheme::Http,
            8080,
            &Forwarded::default(),
        );
        assert_eq!(all(&h, "x-real-ip"), [b"192.0.2.7"]);
        assert_eq!(all(&h, "x-forwarded-proto"), [b"http"]);
        assert_eq!(all(&h, "x-forwarded-port"), [b"8080"]);
    }

    #[test]
    fn off_leaves_what_the_client_sent() {
        let (h, _) = after(
            &[
                ("x-real-ip", b"6.6.6.6"),
                ("x-forwarded-proto", b"https"),
                ("x-forwarded-port", b"1"),
            ],
            V4,
            Scheme::Http,
            8080,
            &config(XffMode::Append, false),
        );
        assert_eq!(all(&h, "x-real-ip"), [b"6.6.6.6"]);
        assert_eq!(all(&h, "x-forwarded-proto"), [b"https"]);
        assert_eq!(all(&h, "x-forwarded-port"), [b"1"]);
        assert_eq!(all(&h, "x-forwarded-for"), [b"192.0.2.7"]);
    }

    #[test]
    fn off_adds_nothing() {
        let rewrite = rewrite(
            &HeaderMap::new(),
            V4,
            Scheme::Https,
            443,
            &config(XffMode::Remove, false),
        );
        assert_eq!(rewrite.edits, [Edit::Remove(X_FORWARDED_FOR.clone())]);
    }

    #[test]
    fn ipv4_mapped_is_written_as_ipv4() {
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        let (h, _) = after(
            &[("x-forwarded-for", b"203.0.113.1")],
            mapped,
            Scheme::Http,
            80,
            &Forwarded::default(),
        );
        assert_eq!(
            all(&h, "x-forwarded-for"),
            [b"203.0.113.1, 192.0.2.7" as &[u8]]
        );
        assert_eq!(all(&h, "x-real-ip"), [b"192.0.2.7"]);
    }

    #[test]
    fn scheme_of_listener() {
        let mut listener = L7Listener {
            name: "web".into(),
            addr: "10.77.0.10:80".parse().unwrap(),
            backends: Vec::new(),
            scheduler: Default::default(),
            forwarded: Forwarded::default(),
            cookie: None,
            tls: None,
            timeouts: Default::default(),
            access_log: false,
        };
        assert_eq!(Scheme::of(&listener), Scheme::Http);
        assert_eq!(Scheme::of(&listener).as_str(), listener.scheme());
        listener.tls = Some(crate::config::TlsConfig {
            certificates: Vec::new(),
            client_ca: None,
        });
        assert_eq!(Scheme::of(&listener), Scheme::Https);
        assert_eq!(Scheme::of(&listener).as_str(), listener.scheme());
    }

    /// How the proxy uses it: Pingora's request header gives no
    /// `&mut HeaderMap`, so the edits go through its own methods.
    #[test]
    fn edits_on_a_pingora_request() {
        use pingora::http::RequestHeader;
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("X-Forwarded-For", "203.0.113.1").unwrap();
        req.append_header("X-Real-IP", "6.6.6.6").unwrap();
        let rewrite = rewrite(
            &req.headers,
            V4,
            Scheme::Https,
            443,
            &config(XffMode::Append, true),
        );
        for edit in rewrite.edits {
            match edit {
                Edit::Set(name, value) => req.insert_header(name, value).unwrap(),
                Edit::Remove(name) => {
                    req.remove_header(&name);
                }
            }
        }
        assert_eq!(
            all(&req.headers, "x-forwarded-for"),
            [b"203.0.113.1, 192.0.2.7" as &[u8]]
        );
        assert_eq!(all(&req.headers, "x-real-ip"), [b"192.0.2.7"]);
        assert_eq!(all(&req.headers, "x-forwarded-proto"), [b"https"]);
        assert_eq!(all(&req.headers, "x-forwarded-port"), [b"443"]);
    }

    fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
        // Any bytes a header value may hold: tab, and all but controls.
        proptest::collection::vec(
            any::<u8>().prop_filter("header byte", |&b| b == b'\t' || (b >= 32 && b != 127)),
            0..64,
        )
    }

    proptest! {
        /// Whatever came in, the header ends with the client, is flagged
        /// exactly when a line was not visible ASCII, and keeps every
        /// visible-ASCII line otherwise.
        #[test]
        fn append_ends_with_the_client(
            lines in proptest::collection::vec(header_bytes(), 0..4),
            v6 in any::<bool>(),
        ) {
            let client = if v6 { V6 } else { V4 };
            let lines: Vec<(&str, &[u8])> =
                lines.iter().map(|l| ("x-forwarded-for", l.as_slice())).collect();
            let (h, bad) = after(&lines, client, Scheme::Http, 80, &Forwarded::default());
            let ascii = lines
                .iter()
                .all(|(_, l)| l.iter().all(|&b| b == b'\t' || (32..127).contains(&b)));
            prop_assert_eq!(bad, !ascii);
            let xff = all(&h, "x-forwarded-for");
            prop_assert_eq!(xff.len(), 1);
            let xff = std::str::from_utf8(xff[0]).unwrap();
            let client = client.to_string();
            prop_assert!(xff.ends_with(&client));
            if bad {
                prop_assert_eq!(xff, client);
            } else {
                for (_, line) in &lines {
                    let line = std::str::from_utf8(line).unwrap().trim_matches([' ', '\t']);
                    prop_assert!(xff.contains(line));
                }
            }
        }
    }
}
