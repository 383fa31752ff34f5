//! Choosing the server certificate of a handshake by the name the client
//! asked for (SNI): [`CertSet`], and the resolver that reads the current
//! one on every ClientHello.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::files::{ServerCert, normalize};
use super::{Material, TlsCounters};

/// A listener's server certificates, indexed by the names they cover.
pub(crate) struct CertSet {
    /// In configuration order; the first is the default.
    certs: Vec<Arc<CertifiedKey>>,
    /// Name → the certificates naming it exactly, in order.
    exact: HashMap<String, Vec<usize>>,
    /// `example.com` → the certificates naming `*.example.com`, in order.
    wildcard: HashMap<String, Vec<usize>>,
}

impl CertSet {
    /// Indexes `certs` (at least one; the first is the default).
    pub(crate) fn new(certs: Vec<ServerCert>) -> CertSet {
        let mut set = CertSet {
            certs: Vec::with_capacity(certs.len()),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
        };
        for (i, cert) in certs.into_iter().enumerate() {
            for name in cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut set.wildcard, parent.to_owned()),
                    None => (&mut set.exact, name),
                };
                let list = map.entry(key).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
            set.certs.push(cert.key);
        }
        set
    }

    /// The certificates covering `name`: exact matches first, then
    /// wildcards (`*.example.com` covers `a.example.com`, not
    /// `example.com` nor `a.b.example.com`), each in configuration order.
    fn covering(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        let name = normalize(name);
        let exact = self.exact.get(&name).cloned().unwrap_or_default();
        let wildcard = name
            .split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .cloned()
            .unwrap_or_default();
        exact.into_iter().chain(wildcard)
    }
}

/// rustls's certificate resolver for a listener: the current [`CertSet`]
/// (swapped whole at reload), counting what it answers.
pub(crate) struct SniResolver {
    pub(crate) material: Arc<ArcSwap<Material>>,
    pub(crate) counters: Arc<TlsCounters>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    /// The first certificate covering the SNI name whose key can sign with
    /// a scheme the client accepts; else the default if it can; else
    /// none (rustls then ends the handshake with an alert).
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.counters.client_hellos.fetch_add(1, Relaxed);
        let material = self.material.load();
        let set = &material.certs;
        // The client's signature schemes that its cipher suites allow: none
        // when no suite is in common, which rustls refuses next with the
        // reason (`NoCipherSuitesInCommon`); no key is judged by them then.
        let schemes = hello.signature_schemes();
        let usable = |i: &usize| {
            set.certs
                .get(*i)
                .is_some_and(|c| schemes.is_empty() || c.key.choose_scheme(schemes).is_some())
        };
        if let Some(name) = hello.server_name() {
            let mut covering = set.covering(name).peekable();
            if covering.peek().is_none() {
                self.counters.unknown_name.fetch_add(1, Relaxed);
            }
            if let Some(i) = covering.find(usable) {
                return set.certs.get(i).cloned();
            }
        }
        if usable(&0) {
            return set.certs.first().cloned();
        }
        self.counters.no_certificate.fetch_add(1, Relaxed);
        None
    }
}
