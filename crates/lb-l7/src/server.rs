//! The L7 listeners as one running Pingora server: start, reload, health,
//! counters, stop.
//!
//! [`L7::start`] binds every listener's address itself (an error comes back
//! to the caller; see `bound.rs`), then runs a Pingora `Server` in a thread
//! of its own, with `threads` proxy services per listener, each of one
//! worker thread, all accepting on the listener's socket: a connection
//! stays on the thread that accepted it, as in nginx's worker processes.
//! (One service of `threads` threads, tokio's work-stealing runtime, cost
//! about a quarter more CPU per keep-alive request in the L7 benchmark:
//! idle workers woken to steal, and tasks handed between threads.)
//! Pingora's signal handling is not used: the server stops
//! when [`L7::stop`] (or dropping the [`L7`]) says so, within about a
//! second (no grace period; open requests are cut).
//!
//! An HTTPS listener's certificates are read by [`crate::tls`] at start;
//! the TLS handshake is done by the listener's connection app (`app.rs`).
//!
//! The access log ([`crate::access_log`]), one for all listeners, is
//! started with the server and stopped after it, so that the last
//! requests' lines are in the finished files.
//!
//! A listener's settings (backends, weights, scheduler, headers, cookie,
//! timeouts, whether it is logged) are swapped whole by [`L7::reload`];
//! requests in flight finish with the settings they started with.
//! Certificates are re-read: the next handshakes get them, open
//! connections keep theirs. When a listener's certificates or CA change,
//! its TLS acceptor is replaced by a new one (held in an `ArcSwap`), whose
//! session cache is empty: no client resumes a session made under the old
//! certificates or without the new CA's verification. The set of listening
//! sockets is fixed for the server's life: a reload that changes it is
//! refused with [`L7Error::RestartNeeded`]. The access log's
//! configuration is fixed as well (`reload` does not take it).
//!
//! [`L7::revert`] puts back what the last successful reload replaced
//! (settings, certificates and acceptors, kept in memory: no file is read),
//! for when another part of `lbd` refuses the same configuration.
//!
//! Clients are hashed for Maglev under the `hash_seed` given to
//! [`L7::start`], as the engine does: nodes (and runs) with the same seed
//! send a client to the same backend.

mod app;
mod bound;

use std::collections::HashSet;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use lb_engine::SchedError;
use pingora::listeners::tls::Acceptor;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use tokio::sync::watch;

use crate::access_log::AccessLog;
use crate::config::{AccessLogConfig, L7Listener};
use crate::metrics::{self, ListenerView};
use crate::proxy::{Proxy, Settings, Shared};
use crate::tls::{Material, Tls, TlsError};
use app::App;
use bound::Bound;

/// Why the L7 listeners could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum L7Error {
    /// The listener's address cannot be listened on (in use, not local,
    /// or not permitted).
    #[error("listener {listener}: cannot listen on {addr}: {source}")]
    Bind {
        /// The listener's name.
        listener: String,
        /// Its address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The listener's scheduler settings cannot be used.
    #[error("listener {listener}: {source}")]
    Scheduler {
        /// The listener's name.
        listener: String,
        /// Why.
        #[source]
        source: SchedError,
    },
    /// Two listeners share a name or an address.
    #[error("listener {listener}: {reason}")]
    Duplicate {
        /// The second listener with that name or address.
        listener: String,
        /// Which of the two it repeats.
        reason: String,
    },
    /// The reload changes which addresses are listened on, or whether one
    /// is HTTP or HTTPS: the L7 listeners must be restarted for it.
    #[error("a restart is needed: {0}")]
    RestartNeeded(String),
    /// An HTTPS listener's certificate, key or CA file is refused.
    #[error("listener {listener}: {source}")]
    Tls {
        /// The listener's name.
        listener: String,
        /// Which file, and why.
        #[source]
        source: TlsError,
    },
    /// The access log could not start (its folder cannot be written, or a
    /// setting is out of range).
    #[error("{0}")]
    AccessLog(#[source] io::Error),
    /// The thread that runs the server could not be started.
    #[error("cannot start the L7 server thread: {0}")]
    Thread(#[source] io::Error),
}

/// The TLS acceptor of an HTTPS listener, replaced when its certificates
/// or CA change (a new session cache); connections keep the one that
/// accepted them.
pub(crate) type AcceptorSlot = Arc<ArcSwap<Acceptor>>;

/// What a reload replaced in one listener, for [`L7::revert`].
struct Saved {
    settings: Arc<Settings>,
    material: Option<Arc<Material>>,
    acceptor: Option<Arc<Acceptor>>,
}

/// The L7 listeners, running.
pub struct L7 {
    /// In the order of the configuration given to `start`.
    listeners: Vec<Arc<Shared>>,
    /// The acceptor of each listener (`None` for HTTP), by index.
    acceptors: Vec<Option<AcceptorSlot>>,
    /// The seed of the client hashes, for every pool.
    seed: u64,
    /// Serializes reloads, reverts and health changes, so that a health
    /// change is never lost between a reload's read of the old pool and
    /// its swap. Holds what the last successful reload replaced (by
    /// listener index), until a revert or the next reload.
    control: Mutex<Option<Vec<Saved>>>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    /// Stopped after the server, so that every request's line is in.
    access_log: Option<AccessLog>,
}

impl std::fmt::Debug for L7 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L7")
            .field("listeners", &self.listeners.len())
            .finish_non_exhaustive()
    }
}

