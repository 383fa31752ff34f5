//! The L7 listeners' counters, and their Prometheus text.
//!
//! Every counter is a relaxed atomic bumped on the request path and read
//! by [`render`]; nothing here blocks or allocates per request. A
//! listener's counters live as long as the listener (a reload keeps
//! them); a backend's live as long as its address stays in the listener's
//! pool (a reload that keeps the address keeps them).
//!
//! What is counted, exactly:
//! - `lbd_l7_requests_total{listener,class}`: requests answered, by the
//!   class of the status sent to the client (`1xx`..`5xx`; a WebSocket
//!   upgrade counts once, as `1xx`). Requests whose client went away
//!   before any status was sent are not counted.
//! - `lbd_l7_client_received_bytes_total` / `lbd_l7_client_sent_bytes_total`:
//!   HTTP bytes read from clients and written to them, counted when the
//!   request ends: the request head as received and the body; the
//!   response head (as HTTP/1.1) and the body; for a WebSocket, every byte
//!   after the upgrade too. TLS records' overhead is not counted.
//! - `lbd_l7_connections_total` / `lbd_l7_connections_active`: client
//!   connections handed to HTTP (for HTTPS: after a successful TLS
//!   handshake), and those still open.
//! - `lbd_l7_tls_handshakes_total` / `lbd_l7_tls_handshake_failures_total`:
//!   TLS handshakes completed, and those that failed or timed out (a bad
//!   client certificate, no shared version or cipher suite, garbage, or a
//!   client that closed during the handshake).
//! - `lbd_l7_tls_unknown_sni_total`, `lbd_l7_tls_no_certificate_total`,
//!   `lbd_l7_tls_client_certs_refused_total` (HTTPS listeners only): the
//!   certificate counters of [`crate::tls::TlsCounters`].
//! - `lbd_l7_cookie_{hits,misses,invalid}_total`: requests whose
//!   persistence cookie named a backend that is up, drained (weight 0)
//!   or not (hit), carried none
//!   (miss), or carried one that was forged, expired, or named a backend
//!   that is down or gone (invalid); only on listeners with a cookie.
//! - `lbd_l7_no_backend_total`: requests answered 503 because no backend
//!   was eligible.
//! - `lbd_l7_xff_malformed_total`: requests whose `X-Forwarded-For` was
//!   not visible ASCII and could not be extended: the backend got the
//!   client's address alone.
//! - `lbd_l7_backend_up{listener,backend}`: 1 when the backend may get
//!   requests by health, else 0.
//! - `lbd_l7_backend_requests_total` / `lbd_l7_backend_active`: requests
//!   sent to the backend (counted when the connection to it, new or
//!   reused, is ready; a failed connect is counted in
//!   `lbd_l7_backend_connect_failures_total` only), and requests that
//!   chose it and are in flight (what `wlc` weighs).
//! - `lbd_l7_backend_responses_total{listener,backend,class}`: responses
//!   the backend gave, by the class of its own status (a 502 or 504 the
//!   balancer wrote is not the backend's).
//! - `lbd_l7_backend_received_bytes_total` /
//!   `lbd_l7_backend_sent_bytes_total`: the client-side bytes (as in
//!   `lbd_l7_client_*_bytes_total`) of the requests the backend served:
//!   what the clients sent it and what they got from it.
//! - `lbd_l7_backend_connections_total`: new connections to the backend
//!   (Pingora keeps idle ones for reuse; a reused one is not counted).
//! - `lbd_l7_backend_connect_failures_total`: connections to the backend
//!   that failed (refused, unreachable, or timed out).
//! - `lbd_l7_backend_timeouts_total`: connect timeouts (502), read and
//!   write timeouts (504, a backend that stops reading an upload
//!   included), and WebSocket idle closes.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use crate::tls::TlsCounters;

