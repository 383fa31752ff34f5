//! Making an engine follow the configuration: [`Installed::install`] on a
//! fresh engine, [`Installed::reload`] on SIGHUP without losing sessions,
//! and [`Installed::set_up`] for health-check results.
//!
//! The runner has one engine per queue, and one [`Installed`] per engine:
//! each records the listener and backend ids of its own engine.
//!
//! Listeners are matched by name and backends by address and port. A
//! reload removes the listeners gone from the file, removes and re-adds
//! those whose own settings changed (their sessions end), adds the new
//! ones, and within every other listener adds backends, removes backends
//! (their open sessions continue) and changes weights. A backend's health
//! state survives a reload, also when its listener is re-added.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

use lb_engine::{BackendId, Engine, ListenerConfig, ListenerId};

use crate::config::{Config, Listener, engine_refusals};

/// A configuration change the engine refused, with the listener it was
/// about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The engine refused a change to this listener.
    #[error("listener `{listener}`: {error}")]
    Engine {
        /// The listener's name.
        listener: String,
        /// What the engine said.
        #[source]
        error: lb_engine::ConfigError,
    },
    /// Two listeners of the configuration have this name.
    #[error("listener name `{0}` is used twice")]
    DuplicateName(String),
}

/// A backend as installed in an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstalledBackend {
    /// Its address and port (its identity across reloads).
    pub addr: SocketAddr,
    /// Its id in its listener.
    pub id: BackendId,
    /// Its weight.
    pub weight: u16,
    /// Its health state, as last set.
    pub up: bool,
}

/// A listener as installed in an engine (for metrics).
#[derive(Debug, Clone, Copy)]
pub struct InstalledListener<'a> {
    /// Its name in the configuration.
    pub name: &'a str,
    /// Its id in the engine.
    pub id: ListenerId,
    /// Its backends, in configuration order.
    pub backends: &'a [InstalledBackend],
}

/// What an engine holds of the configuration: each listener's name, id
/// and settings, and its backends' ids, weights and health states.
#[derive(Debug, Clone, Default)]
pub struct Installed {
    /// In configuration order.
    listeners: Vec<Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    id: ListenerId,
    /// The listener's own settings, to tell whether a reload changes them.
    settings: String,
    backends: Vec<InstalledBackend>,
}

/// What a reload changed, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Listeners added, by name.
    pub listeners_added: Vec<String>,
    /// Listeners removed (their sessions ended).
    pub listeners_removed: Vec<String>,
    /// Listeners whose own settings changed, removed and added again:
    /// their sessions ended (worth a warning).
    pub listeners_recreated: Vec<String>,
    /// Backends added to kept listeners: listener name and backend.
    pub backends_added: Vec<(String, SocketAddr)>,
    /// Backends removed from kept listeners (their open sessions continue).
    pub backends_removed: Vec<(String, SocketAddr)>,
    /// Backends whose weight changed: listener, backend, old and new
    /// weight.
    pub backends_reweighted: Vec<(String, SocketAddr, u16, u16)>,
}

impl ReloadReport {
    /// Whether the reload changed nothing.
    pub fn is_empty(&self) -> bool {
        *self == ReloadReport::default()
    }
}

impl fmt::Display for ReloadReport {
    /// E.g. `1 listener(s) added: dns; 1 backend(s) added: web 10.0.0.4:80`,
    /// or `no change`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = |(l, a): &(String, SocketAddr)| format!("{l} {a}");
        let parts = [
            ("listener(s) added", self.listeners_added.clone()),
            ("listener(s) removed", self.listeners_removed.clone()),
            (
                "listener(s) recreated, their sessions ended",
                self.listeners_recreated.clone(),
            ),
            (
                "backend(s) added",
                self.backends_added.iter().map(backend).collect(),
            ),
            (
                "backend(s) removed",
                self.backends_removed.iter().map(backend).collect(),
            ),
            (
                "backend(s) reweighted",
                self.backends_reweighted
                    .iter()
                    .map(|(l, a, old, new)| format!("{l} {a} {old}->{new}"))
                    .collect(),
            ),
        ];
        let mut first = true;
        for (what, list) in parts.iter().filter(|(_, list)| !list.is_empty()) {
            let sep = if first { "" } else { "; " };
            write!(f, "{sep}{} {what}: {}", list.len(), list.join(", "))?;
            first = false;
        }
        if first {
            f.write_str("no change")?;
        }
        Ok(())
    }
}

