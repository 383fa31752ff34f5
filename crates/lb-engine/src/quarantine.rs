//! The quarantine: outbound tuples `(proto, lip, lport, rip, rport)` that
//! closed recently, held for a period so that the port allocator does not
//! hand them out again while the real server (RS) may still keep the old
//! connection in TIME-WAIT.
//!
//! # Why tuples are held
//!
//! FULLNAT rewrites both ends, so two unrelated clients that are given the
//! same `(lip, lport)` towards the same `(rip, rport)` are, to the RS, two
//! incarnations of one connection. The engine passes TCP timestamps through
//! untouched, and the second client's `TSval` comes from another clock: it
//! is as likely to be smaller than the old incarnation's as larger. A RS
//! that still holds the old connection in TIME-WAIT then refuses the new
//! SYN. RFC 6191 §2 lets it reuse the TIME-WAIT connection only "if [...]
//! the timestamp contained in the incoming SYN segment is greater than the
//! last timestamp seen on the previous incarnation of the connection";
//! "Otherwise, silently drop the incoming SYN segment, thus leaving the
//! previous incarnation of the connection in the TIME-WAIT state." And
//! RFC 7323 §5.3 (PAWS, R1): "If there is a Timestamps option in the
//! arriving segment, SEG.TSval < TS.Recent, TS.Recent is valid [...], then
//! treat the arriving segment as not acceptable". Stripping timestamps
//! avoids that at the cost the FAQ's CASE 2 describes; holding closed
//! tuples until TIME-WAIT has surely passed keeps them.
//!
//! The period is configuration (default 120 s in
//! [`LocalPool`](crate::lport::LocalPool)). 120 s covers Linux's fixed
//! 60 s TIME-WAIT with a margin; a RS that keeps the 2 × MSL of RFC 9293
//! (4 minutes) needs a longer period. At most [`MAX_PERIOD`] (1 hour).
//!
//! # What is stored
//!
//! Not the tuple (up to 40 bytes) but a 64-bit fingerprint of it and the
//! second at which it may be reused (a `u32` count of whole seconds on the
//! caller's clock, rounded **up**: a tuple is held for the period and at
//! most one second more, never less). Slots sit in buckets of four (48
//! bytes); every fingerprint has two candidate buckets (bucketised cuckoo
//! hashing), so `contains` reads at most two buckets and `insert` places a
//! tuple in either, moving older entries to their other bucket when both
//! are full (a breadth-first search over at most [`SEARCH`] buckets, without
//! allocating). The table has 1.25 slots per tuple of capacity, so it is at
//! most 80% full of held tuples:
//!
//! * memory: 12 bytes per slot × 1.25 = **15 bytes per tuple of capacity**,
//!   plus one 4-byte counter per second of the period (see
//!   [`Quarantine::memory_bytes`]);
//! * scale, honestly: 200,000 closes/s held for 120 s is 24 million tuples,
//!   about 360 MB. The capacity is configuration; size it as
//!   closes per second × period.
//!
//! A fingerprint collision between two tuples makes the quarantine answer
//! "held" for a tuple that is not (and a repeated insert of a colliding
//! tuple keeps the later expiry): the allocator then skips a free tuple,
//! which is the safe direction. A held tuple is never reported free. With
//! at most eight fingerprints compared per lookup, a false "held" has a
//! probability of about 2⁻⁶¹ per lookup.
//!
//! # Invariants
//!
//! * After `insert(now, t)` returns `true`, `contains(now', t)` is `true`
//!   for every `now'` before `now + period` (rounded up to a whole second),
//!   whatever is inserted afterwards.
//! * At most `capacity` tuples are held. `held` counts exactly the slots
//!   whose expiry is after the last second swept (see below).
//! * No allocation after construction; `insert` and `contains` do a bounded
//!   amount of work (two buckets for `contains`; at most [`SEARCH`] buckets
//!   for `insert`), plus, in `insert`, one step per second that the clock
//!   advanced since the previous insert (at most one per second of the
//!   period): O(1) amortised.
//!
//! # Lazy reclaim
//!
//! Expired entries are not removed: a slot whose expiry has passed is free,
//! and the next insert that looks at it overwrites it. So that the capacity
//! check is exact nonetheless, a wheel of per-second counters records how
//! many held tuples expire in each second; `insert` first takes the seconds
//! that have passed out of the count.
//!
//! # Degradation
//!
//! When `capacity` unexpired tuples are held, `insert` returns `false` and
//! holds nothing: the engine counts it (`quarantine_overflow`) and the tuple
//! may be handed out again at once, as a balancer without a quarantine would
//! (the RS may then drop the new SYN as above, until the client retries
//! after TIME-WAIT). Tuples already held stay held until their period ends.
//! `insert` also returns `false` in two cases that do not happen in
//! practice: when no slot can be freed by moving entries although fewer than
//! `capacity` tuples are held (at 80% load with a [`SEARCH`]-bucket search;
//! the tests fill tables to capacity without it), and when the caller's
//! clock reads more than 2³² seconds (136 years) after its epoch.
//!
//! The caller's clock must be monotonic; an `insert` with an earlier `now`
//! than a previous one holds the tuple from the latest `now` seen instead
//! (longer: the safe direction).

