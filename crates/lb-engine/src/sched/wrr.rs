//! Smooth weighted round robin, nginx's algorithm
//! (`ngx_http_upstream_get_peer` in `ngx_http_upstream_round_robin.c`).
//!
//! Each backend keeps a `current` weight. On every pick, every eligible
//! backend's `current` grows by its weight; the one with the largest
//! `current` wins (the first in slot order on a tie, as nginx's strict `>`
//! does) and loses the total weight of the eligible backends. Weights
//! {5, 1, 1} give `a a b a c a a`: over every `total` picks each backend is
//! chosen exactly `weight` times, and the heavy backend's turns are spread
//! out instead of coming in a burst.
//!
//! Invariants:
//! - The sum of `current` over all slots is 0 after every pick and every
//!   rebuild: a pick adds `total` and takes it back from the winner. An
//!   ineligible backend (weight 0 or down) keeps its `current` frozen, as
//!   nginx skips a down peer, and resumes from it when it returns.
//! - Eligibility and weights are read from the live slice on every pick, so
//!   a weight or up/down change takes effect at once, rebuild or not.
//! - [`SmoothWrr::rebuild`] keeps each slot's `current` when the set of
//!   backend identities is unchanged (a weight or health change, like
//!   nginx's run-time changes) and starts over from zero when a backend was
//!   added, removed or replaced (like an nginx reload).
//!
//! - `current` stays far from `i64`'s limits: the eligible backends'
//!   values sum to minus the frozen ones' and each pick moves a value by
//!   at most the total weight (below 2^48: `u16` weights over at most
//!   2^32 slots), and the winner, whose value is the largest, loses the
//!   total; so plain (wrapping) arithmetic never wraps.
//!
//! Cost: O(N) per pick, like nginx and IPVS's `wrr`; no allocation.

use alloc::vec::Vec;

use super::Candidate;

/// The per-slot state of smooth weighted round robin.
#[derive(Debug, Clone, Default)]
pub(crate) struct SmoothWrr {
    /// nginx's `current_weight`, by slot.
    current: Vec<i64>,
    /// The identity each slot had at the last rebuild.
    ids: Vec<u64>,
}

impl SmoothWrr {
    /// Resets or keeps the state for `backends` (see the module invariants).
    pub(crate) fn rebuild(&mut self, backends: &[Candidate]) {
        let same_ids = self.ids.len() == backends.len()
            && self.ids.iter().zip(backends).all(|(id, b)| *id == b.id);
        if !same_ids {
            self.ids.clear();
            self.ids.extend(backends.iter().map(|b| b.id));
            self.current.clear();
            self.current.resize(backends.len(), 0);
        }
    }

    /// Whether `backends` has the shape the state was built for: the same
    /// number of slots. (A slot reused for another backend without a rebuild
    /// still works: it inherits the old slot's `current`.)
    pub(crate) fn fits(&self, backends: &[Candidate]) -> bool {
        self.current.len() == backends.len()
    }

