//! Weighted Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and
//! Reliable Software Network Load Balancer", NSDI'16, section 3.4), with
//! weights as Katran's `MaglevV2` gives them.
//!
//! The lookup table has `M` entries, `M` prime. Backend `i` prefers the
//! entries `(offset_i + j * skip_i) mod M` for `j = 0, 1, ...`, where
//! `offset_i = h1(id_i) mod M` and `skip_i = h2(id_i) mod (M - 1) + 1`; as
//! `M` is prime every `skip` walks through all `M` entries. Backends take
//! turns claiming their next preferred entry that is still empty, until the
//! table is full (the paper's `Populate`). A lookup is one hash reduction
//! and one array read: O(1).
//!
//! Deliberate choices:
//! - **Permutations come from the backend's stable `id` only**, never from
//!   its slot or from the order of the list, so removing one backend does
//!   not reshuffle the others, and every node of a cluster that knows the
//!   same backends builds the same table (ARCHITECTURE.md, "Scale beyond one
//!   machine"). Turn order within a round is by `id` too (then slot, for
//!   duplicate ids), for the same reason.
//! - **Weights** (Katran `MaglevV2`): in round `r` (from 1) a backend of
//!   weight `w` has had `floor(r * w / max_w)` turns, so its `k`-th turn
//!   falls in round `ceil(k * max_w / w)`. Turns are drawn from a heap
//!   keyed by (round, id), which is the order of Katran's nested loops
//!   without its O(N) scan per round: O(M log N) turns even with weights
//!   65535 and 1 side by side. Every turn fills exactly one entry, so a
//!   backend's entries differ from `M * w / W` by at most `2 + N * w / W`
//!   (one round's rounding per backend, summed), a relative error of at
//!   most `2 / (M * w / W) + N / M`: under 1% plus two entries when
//!   `M >= 100 * N`. With equal weights every backend gets `floor(M / N)`
//!   or `ceil(M / N)` entries.
//! - Backends of weight 0 or down take no turns and get no entries. With
//!   more eligible backends than `M` some get none: choose `M >> N` (the
//!   paper uses `M > 100 * N` for 1% imbalance; 65537 suits up to ~650).
//! - The table stores slot indices, with a snapshot of each slot's `id` at
//!   build time. [`MaglevTable::lookup`] answers only if the slot still holds
//!   that backend and it is still eligible; otherwise the caller falls back
//!   (see the parent module), so a missed rebuild cannot send a new session
//!   to a drained, down or removed backend.
//! - Table sizes: a prime in `3..=2^24` (4 bytes per entry: 256 KiB at the
//!   default 65537, 64 MiB at the top of the range); anything else is a
//!   [`SchedError`].

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

use super::hash::{hash_words, reduce};
use super::{Candidate, SchedError};

/// The default table size: the prime the paper and Katran use.
pub(crate) const DEFAULT_TABLE_SIZE: u32 = 65537;
/// The smallest table size accepted.
pub(crate) const MIN_TABLE_SIZE: u32 = 3;
/// The largest table size accepted (2^24 entries, 64 MiB).
pub(crate) const MAX_TABLE_SIZE: u32 = 1 << 24;

/// An empty table entry during population.
const EMPTY: u32 = u32::MAX;
/// Seeds of the two permutation hashes `h1` (offset) and `h2` (skip). Fixed
/// forever: every node must derive the same permutations.
const SEED_OFFSET: u64 = 0x6d61_676c_6576_2d6f;
const SEED_SKIP: u64 = 0x6d61_676c_6576_2d73;

/// Whether `n` is prime (trial division: `n` is at most 2^24 here, so at
/// most ~2,000 divisions).
pub(crate) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d: u32 = 3;
    while d.checked_mul(d).is_some_and(|sq| sq <= n) {
        if n.is_multiple_of(d) {
            return false;
        }
        d = d.saturating_add(2);
    }
    true
}

/// Checks a table size: prime and within `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
pub(crate) fn validate_table_size(size: u32) -> Result<(), SchedError> {
    if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size) {
        return Err(SchedError::TableSizeOutOfRange {
            size,
            min: MIN_TABLE_SIZE,
            max: MAX_TABLE_SIZE,
        });
    }
    if !is_prime(size) {
        return Err(SchedError::TableSizeNotPrime { size });
    }
    Ok(())
}