use alloc::collections::TryReserveError;
use alloc::vec::Vec;
use core::mem::size_of;
use core::time::Duration;

use crate::lport::LocalTuple;
use crate::time::Instant;

/// The longest period a quarantine holds a tuple; longer ones are clamped.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(3600);

/// Slots per bucket.
const SLOTS: usize = 4;

/// Buckets visited at most by one insert's search for a free slot: the two
/// candidate buckets, the (up to) 8 buckets their entries could move to,
/// and 32 of the next level. Each bucket is visited once.
const SEARCH: usize = 42;

/// Marks a search step with no parent (one of the two candidate buckets).
const ROOT: usize = usize::MAX;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A [`Quarantine`] at one time that may hold tuples: what
/// [`Quarantine::at`] returns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeldAt<'a> {
    quarantine: &'a Quarantine,
    now_secs: u64,
}

impl HeldAt<'_> {
    /// [`Quarantine::contains`] at this time.
    #[inline]
    pub(crate) fn contains(&self, tuple: &LocalTuple) -> bool {
        self.quarantine.holds(self.now_secs, tuple)
    }
}

/// Four slots: fingerprints and expiry seconds side by side (48 bytes, no
/// padding). A slot whose expiry is not after the current second is free.
#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    fingerprints: [u64; SLOTS],
    expiries: [u32; SLOTS],
}

impl Bucket {
    /// Whether this bucket holds `fp` unexpired at second `now_secs`.
    fn holds(&self, fp: u64, now_secs: u64) -> bool {
        self.fingerprints
            .iter()
            .zip(&self.expiries)
            .any(|(&f, &e)| f == fp && u64::from(e) > now_secs)
    }

    /// The first free (empty or expired) slot.
    fn free_slot(&self, now_secs: u64) -> Option<usize> {
        self.expiries.iter().position(|&e| u64::from(e) <= now_secs)
    }

    fn slot(&self, slot: usize) -> Option<(u64, u32)> {
        Some((*self.fingerprints.get(slot)?, *self.expiries.get(slot)?))
    }

    fn set(&mut self, slot: usize, fp: u64, expiry: u32) {
        if let (Some(f), Some(e)) = (self.fingerprints.get_mut(slot), self.expiries.get_mut(slot)) {
            *f = fp;
            *e = expiry;
        }
    }
}

/// One bucket visited by the search for a free slot, and how it was
/// reached: the entry in `slot` of the parent step's bucket may move here.
#[derive(Debug, Clone, Copy)]
struct Step {
    bucket: usize,
    parent: usize,
    slot: usize,
}

/// A bounded set of recently closed outbound tuples, each held until its
/// close time plus the period. See the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Quarantine {
    buckets: Vec<Bucket>,
    /// `wheel[s % len]`: held tuples whose expiry second is `s`, for the
    /// seconds after `swept_secs` (one counter per second of the period,
    /// plus three).
    wheel: Vec<u32>,
    capacity: u32,
    /// Tuples held as of `swept_secs`.
    held: u32,
    period: Duration,
    /// The latest `now` seen by `insert`.
    latest: Instant,
    /// Every tuple whose expiry second is at most this has been taken out
    /// of `held`.
    swept_secs: u64,
    /// The latest expiry second written into any slot (0 before the first
    /// hold): no slot holds a tuple at a second at or after it, so
    /// `contains` answers without a fingerprint or a bucket read then.
    last_expiry: u32,
}

impl Quarantine {
    /// A quarantine that holds up to `capacity` tuples, each for `period`
    /// (clamped to [`MAX_PERIOD`]; zero disables it: nothing is held and
    /// every insert succeeds). Allocates all its memory now.
    ///
    /// Like any `Vec`, aborts if the memory cannot be had (and panics if its
    /// size overflows `usize`, on 32-bit targets); see
    /// [`Quarantine::try_with_capacity`].
    #[cfg(test)]
    pub(crate) fn with_capacity(capacity: u32, period: Duration) -> Quarantine {
        let period = period.min(MAX_PERIOD);
        let (buckets, wheel) = sizes(capacity, period);
        Quarantine::from_parts(
            alloc::vec![Bucket::default(); buckets],
            alloc::vec![0; wheel],
            capacity,
            period,
        )
    }

    /// As [`Quarantine::with_capacity`], but fails instead of aborting when
    /// the memory cannot be had.
    pub(crate) fn try_with_capacity(
        capacity: u32,
        period: Duration,
    ) -> Result<Quarantine, TryReserveError> {
        let period = period.min(MAX_PERIOD);
        let (buckets, wheel) = sizes(capacity, period);
        let mut bucket_vec = Vec::new();
        bucket_vec.try_reserve_exact(buckets)?;
        bucket_vec.resize(buckets, Bucket::default());
        let mut wheel_vec = Vec::new();
        wheel_vec.try_reserve_exact(wheel)?;
        wheel_vec.resize(wheel, 0);
        Ok(Quarantine::from_parts(
            bucket_vec, wheel_vec, capacity, period,
        ))
    }

