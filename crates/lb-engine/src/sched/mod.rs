//! Schedulers: which backend a new session goes to.
//!
//! A listener's pool is a slice of `Candidate`s indexed by slot; a
//! scheduler returns a slot. Three kinds ([`SchedulerKind`]):
//! - smooth weighted round robin, nginx's algorithm (`wrr.rs`);
//! - weighted least connections, IPVS's formula (`wlc.rs`);
//! - weighted Maglev consistent hashing, NSDI'16 (`maglev.rs`), keyed by the
//!   flow's 5-tuple or by the client's address ([`MaglevKey`]);
//!
//! and, with any of them, source-address affinity ([`Affinity`],
//! `affinity.rs`). The hash used throughout is in `hash.rs`.
//!
//! Contract with the engine:
//! - `Scheduler::rebuild` is the control plane: call it after any change
//!   to the pool (add, remove, weight, up/down). It may allocate; it builds
//!   the Maglev table off the hot path, as Katran does.
//! - `Scheduler::pick` is the data path: no allocation, no panic, and
//!   never an ineligible slot. A backend is eligible when it is up and its
//!   weight is not 0 (weight 0 drains: its sessions continue, it gets no new
//!   ones). `pick` re-checks eligibility against the slice it is given, so a
//!   missed or late `rebuild` degrades the choice, never its safety: round
//!   robin and least connections read weights and health live; Maglev
//!   answers from its table only if the entry's slot still holds the same
//!   backend (same `id`) and it is eligible, and otherwise falls back to a
//!   weighted choice by hash over the eligible backends (O(N), consistent
//!   for a given pool but not Maglev's table) until the next rebuild. Round
//!   robin uses the same fallback if the number of slots changed.
//! - `None` from `pick` means that no backend is eligible.

mod affinity;
mod hash;
mod maglev;
mod wlc;
mod wrr;

pub use affinity::Affinity;
pub(crate) use affinity::AffinityTable;
pub use hash::{address_words, backend_id, hash_words};

/// The Maglev table size used by [`SchedulerKind::maglev`]: 65537, the prime
/// the Maglev paper and Katran use (good balance up to ~650 backends).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = maglev::DEFAULT_TABLE_SIZE;

/// How a listener chooses the backend of a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SchedulerKind {
    /// Smooth weighted round robin (nginx): over every `W` new sessions,
    /// where `W` is the sum of the eligible weights, each backend gets
    /// exactly its weight, evenly spread.
    #[default]
    RoundRobin,
    /// Weighted least connections (IPVS `wlc`): the backend with the fewest
    /// active sessions per unit of weight; ties go to the lowest slot.
    LeastConnections,
    /// Weighted Maglev consistent hashing (NSDI'16): the same key goes to
    /// the same backend on every node that knows the same backends, and a
    /// pool change moves few keys.
    Maglev {
        /// Entries in the lookup table: a prime in `3..=2^24`; at least 100
        /// times the number of backends for shares within 1% of their
        /// weight. 4 bytes per entry.
        table_size: u32,
        /// What is hashed to find the entry.
        key: MaglevKey,
    },
}

impl SchedulerKind {
    /// Maglev with the default table size (65537) over the 5-tuple.
    pub const fn maglev() -> SchedulerKind {
        SchedulerKind::Maglev {
            table_size: DEFAULT_MAGLEV_TABLE_SIZE,
            key: MaglevKey::FiveTuple,
        }
    }

    /// Checks the settings without building anything (for configuration
    /// parsers): the Maglev table size must be a prime in `3..=2^24`.
    pub fn validate(&self) -> Result<(), SchedError> {
        match *self {
            SchedulerKind::RoundRobin | SchedulerKind::LeastConnections => Ok(()),
            SchedulerKind::Maglev { table_size, .. } => maglev::validate_table_size(table_size),
        }
    }
}

/// What Maglev hashes to choose a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MaglevKey {
    /// The flow's 5-tuple (protocol, addresses, ports): flows spread over
    /// backends independently of one another.
    #[default]
    FiveTuple,
    /// The client's address only: all flows of a client go to one backend,
    /// on every node, with no state (unlike [`Affinity`]).
    SourceAddress,
}

