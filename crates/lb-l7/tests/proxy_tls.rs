//! The L7 proxy over HTTPS on loopback: certificates chosen by SNI, the
//! handshakes counted, client certificates, certificates reloaded under
//! open connections, WSS, and what the backend sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_support;
#[path = "tls_support/mod.rs"]
mod tls_support;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use lb_l7::config::{CertificateFiles, CookieConfig, L7Listener, SameSite, TlsConfig};
use lb_l7::server::{L7, L7Error};
use proxy_support::{Client, Mode, TestBackend, assert_metric, listener, start, tcp};
use rustls::pki_types::{CertificateDer, ServerName};
use tls_support::{Issued, Pki};

fn https(name: &str, backends: Vec<lb_l7::config::Backend>, certs: &[&Issued]) -> L7Listener {
    let mut l = listener(name, backends);
    l.tls = Some(TlsConfig {
        certificates: certs.iter().map(|c| c.files.clone()).collect(),
        client_ca: None,
    });
    l
}

/// A TLS client to `addr` with SNI `sni`, trusting `pki`'s CA, with a
/// client certificate if given: the connection once the handshake is done
/// (from the client's side), and the server's certificate.
fn connect(
    addr: SocketAddr,
    pki: &Pki,
    sni: &str,
    cert: Option<&Issued>,
) -> std::io::Result<(Client, CertificateDer<'static>)> {
    connect_with(addr, client_config(pki, cert), sni).map(|(c, leaf, _)| (c, leaf))
}

/// A client configuration trusting `pki`'s CA, with a client certificate
/// if given. It keeps the sessions of its connections, and resumes them.
fn client_config(pki: &Pki, cert: Option<&Issued>) -> Arc<rustls::ClientConfig> {
    pingora::tls::install_default_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.der.clone()], c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// A TLS connection by `config`: the client, the server's certificate,
/// and whether the handshake resumed a session.
fn connect_with(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<(Client, CertificateDer<'static>, bool)> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp(addr));
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    let leaf = stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
        .unwrap();
    let resumed = stream.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    Ok((Client::over(Box::new(stream)), leaf, resumed))
}

/// One request over a new connection by `config`: its status, and
/// whether the handshake resumed a session. In TLS 1.3 a refused client
/// certificate shows after the handshake, at the first read.
fn get_with(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> std::io::Result<(u16, bool)> {
    let (mut c, _, resumed) = connect_with(addr, config.clone(), "r.test")?;
    let r = c.get("")?;
    Ok((r.status, resumed))
}

#[test]
fn https_by_sni_with_the_forwarded_proto_and_a_secure_cookie() {
    let pki = Pki::new("proxy-sni");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("secure", vec![backend.backend(1)], &[&a, &b]);
    l.cookie = Some(CookieConfig {
        name: "LBD_SERVER".into(),
        secret: b"0123456789abcdef0123".to_vec(),
        max_age: Duration::from_secs(60),
        same_site: SameSite::None,
    });
    let addr = l.addr;
    let l7 = start(&[l]);

    let (mut c, leaf) = connect(addr, &pki, "b.test", None).unwrap();
    assert_eq!(leaf, b.der);
    let r = c.get("").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.seen("x-forwarded-proto"), Some("https"));
    let port = addr.port().to_string();
    assert_eq!(r.seen("x-forwarded-port"), Some(port.as_str()));
    let set_cookie = r.header("set-cookie").unwrap();
    assert!(
        set_cookie.ends_with("; SameSite=None; Secure"),
        "{set_cookie}"
    );
    // Keep-alive over TLS.
    assert_eq!(c.get("").unwrap().status, 200);
    let (mut c2, leaf) = connect(addr, &pki, "a.test", None).unwrap();
    assert_eq!(leaf, a.der);
    assert_eq!(c2.get("").unwrap().status, 200);

    // Plain HTTP to the HTTPS port: a failed handshake, counted, and the
    // connection closed.
    let mut plain = Client::connect(addr);
    plain.send("").unwrap();
    assert!(plain.read().is_err());
    assert_metric(
        &l7,
        "lbd_l7_tls_handshake_failures_total{listener=\"secure\"}",
        1,
    );
    assert_metric(&l7, "lbd_l7_tls_handshakes_total{listener=\"secure\"}", 2);
    // Only the two good connections reached HTTP.
    assert_metric(&l7, "lbd_l7_connections_total{listener=\"secure\"}", 2);
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"secure\",class=\"2xx\"}",
        3,
    );
    assert_metric(&l7, "lbd_l7_tls_unknown_sni_total{listener=\"secure\"}", 0);
    l7.stop();
}

