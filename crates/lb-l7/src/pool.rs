//! A listener's backends and the engine's scheduler that chooses among
//! them.
//!
//! The pool is built for one version of the listener's configuration and
//! never changes shape: a reload builds a new pool, handing over the
//! [`BackendState`] (health and counters) of every backend whose address
//! stays. Health changes ([`Pool::set_up`]) and choices ([`Pool::pick`])
//! go through one mutex around the scheduler and its candidates; both are
//! short (a Maglev rebuild on a health change is the longest, off the
//! request path).
//!
//! A chosen backend is held by a [`Lease`] for as long as the request is in
//! flight: that is the `active` count least-connections weighs, and the
//! lease gives it back when dropped, whatever way the request ends.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use lb_engine::SchedulerKind;
use lb_engine::sched::{Candidate, SchedError, Scheduler, address_words, backend_id, hash_words};

use crate::config::Backend;
use crate::metrics::BackendMetrics;

/// One backend of a pool: where it is, and what outlives a reload.
#[derive(Debug)]
pub(crate) struct BackendState {
    pub(crate) addr: SocketAddr,
    /// [`backend_id`] of the address: the Maglev identity.
    pub(crate) id: u64,
    pub(crate) metrics: BackendMetrics,
}

#[derive(Debug)]
struct Inner {
    sched: Scheduler,
    candidates: Vec<Candidate>,
}

/// A listener's backends, in configuration order (the slot is the index).
#[derive(Debug)]
pub(crate) struct Pool {
    backends: Vec<Arc<BackendState>>,
    /// The seed of the client hashes (`[engine] hash_seed`).
    seed: u64,
    inner: Mutex<Inner>,
}

/// A backend chosen for one request; gives its `active` count back on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    backend: Arc<BackendState>,
}