/// A backend's place in the population: its permutation and its turns.
struct Turn {
    slot: u32,
    weight: u64,
    /// The entry it will try next (`offset + next * skip` in the paper).
    pos: u64,
    skip: u64,
    /// Turns taken so far.
    taken: u64,
}

/// A populated Maglev lookup table.
#[derive(Debug, Clone)]
pub(crate) struct MaglevTable {
    /// `M`, prime.
    size: u32,
    /// `M` slot indices, or empty when no backend was eligible at the last
    /// rebuild.
    table: Vec<u32>,
    /// Each slot's `id` at the last rebuild.
    ids: Vec<u64>,
}

impl MaglevTable {
    /// An empty table of `size` entries; see [`validate_table_size`].
    pub(crate) fn new(size: u32) -> Result<MaglevTable, SchedError> {
        validate_table_size(size)?;
        Ok(MaglevTable {
            size,
            table: Vec::new(),
            ids: Vec::new(),
        })
    }

    /// Populates the table for `backends` (control plane: allocates).
    pub(crate) fn rebuild(&mut self, backends: &[Candidate]) {
        self.ids.clear();
        self.ids.extend(backends.iter().map(|b| b.id));
        self.table.clear();

        let m = u64::from(self.size);
        let Ok(m_len) = usize::try_from(self.size) else {
            return;
        };

        // Eligible backends in turn order: by id, then slot.
        let mut order: Vec<(u64, u32, u16)> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.eligible())
            .filter_map(|(slot, b)| {
                // Slot u32::MAX would read as EMPTY; a pool never gets there.
                let slot = u32::try_from(slot).ok().filter(|&s| s != EMPTY)?;
                Some((b.id, slot, b.weight))
            })
            .collect();
        order.sort_unstable();
        let Some(max_w) = order.iter().map(|&(_, _, w)| u64::from(w)).max() else {
            return; // nothing eligible: an empty table
        };

        let mut turns: Vec<Turn> = order
            .iter()
            .map(|&(id, slot, w)| Turn {
                slot,
                weight: u64::from(w),
                pos: hash_words(SEED_OFFSET, &[id]) % m,
                skip: hash_words(SEED_SKIP, &[id]) % (m - 1) + 1,
                taken: 0,
            })
            .collect();
        // (round of the next turn, place in `order`); weights are >= 1.
        let mut heap: BinaryHeap<Reverse<(u64, usize)>> = turns
            .iter()
            .enumerate()
            .map(|(i, t)| Reverse((max_w.div_ceil(t.weight), i)))
            .collect();

