//! Weighted least connections, IPVS's formula (`ip_vs_wlc_schedule` in
//! `net/netfilter/ipvs/ip_vs_wlc.c`).
//!
//! The winner minimises `active / weight` among eligible backends. As IPVS
//! does, the ratios are compared by cross-multiplication,
//! `a.active * b.weight < b.active * a.weight`, in 64 bits (a `u32` times a
//! `u16` cannot overflow), so there is no division and no rounding.
//!
//! Ties go to the lowest slot index, as in IPVS, whose scan replaces the
//! current best only on a strictly smaller ratio. With every backend idle
//! the first slot wins, and the next pick sees its new session (the engine
//! counts a session as active as soon as it is created).
//!
//! IPVS counts `active * 256 + inactive`; the engine only tracks live
//! sessions, so `active` is all there is. Stateless: O(N) per pick, no
//! allocation, nothing to rebuild.

use super::Candidate;

/// The eligible backend with the fewest active sessions per unit of weight.
pub(crate) fn pick(backends: &[Candidate]) -> Option<u32> {
    let mut best: Option<(usize, &Candidate)> = None;
    for (slot, b) in backends.iter().enumerate() {
        if !b.eligible() {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, least)) => {
                u64::from(b.active) * u64::from(least.weight)
                    < u64::from(least.active) * u64::from(b.weight)
            }
        };
        if better {
            best = Some((slot, b));
        }
    }
    best.and_then(|(slot, _)| u32::try_from(slot).ok())
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;

    fn cands(spec: &[(u16, u32)]) -> Vec<Candidate> {
        spec.iter()
            .enumerate()
            .map(|(i, &(weight, active))| Candidate {
                id: i as u64,
                weight,
                up: true,
                active,
            })
            .collect()
    }

    #[test]
    fn picks_the_minimum_ratio() {
        // Ratios 10/5 = 2, 3/1 = 3, 5/4 = 1.25, 1/1 = 1.
        assert_eq!(pick(&cands(&[(5, 10), (1, 3), (4, 5), (1, 1)])), Some(3));
        // 0 active beats any positive ratio, whatever the weight.
        assert_eq!(pick(&cands(&[(65535, 1), (1, 0)])), Some(1));
        // Extremes do not overflow: u32::MAX * 65535 fits in 64 bits.
        assert_eq!(pick(&cands(&[(1, u32::MAX), (65535, u32::MAX)])), Some(1));
    }

    #[test]
    fn zero_weight_and_down_never_and_none_when_nothing_is_eligible() {
        let mut b = cands(&[(0, 0), (2, 100), (3, 0)]);
        b[2].up = false;
        assert_eq!(pick(&b), Some(1));
        b[1].weight = 0;
        assert_eq!(pick(&b), None);
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn ties_go_to_the_lowest_slot() {
        // 2/1 == 4/2 == 6/3: the first slot wins.
        assert_eq!(pick(&cands(&[(1, 2), (2, 4), (3, 6)])), Some(0));
        assert_eq!(pick(&cands(&[(0, 0), (3, 6), (2, 4)])), Some(1));
    }

    #[test]
    fn sessions_follow_the_weights_when_counted() {
        // The engine increments `active` on each new session: new sessions
        // then split 3:1, and all slots stay within one session of the
        // ideal ratio.
        let mut b = cands(&[(3, 0), (1, 0)]);
        for _ in 0..400 {
            let s = pick(&b).unwrap() as usize;
            b[s].active += 1;
        }
        assert_eq!((b[0].active, b[1].active), (300, 100));
    }
}