/// A listener's counters.
#[derive(Debug, Default)]
pub(crate) struct ListenerMetrics {
    /// Requests by status class: index 0 is `1xx` .. 4 is `5xx`.
    pub(crate) requests: [AtomicU64; 5],
    pub(crate) received_bytes: AtomicU64,
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) connections_active: AtomicI64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) cookie_hits: AtomicU64,
    pub(crate) cookie_misses: AtomicU64,
    pub(crate) cookie_invalid: AtomicU64,
    pub(crate) no_backend: AtomicU64,
    pub(crate) xff_malformed: AtomicU64,
}

impl ListenerMetrics {
    /// Counts a request answered with `status` (ignored outside 100..=599).
    pub(crate) fn count_status(&self, status: u16) {
        count_class(&self.requests, status);
    }
}

/// Adds one to the counter of `status`'s class in `classes` (`1xx` at
/// index 0); nothing outside 100..=599.
fn count_class(classes: &[AtomicU64; 5], status: u16) {
    if let Some(c) = status
        .checked_div(100)
        .and_then(|c| usize::from(c).checked_sub(1))
        .and_then(|i| classes.get(i))
    {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

impl BackendMetrics {
    /// Counts a response the backend gave with `status`.
    pub(crate) fn count_response(&self, status: u16) {
        count_class(&self.responses, status);
    }
}

/// A backend's counters (and its health, which the scheduler also reads
/// through the pool).
#[derive(Debug)]
pub(crate) struct BackendMetrics {
    pub(crate) up: AtomicBool,
    pub(crate) requests: AtomicU64,
    /// Responses by the backend's status class: index 0 is `1xx` .. 4 is `5xx`.
    pub(crate) responses: [AtomicU64; 5],
    pub(crate) received_bytes: AtomicU64,
    pub(crate) sent_bytes: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) active: AtomicI64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

impl Default for BackendMetrics {
    fn default() -> Self {
        BackendMetrics {
            up: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            responses: Default::default(),
            received_bytes: AtomicU64::new(0),
            sent_bytes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            active: AtomicI64::new(0),
            connect_failures: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
        }
    }
}

/// One listener as the renderer sees it.
pub(crate) struct ListenerView<'a> {
    pub(crate) name: &'a str,
    pub(crate) metrics: &'a ListenerMetrics,
    /// The certificate counters of an HTTPS listener.
    pub(crate) tls: Option<&'a TlsCounters>,
    pub(crate) backends: Vec<(SocketAddr, &'a BackendMetrics)>,
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn load_i(a: &AtomicI64) -> i64 {
    a.load(Ordering::Relaxed).max(0)
}

/// Writes `s` as a Prometheus label value (`\`, `"` and newline escaped).
fn label(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn listener_family(
    out: &mut String,
    views: &[ListenerView<'_>],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&ListenerMetrics) -> i128,
) {
    header(out, name, kind, help);
    for v in views {
        out.push_str(name);
        out.push_str("{listener=\"");
        label(out, v.name);
        let _ = writeln!(out, "\"}} {}", value(v.metrics));
    }
}

fn backend_family(
    out: &mut String,
    views: &[ListenerView<'_>],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&BackendMetrics) -> i128,
) {
    header(out, name, kind, help);
    for v in views {
        for (addr, b) in &v.backends {
            out.push_str(name);
            out.push_str("{listener=\"");
            label(out, v.name);
            let _ = writeln!(out, "\",backend=\"{addr}\"}} {}", value(b));
        }
    }
}

/// Appends every `lbd_l7_*` family, each with its `# HELP` and `# TYPE`
/// once, for all `views`.
pub(crate) fn render(out: &mut String, views: &[ListenerView<'_>]) {
    let name = "lbd_l7_requests_total";
    header(
        out,
        name,
        "counter",
        "Requests answered, by class of the status sent to the client.",
    );
    for v in views {
        for (i, c) in v.metrics.requests.iter().enumerate() {
            out.push_str(name);
            out.push_str("{listener=\"");
            label(out, v.name);
            let _ = writeln!(out, "\",class=\"{}xx\"}} {}", i + 1, load(c));
        }
    }
    let l = |out: &mut String, name, kind, help, f: fn(&ListenerMetrics) -> i128| {
        listener_family(out, views, name, kind, help, f)
    };
    l(
        out,
        "lbd_l7_client_received_bytes_total",
        "counter",
        "HTTP bytes received from clients (request heads and bodies; WebSocket bytes).",
        |m| load(&m.received_bytes).into(),
    );
    l(
        out,
        "lbd_l7_client_sent_bytes_total",
        "counter",
        "HTTP bytes sent to clients (response heads and bodies; WebSocket bytes).",
        |m| load(&m.sent_bytes).into(),
    );
    l(
        out,
        "lbd_l7_connections_total",
        "counter",
        "Client connections accepted (HTTPS: after a successful TLS handshake).",
        |m| load(&m.connections).into(),
    );
    l(
        out,
        "lbd_l7_connections_active",
        "gauge",
        "Client connections open.",
        |m| load_i(&m.connections_active).into(),
    );
    l(
        out,
        "lbd_l7_tls_handshakes_total",
        "counter",
        "TLS handshakes completed.",
        |m| load(&m.tls_handshakes).into(),
    );
    l(
        out,
        "lbd_l7_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed or timed out.",
        |m| load(&m.tls_failures).into(),
    );
    l(
        out,
        "lbd_l7_cookie_hits_total",
        "counter",
        "Requests sent to the backend their persistence cookie named.",
        |m| load(&m.cookie_hits).into(),
    );
    l(
        out,
        "lbd_l7_cookie_misses_total",
        "counter",
        "Requests without a persistence cookie.",
        |m| load(&m.cookie_misses).into(),
    );
    l(
        out,
        "lbd_l7_cookie_invalid_total",
        "counter",
        "Requests whose persistence cookie was forged, expired, or named a backend down or gone.",
        |m| load(&m.cookie_invalid).into(),
    );
    l(
        out,
        "lbd_l7_no_backend_total",
        "counter",
        "Requests answered 503 because no backend was eligible.",
        |m| load(&m.no_backend).into(),
    );
    l(
        out,
        "lbd_l7_xff_malformed_total",
        "counter",
        "Requests whose X-Forwarded-For was not visible ASCII: replaced by the client's address.",
        |m| load(&m.xff_malformed).into(),
    );
    let t = |out: &mut String, name, help, f: fn(&TlsCounters) -> &AtomicU64| {
        header(out, name, "counter", help);
        for v in views {
            if let Some(c) = v.tls {
                out.push_str(name);
                out.push_str("{listener=\"");
                label(out, v.name);
                let _ = writeln!(out, "\"}} {}", load(f(c)));
            }
        }
    };
    t(
        out,
        "lbd_l7_tls_unknown_sni_total",
        "ClientHellos whose SNI name no certificate covers (given the default certificate).",
        |c| &c.unknown_name,
    );
    t(
        out,
        "lbd_l7_tls_no_certificate_total",
        "ClientHellos no certificate could answer (no signature scheme in common).",
        |c| &c.no_certificate,
    );
    t(
        out,
        "lbd_l7_tls_client_certs_refused_total",
        "Client certificates refused (not chaining to the CA, expired, or a bad proof of key).",
        |c| &c.client_certs_refused,
    );
    let b = |out: &mut String, name, kind, help, f: fn(&BackendMetrics) -> i128| {
        backend_family(out, views, name, kind, help, f)
    };
    b(
        out,
        "lbd_l7_backend_up",
        "gauge",
        "1 when the backend is up by its health checks.",
        |m| i128::from(m.up.load(Ordering::Relaxed)),
    );
    b(
        out,
        "lbd_l7_backend_requests_total",
        "counter",
        "Requests sent to the backend (a failed connect is not one).",
        |m| load(&m.requests).into(),
    );
    let name = "lbd_l7_backend_responses_total";
    header(
        out,
        name,
        "counter",
        "Responses the backend gave, by class of its status.",
    );
    for v in views {
        for (addr, m) in &v.backends {
            for (i, c) in m.responses.iter().enumerate() {
                out.push_str(name);
                out.push_str("{listener=\"");
                label(out, v.name);
                let _ = writeln!(
                    out,
                    "\",backend=\"{addr}\",class=\"{}xx\"}} {}",
                    i + 1,
                    load(c)
                );
            }
        }
    }
    b(
        out,
        "lbd_l7_backend_received_bytes_total",
        "counter",
        "Client-side HTTP bytes of the requests the backend served, as received from clients.",
        |m| load(&m.received_bytes).into(),
    );
    b(
        out,
        "lbd_l7_backend_sent_bytes_total",
        "counter",
        "Client-side HTTP bytes of the requests the backend served, as sent to clients.",
        |m| load(&m.sent_bytes).into(),
    );
    b(
        out,
        "lbd_l7_backend_connections_total",
        "counter",
        "New connections to the backend (reused ones are not counted).",
        |m| load(&m.connections).into(),
    );
    b(
        out,
        "lbd_l7_backend_active",
        "gauge",
        "Requests in flight to the backend.",
        |m| load_i(&m.active).into(),
    );
    b(
        out,
        "lbd_l7_backend_connect_failures_total",
        "counter",
        "Connections to the backend that failed (refused, unreachable or timed out).",
        |m| load(&m.connect_failures).into(),
    );
    b(
        out,
        "lbd_l7_backend_timeouts_total",
        "counter",
        "Backend connect timeouts (502) and read timeouts (504, WebSocket idle closes).",
        |m| load(&m.timeouts).into(),
    );
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn renders_families_once_with_escaped_labels() {
        let a = ListenerMetrics::default();
        a.count_status(200);
        a.count_status(204);
        a.count_status(503);
        a.count_status(99);
        a.count_status(600);
        a.connections_active.fetch_add(2, Ordering::Relaxed);
        let b = ListenerMetrics::default();
        let be = BackendMetrics::default();
        let tls = TlsCounters::default();
        tls.client_certs_refused.fetch_add(3, Ordering::Relaxed);
        be.requests.fetch_add(7, Ordering::Relaxed);
        be.up.store(false, Ordering::Relaxed);
        let views = [
            ListenerView {
                name: "web",
                metrics: &a,
                tls: None,
                backends: vec![("10.77.1.2:8080".parse().unwrap(), &be)],
            },
            ListenerView {
                name: "a\"b\\c",
                metrics: &b,
                tls: Some(&tls),
                backends: vec![],
            },
        ];
        let mut out = String::new();
        render(&mut out, &views);
        assert!(out.contains("lbd_l7_requests_total{listener=\"web\",class=\"2xx\"} 2\n"));
        assert!(out.contains("lbd_l7_requests_total{listener=\"web\",class=\"5xx\"} 1\n"));
        assert!(out.contains("lbd_l7_requests_total{listener=\"web\",class=\"1xx\"} 0\n"));
        assert!(out.contains("lbd_l7_connections_active{listener=\"web\"} 2\n"));
        assert!(out.contains("lbd_l7_no_backend_total{listener=\"a\\\"b\\\\c\"} 0\n"));
        assert!(out.contains(
            "lbd_l7_backend_requests_total{listener=\"web\",backend=\"10.77.1.2:8080\"} 7\n"
        ));
        assert!(out.contains("lbd_l7_backend_up{listener=\"web\",backend=\"10.77.1.2:8080\"} 0\n"));
        assert_eq!(
            out.matches("# TYPE lbd_l7_requests_total counter").count(),
            1
        );
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("lbd_l7_"), "{line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<i64>().is_ok(), "{line}");
        }
    }
}