/// A listener's own settings, everything but its backends, as text: two
/// listeners with the same text need no re-adding. Taken from `Debug`, so
/// that a setting the engine gains later is compared too.
fn settings(config: &ListenerConfig) -> String {
    let mut own = config.clone();
    own.backends.clear();
    format!("{own:?}")
}

fn backend_addr(b: &lb_engine::BackendConfig) -> SocketAddr {
    SocketAddr::new(b.addr, b.port)
}

/// Checks `config`'s listeners as [`Config::parse`] does (for a
/// configuration built in code): unique names, and the engine's rules.
pub fn check(config: &Config) -> Result<(), InstallError> {
    for (i, l) in config.listeners.iter().enumerate() {
        if config.listeners.iter().take(i).any(|o| o.name == l.name) {
            return Err(InstallError::DuplicateName(l.name.clone()));
        }
    }
    match engine_refusals(config.listeners.iter().map(|l| &l.engine)).first() {
        None => Ok(()),
        Some((i, error)) => Err(InstallError::Engine {
            listener: config
                .listeners
                .get(*i)
                .map_or_else(String::new, |l| l.name.clone()),
            error: error.clone(),
        }),
    }
}

impl Installed {
    /// Add every listener of `config` to a fresh engine.
    ///
    /// # Errors
    /// The first listener the engine refuses; the listeners added before
    /// it are removed again.
    pub fn install(engine: &mut Engine, config: &Config) -> Result<Installed, InstallError> {
        check(config)?;
        let mut installed = Installed::default();
        for l in &config.listeners {
            if let Err(e) = installed.add(engine, l, &HashMap::new()) {
                for entry in installed.listeners.drain(..) {
                    let _ = engine.remove_listener(entry.id);
                }
                return Err(e);
            }
        }
        Ok(installed)
    }

    /// Make the engine follow `new`: listeners removed and added; a
    /// listener whose own settings (vip, port, protocol, scheduler,
    /// affinity, timeouts, local pool, ping, ttm) changed is removed and
    /// re-added, and its sessions end (it is listed in
    /// [`ReloadReport::listeners_recreated`]); within a kept listener,
    /// backends added, removed (their open sessions continue) and
    /// re-weighted. Health states survive; a new backend starts as `new`
    /// says (up, from a parsed file). `new`'s engine-wide settings are not
    /// applied (see [`Config::restart_needed`]).
    ///
    /// # Errors
    /// A configuration the engine refuses, found before anything is
    /// changed. (Should the engine refuse a step afterwards, the steps
    /// before it stay applied, and `self` still describes the engine.)
    pub fn reload(
        &mut self,
        engine: &mut Engine,
        new: &Config,
    ) -> Result<ReloadReport, InstallError> {
        check(new)?;
        let mut report = ReloadReport::default();
        let find = |name: &str| new.listeners.iter().find(|l| l.name == name);
        // Listeners gone or changed: out first, so that a listener added
        // below may take their VIP or local addresses.
        let mut health: HashMap<(String, SocketAddr), bool> = HashMap::new();
        let mut kept = Vec::with_capacity(self.listeners.len());
        for entry in self.listeners.drain(..) {
            match find(&entry.name) {
                Some(l) if settings(&l.engine) == entry.settings => kept.push(entry),
                found => {
                    // An id the engine does not know is gone already.
                    let _ = engine.remove_listener(entry.id);
                    if found.is_some() {
                        for b in &entry.backends {
                            health.insert((entry.name.clone(), b.addr), b.up);
                        }
                        report.listeners_recreated.push(entry.name);
                    } else {
                        report.listeners_removed.push(entry.name);
                    }
                }
            }
        }
        self.listeners = kept;
        for entry in &mut self.listeners {
            if let Some(l) = find(&entry.name) {
                update_backends(engine, entry, l, &mut report)?;
            }
        }
        for l in &new.listeners {
            if self.listeners.iter().all(|e| e.name != l.name) {
                self.add(engine, l, &health)?;
                if !report.listeners_recreated.contains(&l.name) {
                    report.listeners_added.push(l.name.clone());
                }
            }
        }
        // Configuration order, for metrics.
        self.listeners.sort_by_key(|e| {
            new.listeners
                .iter()
                .position(|l| l.name == e.name)
                .unwrap_or(usize::MAX)
        });
        Ok(report)
    }

