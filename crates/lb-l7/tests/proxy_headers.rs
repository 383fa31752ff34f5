//! What backends and clients see of the L7 proxy's header work: the
//! forwarded headers as configured, and the persistence cookie (given,
//! followed, refused when forged, re-issued when its backend goes down,
//! never shown to a backend).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_support;

use std::time::Duration;

use lb_l7::config::{CookieConfig, Forwarded, SameSite, XffMode};
use proxy_support::{Client, Mode, Response, TestBackend, get, listener, metric, start};

#[test]
fn forwarded_headers_as_configured() {
    let a = TestBackend::start("a", Mode::Echo);
    let append = listener("append", vec![a.backend(1)]);
    let mut replace = listener("replace", vec![a.backend(1)]);
    replace.forwarded = Forwarded {
        xff: XffMode::Replace,
        real_ip: false,
        proto: false,
        port: false,
    };
    let mut remove = listener("remove", vec![a.backend(1)]);
    remove.forwarded.xff = XffMode::Remove;
    let l7 = start(&[append.clone(), replace.clone(), remove.clone()]);
    let sent = "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-For: 198.51.100.2\r\n\
                X-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: gopher\r\n";

    let r = get(append.addr, sent);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.seen("x-forwarded-for"),
        Some("203.0.113.9, 198.51.100.2, 127.0.0.1")
    );
    assert_eq!(r.seen("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(r.seen("x-forwarded-proto"), Some("http"));
    let port = append.addr.port().to_string();
    assert_eq!(r.seen("x-forwarded-port"), Some(port.as_str()));
    assert_eq!(r.seen("host"), Some("test.example"));

    let r = get(replace.addr, sent);
    assert_eq!(r.seen("x-forwarded-for"), Some("127.0.0.1"));
    // Off: what the client sent passes untouched.
    assert_eq!(r.seen("x-real-ip"), Some("6.6.6.6"));
    assert_eq!(r.seen("x-forwarded-proto"), Some("gopher"));
    assert_eq!(r.seen("x-forwarded-port"), None);

    let r = get(remove.addr, sent);
    assert_eq!(r.seen("x-forwarded-for"), None);
    assert_eq!(r.seen("x-real-ip"), Some("127.0.0.1"));

    // A header that is not visible ASCII cannot be extended: replaced, and
    // counted.
    let r = get(append.addr, "X-Forwarded-For: \u{e9}t\u{e9}\r\n");
    assert_eq!(r.seen("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        metric(&l7, "lbd_l7_xff_malformed_total{listener=\"append\"}"),
        1
    );
    l7.stop();
}

fn cookie_config() -> CookieConfig {
    CookieConfig {
        name: "LBD_SERVER".into(),
        secret: b"a secret of at least 16 bytes".to_vec(),
        max_age: Duration::from_secs(3600),
        same_site: SameSite::Strict,
    }
}

/// The value of our cookie in a response's `Set-Cookie`, checking its
/// attributes.
fn given_cookie(r: &Response) -> String {
    let line = r
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with("LBD_SERVER="))
        .unwrap_or_else(|| panic!("no cookie in {r:?}"));
    let mut parts = line.split("; ");
    let value = parts.next().unwrap().strip_prefix("LBD_SERVER=").unwrap();
    let attrs: Vec<&str> = parts.collect();
    assert_eq!(
        attrs,
        ["Path=/", "Max-Age=3600", "HttpOnly", "SameSite=Strict"]
    );
    value.to_string()
}

#[test]
fn the_cookie_keeps_a_client_on_one_backend_until_it_goes_down() {
    let backends: Vec<TestBackend> = ["a", "b", "c"]
        .iter()
        .map(|n| TestBackend::start(n, Mode::Echo))
        .collect();
    let mut l = listener("web", backends.iter().map(|b| b.backend(1)).collect());
    l.cookie = Some(cookie_config());
    let addr = l.addr;
    let l7 = start(&[l]);

    // A first request has no cookie: scheduled, and given one.
    let first = get(addr, "");
    let chosen = first.backend().to_string();
    let cookie = given_cookie(&first);
    let jar = format!("Cookie: theme=dark; LBD_SERVER={cookie}; lang=fr\r\n");
    // With the cookie, every request (on new connections too) goes there,
    // the cookie is refreshed each time, and the backend never sees it.
    for _ in 0..12 {
        let r = get(addr, &jar);
        assert_eq!(r.backend(), chosen);
        assert_eq!(r.seen("cookie"), Some("theme=dark; lang=fr"));
        given_cookie(&r);
    }
    // Without it, the scheduler spreads requests.
    let mut c = Client::connect(addr);
    let spread: std::collections::HashSet<String> = (0..6)
        .map(|_| c.get("").unwrap().backend().to_string())
        .collect();
    assert_eq!(spread.len(), 3);
    // Only our cookie: the backend gets no Cookie header at all.
    let r = get(addr, &format!("Cookie: LBD_SERVER={cookie}\r\n"));
    assert_eq!(r.seen("cookie"), None);
    assert_eq!(r.backend(), chosen);

    // Forged: a changed character, or another listener's secret.
    let mut forged = cookie.clone().into_bytes();
    forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let mut other = cookie_config();
    other.secret = b"another secret, also long".to_vec();
    let foreign = lb_l7::cookie::Codec::new(&other).issue(backends[0].addr, 1 << 40);
    for bad in [forged, foreign, "garbage".to_string()] {
        let r = get(addr, &format!("Cookie: LBD_SERVER={bad}\r\n"));
        assert_eq!(r.status, 200);
        assert_eq!(r.seen("cookie"), None);
        // A fresh, valid cookie for wherever the scheduler sent it.
        let fresh = given_cookie(&r);
        let again = get(addr, &format!("Cookie: LBD_SERVER={fresh}\r\n"));
        assert_eq!(again.backend(), r.backend());
    }

    // The backend goes down: the client moves, with a new cookie that
    // then holds.
    let down = backends.iter().find(|b| b.name == chosen).unwrap();
    l7.set_up("web", down.addr, false);
    let moved = get(addr, &jar);
    assert_ne!(moved.backend(), chosen);
    let new_cookie = given_cookie(&moved);
    assert_ne!(new_cookie, cookie);
    for _ in 0..5 {
        let r = get(addr, &format!("Cookie: LBD_SERVER={new_cookie}\r\n"));
        assert_eq!(r.backend(), moved.backend());
    }
    let hits = metric(&l7, "lbd_l7_cookie_hits_total{listener=\"web\"}");
    let invalid = metric(&l7, "lbd_l7_cookie_invalid_total{listener=\"web\"}");
    let misses = metric(&l7, "lbd_l7_cookie_misses_total{listener=\"web\"}");
    // 12 + 1 + 3 + 5 hits; 3 forged + 1 down invalid; 1 + 6 misses.
    assert_eq!((hits, invalid, misses), (21, 4, 7));
    l7.stop();
}

#[test]
fn a_cookie_still_reaches_a_drained_backend() {
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let mut l = listener("web", vec![a.backend(1), b.backend(1)]);
    l.cookie = Some(cookie_config());
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let first = get(addr, "");
    let chosen = first.backend().to_string();
    let cookie = format!("Cookie: LBD_SERVER={}\r\n", given_cookie(&first));
    // The chosen backend is drained (weight 0) but stays up.
    let slot = usize::from(chosen == "b");
    l.backends[slot].weight = 0;
    l7.reload(std::slice::from_ref(&l)).unwrap();
    for _ in 0..5 {
        let r = get(addr, &cookie);
        assert_eq!(r.backend(), chosen);
        assert_eq!(r.status, 200);
    }
    // New clients go to the other one only.
    for _ in 0..5 {
        assert_ne!(get(addr, "").backend(), chosen);
    }
    assert_eq!(metric(&l7, "lbd_l7_cookie_hits_total{listener=\"web\"}"), 5);
    l7.stop();
}

#[test]
fn an_ipv6_listener_forwards_the_ipv6_client() {
    let a = TestBackend::start("a", Mode::Echo);
    let mut l = listener("v6", vec![a.backend(1)]);
    l.addr = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let addr = l.addr;
    let l7 = start(&[l]);
    let r = get(addr, "X-Forwarded-For: 2001:db8::7\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-forwarded-for"), Some("2001:db8::7, ::1"));
    assert_eq!(r.seen("x-real-ip"), Some("::1"));
    let mut out = String::new();
    l7.render_metrics(&mut out);
    assert!(
        out.contains("lbd_l7_connections_total{listener=\"v6\"} 1"),
        "{out}"
    );
    l7.stop();
}
