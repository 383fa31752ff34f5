//! The schedulers' own 64-bit hash: small, fast, good, and stable.
//!
//! Every word is absorbed by xor into a 64-bit state that is then run through
//! the MurmurHash3 64-bit finalizer (`fmix64`, Austin Appleby), a bijection
//! in which every input bit flips each output bit with probability close to
//! one half. A chain of bijections cannot collide on two inputs that differ
//! only in their last word, and earlier words are fully mixed before the next
//! one arrives. It is not a keyed cryptographic hash (no SipHash here): where
//! clients choose the input (the affinity table) a secret seed from the caller
//! makes the bucket of a given address unpredictable, and the worst a client
//! who guesses collisions can do is evict affinity entries.
//!
//! Invariant: these functions never change meaning between versions without
//! a note in the changelog, because Maglev tables must be identical on every
//! node of a cluster (see [`backend_id`] and the Maglev permutation).

/// The MurmurHash3 64-bit finalizer: a bijection with full avalanche.
pub(crate) const fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Hashes `words` under `seed`: each word is xored into the state and the
/// state is finalized with the MurmurHash3 64-bit finalizer; the number of
/// words is absorbed last.
///
/// Stable across versions, nodes and runs (see the module's invariant):
/// callers that must agree across nodes, such as the L7 listeners' client
/// hashes for Maglev, use it with a seed shared by every node.
pub fn hash_words(seed: u64, words: &[u64]) -> u64 {
    // The golden-ratio constant keeps a zero seed from starting at fmix64's
    // fixed point 0.
    let mut h = fmix64(seed ^ 0x9e37_79b9_7f4a_7c15);
    for &w in words {
        h = fmix64(h ^ w);
    }
    let len = u64::try_from(words.len()).unwrap_or(u64::MAX);
    fmix64(h ^ len)
}

/// The two halves of an address in `[u8; 16]` form (IPv4 as IPv4-mapped
/// IPv6), little-endian: the words [`hash_words`] takes for an address.
pub fn address_words(addr: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    let (a, b) = addr.split_at(8);
    lo.copy_from_slice(a);
    hi.copy_from_slice(b);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

/// A stable identity for the backend at `addr`:`port`, usable as
/// [`Candidate::id`](super::Candidate): the same on every node and in every
/// run (the seed is fixed on purpose), so that Maglev tables agree.
pub fn backend_id(addr: &[u8; 16], port: u16) -> u64 {
    let (lo, hi) = address_words(addr);
    hash_words(0x6c62_2d62_6163_6b65, &[lo, hi, u64::from(port)])
}

/// Maps a hash onto `0..n` by multiply-shift (Lemire, "A fast alternative to
/// the modulo reduction"), after [`fmix64`] so that a weak or 32-bit input
/// hash (an RSS Toeplitz value, say) still spreads over the whole range.
/// Returns 0 when `n` is 0.
pub(crate) fn reduce(hash: u64, n: u64) -> u64 {
    let wide = u128::from(fmix64(hash)) * u128::from(n);
    // The high half of a 64x64 product of x < 2^64 and n is < n: no loss.
    (wide >> 64) as u64
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fmix64_known_values_and_bijection_on_a_sample() {
        assert_eq!(fmix64(0), 0);
        // Reference values of MurmurHash3's fmix64.
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
        let mut seen: alloc::vec::Vec<u64> = (0..10_000u64).map(fmix64).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 10_000);
    }

    #[test]
    fn hash_words_depends_on_every_word_seed_and_length() {
        let base = hash_words(1, &[2, 3]);
        assert_ne!(base, hash_words(0, &[2, 3]));
        assert_ne!(base, hash_words(1, &[3, 3]));
        assert_ne!(base, hash_words(1, &[2, 4]));
        assert_ne!(base, hash_words(1, &[2, 3, 0]));
        assert_eq!(base, hash_words(1, &[2, 3]));
    }

    #[test]
    fn sequential_ipv4_addresses_spread_evenly() {
        // 64 buckets, 64k consecutive IPv4 addresses (first four bytes,
        // the rest zero): every bucket within 10% of fair.
        let mut counts = [0u32; 64];
        for i in 0..65_536u32 {
            let mut addr = [0u8; 16];
            addr[..4].copy_from_slice(&(0x0a00_0000 | i).to_be_bytes());
            let (lo, hi) = address_words(&addr);
            let h = hash_words(7, &[lo, hi, 80]);
            counts[(h & 63) as usize] += 1;
        }
        for &c in &counts {
            assert!(c.abs_diff(1024) <= 102, "bucket count {c}");
        }
    }

    #[test]
    fn reduce_stays_in_range_and_spreads_32_bit_hashes() {
        assert_eq!(reduce(12345, 0), 0);
        let mut counts = [0u32; 7];
        for h in 0..70_000u64 {
            let r = reduce(h, 7);
            assert!(r < 7);
            counts[r as usize] += 1;
        }
        for &c in &counts {
            assert!(c.abs_diff(10_000) <= 500, "count {c}");
        }
    }

    #[test]
    fn backend_id_is_stable_and_port_sensitive() {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(backend_id(&a, 80), backend_id(&a, 80));
        assert_ne!(backend_id(&a, 80), backend_id(&a, 81));
        // Pinned (computed independently): a change here reshuffles every
        // Maglev table in a cluster that mixes versions.
        assert_eq!(backend_id(&a, 80), 0x5b4c_a741_a418_2cb4);
    }
}