    fn from_parts(
        buckets: Vec<Bucket>,
        wheel: Vec<u32>,
        capacity: u32,
        period: Duration,
    ) -> Quarantine {
        Quarantine {
            buckets,
            wheel,
            capacity,
            held: 0,
            period,
            latest: Instant::ZERO,
            swept_secs: 0,
            last_expiry: 0,
        }
    }

    /// Holds `tuple`, closed at `now`, until `now + period` (rounded up to a
    /// whole second). Returns `false` when it cannot be held (the
    /// quarantine is full of unexpired tuples; see the module
    /// documentation): the caller counts that, and nothing held changes. A
    /// tuple already held has its expiry extended and takes no more room.
    pub(crate) fn insert(&mut self, now: Instant, tuple: &LocalTuple) -> bool {
        if self.period.is_zero() {
            return true;
        }
        self.hold(now, fingerprint(tuple), self.period)
    }

    /// Holds the tuple whose fingerprint is `fp` from `now` for `remaining`
    /// (at most the period), as [`Quarantine::insert`] does: the import of
    /// an exported entry (see [`Quarantine::held`]). Fingerprints do not
    /// depend on the engine's hash seed nor on the quarantine's size, so an
    /// entry moves between any two quarantines. `false` when the quarantine
    /// is off (a zero period) or cannot hold it.
    pub(crate) fn restore(&mut self, now: Instant, fp: u64, remaining: Duration) -> bool {
        !self.period.is_zero() && self.hold(now, fp, remaining.min(self.period))
    }

