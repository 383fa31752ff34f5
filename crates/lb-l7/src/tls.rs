//! HTTPS certificates for the L7 listeners: reading and checking the PEM
//! files ([`check`], [`Tls::load`]), choosing the server certificate by
//! SNI, verifying client certificates against a CA file, swapping all of
//! it at reload ([`Tls::reload`]), and the Pingora listener settings that
//! use them ([`Tls::settings`]).
//!
//! # Versions and cipher suites
//!
//! Pingora's rustls listener speaks TLS 1.2 and TLS 1.3 only, with
//! rustls's default suites on the `ring` provider: in TLS 1.3
//! `TLS13_AES_256_GCM_SHA384`, `TLS13_AES_128_GCM_SHA256`,
//! `TLS13_CHACHA20_POLY1305_SHA256`; in TLS 1.2
//! `TLS_ECDHE_{ECDSA,RSA}_WITH_AES_{256,128}_GCM_SHA{384,256}` and
//! `TLS_ECDHE_{ECDSA,RSA}_WITH_CHACHA20_POLY1305_SHA256`; key exchange by
//! X25519, P-256 or P-384. Every connection has forward secrecy (ECDHE)
//! and an AEAD cipher.
//!
//! Of what the FAQ lists (HTTPS Q1 and Q2), these are not offered:
//!
//! - **TLSv1 and TLSv1.1**: deprecated by RFC 8996 (they rely on SHA-1
//!   and MD5 in the handshake and have no AEAD suite); rustls does not
//!   implement them. A client that offers only these is refused with a
//!   `protocol_version` alert.
//! - **CBC suites** (`TLS_ECDHE_RSA_WITH_AES_{128,256}_CBC_SHA{,256,384}`,
//!   `TLS_RSA_WITH_AES_{128,256}_CBC_SHA{,256}`): MAC-then-encrypt, the
//!   cause of padding-oracle and timing attacks (Lucky Thirteen); rustls
//!   implements no CBC suite.
//! - **3DES** (`TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA`,
//!   `TLS_RSA_WITH_3DES_EDE_CBC_SHA`): a 64-bit block cipher open to
//!   Sweet32, and CBC besides.
//! - **Static RSA key exchange** (every `TLS_RSA_WITH_*`, GCM ones too):
//!   no forward secrecy (a stolen key decrypts every recorded session) and
//!   open to Bleichenbacher-style oracles; rustls has only ECDHE in TLS 1.2.
//!
//! The FAQ's `TLS_ECDHE_RSA_WITH_AES_{128,256}_GCM_*` suites are offered,
//! with TLS 1.3 and ChaCha20-Poly1305 beside them. Every client from the
//! last decade speaks one of these.
//!
//! # Files
//!
//! Certificates, keys and CA certificates are PEM. A private key is
//! PKCS#8, PKCS#1 (RSA) or SEC1 (EC), RSA, ECDSA (P-256, P-384) or
//! Ed25519, and unencrypted: a passphrase would have to be typed or
//! stored beside the key, so the FAQ's answer holds: decrypt it first.
//! Every certificate of a chain must be valid now; the leaf must match
//! its key.
//!
//! # SNI
//!
//! A certificate covers the DNS names of its leaf's subjectAltName (its
//! subject's CN only when it has no subjectAltName); `*.example.com`
//! covers one label (`a.example.com`). A ClientHello gets, among the
//! certificates covering its name (exact names before wildcards, each in
//! configuration order), the first whose key it can verify (so an RSA and
//! an ECDSA certificate for one name serve each client the one it
//! accepts); else the first certificate, the default.
//!
//! # Reload
//!
//! [`Tls::reload`] swaps certificates and CA for the next handshakes;
//! open connections keep theirs. rustls does not redo certificate
//! selection nor client certificate verification when a client resumes a
//! TLS session, and each Pingora acceptor keeps its own session cache
//! (rustls's, in memory): so the server ([`crate::server`]) builds a new
//! acceptor from [`Tls::settings`], with an empty cache, whenever a
//! reload changes a listener's certificates or CA, and no session from
//! before the change is resumed.

mod client_auth;
mod error;
mod files;
mod sni;

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{ALPN, TlsAccept};
use pingora::protocols::tls::TlsRef;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::danger::ClientCertVerifier;

pub use error::{TlsError, TlsErrorKind};

use crate::config::TlsConfig;
use client_auth::ClientAuth;
use sni::{CertSet, SniResolver};

/// Checks an HTTPS listener's files as [`Tls::load`] would, with the
/// certificates' validity judged at `now`: at least one certificate;
/// every file readable PEM; every certificate parsed and valid at `now`;
/// every key one unencrypted private key that rustls can sign with, and
/// the key of its certificate; a CA file with at least one certificate
/// that can verify client certificates.
pub fn check(config: &TlsConfig, now: SystemTime) -> Result<(), TlsError> {
    read(config, now, &provider()).map(drop)
}

/// An HTTPS listener's certificates, swapped whole at reload.
///
/// Every [`TlsSettings`] from [`Tls::settings`] shares them: a reload
/// changes what the next handshake gets, and no open connection.
pub struct Tls {
    material: Arc<ArcSwap<Material>>,
    counters: Arc<TlsCounters>,
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
    verifier: Arc<ClientAuth>,
}

/// What the files hold, ready for handshakes.
pub(crate) struct Material {
    certs: CertSet,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
    /// Every certificate chain in configuration order, and the CA file's
    /// certificates: two materials with the same answer every handshake
    /// alike (a key is fixed by its certificate).
    served: Served,
}

/// See [`Material::same_as`].
type Served = (
    Vec<Vec<CertificateDer<'static>>>,
    Option<Vec<CertificateDer<'static>>>,
);