/// A scheduler setting that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum SchedError {
    /// The Maglev table size is in range but not prime (Maglev's
    /// permutations need a prime size to visit every entry).
    #[error("Maglev table size {size} is not prime")]
    TableSizeNotPrime {
        /// The size given.
        size: u32,
    },
    /// The Maglev table size is outside the accepted range.
    #[error("Maglev table size {size} is outside {min}..={max}")]
    TableSizeOutOfRange {
        /// The size given.
        size: u32,
        /// The smallest size accepted.
        min: u32,
        /// The largest size accepted.
        max: u32,
    },
}

/// A backend as the schedulers see it, at its slot in the pool.
///
/// Public so that other front ends (the L7 listeners of `lbd`) choose
/// backends with the same code as the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// A stable identity, the same on every node and across restarts (e.g.
    /// [`backend_id`] of its address and port): Maglev derives the backend's
    /// permutation from it, so removing one backend does not move the
    /// others' entries.
    pub id: u64,
    /// 0..=65535; 0 drains.
    pub weight: u16,
    /// False when health checks say it is down.
    pub up: bool,
    /// Live sessions, for least connections.
    pub active: u32,
}

impl Candidate {
    /// Whether the backend may get new sessions: up, with a weight above 0.
    pub fn eligible(&self) -> bool {
        self.up && self.weight > 0
    }
}

/// Whether `slot` of `backends` exists and is eligible, e.g. for a backend
/// remembered by an [`AffinityTable`].
pub(crate) fn is_eligible(backends: &[Candidate], slot: u32) -> bool {
    usize::try_from(slot)
        .ok()
        .and_then(|s| backends.get(s))
        .is_some_and(Candidate::eligible)
}

/// A listener's scheduler and its state.
#[derive(Debug, Clone)]
pub struct Scheduler {
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    RoundRobin(wrr::SmoothWrr),
    LeastConnections,
    Maglev {
        table: maglev::MaglevTable,
        key: MaglevKey,
    },
}

impl Scheduler {
    /// A scheduler of `kind`, with no backends until [`rebuild`](Self::rebuild).
    pub fn new(kind: &SchedulerKind) -> Result<Scheduler, SchedError> {
        let state = match *kind {
            SchedulerKind::RoundRobin => State::RoundRobin(wrr::SmoothWrr::default()),
            SchedulerKind::LeastConnections => State::LeastConnections,
            SchedulerKind::Maglev { table_size, key } => State::Maglev {
                table: maglev::MaglevTable::new(table_size)?,
                key,
            },
        };
        Ok(Scheduler { state })
    }

    /// Takes a changed pool into account (control plane; may allocate).
    pub fn rebuild(&mut self, backends: &[Candidate]) {
        match &mut self.state {
            State::RoundRobin(wrr) => wrr.rebuild(backends),
            State::LeastConnections => {}
            State::Maglev { table, .. } => table.rebuild(backends),
        }
    }

    /// Whether [`Scheduler::pick`] reads its `source_hash` (Maglev keyed
    /// by the client's address): when not, the caller may pass anything
    /// and skip computing it.
    pub fn uses_source_hash(&self) -> bool {
        matches!(
            self.state,
            State::Maglev {
                key: MaglevKey::SourceAddress,
                ..
            }
        )
    }

    /// The slot of the backend for a new session, or `None` if no backend
    /// is eligible. `flow_hash` is a hash of the 5-tuple, `source_hash` of
    /// the client address; only Maglev and the fallbacks use them. Data
    /// path: no allocation, no panic.
    pub fn pick(
        &mut self,
        backends: &[Candidate],
        flow_hash: u64,
        source_hash: u64,
    ) -> Option<u32> {
        match &mut self.state {
            State::RoundRobin(wrr) if wrr.fits(backends) => wrr.pick(backends),
            State::RoundRobin(_) => weighted_by_hash(backends, flow_hash),
            State::LeastConnections => wlc::pick(backends),
            State::Maglev { table, key } => {
                let hash = match key {
                    MaglevKey::FiveTuple => flow_hash,
                    MaglevKey::SourceAddress => source_hash,
                };
                table
                    .lookup(backends, hash)
                    .or_else(|| weighted_by_hash(backends, hash))
            }
        }
    }
}

