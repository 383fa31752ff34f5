//! Source-address affinity ("persistence" in IPVS, `ipvsadm --persistent`):
//! a client that comes back within a timeout gets the backend it had,
//! whichever scheduler the listener uses.
//!
//! [`Affinity`] is the public per-listener setting. [`AffinityTable`] holds
//! the remembered choices for all listeners, keyed by (listener id, client
//! address as 16 bytes), in a set-associative table: `WAYS` (8) entries per
//! bucket, a power-of-two number of buckets, 32 bytes per entry.
//!
//! Invariants and contract:
//! - Memory is allocated once, in [`AffinityTable::new`]; `lookup`,
//!   `insert` and `forget_*` never allocate and never panic.
//! - An entry is live while `now < expires`. A vacant entry is one that
//!   expired at `Instant::ZERO`, so there is no separate "used" flag, and a
//!   key appears at most once in its bucket (insert reuses a key's entry,
//!   live or not).
//! - The timeout counts from the client's last new session: the engine calls
//!   [`insert`](AffinityTable::insert) for every new session on a listener
//!   with affinity, whether the backend came from `lookup` or from the
//!   scheduler; `lookup` does not extend an entry. (IPVS instead keeps its
//!   template while any of the client's connections lives; here a client
//!   whose only connection outlasts the timeout may be scheduled afresh.)
//! - The engine checks that a backend from `lookup` is still eligible, and
//!   calls [`forget_backend`](AffinityTable::forget_backend) when a backend
//!   is removed, goes down or has its sessions reset.
//! - When a key's bucket is full, `insert` replaces the entry that expires
//!   soonest, which is an expired or vacant one whenever the bucket has one;
//!   replacing a live entry counts one [`evictions`](AffinityTable::evictions).
//! - The bucket comes from a hash of the key under a seed the caller passes
//!   (random per process, ideally), so that clients cannot aim their
//!   addresses at one bucket to evict other clients' entries.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::hash::{address_words, hash_words};
use crate::time::Instant;

/// Source-address affinity for a listener: new sessions from a client that
/// had a session within `timeout` go to the same backend, as long as that
/// backend is up and has a non-zero weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Affinity {
    /// How long after a client's last new session its backend is kept.
    pub timeout: Duration,
}

impl Default for Affinity {
    /// 300 seconds, ipvsadm's default persistence timeout.
    fn default() -> Affinity {
        Affinity {
            timeout: Duration::from_secs(300),
        }
    }
}

/// Entries per bucket.
const WAYS: usize = 8;
/// The largest capacity [`AffinityTable::new`] honours: 2^24 entries
/// (512 MiB).
pub(crate) const MAX_CAPACITY: u32 = 1 << 24;

/// One remembered choice. Fields are laid out to 32 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    expires: Instant,
    client: [u8; 16],
    backend: u32,
    listener: u16,
}

impl Entry {
    const VACANT: Entry = Entry {
        expires: Instant::ZERO,
        client: [0; 16],
        backend: 0,
        listener: 0,
    };

    fn is(&self, listener: u16, client: &[u8; 16]) -> bool {
        self.listener == listener && self.client == *client
    }
}

type Bucket = [Entry; WAYS];

/// Remembered (listener, client) -> backend choices with expiry, in a fixed
/// amount of memory.
#[derive(Debug, Clone)]
pub(crate) struct AffinityTable {
    buckets: Vec<Bucket>,
    seed: u64,
    /// Live entries replaced to make room for another key: a sign that the
    /// table is too small for the number of clients (or under attack).
    pub(crate) evictions: u64,
}

impl AffinityTable {
    /// A table for at least `capacity` entries (rounded up to a power of two
    /// number of 8-entry buckets, at least one bucket, at most
    /// [`MAX_CAPACITY`] entries), hashing under `seed`.
    pub(crate) fn new(capacity: u32, seed: u64) -> AffinityTable {
        let entries = usize::try_from(capacity.min(MAX_CAPACITY)).unwrap_or(usize::MAX);
        let buckets = entries.div_ceil(WAYS).max(1).next_power_of_two();
        AffinityTable {
            buckets: vec![[Entry::VACANT; WAYS]; buckets],
            seed,
            evictions: 0,
        }
    }