    /// The next backend, or `None` when none is eligible. The caller checks
    /// [`fits`](Self::fits) first; slots beyond the state are not considered.
    pub(crate) fn pick(&mut self, backends: &[Candidate]) -> Option<u32> {
        let mut total: i64 = 0;
        // No slot yet: `usize::MAX`, which `get_mut` below refuses. An
        // eligible backend's weight is at least 1, so its `current` after
        // the addition is above `i64::MIN` and the first one always wins
        // over the starting `best_cur`.
        let mut best = usize::MAX;
        let mut best_cur = i64::MIN;
        let n = backends.len().min(self.current.len());
        for slot in 0..n {
            let (Some(b), Some(cur)) = (backends.get(slot), self.current.get_mut(slot)) else {
                break;
            };
            if !b.eligible() {
                continue;
            }
            // No overflow: see the module's bound on `current`.
            let w = i64::from(b.weight);
            *cur = cur.wrapping_add(w);
            total = total.wrapping_add(w);
            if *cur > best_cur {
                best = slot;
                best_cur = *cur;
            }
        }
        let cur = self.current.get_mut(best)?;
        *cur = cur.wrapping_sub(total);
        u32::try_from(best).ok()
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
                id: 100 + i as u64,
                weight: w,
                up: true,
                active: 0,
            })
            .collect()
    }

    fn run(wrr: &mut SmoothWrr, backends: &[Candidate], n: usize) -> Vec<u32> {
        (0..n).map(|_| wrr.pick(backends).unwrap()).collect()
    }

    fn shares(picks: &[u32], n: usize) -> Vec<usize> {
        let mut s = vec![0; n];
        for &p in picks {
            s[p as usize] += 1;
        }
        s
    }

    #[test]
    fn nginx_sequence_for_5_1_1() {
        let b = cands(&[5, 1, 1]);
        let mut wrr = SmoothWrr::default();
        wrr.rebuild(&b);
        // nginx's documented example: a a b a c a a, then it repeats.
        let seq = run(&mut wrr, &b, 14);
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
        assert!(
            wrr.current.iter().all(|&c| c == 0),
            "a full cycle returns to zero"
        );
    }

    #[test]
    fn shares_are_exact_over_whole_cycles() {
        let weights = [7u16, 3, 0, 11, 1, 65535, 2];
        let b = cands(&weights);
        let mut wrr = SmoothWrr::default();
        wrr.rebuild(&b);
        let total: usize = weights.iter().map(|&w| usize::from(w)).sum();
        let picks = run(&mut wrr, &b, 3 * total);
        let s = shares(&picks, weights.len());
        for (i, &w) in weights.iter().enumerate() {
            assert_eq!(s[i], 3 * usize::from(w), "slot {i}");
        }
        assert_eq!(wrr.current.iter().sum::<i64>(), 0);
    }

    #[test]
    fn zero_weight_and_down_are_skipped_and_all_ineligible_is_none() {
        let mut b = cands(&[3, 0, 2]);
        b[2].up = false;
        let mut wrr = SmoothWrr::default();
        wrr.rebuild(&b);
        assert!(run(&mut wrr, &b, 50).iter().all(|&p| p == 0));
        b[0].up = false;
        assert_eq!(wrr.pick(&b), None);
        assert_eq!(SmoothWrr::default().pick(&[]), None);
    }

    #[test]
    fn weight_change_takes_effect_and_keeps_the_state() {
        let mut b = cands(&[5, 1, 1]);
        let mut wrr = SmoothWrr::default();
        wrr.rebuild(&b);
        run(&mut wrr, &b, 3); // mid-cycle
        b[1].weight = 5;
        wrr.rebuild(&b);
        let before = wrr.current.clone();
        assert_ne!(before, vec![0, 0, 0], "same identities: state kept");
        let picks = run(&mut wrr, &b, 110);
        let s = shares(&picks, 3);
        // 10 cycles of 11: 50/50/10, give or take the cycle in progress.
        assert!(
            s[0].abs_diff(50) <= 2 && s[1].abs_diff(50) <= 2 && s[2].abs_diff(10) <= 1,
            "{s:?}"
        );
        // Even without a rebuild the live weights are used.
        b[2].weight = 10;
        let s = shares(&run(&mut wrr, &b, 2000), 3);
        assert!(s[0].abs_diff(500) <= 2 && s[2].abs_diff(1000) <= 2, "{s:?}");
    }

    #[test]
    fn down_backend_resumes_and_replacement_resets() {
        let mut b = cands(&[1, 1]);
        let mut wrr = SmoothWrr::default();
        wrr.rebuild(&b);
        b[1].up = false;
        assert_eq!(run(&mut wrr, &b, 3), [0, 0, 0]);
        b[1].up = true;
        let s = shares(&run(&mut wrr, &b, 100), 2);
        assert_eq!(s, [50, 50]);
        // A new identity in a slot: start over from zero, like a reload.
        run(&mut wrr, &b, 1);
        b[1].id = 999;
        wrr.rebuild(&b);
        assert_eq!(wrr.current, [0, 0]);
        assert!(wrr.fits(&b) && !wrr.fits(&b[..1]));
    }
}
