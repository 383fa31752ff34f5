//! Session persistence by an inserted cookie (FAQ Q7; issue 16, item 3):
//! the cookie's value, signed and opaque, and the `Cookie` and
//! `Set-Cookie` headers that carry it.
//!
//! The value names a backend by a token, [`Codec::token`]: the first
//! 64 bits of an HMAC-SHA256, under the listener's secret, of the
//! backend's address, so a client learns nothing of the address and
//! cannot name a backend of its own choosing. The proxy keeps a map from
//! token to backend, built with [`Codec::token`] whenever the listener's
//! backends change.
//!
//! The value ([`Codec::encode`]) is 44 characters of URL-safe base64
//! without padding (RFC 4648 §5; every character is a `cookie-octet` of
//! RFC 6265 §4.1.1) of 33 bytes:
//!
//! | bytes  | what                                                   |
//! |--------|--------------------------------------------------------|
//! | 0      | format version, 1                                      |
//! | 1..9   | backend token, big-endian                              |
//! | 9..17  | expiry, Unix seconds, big-endian                       |
//! | 17..33 | HMAC-SHA256 of bytes 0..17 under the secret, truncated |
//!
//! The tag is truncated to 128 bits, the half of the hash RFC 2104 §5
//! recommends as the least, and compared in constant time
//! ([`subtle`]). The token and the tag are MACs of inputs that begin
//! with different labels, so one can never stand for the other. The
//! expiry is signed: a client cannot extend it. A cookie made under one
//! secret is refused under any other: changing a listener's secret ends
//! every session it gave out, and listeners with different secrets refuse
//! each other's cookies.
//!
//! [`find`] reads the cookie out of a request's `Cookie` lines, and
//! [`strip_all`] takes it out of them so the backend never sees it;
//! [`set_cookie`] writes the response's `Set-Cookie`. Nothing here reads a
//! clock: the caller passes `now` in Unix seconds.

// The no-panic contract of the data path (see the workspace's lints).
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use ring::hmac;
use subtle::ConstantTimeEq as _;

use crate::config::{CookieConfig, SameSite};

/// The format version, the value's first byte.
const VERSION: u8 = 1;
/// Version, token and expiry: what the tag signs.
const PAYLOAD_LEN: usize = 1 + 8 + 8;
/// The truncated tag's length.
const TAG_LEN: usize = 16;
/// The value's length before base64.
const RAW_LEN: usize = PAYLOAD_LEN + TAG_LEN;
/// The value's length: 33 bytes are 44 base64 characters, no padding.
pub const VALUE_LEN: usize = RAW_LEN / 3 * 4;

/// What the token's MAC input begins with.
const TOKEN_LABEL: &[u8] = b"lbd cookie backend token\0";
/// What the tag's MAC input begins with.
const TAG_LABEL: &[u8] = b"lbd cookie value tag\0";

/// Why a cookie's value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CookieError {
    /// Not a value this balancer makes: wrong length, not URL-safe base64,
    /// or an unknown format version.
    #[error("malformed persistence cookie")]
    Malformed,
    /// Well formed, but not signed with this listener's secret: forged,
    /// altered, or made under another (or an older) secret.
    #[error("persistence cookie with a bad signature")]
    BadSignature,
    /// Genuine, but its expiry has passed.
    #[error("expired persistence cookie")]
    Expired,
}

impl CookieError {
    /// A short lower-case name, for a metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            CookieError::Malformed => "malformed",
            CookieError::BadSignature => "bad_signature",
            CookieError::Expired => "expired",
        }
    }
}

/// Makes and checks one listener's cookie values, under its secret.
pub struct Codec {
    key: hmac::Key,
    max_age: Duration,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Codec")
            .field("max_age", &self.max_age)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// The codec of a listener's cookie configuration. Any secret is
    /// accepted here; `lbd`'s configuration requires at least 16 bytes.
    pub fn new(config: &CookieConfig) -> Codec {
        Codec {
            key: hmac::Key::new(hmac::HMAC_SHA256, &config.secret),
            max_age: config.max_age,
        }
    }

