//! Real TLS handshakes over loopback against the acceptor Pingora builds
//! from `Tls::settings`: the certificate chosen by SNI, client
//! certificates where a CA is set, reload under an open connection, and
//! the versions and suites refused (with `openssl s_client`).

mod tls_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use lb_l7::config::{CertificateFiles, TlsConfig};
use lb_l7::tls::Tls;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::tls::{ClientConfig, ClientTlsStream, RootCertStore, ServerName, TlsConnector};
use rustls::pki_types::CertificateDer;
use tls_support::{Issued, Pki};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);

/// A loopback listener doing what Pingora's does with the settings: the
/// TLS handshake, then (here) an echo.
struct Server {
    addr: SocketAddr,
    /// Each connection's handshake: `Ok` or Pingora's error.
    results: mpsc::UnboundedReceiver<Result<(), String>>,
}

impl Server {
    async fn start(tls: &Tls) -> Server {
        let acceptor = Arc::new(tls.settings().build());
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, results) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let stream: L4Stream = tcp.into();
                    match acceptor.tls_handshake(stream).await {
                        Ok(mut stream) => {
                            let _ = tx.send(Ok(()));
                            echo(&mut stream).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(format!("{e:?}")));
                        }
                    }
                });
            }
        });
        Server { addr, results }
    }

    /// The result of the next handshake the server finished.
    async fn next(&mut self) -> Result<(), String> {
        timeout(WAIT, self.results.recv()).await.unwrap().unwrap()
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A rustls client trusting `roots`, with a client certificate if given
/// (and a session cache of its own).
fn client(roots: &[CertificateDer<'static>], cert: Option<&Issued>) -> Arc<ClientConfig> {
    pingora::tls::install_default_crypto_provider();
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let builder = ClientConfig::builder().with_root_certificates(store);
    Arc::new(match cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.der.clone()], c.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Connects with SNI `name` (none: to 127.0.0.1 without SNI), checks the
/// connection echoes, and returns it with the server's certificate.
async fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    name: Option<&str>,
) -> Result<(ClientTlsStream<TcpStream>, CertificateDer<'static>), String> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = match name {
        Some(name) => ServerName::try_from(name.to_string()).unwrap(),
        None => ServerName::from(std::net::IpAddr::from(Ipv4Addr::LOCALHOST)),
    };
    let mut stream = timeout(
        WAIT,
        TlsConnector::from(config.clone()).connect(server_name, tcp),
    )
    .await
    .unwrap()
    .map_err(|e| e.to_string())?;
    let leaf = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .cloned()
        .ok_or("no server certificate")?;
    ping(&mut stream).await?;
    Ok((stream, leaf))
}

/// One line through the echo: the connection works both ways.
async fn ping(stream: &mut ClientTlsStream<TcpStream>) -> Result<(), String> {
    stream
        .write_all(b"ping\n")
        .await
        .map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut back = [0u8; 5];
    timeout(WAIT, stream.read_exact(&mut back))
        .await
        .unwrap()
        .map_err(|e| e.to_string())?;
    assert_eq!(&back, b"ping\n");
    Ok(())
}

fn config(certs: &[&Issued], client_ca: Option<std::path::PathBuf>) -> TlsConfig {
    TlsConfig {
        certificates: certs.iter().map(|c| c.files.clone()).collect(),
        client_ca,
    }
}

#[tokio::test]
async fn the_certificate_is_chosen_by_sni() {
    let pki = Pki::new("sni");
    let default = pki.server("default", &["default.test", "127.0.0.1"]);
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test", "*.b.test"]);
    // Covers names a and b cover too: the earlier certificate wins.
    let late = pki.server("late", &["a.test", "*.b.test", "late.test"]);
    let tls = Tls::load(&config(&[&default, &a, &b, &late], None)).unwrap();
    let mut server = Server::start(&tls).await;
    let roots = client(&[pki.ca_der()], None);

    for (name, want) in [
        (Some("a.test"), &a),
        (Some("b.test"), &b),
        (Some("x.b.test"), &b),
        (Some("X.B.Test"), &b),
        (Some("late.test"), &late),
        (None, &default),
    ] {
        let (_, leaf) = connect(server.addr, &roots, name).await.unwrap();
        assert!(leaf == want.der, "{name:?} got the wrong certificate");
        server.next().await.unwrap();
    }
    // A name no certificate covers gets the default (which the client
    // then finds is not for that name); a wildcard covers one label only.
    for name in ["unknown.test", "x.y.b.test", "b.test.example"] {
        let err = connect(server.addr, &roots, Some(name)).await.unwrap_err();
        assert!(err.contains("default.test"), "{name}: {err}");
        assert!(server.next().await.is_err());
    }

    let counters = tls.counters();
    assert_eq!(counters.client_hellos.load(Relaxed), 9);
    assert_eq!(counters.handshakes.load(Relaxed), 6);
    assert_eq!(counters.unknown_name.load(Relaxed), 3);
    assert_eq!(counters.no_certificate.load(Relaxed), 0);
}

#[tokio::test]
async fn a_ca_requires_client_certificates() {
    let pki = Pki::new("mtls");
    let other = Pki::new("other");
    let server_cert = pki.server("server", &["server.test"]);
    let tls = Tls::load(&config(&[&server_cert], Some(pki.ca_path()))).unwrap();
    let mut server = Server::start(&tls).await;

    let err = connect(
        server.addr,
        &client(&[pki.ca_der()], None),
        Some("server.test"),
    )
    .await
    .unwrap_err();
    let server_err = server.next().await.unwrap_err();
    assert!(
        server_err.contains("peer sent no certificates"),
        "{err} / {server_err}"
    );

    let good = pki.client("good-client");
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&good)),
        Some("server.test"),
    )
    .await
    .unwrap();
    server.next().await.unwrap();

    let foreign = other.client("foreign-client");
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&foreign)),
        Some("server.test"),
    )
    .await
    .unwrap_err();
    let server_err = server.next().await.unwrap_err();
    assert!(server_err.contains("UnknownIssuer"), "{server_err}");

    let counters = tls.counters();
    assert_eq!(counters.client_certs_refused.load(Relaxed), 1);
    assert_eq!(counters.handshakes.load(Relaxed), 1);
    assert_eq!(counters.client_hellos.load(Relaxed), 3);
}