impl Lease {
    /// The backend leased.
    pub(crate) fn backend(&self) -> &BackendState {
        &self.backend
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.metrics.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The 16-byte form the engine hashes: IPv4 as IPv4-mapped IPv6.
fn octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The flow hash (client address and port) and the source hash (client
/// address) that Maglev reads: the engine's scheduler hash under the
/// configured `seed`, so that every node (and every run) with the same seed
/// sends a client to the same backend, and a client who does not know the
/// seed cannot aim at one.
pub(crate) fn client_hashes(seed: u64, client: Option<SocketAddr>) -> (u64, u64) {
    match client {
        Some(c) => {
            let (lo, hi) = address_words(&octets(c.ip()));
            (
                hash_words(seed, &[lo, hi, u64::from(c.port())]),
                hash_words(seed, &[lo, hi]),
            )
        }
        None => (0, 0),
    }
}

impl Pool {
    /// A pool of `backends` chosen by `kind`, hashing clients under `seed`.
    /// A backend whose address is in `previous` keeps its state (up or
    /// down, counters); the others start up.
    pub(crate) fn new(
        kind: &SchedulerKind,
        backends: &[Backend],
        previous: Option<&Pool>,
        seed: u64,
    ) -> Result<Pool, SchedError> {
        let mut sched = Scheduler::new(kind)?;
        let old: HashMap<SocketAddr, &Arc<BackendState>> = previous
            .map(|p| p.backends.iter().map(|b| (b.addr, b)).collect())
            .unwrap_or_default();
        let states: Vec<Arc<BackendState>> = backends
            .iter()
            .map(|b| match old.get(&b.addr) {
                Some(s) => Arc::clone(s),
                None => Arc::new(BackendState {
                    addr: b.addr,
                    id: backend_id(&octets(b.addr.ip()), b.addr.port()),
                    metrics: BackendMetrics::default(),
                }),
            })
            .collect();
        let candidates: Vec<Candidate> = states
            .iter()
            .zip(backends)
            .map(|(s, b)| Candidate {
                id: s.id,
                weight: b.weight,
                up: s.metrics.up.load(Ordering::Relaxed),
                active: 0,
            })
            .collect();
        sched.rebuild(&candidates);
        Ok(Pool {
            backends: states,
            seed,
            inner: Mutex::new(Inner { sched, candidates }),
        })
    }

    /// The backends, in slot order.
    pub(crate) fn backends(&self) -> &[Arc<BackendState>] {
        &self.backends
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the scheduler unsafe
        // to use (pick never returns an ineligible slot): carry on.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the backend at `addr` up or down; `false` if it is not in the
    /// pool.
    pub(crate) fn set_up(&self, addr: SocketAddr, up: bool) -> bool {
        let Some(slot) = self.backends.iter().position(|b| b.addr == addr) else {
            return false;
        };
        let mut inner = self.lock();
        if let Some(s) = self.backends.get(slot) {
            s.metrics.up.store(up, Ordering::Relaxed);
        }
        let Inner { sched, candidates } = &mut *inner;
        if let Some(c) = candidates.get_mut(slot)
            && c.up != up
        {
            c.up = up;
            sched.rebuild(candidates);
        }
        true
    }

    /// Chooses a backend for a request from `client` by the scheduler;
    /// `None` when no backend is eligible.
    pub(crate) fn pick(&self, client: Option<SocketAddr>) -> Option<Lease> {
        // Hashed before the lock, which every thread's requests share.
        let (flow, source) = client_hashes(self.seed, client);
        let mut inner = self.lock();
        let Inner { sched, candidates } = &mut *inner;
        for (c, s) in candidates.iter_mut().zip(&self.backends) {
            let active = s.metrics.active.load(Ordering::Relaxed);
            c.active = u32::try_from(active).unwrap_or(if active < 0 { 0 } else { u32::MAX });
        }
        let slot = sched.pick(candidates, flow, source)?;
        let backend = self.backends.get(usize::try_from(slot).ok()?)?;
        Some(self.lease(backend))
    }

    /// The backend at `addr` if it is up, leased: for a request whose
    /// persistence cookie names it. A weight of 0 does not matter here: it
    /// drains new clients only, as the engine's sessions and HAProxy's
    /// cookies keep going to a drained server.
    pub(crate) fn pick_addr(&self, addr: SocketAddr) -> Option<Lease> {
        let inner = self.lock();
        let slot = self.backends.iter().position(|b| b.addr == addr)?;
        if !inner.candidates.get(slot).is_some_and(|c| c.up) {
            return None;
        }
        self.backends.get(slot).map(|b| self.lease(b))
    }

    fn lease(&self, backend: &Arc<BackendState>) -> Lease {
        backend.metrics.active.fetch_add(1, Ordering::Relaxed);
        Lease {
            backend: Arc::clone(backend),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn be(last: u8, weight: u16) -> Backend {
        Backend {
            addr: SocketAddr::from(([10, 77, 1, last], 8080)),
            weight,
        }
    }

    #[test]
    fn smooth_wrr_split_and_down_backends() {
        let pool = Pool::new(&SchedulerKind::RoundRobin, &[be(1, 1), be(2, 3)], None, 0).unwrap();
        let picks: Vec<u8> = (0..8)
            .map(|_| match pool.pick(None).unwrap().backend().addr.ip() {
                IpAddr::V4(v4) => v4.octets()[3],
                IpAddr::V6(_) => 0,
            })
            .collect();
        assert_eq!(picks, [2, 1, 2, 2, 2, 1, 2, 2]);
        assert!(pool.set_up(be(2, 3).addr, false));
        assert!(!pool.set_up(be(9, 1).addr, false));
        for _ in 0..10 {
            assert_eq!(pool.pick(None).unwrap().backend().addr, be(1, 1).addr);
        }
        assert!(pool.pick_addr(be(2, 3).addr).is_none());
        assert!(pool.pick_addr(be(1, 1).addr).is_some());
        assert!(pool.pick_addr(be(9, 1).addr).is_none());
        assert!(pool.set_up(be(1, 1).addr, false));
        assert!(pool.pick(None).is_none());
    }

    #[test]
    fn leases_count_active_and_reload_keeps_state() {
        let pool = Pool::new(
            &SchedulerKind::LeastConnections,
            &[be(1, 1), be(2, 1)],
            None,
            0,
        )
        .unwrap();
        let a = pool.pick(None).unwrap();
        let b = pool.pick(None).unwrap();
        assert_ne!(a.backend().addr, b.backend().addr);
        let first = a.backend().addr;
        drop(a);
        // The freed backend has fewer active requests: it is chosen next.
        assert_eq!(pool.pick(None).unwrap().backend().addr, first);
        pool.set_up(be(2, 1).addr, false);
        pool.backends()[1]
            .metrics
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let next = Pool::new(
            &SchedulerKind::RoundRobin,
            &[be(2, 5), be(3, 1)],
            Some(&pool),
            0,
        )
        .unwrap();
        assert!(!next.backends()[0].metrics.up.load(Ordering::Relaxed));
        assert_eq!(
            next.backends()[0].metrics.requests.load(Ordering::Relaxed),
            1
        );
        assert!(next.backends()[1].metrics.up.load(Ordering::Relaxed));
        // The lease taken before the reload is still counted on the kept state.
        assert_eq!(next.backends()[0].metrics.active.load(Ordering::Relaxed), 1);
        drop(b);
        assert_eq!(next.backends()[0].metrics.active.load(Ordering::Relaxed), 0);
        for _ in 0..5 {
            assert_eq!(next.pick(None).unwrap().backend().addr, be(3, 1).addr);
        }
    }

    #[test]
    fn maglev_by_source_keeps_a_client_on_one_backend() {
        let kind = SchedulerKind::Maglev {
            table_size: 65537,
            key: lb_engine::MaglevKey::SourceAddress,
        };
        let backends: Vec<Backend> = (1..=5).map(|i| be(i, 1)).collect();
        let pool = Pool::new(&kind, &backends, None, 7).unwrap();
        let client = |port| Some(SocketAddr::from(([192, 0, 2, 7], port)));
        let first = pool.pick(client(1000)).unwrap().backend().addr;
        for port in 1001..1100 {
            assert_eq!(pool.pick(client(port)).unwrap().backend().addr, first);
        }
        let flow = Pool::new(&SchedulerKind::maglev(), &backends, None, 7).unwrap();
        let mut seen: Vec<SocketAddr> = (1000..1100)
            .map(|p| flow.pick(client(p)).unwrap().backend().addr)
            .collect();
        seen.sort();
        seen.dedup();
        assert!(seen.len() >= 4, "{seen:?}");
    }

    #[test]
    fn a_cookie_reaches_a_drained_backend_that_is_up() {
        let pool = Pool::new(&SchedulerKind::RoundRobin, &[be(1, 1), be(2, 0)], None, 0).unwrap();
        // Weight 0: no new client by the scheduler...
        for _ in 0..10 {
            assert_eq!(pool.pick(None).unwrap().backend().addr, be(1, 1).addr);
        }
        // ...but its cookie still reaches it while it is up.
        assert_eq!(
            pool.pick_addr(be(2, 0).addr).unwrap().backend().addr,
            be(2, 0).addr
        );
        pool.set_up(be(2, 0).addr, false);
        assert!(pool.pick_addr(be(2, 0).addr).is_none());
    }

    #[test]
    fn maglev_picks_depend_on_the_seed_only() {
        let backends: Vec<Backend> = (1..=5).map(|i| be(i, 1)).collect();
        let picks = |seed| {
            let pool = Pool::new(&SchedulerKind::maglev(), &backends, None, seed).unwrap();
            (0..200u16)
                .map(|i| {
                    let client = SocketAddr::from(([192, 0, 2, (i % 250) as u8], 1000 + i));
                    pool.pick(Some(client)).unwrap().backend().addr
                })
                .collect::<Vec<_>>()
        };
        // Two pools (two nodes, or a restart) with one seed agree.
        assert_eq!(picks(42), picks(42));
        assert_ne!(picks(42), picks(43));
    }
}