    /// The fingerprints held at `now` and how long each is still held,
    /// rounded up to a millisecond: what [`Quarantine::restore`] takes.
    pub(crate) fn held(&self, now: Instant) -> impl Iterator<Item = (u64, Duration)> + '_ {
        let now_secs = now.as_nanos() / NANOS_PER_SEC;
        self.buckets.iter().flat_map(move |bucket| {
            bucket
                .fingerprints
                .iter()
                .zip(&bucket.expiries)
                .filter(move |&(_, &e)| u64::from(e) > now_secs)
                .map(move |(&fp, &e)| {
                    let left = (u128::from(e) * u128::from(NANOS_PER_SEC))
                        .saturating_sub(u128::from(now.as_nanos()));
                    let ms = u64::try_from(left.div_ceil(1_000_000)).unwrap_or(u64::MAX);
                    (fp, Duration::from_millis(ms))
                })
        })
    }

    /// Holds `fp` from `now` for `period` (not zero, at most the
    /// quarantine's own).
    fn hold(&mut self, now: Instant, fp: u64, period: Duration) -> bool {
        let now = now.max(self.latest);
        self.latest = now;
        let now_secs = now.as_nanos() / NANOS_PER_SEC;
        self.sweep(now_secs);
        let Some(expiry) = expiry_secs(now, period) else {
            return false;
        };
        // Before any slot can take `expiry` (extended, placed or moved).
        self.last_expiry = self.last_expiry.max(expiry);
        let (first, second) = self.candidates(fp);
        if self.extend(first, fp, now_secs, expiry) || self.extend(second, fp, now_secs, expiry) {
            return true;
        }
        if self.held >= self.capacity || !self.place(first, second, fp, now_secs, expiry) {
            return false;
        }
        self.held = self.held.saturating_add(1);
        if let Some(count) = wheel_slot(&mut self.wheel, expiry) {
            *count = count.saturating_add(1);
        }
        true
    }

    /// Whether `tuple` is held at `now`. Never `false` for a tuple that an
    /// `insert` that returned `true` still holds; `true` for another tuple
    /// only on a fingerprint collision.
    ///
    /// Nothing is held at or after the latest expiry ever written (always
    /// so when the quarantine is off or has held nothing): that answer
    /// costs one comparison ([`Quarantine::at`]), before the fingerprint
    /// is computed. The allocator asks `at` once per search and the
    /// answer about each tuple it looks at.
    #[cfg(test)]
    pub(crate) fn contains(&self, now: Instant, tuple: &LocalTuple) -> bool {
        self.at(now).is_some_and(|held| held.contains(tuple))
    }

    /// The quarantine as of `now`, for asking about many tuples at that
    /// time; `None` when nothing is held at `now`: at or after the latest
    /// expiry ever written.
    #[inline]
    pub(crate) fn at(&self, now: Instant) -> Option<HeldAt<'_>> {
        let now_secs = now.as_nanos() / NANOS_PER_SEC;
        (now_secs < u64::from(self.last_expiry)).then_some(HeldAt {
            quarantine: self,
            now_secs,
        })
    }

    /// [`Quarantine::contains`] past its first comparison.
    #[inline(never)]
    fn holds(&self, now_secs: u64, tuple: &LocalTuple) -> bool {
        let fp = fingerprint(tuple);
        let (first, second) = self.candidates(fp);
        [first, second].into_iter().any(|index| {
            self.buckets
                .get(index)
                .is_some_and(|bucket| bucket.holds(fp, now_secs))
        })
    }

    /// Tuples held as of the latest `insert`. Tuples that expired since are
    /// still counted until the next `insert` reclaims them.
    pub(crate) fn len(&self) -> u32 {
        self.held
    }

    /// Whether [`Quarantine::len`] is zero.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// The most tuples held at once.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u32 {
        self.capacity
    }

    /// How long a tuple is held (after clamping).
    #[cfg(test)]
    pub(crate) fn period(&self) -> Duration {
        self.period
    }

    /// Bytes this quarantine occupies, its own size included: 15 per tuple
    /// of capacity (48-byte buckets of four slots, 1.25 slots per tuple)
    /// plus 4 per second of the period.
    pub(crate) fn memory_bytes(&self) -> usize {
        size_of::<Quarantine>()
            .saturating_add(self.buckets.capacity().saturating_mul(size_of::<Bucket>()))
            .saturating_add(self.wheel.capacity().saturating_mul(size_of::<u32>()))
    }

    /// Takes the tuples that expired in the seconds up to `now_secs` out of
    /// `held`.
    fn sweep(&mut self, now_secs: u64) {
        if now_secs <= self.swept_secs {
            return;
        }
        let span = self.wheel.len() as u64;
        if now_secs - self.swept_secs >= span {
            // Every held tuple expires within the span: all are gone.
            self.wheel.fill(0);
            self.held = 0;
        } else {
            for second in self.swept_secs + 1..=now_secs {
                if let Some(count) = second
                    .checked_rem(span)
                    .and_then(|i| self.wheel.get_mut(usize::try_from(i).ok()?))
                {
                    self.held = self.held.saturating_sub(*count);
                    *count = 0;
                }
            }
        }
        self.swept_secs = now_secs;
    }

    /// If `bucket` holds `fp` unexpired, extends its expiry to `expiry`
    /// (when later) and returns `true`.
    fn extend(&mut self, bucket: usize, fp: u64, now_secs: u64, expiry: u32) -> bool {
        let Some(bucket) = self.buckets.get_mut(bucket) else {
            return false;
        };
        for (&f, e) in bucket.fingerprints.iter().zip(bucket.expiries.iter_mut()) {
            if f == fp && u64::from(*e) > now_secs {
                if *e < expiry {
                    if let Some(count) = wheel_slot(&mut self.wheel, *e) {
                        *count = count.saturating_sub(1);
                    }
                    if let Some(count) = wheel_slot(&mut self.wheel, expiry) {
                        *count = count.saturating_add(1);
                    }
                    *e = expiry;
                }
                return true;
            }
        }
        false
    }

    /// Writes `(fp, expiry)` into a free slot of `first` or `second`, first
    /// moving held entries to their other bucket if both are full. A
    /// breadth-first search over at most [`SEARCH`] buckets finds the
    /// nearest free slot; the moves then run from that slot back to a
    /// candidate bucket, so no held entry is ever dropped. `false` if no
    /// free slot is found.
    fn place(&mut self, first: usize, second: usize, fp: u64, now_secs: u64, expiry: u32) -> bool {
        let mut steps = [Step {
            bucket: 0,
            parent: ROOT,
            slot: 0,
        }; SEARCH];
        let mut len = 0;
        for root in [first, second] {
            if !steps.iter().take(len).any(|s| s.bucket == root)
                && let Some(step) = steps.get_mut(len)
            {
                step.bucket = root;
                len += 1;
            }
        }
        let mut next = 0;
        while let Some(&step) = steps.get(next).filter(|_| next < len) {
            let Some(&bucket) = self.buckets.get(step.bucket) else {
                return false;
            };
            if let Some(free) = bucket.free_slot(now_secs) {
                return self.shift(&steps, next, free, fp, expiry);
            }
            for (slot, &held_fp) in bucket.fingerprints.iter().enumerate() {
                let (a, b) = self.candidates(held_fp);
                let other = if a == step.bucket { b } else { a };
                if len < SEARCH
                    && !steps.iter().take(len).any(|s| s.bucket == other)
                    && let Some(new) = steps.get_mut(len)
                {
                    *new = Step {
                        bucket: other,
                        parent: next,
                        slot,
                    };
                    len += 1;
                }
            }
            next += 1;
        }
        false
    }

    /// Moves entries along the search path that ends in slot `free` of
    /// `steps[at]`'s bucket, then writes the new entry into the slot freed
    /// in a candidate bucket.
    fn shift(
        &mut self,
        steps: &[Step],
        mut at: usize,
        mut free: usize,
        fp: u64,
        expiry: u32,
    ) -> bool {
        // Each step moves one level up; a path is at most `SEARCH` long.
        for _ in 0..SEARCH {
            let Some(&step) = steps.get(at) else {
                return false;
            };
            if step.parent == ROOT {
                if let Some(bucket) = self.buckets.get_mut(step.bucket) {
                    bucket.set(free, fp, expiry);
                    return true;
                }
                return false;
            }
            let Some(&parent) = steps.get(step.parent) else {
                return false;
            };
            let Some((moved_fp, moved_expiry)) = self
                .buckets
                .get(parent.bucket)
                .and_then(|bucket| bucket.slot(step.slot))
            else {
                return false;
            };
            if let Some(bucket) = self.buckets.get_mut(step.bucket) {
                bucket.set(free, moved_fp, moved_expiry);
            }
            free = step.slot;
            at = step.parent;
        }
        false
    }

    /// The two candidate buckets of a fingerprint (equal with probability
    /// 1 / buckets).
    fn candidates(&self, fp: u64) -> (usize, usize) {
        let n = self.buckets.len() as u64;
        (reduce(fp, n), reduce(mix64(fp ^ 0x5851_F42D_4C95_7F2D), n))
    }
}