#[tokio::test]
async fn reload_changes_new_handshakes_only() {
    let pki = Pki::new("reload");
    let other = Pki::new("reload-other");
    let first = pki.server("first", &["a.test"]);
    let second = pki.server("second", &["a.test"]);
    let tls = Tls::load(&config(&[&first], None)).unwrap();
    assert!(!tls.client_auth());
    let mut server = Server::start(&tls).await;
    // A new client configuration (a new session cache) for each
    // connection: a client resuming a session gets no certificate.
    let roots = || client(&[pki.ca_der()], None);

    let (mut open, leaf) = connect(server.addr, &roots(), Some("a.test"))
        .await
        .unwrap();
    assert!(leaf == first.der);
    server.next().await.unwrap();

    // Without a CA no certificate is asked for: any client's is ignored.
    let foreign = other.client("foreign-client");
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&foreign)),
        Some("a.test"),
    )
    .await
    .unwrap();
    server.next().await.unwrap();

    tls.reload(&config(&[&second], None)).unwrap();
    let (_, leaf) = connect(server.addr, &roots(), Some("a.test"))
        .await
        .unwrap();
    assert!(
        leaf == second.der,
        "a new handshake still gets the old certificate"
    );
    server.next().await.unwrap();
    ping(&mut open).await.unwrap();

    // A bad set changes nothing.
    let bad = CertificateFiles {
        cert: first.files.cert.clone(),
        key: second.files.key.clone(),
    };
    let err = tls
        .reload(&TlsConfig {
            certificates: vec![bad],
            client_ca: None,
        })
        .unwrap_err();
    assert_eq!(err.file(), second.files.key);
    let (_, leaf) = connect(server.addr, &roots(), Some("a.test"))
        .await
        .unwrap();
    assert!(leaf == second.der);
    server.next().await.unwrap();

    // A CA added: certificates required from the next handshake on.
    tls.reload(&config(&[&second], Some(pki.ca_path())))
        .unwrap();
    assert!(tls.client_auth());
    connect(server.addr, &roots(), Some("a.test"))
        .await
        .unwrap_err();
    server.next().await.unwrap_err();
    let good = pki.client("good-client");
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&good)),
        Some("a.test"),
    )
    .await
    .unwrap();
    server.next().await.unwrap();

    // The CA replaced by another.
    tls.reload(&config(&[&second], Some(other.ca_path())))
        .unwrap();
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&good)),
        Some("a.test"),
    )
    .await
    .unwrap_err();
    server.next().await.unwrap_err();
    connect(
        server.addr,
        &client(&[pki.ca_der()], Some(&foreign)),
        Some("a.test"),
    )
    .await
    .unwrap();
    server.next().await.unwrap();

    // And removed.
    tls.reload(&config(&[&second], None)).unwrap();
    connect(server.addr, &roots(), Some("a.test"))
        .await
        .unwrap();
    server.next().await.unwrap();

    // The first connection lived through all of it.
    ping(&mut open).await.unwrap();
}

