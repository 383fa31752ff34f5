//! `lb_l7::tls::check` and `Tls::load` on files a user might upload: good
//! ones pass; a passphrase key, a key of another certificate, an expired
//! or not yet valid certificate, an empty CA file are refused, naming the
//! file and the reason.

mod tls_support;

use std::time::{Duration, SystemTime};

use lb_l7::config::{CertificateFiles, TlsConfig};
use lb_l7::tls::{Tls, TlsError, TlsErrorKind, check};
use rcgen::{CertificateParams, date_time_ymd};
use tls_support::Pki;

fn config(certs: &[&CertificateFiles]) -> TlsConfig {
    TlsConfig {
        certificates: certs.iter().map(|c| (*c).clone()).collect(),
        client_ca: None,
    }
}

fn refused(config: &TlsConfig) -> TlsError {
    let err = check(config, SystemTime::now()).expect_err("check passed");
    // load refuses exactly what check does.
    let load_err = Tls::load(config).expect_err("load passed");
    assert_eq!(load_err.to_string(), err.to_string());
    err
}

#[test]
fn good_files_pass() {
    let pki = Pki::new("good");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["*.b.test"]);
    let mut cfg = config(&[&a.files, &b.files]);
    cfg.client_ca = Some(pki.ca_path());
    check(&cfg, SystemTime::now()).unwrap();
    let tls = Tls::load(&cfg).unwrap();
    assert!(tls.client_auth());
    // Shared by Pingora's worker threads.
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&tls);
}

#[test]
fn passphrase_keys_are_refused() {
    let pki = Pki::new("pass");
    let a = pki.server("a", &["a.test"]);
    // PKCS#8 encrypted (`ENCRYPTED PRIVATE KEY`).
    pki.openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:x",
        "-in",
        "a.key",
        "-out",
        "a.p8.key",
    ]);
    // OpenSSL's legacy encrypted PEM (`Proc-Type: 4,ENCRYPTED`).
    pki.openssl(&[
        "ec",
        "-aes256",
        "-passout",
        "pass:x",
        "-in",
        "a.key",
        "-out",
        "a.legacy.key",
    ]);
    let legacy = std::fs::read_to_string(pki.dir().join("a.legacy.key")).unwrap();
    assert!(legacy.contains("Proc-Type: 4,ENCRYPTED"), "{legacy}");

    for key in ["a.p8.key", "a.legacy.key"] {
        let files = CertificateFiles {
            cert: a.files.cert.clone(),
            key: pki.dir().join(key),
        };
        let err = refused(&config(&[&files]));
        assert!(matches!(err.kind(), TlsErrorKind::Encrypted), "{err}");
        assert_eq!(err.file(), files.key);
        let text = err.to_string();
        assert!(text.starts_with(&files.key.display().to_string()), "{text}");
        assert!(
            text.contains("passphrase") && text.contains("decrypt it first"),
            "{text}"
        );
    }
    // The same key decrypted is taken.
    pki.openssl(&[
        "pkey",
        "-passin",
        "pass:x",
        "-in",
        "a.p8.key",
        "-out",
        "a.plain.key",
    ]);
    let files = CertificateFiles {
        cert: a.files.cert.clone(),
        key: pki.dir().join("a.plain.key"),
    };
    check(&config(&[&files]), SystemTime::now()).unwrap();
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let pki = Pki::new("mismatch");
    let a = pki.server("a", &["a.test"]);
    let b = pki.server("b", &["b.test"]);
    let files = CertificateFiles {
        cert: a.files.cert.clone(),
        key: b.files.key.clone(),
    };
    // The bad pair second: every pair is checked, not only the default.
    let err = refused(&config(&[&b.files, &files]));
    assert!(
        matches!(err.kind(), TlsErrorKind::KeyMismatch { .. }),
        "{err}"
    );
    assert_eq!(err.file(), b.files.key);
    let text = err.to_string();
    assert!(text.contains("does not match the certificate in"), "{text}");
    assert!(text.contains(&a.files.cert.display().to_string()), "{text}");
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused() {
    let pki = Pki::new("dates");
    let mut params = CertificateParams::new(vec!["old.test".to_string()]).unwrap();
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2001, 2, 3);
    let old = pki.issue("old", params);
    let err = refused(&config(&[&old.files]));
    assert!(
        matches!(err.kind(), TlsErrorKind::Expired { index: 1, .. }),
        "{err}"
    );
    assert_eq!(err.file(), old.files.cert);
    let text = err.to_string();
    assert!(
        text.contains("expired") && text.contains("notAfter"),
        "{text}"
    );
    assert!(text.contains("2001"), "{text}");

    let mut params = CertificateParams::new(vec!["new.test".to_string()]).unwrap();
    params.not_before = date_time_ymd(2090, 5, 6);
    params.not_after = date_time_ymd(2091, 1, 1);
    let new = pki.issue("new", params);
    let err = refused(&config(&[&new.files]));
    assert!(
        matches!(err.kind(), TlsErrorKind::NotYetValid { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("not yet valid") && text.contains("notBefore"),
        "{text}"
    );
    assert!(text.contains("2090"), "{text}");

    // `check` judges at the time it is given.
    let in_2090 = SystemTime::UNIX_EPOCH + Duration::from_secs(3_800_000_000);
    check(&config(&[&new.files]), in_2090).unwrap();
    assert!(check(&config(&[&old.files]), in_2090).is_err());
}

#[test]
fn a_ca_file_without_certificates_is_refused() {
    let pki = Pki::new("ca");
    let a = pki.server("a", &["a.test"]);
    for (name, contents) in [
        ("empty-ca.pem", &b""[..]),
        ("key-ca.pem", &std::fs::read(&a.files.key).unwrap()[..]),
    ] {
        let mut cfg = config(&[&a.files]);
        let path = pki.write(name, contents);
        cfg.client_ca = Some(path.clone());
        let err = refused(&cfg);
        assert!(matches!(err.kind(), TlsErrorKind::NoCertificate), "{err}");
        assert_eq!(err.file(), path);
        assert!(err.to_string().contains("holds no certificate"), "{err}");
    }
}

#[test]
fn missing_and_wrong_files_are_refused() {
    let pki = Pki::new("wrong");
    let a = pki.server("a", &["a.test"]);

    let missing = CertificateFiles {
        cert: pki.dir().join("nothing.pem"),
        key: a.files.key.clone(),
    };
    let err = refused(&config(&[&missing]));
    assert!(matches!(err.kind(), TlsErrorKind::Read(_)), "{err}");
    assert_eq!(err.file(), missing.cert);

    // Certificate and key the wrong way round.
    let swapped = CertificateFiles {
        cert: a.files.key.clone(),
        key: a.files.cert.clone(),
    };
    let err = refused(&config(&[&swapped]));
    assert!(matches!(err.kind(), TlsErrorKind::NoCertificate), "{err}");
    assert_eq!(err.file(), a.files.key);

    let der = pki.write("a.der", a.der.as_ref());
    let err = refused(&config(&[&CertificateFiles {
        cert: der.clone(),
        key: a.files.key.clone(),
    }]));
    assert!(matches!(err.kind(), TlsErrorKind::NoCertificate), "{err}");

    let err = refused(&config(&[]));
    assert!(matches!(err.kind(), TlsErrorKind::NoCertificates), "{err}");
}
