//! [`VipIndex`]: the listeners of IPv4 VIPs by their key (VIP, port,
//! protocol, as [`listener_key`] packs it), in a small open-addressing
//! hash table, so that the packet path finds a listener in one probe
//! where a binary search over the sorted keys takes several branches.
//!
//! Invariants: it holds exactly the keys of the sorted set it was built
//! from ([`VipIndex::rebuild`], called whenever that set changes), each
//! once. A key lives at its home slot or after it, with no empty slot in
//! between; the table has room after its last home slot for every key,
//! so a run never wraps and a lookup stops at an empty slot or at the
//! end. `u64::MAX` marks an empty slot: no key is that large (a key has
//! 56 bits).
//!
//! [`listener_key`]: super::listeners::listener_key

use alloc::vec::Vec;

use super::ListenerId;

/// An empty slot's key.
const EMPTY: u64 = u64::MAX;

/// The multiplier of the home slot's hash (Fibonacci hashing: the top
/// bits of the product are well mixed).
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// Fewest home slots, as a power of two.
const MIN_BITS: u32 = 3;

/// See the [module documentation](self).
#[derive(Debug, Clone)]
pub(super) struct VipIndex {
    /// `(key, listener)`; `key == EMPTY` for an empty slot.
    slots: Vec<(u64, ListenerId)>,
    /// `64 - log2(home slots)`: `hash >> shift` is a key's home slot.
    shift: u32,
}

impl VipIndex {
    /// An index of no listener.
    pub(super) fn new() -> VipIndex {
        VipIndex {
            slots: Vec::new(),
            shift: 64 - MIN_BITS,
        }
    }

    /// The home slot of `key`.
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(K) >> self.shift) as usize
    }

    /// Index exactly the `(key, listener)` pairs of `keys` (distinct
    /// listener keys): at least twice as many home slots as keys, and
    /// room after the last for every key.
    pub(super) fn rebuild(&mut self, keys: &[(u64, ListenerId)]) {
        let mut bits = MIN_BITS;
        while (1usize << bits) < keys.len().saturating_mul(2) && bits < 31 {
            bits += 1;
        }
        self.shift = 64 - bits;
        self.slots.clear();
        self.slots.resize((1usize << bits) + keys.len(), (EMPTY, 0));
        for &(key, id) in keys {
            let mut i = self.home(key);
            while let Some(slot) = self.slots.get_mut(i) {
                if slot.0 == EMPTY {
                    *slot = (key, id);
                    break;
                }
                i += 1;
            }
        }
    }

    /// The listener with key `key` (a listener key: below 2^56), if any.
    #[inline(always)]
    pub(super) fn get(&self, key: u64) -> Option<ListenerId> {
        let mut i = self.home(key);
        loop {
            let &(k, id) = self.slots.get(i)?;
            if k == key {
                return Some(id);
            }
            if k == EMPTY {
                return None;
            }
            i += 1;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// The key `listener_key` packs of a TCP listener.
    fn key(vip: u64, port: u64) -> u64 {
        (vip << 24) | (port << 8) | 6
    }

    #[test]
    fn finds_exactly_what_it_holds() {
        let mut index = VipIndex::new();
        assert_eq!(index.get(key(1, 80)), None, "empty");
        for n in [0u16, 1, 2, 7, 8, 9, 100, 1000] {
            // Ten ports on each VIP: ports 80 to 89, VIPs from 198.51.100.0.
            let at = |i: u16| key(0xc633_6400 + u64::from(i / 10), 80 + u64::from(i % 10));
            let keys: Vec<(u64, ListenerId)> = (0..n).map(|i| (at(i), i)).collect();
            index.rebuild(&keys);
            for i in 0..n {
                assert_eq!(index.get(at(i)), Some(i), "{n} listeners, {i}");
                assert_eq!(index.get(at(i) + 11), None, "UDP: {n} listeners, {i}");
            }
            for i in n..n + 20 {
                assert_eq!(index.get(at(i)), None, "{n} listeners, {i}");
            }
            assert_eq!(index.get(0), None);
        }
        index.rebuild(&[]);
        assert_eq!(index.get(key(0xc633_6400, 80)), None, "emptied");
    }
}