impl Material {
    /// Whether `other` serves the same certificates and requires client
    /// certificates from the same CA certificates.
    pub(crate) fn same_as(&self, other: &Material) -> bool {
        self.served == other.served
    }
}

/// Handshake counters of a listener, kept across reloads.
///
/// Failed handshakes are about `client_hellos - handshakes` (less the
/// handshakes under way); connections that close or send garbage before a
/// TLS 1.2 or 1.3 ClientHello are counted by neither.
#[derive(Debug, Default)]
pub struct TlsCounters {
    /// TLS 1.2 and 1.3 ClientHellos that reached certificate selection.
    pub client_hellos: AtomicU64,
    /// Handshakes completed (counted when Pingora's listener ends one).
    pub handshakes: AtomicU64,
    /// ClientHellos whose SNI name no certificate covers (answered with
    /// the default certificate).
    pub unknown_name: AtomicU64,
    /// ClientHellos no certificate could answer (the client accepts no
    /// signature scheme of the keys): the handshake fails.
    pub no_certificate: AtomicU64,
    /// Client certificates refused: not chaining to the CA, expired, or
    /// the client's proof of its key is wrong. A client sending none
    /// where one is required is not counted here.
    pub client_certs_refused: AtomicU64,
}

impl Tls {
    /// Reads and checks every file of `config` (see [`check`], at the
    /// current time).
    pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        let provider = provider();
        let material = Arc::new(ArcSwap::from_pointee(read(
            config,
            SystemTime::now(),
            &provider,
        )?));
        let counters = Arc::new(TlsCounters::default());
        Ok(Tls {
            resolver: Arc::new(SniResolver {
                material: material.clone(),
                counters: counters.clone(),
            }),
            verifier: Arc::new(ClientAuth {
                material: material.clone(),
                counters: counters.clone(),
                provider: provider.clone(),
            }),
            material,
            counters,
            provider,
        })
    }

    /// Re-reads every file of `config` and, if all are good, makes them
    /// what the next handshake uses: certificates, names and the CA
    /// (added, replaced or removed) together. On error nothing changes.
    /// Open connections are not touched.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), TlsError> {
        let material = self.prepare(config)?;
        self.install(material);
        Ok(())
    }

    /// Reads and checks every file of `config` (as [`Tls::reload`]) without
    /// using them yet.
    pub(crate) fn prepare(&self, config: &TlsConfig) -> Result<Arc<Material>, TlsError> {
        read(config, SystemTime::now(), &self.provider).map(Arc::new)
    }

    /// What the handshakes use now.
    pub(crate) fn material(&self) -> Arc<Material> {
        self.material.load_full()
    }

    /// Makes `material` what the next handshakes use.
    pub(crate) fn install(&self, material: Arc<Material>) {
        self.material.store(material);
    }

    /// Settings for a Pingora listener (`add_tls_with_settings`): the SNI
    /// resolver and client certificate verifier of this `Tls`, ALPN
    /// `http/1.1`, and a callback counting completed handshakes.
    ///
    /// HTTP/2 to clients is one call away (`enable_h2()` on the result),
    /// which Pingora's proxy serves; it is off because the listeners are
    /// specified as HTTP/1.1 (WebSocket upgrades need it).
    pub fn settings(&self) -> TlsSettings {
        let callbacks = Box::new(HandshakeCounter(self.counters.clone()));
        // pingora 0.9.1's `with_callbacks` always returns `Ok`.
        let mut settings =
            TlsSettings::with_callbacks(callbacks).expect("TlsSettings::with_callbacks is Ok");
        settings.set_cert_resolver(self.resolver.clone());
        settings.set_client_cert_verifier(self.verifier.clone());
        settings.set_alpn(ALPN::H1);
        settings
    }

    /// The listener's handshake counters.
    pub fn counters(&self) -> &TlsCounters {
        &self.counters
    }

    /// Whether client certificates are required now.
    pub fn client_auth(&self) -> bool {
        self.material.load().client_ca.is_some()
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The process's rustls provider, which Pingora's listeners build their
/// `ServerConfig` with (Pingora installs rustls's `ring` provider unless
/// one is installed already): keys are loaded by the provider that signs.
fn provider() -> Arc<CryptoProvider> {
    pingora::tls::install_default_crypto_provider();
    match CryptoProvider::get_default() {
        Some(provider) => provider.clone(),
        // Not reached: a provider was just installed if none was.
        #[allow(deprecated)] // The one Pingora installs, named directly.
        None => Arc::new(rustls::crypto::ring::default_provider()),
    }
}

/// Reads every file of `config`, in configuration order.
fn read(
    config: &TlsConfig,
    now: SystemTime,
    provider: &Arc<CryptoProvider>,
) -> Result<Material, TlsError> {
    if config.certificates.is_empty() {
        return Err(TlsError::new(Path::new(""), TlsErrorKind::NoCertificates));
    }
    let certs = config
        .certificates
        .iter()
        .map(|files| files::read_server_cert(files, now, provider))
        .collect::<Result<Vec<_>, _>>()?;
    let chains = certs.iter().map(|c| c.key.cert.clone()).collect();
    let (client_ca, ca_certs) = match &config.client_ca {
        Some(path) => {
            let (verifier, roots) = files::read_client_ca(path, provider)?;
            (Some(verifier), Some(roots))
        }
        None => (None, None),
    };
    Ok(Material {
        certs: CertSet::new(certs),
        client_ca,
        served: (chains, ca_certs),
    })
}

/// Counts the handshakes Pingora's listener completes.
struct HandshakeCounter(Arc<TlsCounters>);

#[async_trait]
impl TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        _tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        self.0.handshakes.fetch_add(1, Relaxed);
        None
    }
}
