//! Client certificates: a rustls verifier that asks for and checks them
//! against the listener's current CA file, or does not ask at all when
//! the listener has none. Reload swaps the CA under it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use arc_swap::ArcSwap;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::{Material, TlsCounters};

/// The listener's client certificate verifier.
pub(crate) struct ClientAuth {
    pub(crate) material: Arc<ArcSwap<Material>>,
    pub(crate) counters: Arc<TlsCounters>,
    pub(crate) provider: Arc<CryptoProvider>,
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuth").finish_non_exhaustive()
    }
}

impl ClientAuth {
    /// Counts a client certificate refused (its chain, or the proof that
    /// the client holds its key).
    fn count_refused<T>(&self, result: &Result<T, Error>) {
        if result.is_err() {
            self.counters.client_certs_refused.fetch_add(1, Relaxed);
        }
    }
}

impl ClientCertVerifier for ClientAuth {
    /// Whether the listener has a CA file now.
    fn offer_client_auth(&self) -> bool {
        self.material.load().client_ca.is_some()
    }

    /// A CA file makes a certificate required.
    fn client_auth_mandatory(&self) -> bool {
        self.offer_client_auth()
    }

    /// No CA names are sent in the CertificateRequest: rustls borrows this
    /// list for as long as the verifier lives, and the CA file may be
    /// swapped at any time. An empty list lets the client send any
    /// certificate it has (RFC 5246 7.4.4, RFC 8446 4.2.4).
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let result = match &self.material.load().client_ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            // The CA was removed by a reload during this handshake.
            None => Err(Error::General(
                "client certificates are no longer accepted".into(),
            )),
        };
        self.count_refused(&result);
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let result = verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        self.count_refused(&result);
        result
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let result = verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        );
        self.count_refused(&result);
        result
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
