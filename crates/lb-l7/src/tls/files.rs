//! Reading an HTTPS listener's PEM files: each server certificate chain
//! with its private key (checked against each other and against the
//! clock), and the CA certificates that client certificates must chain to.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, RootCertStore};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use super::error::{TlsError, TlsErrorKind};
use crate::config::CertificateFiles;

/// A server certificate ready to be served, and the names it covers.
pub(crate) struct ServerCert {
    /// The chain and its signing key.
    pub(crate) key: Arc<CertifiedKey>,
    /// The DNS names of the leaf, lower case without a final dot;
    /// wildcards keep their `*.`.
    pub(crate) names: Vec<String>,
}

/// Reads a certificate chain and its key: every certificate parsed and
/// valid at `now`, the key unencrypted, usable, and the leaf's.
pub(crate) fn read_server_cert(
    files: &CertificateFiles,
    now: SystemTime,
    provider: &CryptoProvider,
) -> Result<ServerCert, TlsError> {
    let cert_path = files.cert.as_path();
    let chain = read_certificates(cert_path)?;
    let now = unix_seconds(now);
    let mut names = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let cert = parse(cert_path, i + 1, der)?;
        check_validity(cert_path, i + 1, &cert, now)?;
        if i == 0 {
            names = dns_names(cert_path, &cert)?;
        }
    }

    let key_path = files.key.as_path();
    let key = read_private_key(key_path)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::new(key_path, TlsErrorKind::BadKey(e.to_string())))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::new(
                key_path,
                TlsErrorKind::KeyMismatch {
                    cert: cert_path.to_path_buf(),
                },
            ));
        }
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::new(
                key_path,
                TlsErrorKind::BadKey(
                    "its public key cannot be compared with the certificate's".into(),
                ),
            ));
        }
        Err(e) => {
            return Err(TlsError::new(
                cert_path,
                TlsErrorKind::BadCertificate {
                    index: 1,
                    reason: e.to_string(),
                },
            ));
        }
    }
    Ok(ServerCert {
        key: Arc::new(certified),
        names,
    })
}

/// Reads a CA file into a verifier that requires a client certificate
/// chaining to one of its certificates; with the file's certificates.
pub(crate) fn read_client_ca(
    path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<dyn ClientCertVerifier>, Vec<CertificateDer<'static>>), TlsError> {
    let mut roots = RootCertStore::empty();
    let certs = read_certificates(path)?;
    for (i, der) in certs.iter().cloned().enumerate() {
        roots.add(der).map_err(|e| {
            TlsError::new(
                path,
                TlsErrorKind::BadCa(format!("certificate {}: {e}", i + 1)),
            )
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::new(path, TlsErrorKind::BadCa(e.to_string())))?;
    Ok((verifier, certs))
}

/// The file's bytes.
fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| TlsError::new(path, TlsErrorKind::Read(e)))
}

/// The PEM sections of `raw` (those of kinds PEM knows).
fn sections(path: &Path, raw: &[u8]) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(raw)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, TlsErrorKind::Pem(e.to_string())))
}

/// The `CERTIFICATE` blocks of a file, in order; at least one.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = sections(path, &read_file(path)?)?
        .into_iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der))
        .collect();
    if certs.is_empty() {
        return Err(TlsError::new(path, TlsErrorKind::NoCertificate));
    }
    Ok(certs)
}

/// The one unencrypted private key of a file (PKCS#8, PKCS#1 or SEC1).
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let raw = read_file(path)?;
    // PKCS#8 `ENCRYPTED PRIVATE KEY` blocks, and OpenSSL's legacy
    // encrypted PEM (a `Proc-Type: 4,ENCRYPTED` header in the block).
    if contains(&raw, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(&raw, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::new(path, TlsErrorKind::Encrypted));
    }
    let mut keys = sections(path, &raw)?
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der));
    match (keys.next(), keys.next()) {
        (None, _) => Err(TlsError::new(path, TlsErrorKind::NoKey)),
        (Some(_), Some(_)) => Err(TlsError::new(path, TlsErrorKind::SeveralKeys)),
        (Some(key), None) => Ok(key),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn parse<'a>(
    path: &Path,
    index: usize,
    der: &'a CertificateDer<'_>,
) -> Result<X509Certificate<'a>, TlsError> {
    match x509_parser::parse_x509_certificate(der.as_ref()) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(TlsError::new(
            path,
            TlsErrorKind::BadCertificate {
                index,
                reason: e.to_string(),
            },
        )),
    }
}

/// Seconds since the Unix epoch (negative before it).
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

fn check_validity(
    path: &Path,
    index: usize,
    cert: &X509Certificate<'_>,
    now: i64,
) -> Result<(), TlsError> {
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(TlsError::new(
            path,
            TlsErrorKind::NotYetValid {
                index,
                not_before: validity.not_before.to_string(),
            },
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(TlsError::new(
            path,
            TlsErrorKind::Expired {
                index,
                not_after: validity.not_after.to_string(),
            },
        ));
    }
    Ok(())
}

/// The leaf's subjectAltName DNS names; its subject's CN only when it has
/// no subjectAltName extension.
fn dns_names(path: &Path, cert: &X509Certificate<'_>) -> Result<Vec<String>, TlsError> {
    let san = cert.subject_alternative_name().map_err(|e| {
        TlsError::new(
            path,
            TlsErrorKind::BadCertificate {
                index: 1,
                reason: format!("subjectAltName: {e}"),
            },
        )
    })?;
    Ok(match san {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(normalize(dns)),
                _ => None,
            })
            .collect(),
        None => cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(normalize)
            .collect(),
    })
}

/// A DNS name as SNI is matched: lower case, without a final dot.
pub(crate) fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names_are_matched_in_lower_case_without_a_final_dot() {
        assert_eq!(normalize("WWW.Example.COM."), "www.example.com");
        assert_eq!(normalize("*.Example.com"), "*.example.com");
    }

    #[test]
    fn times_before_the_epoch_are_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(5)), 5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), -5);
    }

    #[test]
    fn encrypted_markers_are_found_anywhere() {
        assert!(contains(
            b"a\nProc-Type: 4,ENCRYPTED\n",
            b"Proc-Type: 4,ENCRYPTED"
        ));
        assert!(!contains(b"short", b"longer than that"));
    }
}