/// Pingora's shutdown signal: our stop, never a Unix signal.
struct StopSignal(watch::Receiver<bool>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        let mut rx = self.0.clone();
        // An error means the sender is gone: stop as well.
        let _ = rx.wait_for(|stop| *stop).await;
        ShutdownSignal::GracefulTerminate
    }
}

/// Builds the settings of every listener (nothing is swapped in here),
/// each pool taking over the state of the pool in `previous` at the same
/// index.
fn build_settings(
    listeners: &[L7Listener],
    previous: &[Option<Arc<Settings>>],
    seed: u64,
) -> Result<Vec<Settings>, L7Error> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::with_capacity(listeners.len());
    for (i, l) in listeners.iter().enumerate() {
        if !names.insert(l.name.as_str()) {
            return Err(L7Error::Duplicate {
                listener: l.name.clone(),
                reason: "the name is used by another listener".into(),
            });
        }
        if !addrs.insert(l.addr) {
            return Err(L7Error::Duplicate {
                listener: l.name.clone(),
                reason: format!("{} is used by another listener", l.addr),
            });
        }
        let prev = previous.get(i).and_then(Option::as_ref).map(|s| &s.pool);
        let settings =
            Settings::new(l.clone(), prev, seed).map_err(|source| L7Error::Scheduler {
                listener: l.name.clone(),
                source,
            })?;
        out.push(settings);
    }
    Ok(out)
}