/// The fallback when the scheduler's state is stale: an eligible backend
/// chosen by `hash` with probability proportional to its weight (the hash
/// reduced onto the sum of weights, then a walk over the cumulative
/// weights). O(N), no allocation; `None` if nothing is eligible.
fn weighted_by_hash(backends: &[Candidate], hash: u64) -> Option<u32> {
    let eligible = || backends.iter().enumerate().filter(|(_, b)| b.eligible());
    let total: u64 = eligible().map(|(_, b)| u64::from(b.weight)).sum();
    let mut target = hash::reduce(hash, total);
    for (slot, b) in eligible() {
        let w = u64::from(b.weight);
        if target < w {
            return u32::try_from(slot).ok();
        }
        target -= w;
    }
    None
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn cands(weights: &[u16]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Candidate {
                id: backend_id(&[10, 0, 0, i as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 80),
                weight: w,
                up: true,
                active: 0,
            })
            .collect()
    }

    #[test]
    fn kinds_defaults_and_validation() {
        assert_eq!(SchedulerKind::default(), SchedulerKind::RoundRobin);
        assert_eq!(
            SchedulerKind::maglev(),
            SchedulerKind::Maglev {
                table_size: 65537,
                key: MaglevKey::FiveTuple
            }
        );
        assert_eq!(SchedulerKind::maglev().validate(), Ok(()));
        assert_eq!(SchedulerKind::LeastConnections.validate(), Ok(()));
        let bad = SchedulerKind::Maglev {
            table_size: 1000,
            key: MaglevKey::SourceAddress,
        };
        assert_eq!(
            bad.validate(),
            Err(SchedError::TableSizeNotPrime { size: 1000 })
        );
        assert_eq!(
            Scheduler::new(&bad).unwrap_err(),
            SchedError::TableSizeNotPrime { size: 1000 }
        );
        let err = Scheduler::new(&SchedulerKind::Maglev {
            table_size: 2,
            key: MaglevKey::FiveTuple,
        })
        .unwrap_err();
        assert_eq!(
            alloc::format!("{err}"),
            "Maglev table size 2 is outside 3..=16777216"
        );
    }

    #[test]
    fn every_kind_returns_none_without_eligible_backends() {
        for kind in [
            SchedulerKind::RoundRobin,
            SchedulerKind::LeastConnections,
            SchedulerKind::maglev(),
        ] {
            let mut s = Scheduler::new(&kind).unwrap();
            assert_eq!(s.pick(&[], 1, 2), None);
            let mut b = cands(&[0, 5]);
            b[1].up = false;
            s.rebuild(&b);
            for h in 0..100 {
                assert_eq!(s.pick(&b, h, h), None, "{kind:?}");
            }
        }
    }

    #[test]
    fn dispatch_round_robin_and_least_connections() {
        let b = cands(&[5, 1, 1]);
        let mut rr = Scheduler::new(&SchedulerKind::RoundRobin).unwrap();
        rr.rebuild(&b);
        let seq: Vec<u32> = (0..7).map(|_| rr.pick(&b, 0, 0).unwrap()).collect();
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
        let mut b = cands(&[1, 2]);
        b[0].active = 1;
        b[1].active = 1;
        let mut lc = Scheduler::new(&SchedulerKind::LeastConnections).unwrap();
        lc.rebuild(&b);
        assert_eq!(lc.pick(&b, 0, 0), Some(1));
    }

    #[test]
    fn maglev_uses_the_configured_key() {
        let b = cands(&[1; 8]);
        let mut by_flow = Scheduler::new(&SchedulerKind::maglev()).unwrap();
        let mut by_source = Scheduler::new(&SchedulerKind::Maglev {
            table_size: 65537,
            key: MaglevKey::SourceAddress,
        })
        .unwrap();
        by_flow.rebuild(&b);
        by_source.rebuild(&b);
        // One client (source hash 77) with many flows: one backend by source,
        // several by 5-tuple.
        let from_source: Vec<u32> = (0..50)
            .map(|f| by_source.pick(&b, f, 77).unwrap())
            .collect();
        assert!(from_source.iter().all(|&s| s == from_source[0]));
        let mut from_flow: Vec<u32> = (0..50).map(|f| by_flow.pick(&b, f, 77).unwrap()).collect();
        // The same flow hash gives the same backend whatever the source.
        assert_eq!(by_flow.pick(&b, 9, 1), by_flow.pick(&b, 9, 2));
        from_flow.sort_unstable();
        from_flow.dedup();
        assert!(from_flow.len() >= 6);
    }

    #[test]
    fn stale_state_never_yields_an_ineligible_slot() {
        for kind in [
            SchedulerKind::RoundRobin,
            SchedulerKind::LeastConnections,
            SchedulerKind::maglev(),
        ] {
            let mut s = Scheduler::new(&kind).unwrap();
            let mut b = cands(&[1, 1, 1, 1]);
            s.rebuild(&b);
            // Changes without a rebuild: one down, one drained, one added.
            b[0].up = false;
            b[2].weight = 0;
            b.push(cands(&[1, 1, 1, 1, 3])[4]);
            let mut seen = [0u32; 5];
            for h in 0..2000u64 {
                let slot = s.pick(&b, hash::fmix64(h), hash::fmix64(h ^ 1)).unwrap();
                assert!(is_eligible(&b, slot), "{kind:?}: slot {slot}");
                seen[slot as usize] += 1;
            }
            assert_eq!((seen[0], seen[2]), (0, 0));
            // After the rebuild, everything is fresh.
            s.rebuild(&b);
            for h in 0..200u64 {
                let slot = s.pick(&b, hash::fmix64(h), h).unwrap();
                assert!(slot == 1 || slot == 3 || slot == 4);
            }
            // Shrinking the pool without a rebuild: still in range.
            for h in 0..200u64 {
                let slot = s.pick(&b[..2], hash::fmix64(h), h).unwrap();
                assert_eq!(slot, 1);
            }
        }
    }

    #[test]
    fn weighted_fallback_follows_weights() {
        let mut b = cands(&[1, 3, 0, 4]);
        b[3].up = false;
        let mut c = vec![0u32; 4];
        for h in 0..40_000u64 {
            c[weighted_by_hash(&b, h).unwrap() as usize] += 1;
        }
        assert_eq!((c[2], c[3]), (0, 0));
        assert!(
            c[0].abs_diff(10_000) < 500 && c[1].abs_diff(30_000) < 500,
            "{c:?}"
        );
        assert_eq!(weighted_by_hash(&b[2..], 5), None);
        assert!(
            !is_eligible(&b, 2)
                && !is_eligible(&b, 3)
                && !is_eligible(&b, 99)
                && is_eligible(&b, 1)
        );
    }

    /// Affinity composes with every kind: the engine asks the table first,
    /// checks the remembered backend is still eligible, else schedules, and
    /// records the choice on every new session.
    #[test]
    fn affinity_with_every_kind() {
        use crate::time::Instant;
        use core::time::Duration;

        fn new_session(
            s: &mut Scheduler,
            aff: &mut AffinityTable,
            b: &[Candidate],
            now: Instant,
            client: &[u8; 16],
            flow: u64,
        ) -> Option<u32> {
            let slot = aff
                .lookup(now, 1, client)
                .filter(|&slot| is_eligible(b, slot))
                .or_else(|| s.pick(b, flow, 0))?;
            aff.insert(now, 1, client, slot, Affinity::default().timeout);
            Some(slot)
        }

        for kind in [
            SchedulerKind::RoundRobin,
            SchedulerKind::LeastConnections,
            SchedulerKind::maglev(),
        ] {
            let mut b = cands(&[1, 1, 1]);
            let mut s = Scheduler::new(&kind).unwrap();
            s.rebuild(&b);
            let mut aff = AffinityTable::new(64, 5);
            let client = [192, 0, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            let t0 = Instant::from_secs(10);
            let first = new_session(&mut s, &mut aff, &b, t0, &client, 1).unwrap();
            for flow in 2..50u64 {
                let now = t0 + Duration::from_secs(flow);
                b[first as usize].active += 1; // what the engine counts
                assert_eq!(
                    new_session(&mut s, &mut aff, &b, now, &client, flow),
                    Some(first),
                    "{kind:?}"
                );
            }
            // The backend goes down: the client moves, and sticks to the new one.
            b[first as usize].up = false;
            s.rebuild(&b);
            aff.forget_backend(1, first);
            let now = t0 + Duration::from_secs(100);
            let second = new_session(&mut s, &mut aff, &b, now, &client, 7).unwrap();
            assert_ne!(second, first);
            assert_eq!(
                new_session(&mut s, &mut aff, &b, now, &client, 8),
                Some(second)
            );
        }
    }
}