/// Buckets and wheel length for a capacity and (clamped) period.
fn sizes(capacity: u32, period: Duration) -> (usize, usize) {
    if period.is_zero() {
        return (0, 0);
    }
    let slots = u64::from(capacity) + u64::from(capacity).div_ceil(4);
    let buckets = usize::try_from(slots.div_ceil(SLOTS as u64)).unwrap_or(usize::MAX);
    // After a sweep to second `s`, held expiries lie in
    // `(s, s + period.as_secs() + 2]` (both the close time and the period
    // round up): counters for that many distinct seconds, and one spare.
    let wheel = usize::try_from(period.as_secs())
        .unwrap_or(usize::MAX)
        .saturating_add(3);
    (buckets, wheel)
}

/// The second from which a tuple closed at `now` may be reused:
/// `ceil(now + period)`, or `None` past `u32::MAX` seconds.
fn expiry_secs(now: Instant, period: Duration) -> Option<u32> {
    let end = u128::from(now.as_nanos()) + period.as_nanos();
    u32::try_from(end.div_ceil(u128::from(NANOS_PER_SEC))).ok()
}

/// The wheel counter of expiry second `second`.
fn wheel_slot(wheel: &mut [u32], second: u32) -> Option<&mut u32> {
    let index = u64::from(second).checked_rem(wheel.len() as u64)?;
    wheel.get_mut(usize::try_from(index).ok()?)
}

/// Maps a 64-bit hash onto `0..n` (Lemire's multiply-shift reduction).
fn reduce(hash: u64, n: u64) -> usize {
    usize::try_from((u128::from(hash) * u128::from(n)) >> 64).unwrap_or(0)
}

/// The 64-bit finaliser of MurmurHash3: a bijection that mixes every input
/// bit into every output bit.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

/// An address as a family bit and 128 bits (IPv4 in the low 32).
pub(crate) fn address_bits(address: core::net::IpAddr) -> (u64, u128) {
    match address {
        core::net::IpAddr::V4(v4) => (0, u128::from(v4.to_bits())),
        core::net::IpAddr::V6(v6) => (1, v6.to_bits()),
    }
}