#[test]
fn a_client_certificate_is_required_where_a_ca_is_set() {
    let pki = Pki::new("proxy-mtls");
    let server = pki.server("server", &["mtls.test"]);
    let client = pki.client("client");
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("mtls", vec![backend.backend(1)], &[&server]);
    if let Some(tls) = &mut l.tls {
        tls.client_ca = Some(pki.ca_path());
    }
    let addr = l.addr;
    let l7 = start(&[l]);

    let (mut c, _) = connect(addr, &pki, "mtls.test", Some(&client)).unwrap();
    assert_eq!(c.get("").unwrap().status, 200);

    // Without one, the server refuses the handshake (in TLS 1.3 the client
    // learns it at its first read).
    let refused = connect(addr, &pki, "mtls.test", None).and_then(|(mut c, _)| c.get(""));
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA.
    let other = Pki::new("proxy-mtls-other").client("stranger");
    let refused = connect(addr, &pki, "mtls.test", Some(&other)).and_then(|(mut c, _)| c.get(""));
    assert!(refused.is_err(), "{refused:?}");
    assert_metric(
        &l7,
        "lbd_l7_tls_handshake_failures_total{listener=\"mtls\"}",
        2,
    );
    assert_metric(
        &l7,
        "lbd_l7_tls_client_certs_refused_total{listener=\"mtls\"}",
        1,
    );
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    l7.stop();
}