impl L7 {
    /// Binds every listener and starts serving them with `threads` worker
    /// threads each (at least 1; one single-threaded service per thread);
    /// returns once every address is listening.
    /// `access_log` is where listeners with `access_log = true` write.
    /// Maglev hashes clients under `hash_seed` (`[engine] hash_seed`).
    pub fn start(
        listeners: &[L7Listener],
        access_log: Option<&AccessLogConfig>,
        threads: usize,
        hash_seed: u64,
    ) -> Result<L7, L7Error> {
        let settings = build_settings(listeners, &[], hash_seed)?;
        let mut certificates = Vec::with_capacity(listeners.len());
        for l in listeners {
            let loaded = l.tls.as_ref().map(Tls::load).transpose();
            certificates.push(loaded.map_err(|source| L7Error::Tls {
                listener: l.name.clone(),
                source,
            })?);
        }
        let mut sockets = Vec::with_capacity(listeners.len());
        for l in listeners {
            // std sets SO_REUSEADDR on Unix, as Pingora does.
            let bind_error = |source| L7Error::Bind {
                listener: l.name.clone(),
                addr: l.addr,
                source,
            };
            let socket = TcpListener::bind(l.addr).map_err(bind_error)?;
            // Pingora's runtime (tokio) needs a non-blocking socket.
            socket.set_nonblocking(true).map_err(bind_error)?;
            // One descriptor of it for each of the listener's services.
            let mut fds = Vec::with_capacity(threads.max(1));
            for _ in 1..threads.max(1) {
                fds.push(socket.try_clone().map_err(bind_error)?);
            }
            fds.push(socket);
            sockets.push(fds);
        }

        let access_log = access_log
            .map(AccessLog::start)
            .transpose()
            .map_err(L7Error::AccessLog)?;

        let conf = ServerConf {
            // Per service; each listener has `threads` services.
            threads: 1,
            // Stop within about a second: no grace period, and a short
            // wait for the runtimes.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            // Pingora's fast timer adds a timeout to `Instant::now()`
            // unchecked (a panic for a duration near `Duration::MAX`);
            // above this threshold (Pingora's default, 15 min, which
            // `Server::run` would otherwise turn off) its timeouts are
            // tokio's, which saturate: any configured duration is safe.
            fast_timeout_to_tokio_threshold_seconds: Some(15 * 60),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        let conf = Arc::clone(&server.configuration);
        let mut shared = Vec::with_capacity(listeners.len());
        let mut acceptors = Vec::with_capacity(listeners.len());
        for ((s, socket), tls) in settings.into_iter().zip(sockets).zip(certificates) {
            let name = s.cfg.name.clone();
            let key = s.cfg.addr.to_string();
            // HTTPS is served on a plain TCP listener: the handshake is
            // done by our app (see app.rs), with Pingora's acceptor, one
            // for all the listener's services (one session cache).
            let acceptor: Option<AcceptorSlot> = tls
                .as_ref()
                .map(|t| Arc::new(ArcSwap::from_pointee(t.settings().build())));
            let sh = Arc::new(Shared {
                settings: ArcSwap::from_pointee(s),
                metrics: Default::default(),
                tls,
            });
            for (i, socket) in socket.into_iter().enumerate() {
                let proxy = pingora::proxy::http_proxy(
                    &conf,
                    Proxy {
                        shared: Arc::clone(&sh),
                        access_log: access_log.clone(),
                    },
                );
                let app = App {
                    proxy: Arc::new(proxy),
                    shared: Arc::clone(&sh),
                    tls: acceptor.clone(),
                };
                let mut service = Service::new(format!("lbd L7 {name} {i}"), app);
                service.add_tcp(&key);
                server.add_service(Bound::new(service, key.clone(), socket));
            }
            shared.push(sh);
            acceptors.push(acceptor);
        }

        let (stop, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("lbd-l7".into())
            .spawn(move || {
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(rx)),
                })
            })
            .map_err(L7Error::Thread)?;
        Ok(L7 {
            listeners: shared,
            acceptors,
            seed: hash_seed,
            control: Mutex::new(None),
            stop,
            thread: Some(thread),
            access_log,
        })
    }

    fn control(&self) -> MutexGuard<'_, Option<Vec<Saved>>> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a new configuration of the same listeners (same addresses,
    /// each still HTTP or HTTPS): all of it, or nothing if any part is
    /// refused. Backends that keep their address keep their health and
    /// counters; listeners keep their counters. Certificate files are
    /// re-read; a listener whose certificates or CA change gets a new TLS
    /// acceptor (no session from before is resumed).
    pub fn reload(&self, listeners: &[L7Listener]) -> Result<(), L7Error> {
        let mut guard = self.control();
        let current: Vec<Arc<Settings>> = self
            .listeners
            .iter()
            .map(|l| l.settings.load_full())
            .collect();
        let key = |l: &L7Listener| (l.addr, l.scheme());
        let old: HashSet<_> = current.iter().map(|s| key(&s.cfg)).collect();
        let new: HashSet<_> = listeners.iter().map(key).collect();
        if old != new || listeners.len() != current.len() {
            let mut added: Vec<String> = new
                .difference(&old)
                .map(|(a, s)| format!("{s}://{a}"))
                .collect();
            let mut removed: Vec<String> = old
                .difference(&new)
                .map(|(a, s)| format!("{s}://{a}"))
                .collect();
            added.sort();
            removed.sort();
            return Err(L7Error::RestartNeeded(format!(
                "the L7 listening addresses change (added: [{}], removed: [{}])",
                added.join(", "),
                removed.join(", ")
            )));
        }
        // Each new listener replaces the running one at its address.
        let slots: Vec<usize> = listeners
            .iter()
            .map(|l| {
                current
                    .iter()
                    .position(|s| s.cfg.addr == l.addr)
                    .unwrap_or(usize::MAX)
            })
            .collect();
        let previous: Vec<Option<Arc<Settings>>> =
            slots.iter().map(|&i| current.get(i).cloned()).collect();
        let built = build_settings(listeners, &previous, self.seed)?;
        let materials = self.read_certificates(listeners, &slots)?;
        // Nothing is refused from here on: swap it all in, keeping what
        // is replaced for `revert`.
        let mut saved: Vec<Saved> = current
            .into_iter()
            .zip(&self.listeners)
            .zip(&self.acceptors)
            .map(|((settings, l), acceptor)| Saved {
                settings,
                material: l.tls.as_ref().map(Tls::material),
                acceptor: acceptor.as_ref().map(|a| a.load_full()),
            })
            .collect();
        for ((settings, material), slot) in built.into_iter().zip(materials).zip(slots) {
            let (Some(l), Some(old)) = (self.listeners.get(slot), saved.get_mut(slot)) else {
                continue;
            };
            l.settings.store(Arc::new(settings));
            if let (Some(tls), Some(material), Some(Some(acceptor))) =
                (&l.tls, material, self.acceptors.get(slot))
            {
                let changed = !old.material.as_ref().is_some_and(|m| m.same_as(&material));
                // The material first, then the acceptor: no handshake of
                // the new acceptor (whose cache is empty) uses the old
                // material; a session of the old acceptor is resumed only
                // until the swap, as on a connection accepted just before.
                tls.install(material);
                if changed {
                    acceptor.store(Arc::new(tls.settings().build()));
                }
            }
        }
        *guard = Some(saved);
        Ok(())
    }

    /// Reads and checks the certificate files of every HTTPS listener,
    /// without using them; by listener of `listeners`.
    fn read_certificates(
        &self,
        listeners: &[L7Listener],
        slots: &[usize],
    ) -> Result<Vec<Option<Arc<Material>>>, L7Error> {
        listeners
            .iter()
            .zip(slots)
            .map(|(l, &slot)| {
                let running = self.listeners.get(slot).and_then(|s| s.tls.as_ref());
                match (&l.tls, running) {
                    (Some(cfg), Some(tls)) => {
                        tls.prepare(cfg).map(Some).map_err(|source| L7Error::Tls {
                            listener: l.name.clone(),
                            source,
                        })
                    }
                    _ => Ok(None),
                }
            })
            .collect()
    }

    /// Puts back what the last successful [`L7::reload`] replaced: every
    /// listener's settings (backends, weights, scheduler, headers, cookie,
    /// timeouts), certificates and TLS acceptor, as they were before it,
    /// without reading any file. Backends keep their current health and
    /// counters (one that the reload removed, those it had then). Returns
    /// `false` (and changes nothing) when there is nothing to put back: no
    /// reload yet, or reverted already.
    pub fn revert(&self) -> bool {
        let mut guard = self.control();
        let Some(saved) = guard.take() else {
            return false;
        };
        for ((l, acceptor), saved) in self.listeners.iter().zip(&self.acceptors).zip(saved) {
            // The old pool's backends are the states of the current one
            // (same address, same state): rebuilt, the scheduler sees the
            // health they have now. The configuration was accepted before:
            // a rebuild does not fail, and would keep the old pool if it did.
            let old = &saved.settings;
            let settings = Settings::new(old.cfg.clone(), Some(&old.pool), self.seed)
                .map_or_else(|_| Arc::clone(old), Arc::new);
            l.settings.store(settings);
            if let (Some(tls), Some(material)) = (&l.tls, saved.material) {
                tls.install(material);
            }
            if let (Some(slot), Some(old)) = (acceptor, saved.acceptor) {
                slot.store(old);
            }
        }
        true
    }

    /// Marks `backend` of `listener` up or down (from health checks); a
    /// listener or backend not configured is ignored.
    pub fn set_up(&self, listener: &str, backend: SocketAddr, up: bool) {
        let _guard = self.control();
        for l in &self.listeners {
            let s = l.settings.load();
            if s.cfg.name == listener {
                s.pool.set_up(backend, up);
            }
        }
    }

    /// Appends the `lbd_l7_*` counters, in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let settings: Vec<_> = self
            .listeners
            .iter()
            .map(|l| l.settings.load_full())
            .collect();
        let views: Vec<ListenerView<'_>> = self
            .listeners
            .iter()
            .zip(&settings)
            .map(|(l, s)| ListenerView {
                name: &s.cfg.name,
                metrics: &l.metrics,
                tls: l.tls.as_ref().map(Tls::counters),
                backends: s
                    .pool
                    .backends()
                    .iter()
                    .map(|b| (b.addr, &b.metrics))
                    .collect(),
            })
            .collect();
        metrics::render(out, &views);
        if let Some(log) = &self.access_log {
            log.render_metrics(out);
        }
    }

    /// Stops serving: closes the listening sockets and every connection,
    /// and returns when the server's threads have ended (about a second).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            // A panic in the server thread has been reported already.
            let _ = thread.join();
        }
        if let Some(log) = self.access_log.take() {
            // Writes the queued lines and finishes the files.
            log.stop();
        }
    }
}

impl Drop for L7 {
    fn drop(&mut self) {
        self.shutdown();
    }
}