    /// The opaque token that names `backend` in this listener's cookies:
    /// 64 bits of an HMAC of its address (family, IP and port; an IPv6
    /// address's flow label and scope are not part of it). Distinct
    /// backends get distinct tokens but with a chance of 2^-64 per pair.
    pub fn token(&self, backend: SocketAddr) -> u64 {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(TOKEN_LABEL);
        match backend {
            SocketAddr::V4(a) => {
                context.update(&[4]);
                context.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                context.update(&[6]);
                context.update(&a.ip().octets());
            }
        }
        context.update(&backend.port().to_be_bytes());
        let mut token = [0; 8];
        prefix(&mut token, context.sign().as_ref());
        u64::from_be_bytes(token)
    }

    /// The cookie value naming the backend whose token is `token`, valid
    /// until `expires_unix` (Unix seconds): [`VALUE_LEN`] URL-safe
    /// characters.
    pub fn encode(&self, token: u64, expires_unix: u64) -> String {
        let mut raw = Vec::with_capacity(RAW_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&token.to_be_bytes());
        raw.extend_from_slice(&expires_unix.to_be_bytes());
        let tag = self.tag(&raw);
        raw.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The value for `backend`, valid for the configured `max_age` from
    /// `now_unix`: `encode(token(backend), now_unix + max_age)`.
    pub fn issue(&self, backend: SocketAddr, now_unix: u64) -> String {
        self.encode(
            self.token(backend),
            now_unix.saturating_add(self.max_age.as_secs()),
        )
    }

    /// The backend token of a cookie value, if it was made under this
    /// secret and has not expired at `now_unix` (it is expired from its
    /// expiry second on). The signature is checked before the expiry is
    /// believed. Never panics, whatever the input.
    pub fn decode(&self, value: &str, now_unix: u64) -> Result<u64, CookieError> {
        if value.len() != VALUE_LEN {
            return Err(CookieError::Malformed);
        }
        let mut raw = [0; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(value, &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return Err(CookieError::Malformed),
        }
        let Some((payload, tag)) = raw.split_first_chunk::<PAYLOAD_LEN>() else {
            return Err(CookieError::Malformed);
        };
        let Some((&VERSION, fields)) = payload.split_first() else {
            return Err(CookieError::Malformed);
        };
        if !bool::from(self.tag(payload).ct_eq(tag)) {
            return Err(CookieError::BadSignature);
        }
        let Some((token, expires)) = fields.split_first_chunk::<8>() else {
            return Err(CookieError::Malformed);
        };
        let Ok(expires) = <[u8; 8]>::try_from(expires) else {
            return Err(CookieError::Malformed);
        };
        if u64::from_be_bytes(expires) <= now_unix {
            return Err(CookieError::Expired);
        }
        Ok(u64::from_be_bytes(*token))
    }

    /// The truncated tag of a payload.
    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(TAG_LABEL);
        context.update(payload);
        let mut tag = [0; TAG_LEN];
        prefix(&mut tag, context.sign().as_ref());
        tag
    }
}

/// Fills `out` with the first bytes of a MAC (SHA-256's 32 bytes are
/// more than any prefix taken here).
fn prefix(out: &mut [u8], mac: &[u8]) {
    for (o, m) in out.iter_mut().zip(mac) {
        *o = *m;
    }
}

/// The value of the first cookie called `name` in a request's `Cookie`
/// lines (`headers.get_all(COOKIE)`), in order.
///
/// Each line is read as RFC 6265 §4.2.1's `cookie-pair *( ";" SP
/// cookie-pair )`, leniently, as servers do: pairs are split at `;`,
/// spaces and tabs around names and values are ignored, a pair without
/// `=` is skipped, names compare case-sensitively, and a value in double
/// quotes loses them. The first pair with the name wins (RFC 6265 §5.4
/// orders the more specific cookie first), even when its value is not
/// UTF-8: then the answer is `None`, as for a missing cookie.
pub fn find<'a>(
    cookie_headers: impl IntoIterator<Item = &'a HeaderValue>,
    name: &str,
) -> Option<&'a str> {
    for line in cookie_headers {
        for pair in line.as_bytes().split(|&b| b == b';') {
            if let Some((n, value)) = split_pair(pair)
                && n == name.as_bytes()
            {
                return std::str::from_utf8(unquote(value)).ok();
            }
        }
    }
    None
}

