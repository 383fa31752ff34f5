//! Why an HTTPS listener's certificate files were refused: [`TlsError`],
//! naming the file and the reason.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A certificate, key or CA file that cannot be served, and why.
///
/// Its `Display` is `"<file>: <reason>"`; [`TlsError::file`] gives the file
/// alone (for `lbd check` to point at the configuration key that names it).
#[derive(Debug)]
pub struct TlsError {
    file: PathBuf,
    reason: TlsErrorKind,
}

/// The reason a file was refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsErrorKind {
    /// The listener names no certificate (the file is empty).
    NoCertificates,
    /// The file could not be read.
    Read(io::Error),
    /// The file is not valid PEM.
    Pem(String),
    /// A certificate file or CA file holds no `CERTIFICATE` block.
    NoCertificate,
    /// A certificate could not be parsed (its place in the file, from 1).
    BadCertificate {
        /// Which certificate in the file, from 1.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A key file holds no private key.
    NoKey,
    /// A key file holds more than one private key.
    SeveralKeys,
    /// The private key is protected by a passphrase.
    Encrypted,
    /// The private key is of a kind that cannot sign (or is malformed).
    BadKey(String),
    /// The private key is not the one of the certificate's public key.
    KeyMismatch {
        /// The certificate file the key was paired with.
        cert: PathBuf,
    },
    /// A certificate's notAfter is in the past.
    Expired {
        /// Which certificate in the file, from 1.
        index: usize,
        /// Its notAfter, as written by the certificate's parser.
        not_after: String,
    },
    /// A certificate's notBefore is in the future.
    NotYetValid {
        /// Which certificate in the file, from 1.
        index: usize,
        /// Its notBefore, as written by the certificate's parser.
        not_before: String,
    },
    /// The CA certificates cannot verify client certificates.
    BadCa(String),
}

impl TlsError {
    pub(crate) fn new(file: &Path, reason: TlsErrorKind) -> TlsError {
        TlsError {
            file: file.to_path_buf(),
            reason,
        }
    }

    /// The file refused (empty for [`TlsErrorKind::NoCertificates`]).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Why it was refused.
    pub fn kind(&self) -> &TlsErrorKind {
        &self.reason
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use TlsErrorKind::*;
        if !matches!(self.reason, NoCertificates) {
            write!(f, "{}: ", self.file.display())?;
        }
        match &self.reason {
            NoCertificates => write!(f, "an HTTPS listener needs at least one certificate"),
            Read(e) => write!(f, "cannot read: {e}"),
            Pem(e) => write!(f, "not a valid PEM file: {e}"),
            NoCertificate => write!(f, "holds no certificate (no PEM CERTIFICATE block)"),
            BadCertificate { index, reason } => {
                write!(f, "{} cannot be parsed: {reason}", Nth(*index))
            }
            NoKey => write!(
                f,
                "holds no private key (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
            ),
            SeveralKeys => write!(f, "holds more than one private key"),
            Encrypted => write!(
                f,
                "the private key is protected by a passphrase, which is not supported: \
                 decrypt it first (e.g. `openssl pkey -in KEY -out KEY.plain`)"
            ),
            BadKey(e) => write!(f, "the private key cannot be used: {e}"),
            KeyMismatch { cert } => write!(
                f,
                "the private key does not match the certificate in {}",
                cert.display()
            ),
            Expired { index, not_after } => {
                write!(f, "certificate {index} has expired (notAfter {not_after})")
            }
            NotYetValid { index, not_before } => {
                write!(
                    f,
                    "certificate {index} is not yet valid (notBefore {not_before})"
                )
            }
            BadCa(e) => write!(f, "cannot verify client certificates with it: {e}"),
        }
    }
}

/// A certificate's place in its file, as a message says it.
struct Nth(usize);

impl fmt::Display for Nth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            1 => write!(f, "the certificate (the first of the file)"),
            n => write!(f, "certificate {n} of the file"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.reason {
            TlsErrorKind::Read(e) => Some(e),
            _ => None,
        }
    }
}