/// The 64-bit fingerprint of a tuple: its five fields packed into five
/// 64-bit words, each folded in through the [`mix64`] bijection. Tuples
/// that differ only in the last word never collide; others collide with a
/// probability of about 2⁻⁶⁴. An IPv4 address and its IPv4-mapped IPv6
/// form differ (the family is part of the first word).
#[inline(always)]
pub(crate) fn fingerprint(tuple: &LocalTuple) -> u64 {
    let (lip_family, lip) = address_bits(tuple.lip);
    let (rip_family, rip) = address_bits(tuple.rip);
    let head = u64::from(tuple.proto) << 40
        | lip_family << 33
        | rip_family << 32
        | u64::from(tuple.lport) << 16
        | u64::from(tuple.rport);
    [
        head,
        (lip >> 64) as u64,
        lip as u64,
        (rip >> 64) as u64,
        rip as u64,
    ]
    .into_iter()
    .fold(0x9E37_79B9_7F4A_7C15, |hash, word| mix64(hash ^ word))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;
    use alloc::collections::BTreeMap;
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const TCP: u8 = 6;

    /// Distinct tuples for distinct `i`: the LIP and port vary, the RS is
    /// fixed.
    fn tuple(i: u32) -> LocalTuple {
        LocalTuple {
            proto: TCP,
            lip: IpAddr::V4(Ipv4Addr::from_bits(0x0A00_0000 | (i >> 16))),
            lport: (i & 0xFFFF) as u16,
            rip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            rport: 80,
        }
    }

    fn random_tuple(rng: &mut Rng) -> LocalTuple {
        let x = rng.next();
        let y = rng.next();
        let v6 = x & 1 == 1;
        let lip = if v6 {
            IpAddr::V6(Ipv6Addr::from_bits(u128::from(y) << 64 | u128::from(x)))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(y as u32))
        };
        let rip = if v6 {
            IpAddr::V6(Ipv6Addr::from_bits(
                u128::from(x) << 64 | u128::from(y >> 3),
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits((y >> 32) as u32))
        };
        LocalTuple {
            proto: if x & 2 == 0 { 6 } else { 17 },
            lip,
            lport: (x >> 16) as u16,
            rip,
            rport: (x >> 32) as u16,
        }
    }

    /// The invariant behind `held`: it counts the slots whose expiry is
    /// after the last swept second.
    fn count_held_slots(q: &Quarantine) -> u32 {
        q.buckets
            .iter()
            .flat_map(|b| b.expiries.iter())
            .filter(|&&e| u64::from(e) > q.swept_secs)
            .count() as u32
    }

    #[test]
    fn holds_for_the_period_and_not_longer_than_a_second_more() {
        let mut q = Quarantine::with_capacity(16, Duration::from_secs(120));
        let t = tuple(1);
        assert!(!q.contains(Instant::from_secs(10), &t));
        assert!(q.insert(Instant::from_secs(10), &t));
        assert_eq!(q.len(), 1);
        assert!(q.contains(Instant::from_secs(10), &t));
        assert!(q.contains(Instant::from_nanos(129_999_999_999), &t));
        assert!(!q.contains(Instant::from_secs(130), &t));
        assert!(!q.contains(Instant::from_secs(10), &tuple(2)));

        // A close in the middle of a second is held until the next whole
        // second after the period: never shorter.
        let u = tuple(3);
        assert!(q.insert(Instant::from_millis(20_500), &u));
        assert!(q.contains(Instant::from_millis(140_500), &u));
        assert!(q.contains(Instant::from_millis(140_999), &u));
        assert!(!q.contains(Instant::from_secs(141), &u));
    }

    /// `contains` without the shortcut on the latest expiry: the two
    /// buckets read.
    fn contains_by_buckets(q: &Quarantine, now: Instant, t: &LocalTuple) -> bool {
        let now_secs = now.as_nanos() / NANOS_PER_SEC;
        let fp = fingerprint(t);
        let (first, second) = q.candidates(fp);
        [first, second]
            .into_iter()
            .any(|i| q.buckets.get(i).is_some_and(|b| b.holds(fp, now_secs)))
    }

    #[test]
    fn the_latest_expiry_shortcut_agrees_with_the_buckets() {
        let mut q = Quarantine::with_capacity(64, Duration::from_secs(5));
        let mut rng = Rng(7);
        let mut now_ms = 0u64;
        for step in 0..4000u32 {
            now_ms += rng.next() % 700;
            let now = Instant::from_millis(now_ms);
            let t = tuple((rng.next() % 96) as u32);
            if step % 3 == 0 {
                q.insert(now, &t);
            }
            // Also asked at earlier and later times than the inserts.
            for at in [
                now,
                Instant::from_millis(now_ms.saturating_sub(3_000)),
                Instant::from_millis(now_ms + 4_500),
            ] {
                assert_eq!(
                    q.contains(at, &t),
                    contains_by_buckets(&q, at, &t),
                    "step {step}"
                );
            }
        }
        // Long after every expiry: nothing is held, by either answer.
        let later = Instant::from_millis(now_ms + 6_000);
        assert!(
            (0..96).all(
                |i| !q.contains(later, &tuple(i)) && !contains_by_buckets(&q, later, &tuple(i))
            )
        );
        // Off: nothing is ever held.
        let mut off = Quarantine::with_capacity(16, Duration::ZERO);
        assert!(off.insert(Instant::from_secs(1), &tuple(1)));
        assert!(!off.contains(Instant::from_secs(1), &tuple(1)));
    }

    #[test]
    fn fingerprint_tells_every_field_apart() {
        let base = LocalTuple {
            proto: TCP,
            lip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            lport: 40000,
            rip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            rport: 80,
        };
        let variants = [
            LocalTuple { proto: 17, ..base },
            LocalTuple {
                lip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                ..base
            },
            LocalTuple {
                lip: IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()),
                ..base
            },
            LocalTuple {
                lport: 40001,
                ..base
            },
            LocalTuple {
                rip: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 2)),
                ..base
            },
            LocalTuple {
                rip: IpAddr::V6(Ipv4Addr::new(10, 1, 0, 1).to_ipv6_mapped()),
                ..base
            },
            LocalTuple { rport: 81, ..base },
            // Ports swapped.
            LocalTuple {
                lport: 80,
                rport: 40000,
                ..base
            },
            // Addresses swapped.
            LocalTuple {
                lip: base.rip,
                rip: base.lip,
                ..base
            },
        ];
        let mut q = Quarantine::with_capacity(16, Duration::from_secs(60));
        assert!(q.insert(Instant::ZERO, &base));
        for v in &variants {
            assert_ne!(fingerprint(v), fingerprint(&base), "{v:?}");
            assert!(!q.contains(Instant::ZERO, v), "{v:?}");
        }
        assert_eq!(fingerprint(&base), fingerprint(&base.clone()));
    }

    #[test]
    fn full_refuses_and_keeps_what_it_holds() {
        let period = Duration::from_secs(120);
        let mut q = Quarantine::with_capacity(100, period);
        for i in 0..100 {
            assert!(q.insert(Instant::from_secs(1), &tuple(i)), "insert {i}");
        }
        assert_eq!(q.len(), 100);
        // Full of unexpired tuples: refused, counted by the caller.
        for i in 100..150 {
            assert!(!q.insert(Instant::from_secs(60), &tuple(i)));
            assert!(!q.contains(Instant::from_secs(60), &tuple(i)));
        }
        assert_eq!(q.len(), 100);
        for i in 0..100 {
            assert!(q.contains(Instant::from_secs(120), &tuple(i)), "held {i}");
        }
        // Re-inserting a held tuple needs no room and extends it.
        assert!(q.insert(Instant::from_secs(100), &tuple(7)));
        assert_eq!(q.len(), 100);
        assert!(q.contains(Instant::from_secs(219), &tuple(7)));
        assert!(!q.contains(Instant::from_secs(219), &tuple(8)));
        assert_eq!(count_held_slots(&q), 100);
    }

    #[test]
    fn expired_entries_are_reclaimed_lazily() {
        let mut q = Quarantine::with_capacity(100, Duration::from_secs(120));
        for i in 0..100 {
            assert!(q.insert(Instant::from_secs(1), &tuple(i)));
        }
        assert!(!q.insert(Instant::from_secs(120), &tuple(1000)));
        // At 121 s the first hundred have expired: room for a new hundred.
        for i in 1000..1100 {
            assert!(q.insert(Instant::from_secs(121), &tuple(i)), "insert {i}");
        }
        assert_eq!(q.len(), 100);
        assert!(!q.insert(Instant::from_secs(121), &tuple(2000)));
        for i in 0..100 {
            assert!(!q.contains(Instant::from_secs(121), &tuple(i)));
        }
        for i in 1000..1100 {
            assert!(q.contains(Instant::from_secs(240), &tuple(i)));
        }
        assert_eq!(count_held_slots(&q), 100);
    }

    #[test]
    fn steady_churn_keeps_an_exact_count() {
        // 10 closes a second for 120 s fill a capacity of 1200 exactly;
        // from then on, each second frees as many as it adds.
        let mut q = Quarantine::with_capacity(1200, Duration::from_secs(120));
        let mut next = 0;
        for second in 0..600u64 {
            for _ in 0..10 {
                assert!(
                    q.insert(Instant::from_secs(second), &tuple(next)),
                    "at {second}"
                );
                next += 1;
            }
            assert_eq!(q.len(), (10 * (second + 1)).min(1200) as u32);
            assert_eq!(count_held_slots(&q), q.len());
        }
        // One more in the last second does not fit.
        assert!(!q.insert(Instant::from_secs(599), &tuple(next)));
    }

    #[test]
    fn fills_to_capacity_without_refusing() {
        // Random fingerprints, one insert per tuple of capacity: the cuckoo
        // moves must find room for every one (80% of the slots).
        for (capacity, seed) in [(1, 1), (3, 2), (17, 3), (1000, 4), (20_000, 5)] {
            let mut q = Quarantine::with_capacity(capacity, Duration::from_secs(120));
            let mut rng = Rng(seed);
            let tuples: Vec<LocalTuple> = (0..capacity).map(|_| random_tuple(&mut rng)).collect();
            for (i, t) in tuples.iter().enumerate() {
                assert!(
                    q.insert(Instant::from_secs(5), t),
                    "capacity {capacity}, insert {i}"
                );
            }
            assert_eq!(q.len(), capacity);
            for t in &tuples {
                assert!(q.contains(Instant::from_secs(5), t));
            }
            assert!(!q.insert(Instant::from_secs(5), &random_tuple(&mut rng)));
            assert_eq!(count_held_slots(&q), capacity);
        }
    }

    #[test]
    fn contains_is_never_false_for_a_held_tuple() {
        // A model of what must be held, against random inserts with a
        // clock that moves forward in random steps; tuples come from a
        // small set so that re-inserts (extensions) happen.
        let period = Duration::from_secs(30);
        let mut q = Quarantine::with_capacity(500, period);
        let mut rng = Rng(42);
        let pool: Vec<LocalTuple> = (0..800).map(|_| random_tuple(&mut rng)).collect();
        let mut model: BTreeMap<LocalTuple, Instant> = BTreeMap::new();
        let mut now = Instant::from_secs(1_000);
        let mut refused = 0;
        for round in 0..20_000 {
            now = now + Duration::from_millis(rng.next() % 40);
            let t = pool[(rng.next() % pool.len() as u64) as usize];
            let live = model.values().filter(|&&until| until > now).count();
            let already = model.get(&t).is_some_and(|&until| until > now);
            if q.insert(now, &t) {
                let expiry = expiry_secs(now, period).unwrap();
                model.insert(t, Instant::from_secs(u64::from(expiry)));
            } else {
                // Refused only when full of unexpired tuples.
                assert!(!already, "round {round}: a held tuple was refused");
                assert_eq!(live, 500, "round {round}: refused below capacity");
                refused += 1;
            }
            if round % 97 == 0 {
                for (t, &until) in &model {
                    if until > now {
                        assert!(q.contains(now, t), "round {round}: held tuple not found");
                    }
                }
                assert_eq!(count_held_slots(&q), q.len());
            }
        }
        assert!(refused > 0, "the test should reach capacity");
        // No false positives among tuples never inserted.
        for _ in 0..10_000 {
            let t = random_tuple(&mut rng);
            assert!(!model.contains_key(&t));
            assert!(!q.contains(now, &t));
        }
    }

    #[test]
    fn a_clock_jump_past_the_period_frees_everything() {
        let mut q = Quarantine::with_capacity(10, Duration::from_secs(120));
        for i in 0..10 {
            assert!(q.insert(Instant::from_secs(3), &tuple(i)));
        }
        assert!(q.insert(Instant::from_secs(36_000), &tuple(100)));
        assert_eq!(q.len(), 1);
        assert!(!q.contains(Instant::from_secs(36_000), &tuple(0)));
        assert_eq!(count_held_slots(&q), 1);
    }

    #[test]
    fn an_earlier_now_holds_from_the_latest_now() {
        let mut q = Quarantine::with_capacity(10, Duration::from_secs(120));
        assert!(q.insert(Instant::from_secs(100), &tuple(0)));
        assert!(q.insert(Instant::from_secs(50), &tuple(1)));
        assert!(q.contains(Instant::from_secs(219), &tuple(1)));
        assert!(!q.contains(Instant::from_secs(220), &tuple(1)));
    }

    #[test]
    fn zero_period_holds_nothing_and_zero_capacity_refuses() {
        let mut off = Quarantine::with_capacity(1000, Duration::ZERO);
        assert!(off.insert(Instant::from_secs(1), &tuple(0)));
        assert!(!off.contains(Instant::from_secs(1), &tuple(0)));
        assert!(off.is_empty());
        assert!(off.memory_bytes() <= size_of::<Quarantine>());

        let mut none = Quarantine::with_capacity(0, Duration::from_secs(120));
        assert!(!none.insert(Instant::from_secs(1), &tuple(0)));
        assert!(!none.contains(Instant::from_secs(1), &tuple(0)));
    }

    #[test]
    fn clock_past_u32_seconds_refuses() {
        let mut q = Quarantine::with_capacity(10, Duration::from_secs(120));
        let late = Instant::from_secs(u64::from(u32::MAX) - 60);
        assert!(!q.insert(late, &tuple(0)));
        assert!(q.is_empty());
    }

    #[test]
    fn period_is_clamped_and_memory_is_as_published() {
        let q = Quarantine::with_capacity(1000, Duration::from_secs(1_000_000));
        assert_eq!(q.period(), MAX_PERIOD);
        assert_eq!(q.capacity(), 1000);

        assert_eq!(size_of::<Bucket>(), 48);
        for capacity in [1_000u32, 100_000, 1 << 20] {
            let q = Quarantine::with_capacity(capacity, Duration::from_secs(120));
            let per_tuple =
                (q.memory_bytes() - size_of::<Quarantine>() - 4 * 123) as f64 / f64::from(capacity);
            assert!(
                per_tuple <= 15.05,
                "{capacity}: {per_tuple} bytes per tuple"
            );
        }
        let fallible = Quarantine::try_with_capacity(1000, Duration::from_secs(120)).unwrap();
        assert_eq!(
            fallible.memory_bytes(),
            Quarantine::with_capacity(1000, Duration::from_secs(120)).memory_bytes()
        );
    }

    /// Entries exported from one quarantine and restored into another of
    /// another size and period keep every tuple held for what was left of
    /// it (cut to the new period), never less; a smaller one takes what
    /// fits; one that is off takes nothing.
    #[test]
    fn held_entries_move_to_another_quarantine() {
        let mut old = Quarantine::with_capacity(100, Duration::from_secs(120));
        for i in 0..50 {
            // Closed at 10.000 s, 10.250 s, ...: held until 131 s .. 143 s.
            assert!(old.insert(Instant::from_millis(10_000 + 250 * u64::from(i)), &tuple(i)));
        }
        let now = Instant::from_millis(30_400);
        let held: Vec<(u64, Duration)> = old.held(now).collect();
        assert_eq!(held.len(), 50);
        // Tuple 0 is held until second 130 (10 s + 120 s): 99.6 s left.
        let first = held.iter().find(|&&(fp, _)| fp == fingerprint(&tuple(0)));
        assert_eq!(first.map(|&(_, d)| d), Some(Duration::from_millis(99_600)));

        // Restored 5 s later into a larger quarantine: held as long.
        let later = Instant::from_secs(35);
        let mut same = Quarantine::with_capacity(1000, Duration::from_secs(120));
        for &(fp, left) in &held {
            assert!(same.restore(later, fp, left));
        }
        assert_eq!(same.len(), 50);
        for i in 0..50 {
            // The old quarantine held it until the whole second after the
            // period.
            let end = Instant::from_secs((10_000 + 250 * u64::from(i) + 120_000).div_ceil(1000));
            let left = end.saturating_duration_since(now);
            assert!(same.contains(later + (left - Duration::from_nanos(1)), &tuple(i)));
            assert!(!same.contains(later + left + Duration::from_secs(1), &tuple(i)));
        }

        // A shorter period cuts what is left; a smaller capacity takes what fits.
        let mut short = Quarantine::with_capacity(10, Duration::from_secs(30));
        let restored = held
            .iter()
            .filter(|&&(fp, left)| short.restore(later, fp, left))
            .count();
        assert_eq!((restored, short.len()), (10, 10));
        let kept = (0..50)
            .filter(|&i| short.contains(later, &tuple(i)))
            .count();
        assert_eq!(kept, 10);
        assert!((0..50).all(|i| !short.contains(Instant::from_secs(66), &tuple(i))));

        let mut off = Quarantine::with_capacity(10, Duration::ZERO);
        assert!(!off.restore(later, fingerprint(&tuple(0)), Duration::from_secs(1)));
        assert_eq!(off.held(later).count(), 0);
    }
}