/// One `Cookie` line without any cookie called `name`; `None` when nothing
/// is left. The other pairs are kept byte for byte, in order, joined with
/// `"; "`; empty pairs (`a=1;; b=2`) are dropped.
pub fn strip(cookie_header: &HeaderValue, name: &str) -> Option<HeaderValue> {
    let mut kept: Vec<u8> = Vec::with_capacity(cookie_header.len());
    for pair in cookie_header.as_bytes().split(|&b| b == b';') {
        let pair = trim(pair);
        if pair.is_empty() || split_pair(pair).is_some_and(|(n, _)| n == name.as_bytes()) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    if kept.is_empty() {
        return None;
    }
    // Pieces of a valid value joined by "; " are a valid value.
    HeaderValue::from_bytes(&kept).ok()
}

/// A request's `Cookie` lines without any cookie called `name`, so the
/// backend never sees the balancer's cookie: `None` when no line holds
/// one (leave the request alone); else the lines to send instead, in
/// order, those without the cookie unchanged and those left empty dropped
/// (an empty list: send no `Cookie` header).
pub fn strip_all<'a>(
    cookie_headers: impl IntoIterator<Item = &'a HeaderValue>,
    name: &str,
) -> Option<Vec<HeaderValue>> {
    let lines: Vec<&HeaderValue> = cookie_headers.into_iter().collect();
    if !lines.iter().any(|line| holds(line, name)) {
        return None;
    }
    Some(
        lines
            .into_iter()
            .filter_map(|line| {
                if holds(line, name) {
                    strip(line, name)
                } else {
                    Some(line.clone())
                }
            })
            .collect(),
    )
}

/// The `Set-Cookie` value that gives the client `value`:
/// `name=value; Path=/; Max-Age=N; HttpOnly; SameSite=X`, and `; Secure`
/// when `secure` (an HTTPS listener). `Max-Age` is the configured
/// lifetime in whole seconds. Browsers ignore `SameSite=None` without
/// `Secure`, so that setting only works on HTTPS listeners.
pub fn set_cookie(value: &str, config: &CookieConfig, secure: bool) -> String {
    let same_site = match config.same_site {
        SameSite::Lax => "Lax",
        SameSite::Strict => "Strict",
        SameSite::None => "None",
    };
    format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite={}{}",
        config.name,
        value,
        config.max_age.as_secs(),
        same_site,
        if secure { "; Secure" } else { "" }
    )
}

/// Whether `name` can name a cookie: an RFC 6265 §4.1.1 `cookie-name`,
/// that is an RFC 2616 `token` (visible ASCII but separators). For
/// checking the configuration.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

/// Whether a `Cookie` line holds a cookie called `name`.
fn holds(line: &HeaderValue, name: &str) -> bool {
    line.as_bytes()
        .split(|&b| b == b';')
        .any(|pair| split_pair(pair).is_some_and(|(n, _)| n == name.as_bytes()))
}

/// A pair's name and value, trimmed; `None` without `=`.
fn split_pair(pair: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = pair.iter().position(|&b| b == b'=')?;
    let (name, value) = pair.split_at(at);
    Some((trim(name), trim(value.get(1..).unwrap_or_default())))
}