#[test]
fn reload_swaps_certificates_for_new_connections_only() {
    let pki = Pki::new("proxy-reload");
    let first = pki.server("first", &["r.test"]);
    let second = pki.server("second", &["r.test"]);
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("r", vec![backend.backend(1)], &[&first]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let (mut old, leaf) = connect(addr, &pki, "r.test", None).unwrap();
    assert_eq!(leaf, first.der);
    assert_eq!(old.get("").unwrap().status, 200);

    if let Some(tls) = &mut l.tls {
        tls.certificates = vec![second.files.clone()];
    }
    l7.reload(std::slice::from_ref(&l)).unwrap();
    let (mut new, leaf) = connect(addr, &pki, "r.test", None).unwrap();
    assert_eq!(leaf, second.der);
    assert_eq!(new.get("").unwrap().status, 200);
    // The connection opened before the reload goes on.
    assert_eq!(old.get("").unwrap().status, 200);

    // A refused file refuses the whole reload (weights included).
    let mut bad = l.clone();
    // Applied, this weight would leave no eligible backend (503).
    bad.backends[0].weight = 0;
    if let Some(tls) = &mut bad.tls {
        tls.certificates = vec![CertificateFiles {
            cert: pki.dir().join("missing.pem"),
            key: second.files.key.clone(),
        }];
    }
    let err = l7.reload(&[bad]).unwrap_err();
    assert!(
        matches!(&err, L7Error::Tls { listener, .. } if listener == "r"),
        "{err}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let (mut c, leaf) = connect(addr, &pki, "r.test", None).unwrap();
    assert_eq!(leaf, second.der);
    assert_eq!(c.get("").unwrap().status, 200);
    // HTTPS to HTTP is a restart.
    let mut plain = l.clone();
    plain.tls = None;
    assert!(matches!(
        l7.reload(&[plain]),
        Err(L7Error::RestartNeeded(_))
    ));
    l7.stop();

    // A bad file at start is an error, naming the listener and the file.
    let mut l = https("bad", vec![], &[&first]);
    if let Some(tls) = &mut l.tls {
        tls.certificates[0].key = second.files.key.clone();
    }
    let err = L7::start(&[l], None, 1, 0).unwrap_err();
    assert!(
        matches!(&err, L7Error::Tls { listener, .. } if listener == "bad"),
        "{err}"
    );
}

#[test]
fn no_session_from_before_a_reload_that_adds_a_client_ca_is_resumed() {
    let pki = Pki::new("proxy-resume-ca");
    let server = pki.server("server", &["r.test"]);
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("r", vec![backend.backend(1)], &[&server]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    // One client configuration: it keeps its sessions to resume them.
    let shared = client_config(&pki, None);
    assert_eq!(get_with(addr, &shared).unwrap(), (200, false));
    // A reload that changes nothing TLS keeps the sessions.
    l7.reload(std::slice::from_ref(&l)).unwrap();
    assert_eq!(get_with(addr, &shared).unwrap(), (200, true));

    if let Some(tls) = &mut l.tls {
        tls.client_ca = Some(pki.ca_path());
    }
    l7.reload(std::slice::from_ref(&l)).unwrap();
    // Without a certificate the client is refused: resuming its session
    // would skip the verification.
    let before = backend.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        get_with(addr, &shared).is_err(),
        "a client without a certificate was served"
    );
    assert_eq!(
        backend.requests.load(std::sync::atomic::Ordering::Relaxed),
        before
    );
    // With one, it is served.
    let client = pki.client("client");
    assert_eq!(
        get_with(addr, &client_config(&pki, Some(&client)))
            .unwrap()
            .0,
        200
    );
    l7.stop();
}

#[test]
fn no_session_from_before_a_certificate_change_is_resumed() {
    let pki = Pki::new("proxy-resume-cert");
    let first = pki.server("first", &["r.test"]);
    let second = pki.server("second", &["r.test"]);
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("r", vec![backend.backend(1)], &[&first]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let shared = client_config(&pki, None);
    // A request read: a TLS 1.3 client takes its session ticket then.
    let (mut c, leaf, resumed) = connect_with(addr, shared.clone(), "r.test").unwrap();
    assert_eq!((leaf, resumed), (first.der.clone(), false));
    assert_eq!(c.get("").unwrap().status, 200);
    // Without a change, the session is resumed.
    l7.reload(std::slice::from_ref(&l)).unwrap();
    let (mut c, _, resumed) = connect_with(addr, shared.clone(), "r.test").unwrap();
    assert!(resumed);
    assert_eq!(c.get("").unwrap().status, 200);
    if let Some(tls) = &mut l.tls {
        tls.certificates = vec![second.files.clone()];
    }
    l7.reload(std::slice::from_ref(&l)).unwrap();
    // A full handshake, with the new certificate.
    let (_, leaf, resumed) = connect_with(addr, shared.clone(), "r.test").unwrap();
    assert_eq!((leaf, resumed), (second.der.clone(), false));
    l7.stop();
}

#[test]
fn revert_puts_back_the_certificates_without_reading_files() {
    let pki = Pki::new("proxy-revert");
    let first = pki.server("first", &["r.test"]);
    let second = pki.server("second", &["r.test"]);
    let third = pki.server("third", &["r.test"]);
    let backend = TestBackend::start("x", Mode::Echo);
    let mut l = https("r", vec![backend.backend(1)], &[&first]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    // Nothing to revert before a reload.
    assert!(!l7.revert());
    let original = l.clone();
    if let Some(tls) = &mut l.tls {
        tls.certificates = vec![second.files.clone()];
    }
    l7.reload(std::slice::from_ref(&l)).unwrap();
    assert_eq!(connect(addr, &pki, "r.test", None).unwrap().1, second.der);
    // The files on disk change: the original's now hold another
    // certificate, the new ones garbage.
    std::fs::copy(&third.files.cert, &first.files.cert).unwrap();
    std::fs::copy(&third.files.key, &first.files.key).unwrap();
    std::fs::write(&second.files.cert, b"garbage").unwrap();
    assert!(l7.revert());
    let (mut c, leaf) = connect(addr, &pki, "r.test", None).unwrap();
    assert_eq!(leaf, first.der);
    assert_eq!(c.get("").unwrap().status, 200);
    // Once only.
    assert!(!l7.revert());
    // The running configuration is the original again: reloading it
    // reads the (changed) files.
    l7.reload(std::slice::from_ref(&original)).unwrap();
    assert_eq!(connect(addr, &pki, "r.test", None).unwrap().1, third.der);
    l7.stop();
}

#[test]
fn a_websocket_passes_through_https() {
    let pki = Pki::new("proxy-wss");
    let cert = pki.server("wss", &["wss.test"]);
    let ws = TestBackend::start("ws", Mode::WebSocket);
    let mut l = https("wss", vec![ws.backend(1)], &[&cert]);
    l.timeouts.websocket_idle = Duration::from_secs(1);
    let addr = l.addr;
    let l7 = start(&[l]);
    let (mut c, _) = connect(addr, &pki, "wss.test", None).unwrap();
    let r = c
        .get(
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        )
        .unwrap();
    assert_eq!(r.status, 101, "{r:?}");
    for i in 0..3u8 {
        let msg = [0x81, 0x02, b'w', b'0' + i];
        c.write_all(&msg).unwrap();
        let mut back = [0u8; 4];
        c.reader.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    let t = Instant::now();
    c.wait_closed().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    l7.stop();
}

#[test]
fn reloads_of_certificates_and_weights_lose_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let pki = Arc::new(Pki::new("proxy-reload-run"));
    let certs = [
        pki.server("one", &["run.test"]),
        pki.server("two", &["run.test"]),
    ];
    let a = TestBackend::start("a", Mode::Echo);
    let b = TestBackend::start("b", Mode::Echo);
    let mut l = https("run", vec![a.backend(1), b.backend(1)], &[&certs[0]]);
    let addr = l.addr;
    let l7 = start(std::slice::from_ref(&l));
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (done, pki) = (done.clone(), pki.clone());
            thread::spawn(move || {
                let mut n = 0;
                let mut leaves = std::collections::HashSet::new();
                while !done.load(Ordering::Relaxed) {
                    // A new connection (a new handshake) every third request.
                    let (mut c, leaf) = connect(addr, &pki, "run.test", None).unwrap();
                    leaves.insert(leaf);
                    for _ in 0..3 {
                        let r = c.get("").unwrap();
                        assert_eq!(r.status, 200, "{r:?}");
                        n += 1;
                    }
                }
                (n, leaves.len())
            })
        })
        .collect();
    for (i, w) in [3u16, 1, 4, 0, 2, 1].into_iter().enumerate() {
        thread::sleep(Duration::from_millis(150));
        l.backends[1].weight = w;
        if let Some(tls) = &mut l.tls {
            tls.certificates = vec![certs[(i + 1) % 2].files.clone()];
        }
        l7.reload(std::slice::from_ref(&l)).unwrap();
    }
    thread::sleep(Duration::from_millis(150));
    done.store(true, Ordering::Relaxed);
    let results: Vec<(usize, usize)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let total: usize = results.iter().map(|r| r.0).sum();
    assert!(total >= 30, "{results:?}");
    // The clients saw both certificates.
    assert!(results.iter().any(|r| r.1 == 2), "{results:?}");
    assert_metric(
        &l7,
        "lbd_l7_requests_total{listener=\"run\",class=\"2xx\"}",
        i64::try_from(total).unwrap(),
    );
    assert_metric(
        &l7,
        "lbd_l7_tls_handshake_failures_total{listener=\"run\"}",
        0,
    );
    l7.stop();
}
