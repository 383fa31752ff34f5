//! Test certificates for the `tls` tests, generated at run time: a CA that
//! signs server and client certificates, written as PEM files into a
//! temporary folder removed when the test ends.

#![allow(dead_code)] // Each test file uses part of it.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use lb_l7::config::CertificateFiles;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tempfile::TempDir;

/// A CA and the folder its certificates are written to.
pub(crate) struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

/// A certificate written to files, with its DER to compare against what a
/// client received.
pub(crate) struct Issued {
    pub(crate) files: CertificateFiles,
    pub(crate) der: CertificateDer<'static>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Pki {
    /// A new CA named `name`, its certificate in `<name>-ca.pem`.
    pub(crate) fn new(name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("lb-l7-tls")
            .tempdir()
            .unwrap();
        let pki = Pki { dir, ca, ca_key };
        pki.write(&format!("{name}-ca.pem"), pki.ca.pem().as_bytes());
        pki
    }

    /// The folder of the files.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate's file.
    pub(crate) fn ca_path(&self) -> PathBuf {
        let name = self
            .ca
            .params()
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(|cn| match cn {
                rcgen::DnValue::Utf8String(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap();
        self.dir().join(format!("{name}-ca.pem"))
    }

    /// The CA certificate.
    pub(crate) fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// Writes `contents` to `name` in the folder.
    pub(crate) fn write(&self, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.dir().join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses),
    /// signed by the CA, in `<stem>.pem` and `<stem>.key`.
    pub(crate) fn server(&self, stem: &str, names: &[&str]) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = names.iter().map(|n| san(n)).collect();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(stem, params)
    }

    /// A client certificate signed by the CA, in `<stem>.pem` and
    /// `<stem>.key`.
    pub(crate) fn client(&self, stem: &str) -> Issued {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, stem);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(stem, params)
    }

    /// A certificate with `params`, signed by the CA, with a new key.
    pub(crate) fn issue(&self, stem: &str, params: CertificateParams) -> Issued {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let cert_path = self.write(&format!("{stem}.pem"), cert.pem().as_bytes());
        let key_path = self.write(&format!("{stem}.key"), key.serialize_pem().as_bytes());
        Issued {
            files: CertificateFiles {
                cert: cert_path,
                key: key_path,
            },
            der: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// Runs `openssl` with `args` in the folder; panics unless it succeeds.
    pub(crate) fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn san(name: &str) -> SanType {
    match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(name.try_into().unwrap()),
    }
}