/// Without the spaces and tabs around it.
fn trim(bytes: &[u8]) -> &[u8] {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Without the double quotes around it, if it has them.
fn unquote(value: &[u8]) -> &[u8] {
    value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value)
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn config(secret: &[u8]) -> CookieConfig {
        CookieConfig {
            name: "LBD_SERVER".into(),
            secret: secret.to_vec(),
            max_age: Duration::from_secs(3600),
            same_site: SameSite::Lax,
        }
    }

    fn codec() -> Codec {
        Codec::new(&config(b"0123456789abcdef"))
    }

    fn backend(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn lines(values: &[&[u8]]) -> Vec<HeaderValue> {
        values
            .iter()
            .map(|v| HeaderValue::from_bytes(v).unwrap())
            .collect()
    }

    /// The value with one bit of its 33 bytes flipped, re-encoded.
    fn flipped(value: &str, bit: usize) -> String {
        let mut raw = URL_SAFE_NO_PAD.decode(value).unwrap();
        raw[bit / 8] ^= 1 << (bit % 8);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Static vectors, computed apart with Python's `hmac` and `base64`
    /// (`hmac.new(key, label + message, hashlib.sha256).digest()[:n]`):
    /// the format is stable (a change ends every session a running
    /// balancer gave out, so it must be deliberate).
    #[test]
    fn static_vectors() {
        let c = codec();
        let token = c.token(backend("10.77.1.2:8080"));
        assert_eq!(token, 0xad3e_e49d_2f2e_3096, "{token:#x}");
        let value = c.encode(token, NOW);
        assert_eq!(value, "Aa0-5J0vLjCWAAAAAGtJ0gBASeBqwjoECLkN3EezSsJJ");
        assert_eq!(c.decode(&value, NOW - 1), Ok(token));
        let v6 = c.token(backend("[fd77::2]:8080"));
        assert_eq!(v6, 0x3e4d_eb1f_3b5d_1676, "{v6:#x}");
    }

    #[test]
    fn value_is_short_and_url_safe() {
        let value = codec().issue(backend("10.77.1.2:8080"), NOW);
        assert_eq!(value.len(), VALUE_LEN);
        assert_eq!(VALUE_LEN, 44);
        assert!(
            value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn value_does_not_show_the_address() {
        let c = codec();
        let b = backend("10.77.1.2:8080");
        let raw = URL_SAFE_NO_PAD.decode(c.issue(b, NOW)).unwrap();
        assert!(!raw.windows(4).any(|w| w == [10, 77, 1, 2]));
        assert!(!raw.windows(2).any(|w| w == 8080u16.to_be_bytes()));
    }

    #[test]
    fn tokens_tell_backends_apart() {
        let c = codec();
        let tokens = [
            c.token(backend("10.77.1.2:8080")),
            c.token(backend("10.77.1.2:8081")),
            c.token(backend("10.77.1.3:8080")),
            c.token(backend("[fd77::2]:8080")),
            c.token(backend("[::ffff:10.77.1.2]:8080")),
        ];
        for (i, a) in tokens.iter().enumerate() {
            for b in &tokens[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The same address, the same token, whatever the IPv6 scope.
        assert_eq!(
            c.token(backend("[fd77::2%3]:8080")),
            c.token(backend("[fd77::2]:8080"))
        );
    }

    #[test]
    fn issue_round_trips_until_max_age() {
        let c = codec();
        let b = backend("10.77.1.2:8080");
        let value = c.issue(b, NOW);
        assert_eq!(c.decode(&value, NOW), Ok(c.token(b)));
        assert_eq!(c.decode(&value, NOW + 3599), Ok(c.token(b)));
        assert_eq!(c.decode(&value, NOW + 3600), Err(CookieError::Expired));
        assert_eq!(c.decode(&value, u64::MAX), Err(CookieError::Expired));
    }

    #[test]
    fn issue_near_the_end_of_time_saturates() {
        let c = codec();
        let value = c.issue(backend("10.77.1.2:8080"), u64::MAX - 10);
        assert_eq!(c.decode(&value, u64::MAX - 1).map(|_| ()), Ok(()));
        assert_eq!(c.decode(&value, u64::MAX), Err(CookieError::Expired));
    }

    #[test]
    fn a_new_secret_ends_old_cookies() {
        let old = codec();
        let new = Codec::new(&config(b"0123456789abcdeF"));
        let b = backend("10.77.1.2:8080");
        let value = old.issue(b, NOW);
        assert_eq!(new.decode(&value, NOW), Err(CookieError::BadSignature));
        assert_ne!(old.token(b), new.token(b));
        assert_eq!(new.decode(&new.issue(b, NOW), NOW), Ok(new.token(b)));
    }

    #[test]
    fn another_listeners_cookie_is_refused() {
        let web = Codec::new(&config(b"the web listener's secret"));
        let api = Codec::new(&config(b"the api listener's secret"));
        let b = backend("10.77.1.2:8080");
        let value = web.issue(b, NOW);
        assert_eq!(api.decode(&value, NOW), Err(CookieError::BadSignature));
        // Nor can its token be re-signed by a client: it is not api's.
        assert_ne!(web.token(b), api.token(b));
    }

    #[test]
    fn forged_values_are_refused() {
        let c = codec();
        // A client's guess at a token, with any tag.
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..9].copy_from_slice(&c.token(backend("10.77.1.2:8080")).to_be_bytes());
        raw[9..17].copy_from_slice(&u64::MAX.to_be_bytes());
        let forged = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(c.decode(&forged, NOW), Err(CookieError::BadSignature));
        // An expiry moved later, the tag kept.
        let value = c.encode(7, NOW + 10);
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        raw[16] = raw[16].wrapping_add(100);
        let later = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(c.decode(&later, NOW), Err(CookieError::BadSignature));
        // The token's MAC is not the tag's: a token never verifies as a tag.
        let token = c.token(backend("10.77.1.2:8080")).to_be_bytes();
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        raw[17..25].copy_from_slice(&token);
        let mixed = URL_SAFE_NO_PAD.encode(&raw);
        assert_eq!(c.decode(&mixed, NOW), Err(CookieError::BadSignature));
    }

    #[test]
    fn expired_is_told_only_after_the_signature() {
        let c = codec();
        let value = c.encode(7, NOW - 1);
        assert_eq!(c.decode(&value, NOW), Err(CookieError::Expired));
        // Tampered and expired: a bad signature, the expiry not believed.
        assert_eq!(
            c.decode(&flipped(&value, 20 * 8), NOW),
            Err(CookieError::BadSignature)
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        let c = codec();
        let value = c.encode(7, NOW + 10);
        let cases: Vec<String> = vec![
            String::new(),
            value[..VALUE_LEN - 1].to_string(),
            format!("{value}A"),
            format!("{value}="),
            // Padding or the standard alphabet's characters.
            format!("{}=", &value[..VALUE_LEN - 1]),
            format!("{}+", &value[..VALUE_LEN - 1]),
            format!("{}/", &value[..VALUE_LEN - 1]),
            format!("{}.", &value[..VALUE_LEN - 1]),
            // Non-ASCII, of the right byte length.
            format!("{}é", &value[..VALUE_LEN - 2]),
            "A".repeat(VALUE_LEN),
        ];
        for case in cases {
            assert_eq!(
                c.decode(&case, NOW),
                Err(CookieError::Malformed),
                "{case:?}"
            );
        }
        // An unknown version.
        let mut raw = URL_SAFE_NO_PAD.decode(&value).unwrap();
        raw[0] = 2;
        assert_eq!(
            c.decode(&URL_SAFE_NO_PAD.encode(&raw), NOW),
            Err(CookieError::Malformed)
        );
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let c = codec();
        let value = c.encode(0x0102_0304_0506_0708, NOW + 10);
        for bit in 0..RAW_LEN * 8 {
            assert!(c.decode(&flipped(&value, bit), NOW).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn error_names() {
        assert_eq!(CookieError::Malformed.as_str(), "malformed");
        assert_eq!(CookieError::BadSignature.as_str(), "bad_signature");
        assert_eq!(CookieError::Expired.as_str(), "expired");
        assert_eq!(
            CookieError::BadSignature.to_string(),
            "persistence cookie with a bad signature"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!("{:?}", codec());
        assert_eq!(text, "Codec { max_age: 3600s, .. }");
    }

    #[test]
    fn find_reads_every_line_first_wins() {
        let h = lines(&[
            b"a=1; b=2",
            b"c=3;LBD_SERVER=first ; LBD_SERVER=second",
            b"LBD_SERVER=third",
        ]);
        assert_eq!(find(&h, "LBD_SERVER"), Some("first"));
        assert_eq!(find(&h, "a"), Some("1"));
        assert_eq!(find(&h, "c"), Some("3"));
        assert_eq!(find(&h, "lbd_server"), None, "names are case-sensitive");
        assert_eq!(find(&h, "d"), None);
        assert_eq!(find(&lines(&[]), "a"), None);
    }

    #[test]
    fn find_is_lenient() {
        let h = lines(&[b" \tx ;y;; LBD_SERVER = \"quoted\"\t; z="]);
        assert_eq!(find(&h, "LBD_SERVER"), Some("quoted"));
        assert_eq!(find(&h, "x"), None, "a pair without = is skipped");
        assert_eq!(find(&h, "z"), Some(""));
        let h = lines(&[b"LBD_SERVER=a=b"]);
        assert_eq!(find(&h, "LBD_SERVER"), Some("a=b"));
        let h = lines(&[b"LBD_SERVER=\""]);
        assert_eq!(find(&h, "LBD_SERVER"), Some("\""));
    }

    #[test]
    fn find_first_not_utf8_is_none() {
        let h = lines(&[b"LBD_SERVER=\xff\xfe", b"LBD_SERVER=ok"]);
        assert_eq!(find(&h, "LBD_SERVER"), None);
        let h = lines(&[b"other=\xff; LBD_SERVER=ok"]);
        assert_eq!(find(&h, "LBD_SERVER"), Some("ok"));
    }

    #[test]
    fn strip_takes_out_every_pair_of_the_name() {
        let line = HeaderValue::from_static("a=1; LBD_SERVER=x;b=2 ;; LBD_SERVER=y; c");
        assert_eq!(
            strip(&line, "LBD_SERVER").unwrap(),
            HeaderValue::from_static("a=1; b=2; c")
        );
        let line = HeaderValue::from_static(" LBD_SERVER=x ; LBD_SERVER = y ");
        assert_eq!(strip(&line, "LBD_SERVER"), None);
        // Other bytes kept as they are.
        let line = HeaderValue::from_bytes(b"k=\xe9t\xe9; LBD_SERVER=x").unwrap();
        assert_eq!(
            strip(&line, "LBD_SERVER").unwrap().as_bytes(),
            b"k=\xe9t\xe9"
        );
        // Case matters: LBD_server is another cookie.
        let line = HeaderValue::from_static("LBD_server=x");
        assert_eq!(strip(&line, "LBD_SERVER").unwrap(), line);
    }

    #[test]
    fn strip_all_rewrites_only_when_needed() {
        let h = lines(&[b"a=1;  b=2"]);
        assert_eq!(strip_all(&h, "LBD_SERVER"), None);
        let h = lines(&[b"a=1;  b=2", b"LBD_SERVER=x", b"c=3; LBD_SERVER=y"]);
        assert_eq!(
            strip_all(&h, "LBD_SERVER"),
            Some(lines(&[b"a=1;  b=2", b"c=3"]))
        );
        let h = lines(&[b"LBD_SERVER=x"]);
        assert_eq!(strip_all(&h, "LBD_SERVER"), Some(Vec::new()));
    }

    /// How the proxy uses it: the request's `Cookie` lines through
    /// Pingora's request header, which gives no `&mut HeaderMap`.
    #[test]
    fn strip_on_a_pingora_request() {
        use http::header::COOKIE;
        use pingora::http::RequestHeader;
        let c = codec();
        let b = backend("10.77.1.2:8080");
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("Cookie", "a=1").unwrap();
        req.append_header("Cookie", format!("LBD_SERVER={}; b=2", c.issue(b, NOW)))
            .unwrap();
        let value = find(req.headers.get_all(COOKIE), "LBD_SERVER").unwrap();
        assert_eq!(c.decode(value, NOW), Ok(c.token(b)));
        if let Some(lines) = strip_all(req.headers.get_all(COOKIE), "LBD_SERVER") {
            req.remove_header(&COOKIE);
            for line in lines {
                req.append_header(COOKIE, line).unwrap();
            }
        }
        let sent: Vec<&[u8]> = req
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(sent, [b"a=1" as &[u8], b"b=2"]);
    }

    #[test]
    fn set_cookie_attributes() {
        let mut cfg = config(b"0123456789abcdef");
        assert_eq!(
            set_cookie("v", &cfg, false),
            "LBD_SERVER=v; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax"
        );
        cfg.same_site = SameSite::Strict;
        cfg.max_age = Duration::from_millis(90_500);
        assert_eq!(
            set_cookie("v", &cfg, true),
            "LBD_SERVER=v; Path=/; Max-Age=90; HttpOnly; SameSite=Strict; Secure"
        );
        cfg.same_site = SameSite::None;
        cfg.name = "sid".into();
        assert_eq!(
            set_cookie("v", &cfg, true),
            "sid=v; Path=/; Max-Age=90; HttpOnly; SameSite=None; Secure"
        );
        // A value the codec made is a valid header value.
        let value = codec().issue(backend("10.77.1.2:8080"), NOW);
        assert!(HeaderValue::from_str(&set_cookie(&value, &cfg, true)).is_ok());
    }

    #[test]
    fn set_cookie_round_trips_through_find() {
        let cfg = config(b"0123456789abcdef");
        let c = Codec::new(&cfg);
        let b = backend("[fd77::2]:80");
        let value = c.issue(b, NOW);
        let header = set_cookie(&value, &cfg, true);
        // A browser sends back the pair before the first ';'.
        let pair = header.split(';').next().unwrap();
        let h = lines(&[b"theme=dark", pair.as_bytes()]);
        let found = find(&h, &cfg.name).unwrap();
        assert_eq!(c.decode(found, NOW + 1), Ok(c.token(b)));
    }

    #[test]
    fn valid_names() {
        for ok in ["LBD_SERVER", "a", "x-y.z~!#$%&'*+^`|"] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "", "a b", "a=b", "a;b", "a,b", "\"a\"", "é", "a\tb", "a\u{7f}",
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    proptest! {
        /// Decode never panics, and never accepts what it did not make.
        #[test]
        fn decode_arbitrary_strings(value in any::<String>(), now in any::<u64>()) {
            prop_assert!(codec().decode(&value, now).is_err());
        }

        /// Nor strings of the right length and alphabet.
        #[test]
        fn decode_arbitrary_values(value in "[A-Za-z0-9_-]{44}", now in any::<u64>()) {
            prop_assert!(codec().decode(&value, now).is_err());
        }

        /// Any value round-trips, and any flipped bit is refused.
        #[test]
        fn flipped_bits_are_refused(
            token in any::<u64>(),
            expires in 1..u64::MAX,
            bit in 0..RAW_LEN * 8,
        ) {
            let c = codec();
            let value = c.encode(token, expires);
            prop_assert_eq!(c.decode(&value, expires - 1), Ok(token));
            prop_assert!(c.decode(&flipped(&value, bit), expires - 1).is_err());
        }

        /// Cookie parsing never panics on any header bytes, and stripping
        /// leaves no cookie of the name behind.
        #[test]
        fn strip_leaves_none(
            line in proptest::collection::vec(
                prop_oneof![
                    Just(b'='), Just(b';'), Just(b' '), Just(b'"'), Just(b'a'),
                    any::<u8>().prop_filter("header byte", |&b| b == b'\t' || (b >= 32 && b != 127)),
                ],
                0..48,
            ),
        ) {
            let h = lines(&[&line]);
            let _ = find(&h, "a");
            if let Some(kept) = strip_all(&h, "a") {
                prop_assert!(kept.iter().all(|l| !holds(l, "a")));
                prop_assert!(find(&kept, "a").is_none());
            } else {
                prop_assert!(find(&h, "a").is_none());
            }
        }
    }
}