        self.table.resize(m_len, EMPTY);
        let mut filled: usize = 0;
        while filled < m_len {
            let Some(Reverse((_, i))) = heap.pop() else {
                break;
            };
            let Some(t) = turns.get_mut(i) else { break };
            // The table is not full, and the permutation visits every entry
            // within `m` steps: this finds an empty one.
            for _ in 0..m {
                let here = usize::try_from(t.pos)
                    .ok()
                    .and_then(|p| self.table.get_mut(p));
                t.pos = (t.pos + t.skip) % m;
                if let Some(entry) = here
                    && *entry == EMPTY
                {
                    *entry = t.slot;
                    filled += 1;
                    break;
                }
            }
            t.taken += 1;
            let next_round = (t.taken + 1).saturating_mul(max_w).div_ceil(t.weight);
            heap.push(Reverse((next_round, i)));
        }
    }

    /// The slot the table gives `hash`, if that slot still holds the backend
    /// it held at the last rebuild and that backend is eligible. O(1).
    pub(crate) fn lookup(&self, backends: &[Candidate], hash: u64) -> Option<u32> {
        let len = u64::try_from(self.table.len()).ok()?;
        let idx = usize::try_from(reduce(hash, len)).ok()?;
        let slot = *self.table.get(idx)?;
        let at = usize::try_from(slot).ok()?;
        let b = backends.get(at)?;
        (b.eligible() && self.ids.get(at) == Some(&b.id)).then_some(slot)
    }

    /// The populated entries (empty if nothing was eligible).
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[u32] {
        &self.table
    }
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
                id: crate::sched::hash::hash_words(42, &[i as u64]),
                weight: w,
                up: true,
                active: 0,
            })
            .collect()
    }

    fn built(backends: &[Candidate], size: u32) -> MaglevTable {
        let mut t = MaglevTable::new(size).unwrap();
        t.rebuild(backends);
        t
    }

    fn counts(t: &MaglevTable, n: usize) -> Vec<u32> {
        let mut c = vec![0u32; n];
        for &s in t.entries() {
            c[s as usize] += 1;
        }
        c
    }

    #[test]
    fn table_sizes() {
        assert!(MaglevTable::new(DEFAULT_TABLE_SIZE).is_ok());
        assert!(MaglevTable::new(3).is_ok());
        assert!(MaglevTable::new(251).is_ok());
        assert!(MaglevTable::new(655_373).is_ok());
        assert!(MaglevTable::new(16_777_213).is_ok()); // largest prime < 2^24
        assert_eq!(
            MaglevTable::new(65536).unwrap_err(),
            SchedError::TableSizeNotPrime { size: 65536 }
        );
        assert_eq!(
            MaglevTable::new(65539 * 3).unwrap_err(),
            SchedError::TableSizeNotPrime { size: 65539 * 3 }
        );
        for size in [0, 1, 2, (1 << 24) + 1, 16_777_259, u32::MAX] {
            assert!(
                matches!(
                    MaglevTable::new(size),
                    Err(SchedError::TableSizeOutOfRange { .. })
                ),
                "{size}"
            );
        }
        let primes: Vec<u32> = (0..60).filter(|&n| is_prime(n)).collect();
        assert_eq!(
            primes,
            [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59
            ]
        );
        assert!(!is_prime(65537 * 3) && !is_prime(4093 * 4093) && is_prime(4_093));
    }

    /// The paper's balance property: with `M = 65537` and N equal backends
    /// every backend's entry count is within 1% of `M / N`. Measured: the
    /// largest deviation is under one entry for every N (each turn fills
    /// one entry, so counts are `floor(M/N)` or `ceil(M/N)`), i.e. 0.82%
    /// of fair at N = 650 (0.83 entries of 100.8).
    #[test]
    fn equal_weights_are_balanced_within_one_percent() {
        for n in [1usize, 2, 3, 10, 100, 650] {
            let b = cands(&vec![100; n]);
            let t = built(&b, DEFAULT_TABLE_SIZE);
            let fair = f64::from(DEFAULT_TABLE_SIZE) / n as f64;
            let c = counts(&t, n);
            let worst = c
                .iter()
                .map(|&x| (f64::from(x) - fair).abs())
                .fold(0.0, f64::max);
            assert!(
                worst <= 0.01 * fair,
                "N={n}: worst deviation {worst} entries of {fair}"
            );
            assert!(worst < 1.0, "N={n}: {c:?}");
            assert_eq!(c.iter().sum::<u32>(), DEFAULT_TABLE_SIZE);
        }
    }

    /// Removing one of N backends must move its own `M / N` entries and, in
    /// Maglev, some more: the paper (section 3.4) trades minimal disruption
    /// for balance, and a freed entry sets off a chain of different claims
    /// in the population that ends late, when the table is nearly full.
    /// Measured with `M = 65537`, over 40 removed backends per N (worst
    /// case): moved / (M/N) = 1.04 at N = 10, 1.63 at N = 100, 6.29 at
    /// N = 650; the entries moved beyond the removed backend's own are at
    /// most 0.94% of the table for every N up to 1000. (With M = 655373,
    /// N = 650 gives 2.81: a larger table disrupts less, as the paper says.)
    /// Asserted: beyond its own entries, at most 1.25% of the table moves,
    /// and moved / (M/N) stays under 1.1, 1.75 and 7 for N = 10, 100, 650.
    #[test]
    fn removing_one_backend_moves_little_more_than_its_share() {
        let m = DEFAULT_TABLE_SIZE as usize;
        for (n, removed, bound) in [
            (10usize, (0..10).collect::<Vec<_>>(), 1.1),
            (100, vec![0, 37, 99], 1.75),
            (650, vec![0, 321], 7.0),
        ] {
            let b = cands(&vec![1; n]);
            let before = built(&b, DEFAULT_TABLE_SIZE);
            for &r in &removed {
                let mut after_b = b.clone();
                after_b.remove(r);
                let after = built(&after_b, DEFAULT_TABLE_SIZE);
                let moved = before
                    .entries()
                    .iter()
                    .zip(after.entries())
                    .filter(|&(&x, &y)| b[x as usize].id != after_b[y as usize].id)
                    .count();
                let own = before
                    .entries()
                    .iter()
                    .filter(|&&x| x as usize == r)
                    .count();
                assert!(moved >= own);
                let extra = (moved - own) as f64 / m as f64;
                assert!(
                    extra <= 0.0125,
                    "N={n} removed {r}: {moved} moved, {own} its own"
                );
                let ratio = moved as f64 / (m as f64 / n as f64);
                assert!(
                    ratio <= bound,
                    "N={n} removed {r}: moved {moved}, ratio {ratio}"
                );
            }
        }
    }

    /// Shares follow weights to within `2 + N * w / W` entries of
    /// `M * w / W` (see the module docs), including extreme weights side by
    /// side. Measured over 30 pools of 2 to 205 random weights in 1..=65535:
    /// at worst 9.2 entries off, 0.87% of the ideal share where that share
    /// is over 100 entries.
    #[test]
    fn weighted_shares_are_proportional() {
        let mut state = 1u64;
        let mut random = |n: usize| -> Vec<u16> {
            (0..n)
                .map(|_| {
                    state = crate::sched::hash::fmix64(state + 1);
                    (state % 65535 + 1) as u16
                })
                .collect()
        };
        for weights in [
            vec![1u16, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            vec![65535, 1, 1000, 77, 65535, 3],
            vec![100, 200, 100, 50],
            random(50),
            random(200),
        ] {
            let n = weights.len() as f64;
            let b = cands(&weights);
            let t = built(&b, DEFAULT_TABLE_SIZE);
            let c = counts(&t, weights.len());
            let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
            for (i, &w) in weights.iter().enumerate() {
                let share = f64::from(w) / total;
                let ideal = f64::from(DEFAULT_TABLE_SIZE) * share;
                assert!(
                    (f64::from(c[i]) - ideal).abs() <= 2.0 + n * share,
                    "{weights:?}: slot {i} has {} entries, ideal {ideal}",
                    c[i]
                );
            }
        }
    }

    #[test]
    fn deterministic_and_independent_of_slot_order() {
        let b = cands(&[3, 1, 4, 1, 5, 9, 2, 6]);
        let t1 = built(&b, 4099);
        let t2 = built(&b, 4099);
        assert_eq!(t1.entries(), t2.entries());
        // Same backends in another slot order: the same backend per entry.
        let mut rev = b.clone();
        rev.reverse();
        let t3 = built(&rev, 4099);
        let ids = |t: &MaglevTable, b: &[Candidate]| -> Vec<u64> {
            t.entries().iter().map(|&s| b[s as usize].id).collect()
        };
        assert_eq!(ids(&t1, &b), ids(&t3, &rev));
    }

    #[test]
    fn down_and_zero_weight_get_no_entries() {
        let mut b = cands(&[1, 0, 1, 1]);
        b[2].up = false;
        let t = built(&b, 1009);
        let c = counts(&t, 4);
        assert_eq!((c[1], c[2]), (0, 0));
        assert_eq!(c[0] + c[3], 1009);
        // Nothing eligible: an empty table, and lookups find nothing.
        b[0].weight = 0;
        b[3].up = false;
        let t = built(&b, 1009);
        assert!(t.entries().is_empty());
        assert_eq!(t.lookup(&b, 123), None);
    }

    #[test]
    fn lookup_rechecks_the_backend() {
        let mut b = cands(&[1, 1, 1]);
        let t = built(&b, 101);
        let h = (0..).find(|&h| t.lookup(&b, h) == Some(1)).unwrap();
        b[1].up = false;
        assert_eq!(t.lookup(&b, h), None);
        b[1].up = true;
        b[1].weight = 0;
        assert_eq!(t.lookup(&b, h), None);
        b[1].weight = 1;
        b[1].id ^= 1; // another backend in the same slot
        assert_eq!(t.lookup(&b, h), None);
        assert_eq!(t.lookup(&b[..1], h), None); // the slot is gone
    }

    #[test]
    fn more_backends_than_entries() {
        let b = cands(&[1; 10]);
        let t = built(&b, 7);
        let c = counts(&t, 10);
        assert_eq!(c.iter().sum::<u32>(), 7);
        assert!(c.iter().all(|&x| x <= 1));
    }
}