    /// The number of entries the table holds at most.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.buckets.len().saturating_mul(WAYS)
    }

    fn bucket_index(&self, listener: u16, client: &[u8; 16]) -> usize {
        let (lo, hi) = address_words(client);
        let h = hash_words(self.seed, &[lo, hi, u64::from(listener)]);
        // `buckets.len()` is a power of two; truncating the hash keeps its
        // low bits, which fmix64 has mixed as well as the high ones.
        (h as usize) & self.buckets.len().wrapping_sub(1)
    }

    /// The backend remembered for `client` on `listener`, if its entry has
    /// not expired. Does not extend the entry.
    pub(crate) fn lookup(&self, now: Instant, listener: u16, client: &[u8; 16]) -> Option<u32> {
        let bucket = self.buckets.get(self.bucket_index(listener, client))?;
        bucket
            .iter()
            .find(|e| e.is(listener, client))
            .filter(|e| now < e.expires)
            .map(|e| e.backend)
    }

    /// Remembers `backend` for `client` on `listener` until `now + timeout`,
    /// replacing the key's previous entry or, in a full bucket, the entry
    /// expiring soonest. A zero timeout forgets the key.
    pub(crate) fn insert(
        &mut self,
        now: Instant,
        listener: u16,
        client: &[u8; 16],
        backend: u32,
        timeout: Duration,
    ) {
        let index = self.bucket_index(listener, client);
        let Some(bucket) = self.buckets.get_mut(index) else {
            return;
        };
        let expires = now + timeout;
        let new = Entry {
            expires,
            client: *client,
            backend,
            listener,
        };
        if let Some(e) = bucket.iter_mut().find(|e| e.is(listener, client)) {
            *e = new;
            return;
        }
        if expires <= now {
            return; // would be dead on arrival
        }
        let Some(victim) = bucket.iter_mut().min_by_key(|e| e.expires) else {
            return;
        };
        if victim.expires > now {
            self.evictions = self.evictions.saturating_add(1);
        }
        *victim = new;
    }

    /// Forgets every entry of `listener` that points at `backend`.
    pub(crate) fn forget_backend(&mut self, listener: u16, backend: u32) {
        self.forget(|e| e.listener == listener && e.backend == backend);
    }

    /// Forgets every entry of `listener` (when the listener is removed).
    pub(crate) fn forget_listener(&mut self, listener: u16) {
        self.forget(|e| e.listener == listener);
    }

    fn forget(&mut self, mut matches: impl FnMut(&Entry) -> bool) {
        for e in self.buckets.iter_mut().flatten() {
            if e.expires != Instant::ZERO && matches(e) {
                *e = Entry::VACANT;
            }
        }
    }

    /// The number of live entries at `now` (O(capacity): for metrics and
    /// tests, not the data path).
    #[cfg(test)]
    pub(crate) fn len(&self, now: Instant) -> usize {
        self.buckets
            .iter()
            .flatten()
            .filter(|e| now < e.expires)
            .count()
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
        let mut x = [0u8; 16];
        x[..4].copy_from_slice(&[a, b, c, d]);
        x
    }

    const T: Duration = Duration::from_secs(60);

    #[test]
    fn entry_is_32_bytes_and_capacity_rounds_up() {
        assert_eq!(core::mem::size_of::<Entry>(), 32);
        assert_eq!(AffinityTable::new(0, 0).capacity(), 8);
        assert_eq!(AffinityTable::new(8, 0).capacity(), 8);
        assert_eq!(AffinityTable::new(9, 0).capacity(), 16);
        assert_eq!(AffinityTable::new(1000, 0).capacity(), 1024);
        assert_eq!(Affinity::default().timeout, Duration::from_secs(300));
    }

    #[test]
    fn same_client_same_backend_within_timeout_then_forgotten() {
        let mut t = AffinityTable::new(64, 7);
        let c = v4(192, 0, 2, 1);
        let t0 = Instant::from_secs(100);
        assert_eq!(t.lookup(t0, 1, &c), None);
        t.insert(t0, 1, &c, 3, T);
        assert_eq!(t.lookup(t0, 1, &c), Some(3));
        assert_eq!(t.lookup(Instant::from_secs(159), 1, &c), Some(3));
        // Another listener or another client does not share it.
        assert_eq!(t.lookup(t0, 2, &c), None);
        assert_eq!(t.lookup(t0, 1, &v4(192, 0, 2, 2)), None);
        // Expiry is exclusive: at `now + timeout` the entry is gone.
        assert_eq!(t.lookup(Instant::from_secs(160), 1, &c), None);
        assert_eq!(t.len(Instant::from_secs(160)), 0);
    }

    #[test]
    fn insert_refreshes_and_rebinds_and_zero_timeout_forgets() {
        let mut t = AffinityTable::new(64, 7);
        let c = v4(198, 51, 100, 7);
        t.insert(Instant::from_secs(0), 1, &c, 3, T);
        t.insert(Instant::from_secs(50), 1, &c, 3, T);
        assert_eq!(t.lookup(Instant::from_secs(100), 1, &c), Some(3));
        t.insert(Instant::from_secs(100), 1, &c, 5, T);
        assert_eq!(t.lookup(Instant::from_secs(101), 1, &c), Some(5));
        assert_eq!(t.len(Instant::from_secs(101)), 1, "one entry per key");
        t.insert(Instant::from_secs(102), 1, &c, 5, Duration::ZERO);
        assert_eq!(t.lookup(Instant::from_secs(102), 1, &c), None);
        assert_eq!(t.evictions, 0);
    }

    #[test]
    fn forget_backend_and_listener() {
        let mut t = AffinityTable::new(256, 1);
        let now = Instant::from_secs(1);
        for i in 0..30u8 {
            t.insert(now, 1, &v4(10, 0, 0, i), u32::from(i % 3), T);
            t.insert(now, 2, &v4(10, 0, 0, i), u32::from(i % 3), T);
        }
        t.forget_backend(1, 2);
        for i in 0..30u8 {
            let want = if i % 3 == 2 {
                None
            } else {
                Some(u32::from(i % 3))
            };
            assert_eq!(t.lookup(now, 1, &v4(10, 0, 0, i)), want);
            assert_eq!(t.lookup(now, 2, &v4(10, 0, 0, i)), Some(u32::from(i % 3)));
        }
        t.forget_listener(2);
        assert_eq!(t.len(now), 20);
    }

    #[test]
    fn stays_bounded_evicts_soonest_expiring_and_counts() {
        // One bucket of 8: the ninth client evicts the entry expiring first.
        let mut t = AffinityTable::new(8, 3);
        for i in 0..8u8 {
            t.insert(
                Instant::from_secs(u64::from(i)),
                1,
                &v4(10, 0, 0, i),
                u32::from(i),
                T,
            );
        }
        let now = Instant::from_secs(10);
        t.insert(now, 1, &v4(10, 0, 1, 0), 99, T);
        assert_eq!(t.evictions, 1);
        assert_eq!(t.lookup(now, 1, &v4(10, 0, 0, 0)), None, "oldest evicted");
        assert_eq!(t.lookup(now, 1, &v4(10, 0, 0, 1)), Some(1));
        assert_eq!(t.lookup(now, 1, &v4(10, 0, 1, 0)), Some(99));
        // An expired entry goes first, without counting an eviction: at
        // 62 s the entries inserted at 1 s and 2 s have expired.
        let later = Instant::from_secs(62);
        t.insert(later, 1, &v4(10, 0, 1, 1), 98, T);
        assert_eq!(t.evictions, 1);
        assert_eq!(t.len(later), 7); // 3..=7 s, 10 s and the new one

        // Many clients through a larger table: never more than capacity.
        let mut t = AffinityTable::new(1024, 9);
        let now = Instant::from_secs(5);
        for i in 0..5000u32 {
            let mut c = [0u8; 16];
            c[..4].copy_from_slice(&i.to_be_bytes());
            t.insert(now, 7, &c, i, T);
        }
        assert_eq!(t.len(now), 1024);
        assert_eq!(t.evictions, 5000 - 1024);
        // And the last client inserted is always found.
        let mut c = [0u8; 16];
        c[..4].copy_from_slice(&4999u32.to_be_bytes());
        assert_eq!(t.lookup(now, 7, &c), Some(4999));
    }

    #[test]
    fn ipv6_clients_and_seeds() {
        let mut a = AffinityTable::new(64, 1);
        let c: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let now = Instant::from_secs(1);
        a.insert(now, 0, &c, 4, T);
        assert_eq!(a.lookup(now, 0, &c), Some(4));
        // The all-zero address on listener 0 looks like a vacant entry's key
        // and still works.
        a.insert(now, 0, &[0; 16], 6, T);
        assert_eq!(a.lookup(now, 0, &[0; 16]), Some(6));
        // Different seeds place keys in different buckets.
        let b = AffinityTable::new(1 << 16, 2);
        let a = AffinityTable::new(1 << 16, 1);
        let differs = (0..64u8)
            .filter(|&i| a.bucket_index(0, &v4(1, 2, 3, i)) != b.bucket_index(0, &v4(1, 2, 3, i)));
        assert!(differs.count() > 50);
    }
}