    /// Apply a health-check result; returns false if the listener/backend
    /// is unknown (e.g. removed by a reload meanwhile).
    pub fn set_up(
        &mut self,
        engine: &mut Engine,
        listener: &str,
        backend: SocketAddr,
        up: bool,
    ) -> bool {
        let Some(entry) = self.listeners.iter_mut().find(|e| e.name == listener) else {
            return false;
        };
        let Some(b) = entry.backends.iter_mut().find(|b| b.addr == backend) else {
            return false;
        };
        if engine.set_up(entry.id, b.id, up).is_err() {
            return false;
        }
        b.up = up;
        true
    }

    /// Whether a backend is up in the engine: `None` if the listener or
    /// backend is not installed.
    pub fn is_up(&self, listener: &str, backend: SocketAddr) -> Option<bool> {
        let entry = self.listeners.iter().find(|e| e.name == listener)?;
        entry
            .backends
            .iter()
            .find(|b| b.addr == backend)
            .map(|b| b.up)
    }

    /// For metrics: each listener's name, id, and backends (address, id,
    /// weight, up), in configuration order.
    pub fn listeners(&self) -> impl Iterator<Item = InstalledListener<'_>> {
        self.listeners.iter().map(|e| InstalledListener {
            name: &e.name,
            id: e.id,
            backends: &e.backends,
        })
    }

    /// Add listener `l`; a backend found in `health` (by listener name and
    /// address) starts in that state.
    fn add(
        &mut self,
        engine: &mut Engine,
        l: &Listener,
        health: &HashMap<(String, SocketAddr), bool>,
    ) -> Result<(), InstallError> {
        let mut config = l.engine.clone();
        for b in &mut config.backends {
            if let Some(&up) = health.get(&(l.name.clone(), backend_addr(b))) {
                b.up = up;
            }
        }
        let backends: Vec<InstalledBackend> = config
            .backends
            .iter()
            .zip(0..)
            // A fresh listener's backends take the slots 0, 1, ... in order.
            .map(|(b, id)| InstalledBackend {
                addr: backend_addr(b),
                id,
                weight: b.weight,
                up: b.up,
            })
            .collect();
        let settings = settings(&config);
        let id = engine
            .add_listener(config)
            .map_err(|error| InstallError::Engine {
                listener: l.name.clone(),
                error,
            })?;
        self.listeners.push(Entry {
            name: l.name.clone(),
            id,
            settings,
            backends,
        });
        Ok(())
    }
}

/// Bring a kept listener's backends to `l`'s: removed first (their open
/// sessions continue), then weights, then additions; `entry` follows each
/// step.
fn update_backends(
    engine: &mut Engine,
    entry: &mut Entry,
    l: &Listener,
    report: &mut ReloadReport,
) -> Result<(), InstallError> {
    let refused = |error| InstallError::Engine {
        listener: l.name.clone(),
        error,
    };
    let wanted = |addr: SocketAddr| l.engine.backends.iter().find(|b| backend_addr(b) == addr);
    let mut removed = Vec::new();
    entry.backends.retain(|b| {
        let keep = wanted(b.addr).is_some();
        if !keep {
            removed.push(*b);
        }
        keep
    });
    for b in removed {
        // An id the engine does not know is gone already.
        let _ = engine.remove_backend(entry.id, b.id, false);
        report.backends_removed.push((l.name.clone(), b.addr));
    }
    for b in &mut entry.backends {
        let Some(w) = wanted(b.addr).map(|c| c.weight) else {
            continue;
        };
        if w != b.weight {
            engine.set_weight(entry.id, b.id, w).map_err(refused)?;
            report
                .backends_reweighted
                .push((l.name.clone(), b.addr, b.weight, w));
            b.weight = w;
        }
    }
    for c in &l.engine.backends {
        let addr = backend_addr(c);
        if entry.backends.iter().all(|b| b.addr != addr) {
            let id = engine.add_backend(entry.id, *c).map_err(refused)?;
            entry.backends.push(InstalledBackend {
                addr,
                id,
                weight: c.weight,
                up: c.up,
            });
            report.backends_added.push((l.name.clone(), addr));
        }
    }
    entry.backends.sort_by_key(|b| {
        l.engine
            .backends
            .iter()
            .position(|c| backend_addr(c) == b.addr)
            .unwrap_or(usize::MAX)
    });
    Ok(())
}