/// Runs `openssl s_client` against `addr` with `args`; whether the
/// handshake succeeded, and what it printed.
async fn s_client(addr: SocketAddr, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(args)
        .stdin(Stdio::null());
    let out = timeout(WAIT, tokio::task::spawn_blocking(move || cmd.output()))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn old_versions_and_suites_are_refused() {
    let pki = Pki::new("suites");
    // An RSA certificate as the FAQ's suites need (ECDHE_RSA, RSA), made
    // by openssl with a CN and no subjectAltName: SNI falls back to CN
    // (else no certificate could answer the RSA-only clients below).
    pki.openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rsa.key",
        "-out",
        "rsa.pem",
        "-subj",
        "/CN=rsa.test",
        "-days",
        "2",
    ]);
    // The ECDSA certificate, first (the default), covers rsa.test too.
    let ecdsa = pki.server("ecdsa", &["ecdsa.test", "rsa.test"]);
    let rsa = CertificateFiles {
        cert: pki.dir().join("rsa.pem"),
        key: pki.dir().join("rsa.key"),
    };
    let tls = Tls::load(&TlsConfig {
        certificates: vec![ecdsa.files.clone(), rsa],
        client_ca: None,
    })
    .unwrap();
    let mut server = Server::start(&tls).await;

    // Of the certificates covering the name, the first whose key the
    // client accepts: a client of ECDHE_RSA suites or RSA signatures only
    // gets the RSA one, others the ECDSA one.
    let rsa_subject = "CN = rsa.test";
    let ecdsa_subject = "CN = rcgen self signed cert";
    for (args, subject) in [
        (&["-servername", "rsa.test", "-tls1_3"][..], ecdsa_subject),
        (
            &[
                "-servername",
                "rsa.test",
                "-tls1_3",
                "-sigalgs",
                "rsa_pss_rsae_sha256",
            ],
            rsa_subject,
        ),
        (
            &[
                "-servername",
                "rsa.test",
                "-tls1_2",
                "-cipher",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ],
            rsa_subject,
        ),
        (
            &[
                "-servername",
                "rsa.test",
                "-tls1_2",
                "-cipher",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ],
            rsa_subject,
        ),
    ] {
        let (ok, text) = s_client(server.addr, args).await;
        assert!(ok, "{args:?}: {text}");
        assert!(text.contains(subject), "{args:?}: want {subject}: {text}");
        server.next().await.unwrap();
    }

    // A client accepting only Ed25519 signatures: no key can answer it.
    let (ok, text) = s_client(server.addr, &["-tls1_3", "-sigalgs", "ed25519"]).await;
    assert!(!ok, "{text}");
    let server_err = server.next().await.unwrap_err();
    assert!(server_err.contains("no server certificate"), "{server_err}");
    assert_eq!(tls.counters().no_certificate.load(Relaxed), 1);
    assert_eq!(tls.counters().handshakes.load(Relaxed), 4);

    // Each of these reaches the server (which says why it refuses), so
    // it is the server that refuses, not the client that cannot offer.
    // (3DES is not here: Debian's OpenSSL 3 cannot offer it at all.)
    for (args, why) in [
        (
            &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"][..],
            "peer is incompatible",
        ),
        (
            &["-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"],
            "peer is incompatible",
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:@SECLEVEL=0",
            ],
            "NoCipherSuitesInCommon",
        ),
        (
            &[
                "-tls1_2",
                "-cipher",
                "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA256:AES256-SHA256:AES128-SHA:AES256-SHA:@SECLEVEL=0",
            ],
            // Static RSA: no ECDHE group offered, none in common.
            "NoKxGroupsInCommon",
        ),
    ] {
        let (ok, text) = s_client(server.addr, args).await;
        assert!(!ok, "{args:?} was accepted: {text}");
        let server_err = server.next().await.unwrap_err();
        assert!(server_err.contains(why), "{args:?}: {server_err}");
    }
}
