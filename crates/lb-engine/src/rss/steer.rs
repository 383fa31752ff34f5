//! RSS-aware local ports: for a reply `rip:rport -> lip:lport` whose other
//! fields are fixed, the local ports that make the NIC's hash of the reply
//! select a given queue, enumerated directly rather than searched for.
//!
//! # How
//!
//! The Toeplitz hash is linear over GF(2), so the reply's hash is the hash
//! of its fields with `lport = 0` (the [`ReplyKey`], one hash per new
//! session) XOR the hash of the port bits alone. Only the hash's low `m`
//! bits matter (the indirection table has `2^m` entries), and on them the
//! port acts through a linear map `A` from 16 bits to `m`. At
//! configuration time a Gaussian elimination of `A`, taking port bits from
//! the least significant up, splits the port's bits into `r` *pivot* bits,
//! on which `A` is one to one, and `16 - r` *free* bits. For any values
//! of the free bits and any table index `i`, at most one setting of the
//! pivot bits makes `A(port) = i ^ k` (`k` the key's low bits), found
//! with two table lookups
//! (the elimination is linear too, so it is tabled per byte of the
//! target). The ports of a queue are then numbered: candidate `j` takes
//! the queue's `j mod n`-th table index (`n` entries name the queue) and
//! the `j / n`-th value of the free bits. Every port of the range whose
//! reply lands on the queue is exactly one candidate; a candidate is
//! `None` when it falls outside the range (the range's first and last
//! blocks of `2^b` ports, `b` one more than the highest pivot bit) or,
//! when `A` has rank below `m` (rare keys), when its index is out of
//! reach. When `A` has full rank `m` (any key but rare ones), every table
//! entry is reached: each aligned block of `2^b` ports holds `2^(b - m)`
//! ports per entry (Microsoft's key with a 128-entry table: `b = 8`, two
//! ports per entry), and a range made of whole blocks has no `None`.
//!
//! When a flow type is hashed by addresses only, the port cannot steer:
//! every port of the range is a candidate if the reply already lands on
//! the queue, and none otherwise.
//!
//! A candidate costs a division, seven table lookups and a few XORs, and
//! three lookups more to check it against the whole hash; no candidate
//! misses the queue. See [`ReplyPorts`].

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::ops::RangeInclusive;

use super::config::{HashFields, RssConfig, RssTuple};
use super::toeplitz::Toeplitz;

/// Where the local port (the destination port) sits in the hash input of
/// an IPv4 and of an IPv6 reply with ports.
const LPORT_AT_V4: usize = 10;
const LPORT_AT_V6: usize = 34;

/// The elimination of the port's map onto the table index, for one port
/// position in the input.
#[derive(Clone)]
pub(super) struct Solver {
    /// Where the port sits in the input.
    at: usize,
    /// `spread[byte][v]`: the free bits' values `v << (8 × byte)` placed on
    /// the free bits of a port, in increasing order.
    spread: Box<[[u16; 256]; 2]>,
    /// `solve[byte][v]`: for a target index `v << (8 × byte)`, the pivot
    /// bits that reach it and what is left of it (zero when reached).
    solve: Box<[[(u16, u32); 256]; 2]>,
    /// The pivot bits.
    pivots: u16,
    /// `b`: one more than the highest pivot bit (0 without pivots).
    block_bits: u32,
    /// Free bits below `b`.
    free_below: u32,
}

impl core::fmt::Debug for Solver {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Solver")
            .field("at", &self.at)
            .field("pivots", &format_args!("{:#06x}", self.pivots))
            .field("block_bits", &self.block_bits)
            .finish_non_exhaustive()
    }
}

impl Solver {
    /// The solver for a port at input position `at`, for table indices of
    /// `mask`.
    pub(super) fn new(toeplitz: &Toeplitz, at: usize, mask: u32) -> Solver {
        // Row reduction: `lead[bit]` is a (index bits, port bits) pair whose
        // index bits' highest set bit is `bit`.
        let mut lead: [Option<(u32, u16)>; 32] = [None; 32];
        let reduce = |lead: &[Option<(u32, u16)>; 32], mut v: u32, mut x: u16| {
            for bit in (0..32).rev() {
                if let (1, Some(Some((bv, bx)))) = (v >> bit & 1, lead.get(bit)) {
                    v ^= bv;
                    x ^= bx;
                }
            }
            (x, v)
        };
        let mut pivots = 0u16;
        for k in 0..16 {
            let column = toeplitz.u16_at(at, 1 << k) & mask;
            let (x, v) = reduce(&lead, column, 1 << k);
            if v != 0 {
                if let Some(slot) = lead.get_mut((31 - v.leading_zeros()) as usize) {
                    *slot = Some((v, x));
                }
                pivots |= 1 << k;
            }
        }
        let mut solve = Box::new([[(0u16, 0u32); 256]; 2]);
        for (byte, row) in solve.iter_mut().enumerate() {
            for (v, slot) in (0..=255u32).zip(row.iter_mut()) {
                // The pivot bits' combination, as the XOR of the port bits
                // that the reduction used (the target is the index, so the
                // port bits start at zero).
                *slot = reduce(&lead, v << (8 * byte), 0);
            }
        }
        let free: Vec<u16> = (0..16)
            .filter(|k| pivots >> k & 1 == 0)
            .map(|k| 1 << k)
            .collect();
        let mut spread = Box::new([[0u16; 256]; 2]);
        for (byte, row) in spread.iter_mut().enumerate() {
            for (v, slot) in (0..=255u32).zip(row.iter_mut()) {
                *slot = free
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| (v << (8 * byte)) >> i & 1 == 1)
                    .fold(0, |acc, (_, &bit)| acc | bit);
            }
        }
        let block_bits = 32 - u32::from(pivots).leading_zeros();
        Solver {
            at,
            pivots,
            spread,
            solve,
            block_bits,
            free_below: block_bits - pivots.count_ones(),
        }
    }

    /// The free bits' value `u` placed on the free bits of a port.
    #[inline]
    fn spread(&self, u: u32) -> u16 {
        let [low, high] = self.spread.as_ref();
        lookup(low, u as u8) | lookup(high, (u >> 8) as u8)
    }

    /// The pivot bits that make the port's map reach `target`, if any.
    #[inline]
    fn solve(&self, target: u32) -> Option<u16> {
        let [low, high] = self.solve.as_ref();
        let (x0, r0) = lookup(low, target as u8);
        let (x1, r1) = lookup(high, (target >> 8) as u8);
        // A target wider than 16 bits (a table of more than 2^16 entries)
        // is refused by the configuration; its high bits would be a rest.
        (r0 ^ r1 | target >> 16 == 0).then_some(x0 ^ x1)
    }
}

#[inline]
fn lookup<T: Copy + Default>(row: &[T; 256], byte: u8) -> T {
    row.get(usize::from(byte)).copied().unwrap_or_default()
}

/// The table indices of each queue.
#[derive(Debug, Clone)]
pub(super) struct Targets {
    /// Table indices, grouped by the queue they name, in increasing order.
    indices: Vec<u16>,
    /// Queue `q`'s indices are `indices[starts[q]..starts[q + 1]]`.
    starts: Vec<u32>,
}

impl Targets {
    pub(super) fn new(indirection: &[u16], queues: u16) -> Targets {
        let mut starts = vec![0u32; usize::from(queues) + 1];
        for &q in indirection {
            if let Some(s) = starts.get_mut(usize::from(q) + 1) {
                *s += 1;
            }
        }
        for q in 0..usize::from(queues) {
            let before = starts.get(q).copied().unwrap_or(0);
            if let Some(s) = starts.get_mut(q + 1) {
                *s += before;
            }
        }
        let mut next = starts.clone();
        let mut indices = vec![0u16; indirection.len()];
        for (index, &q) in indirection.iter().enumerate() {
            if let Some(n) = next.get_mut(usize::from(q)) {
                if let Some(slot) = indices.get_mut(*n as usize) {
                    // The configuration bounds the table to 2^16 entries.
                    *slot = index as u16;
                }
                *n += 1;
            }
        }
        Targets { indices, starts }
    }

    /// Queue `queue`'s table indices.
    fn of(&self, queue: u16) -> &[u16] {
        let q = usize::from(queue);
        match (self.starts.get(q), self.starts.get(q + 1)) {
            (Some(&a), Some(&b)) => self.indices.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

/// Builds the steering of `toeplitz` for table indices of `mask`.
pub(super) fn solvers(toeplitz: &Toeplitz, mask: u32) -> [Solver; 2] {
    [
        Solver::new(toeplitz, LPORT_AT_V4, mask),
        Solver::new(toeplitz, LPORT_AT_V6, mask),
    ]
}

/// A reply `rip:rport -> lip:lport` hashed without its local port: what
/// [`RssConfig::reply_ports`] and [`RssConfig::reply_queue`] start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyKey {
    /// The NIC's hash of the reply with `lport = 0`.
    prefix: u32,
    /// An IPv6 reply.
    v6: bool,
    /// Whether the NIC hashes the reply's ports.
    ports: bool,
}

impl RssConfig {
    /// The key of replies of protocol `proto` from `rip:rport` to `lip`
    /// (one Toeplitz hash), or `None` when the two addresses are of
    /// different families. A 6to4 session's reply is IPv4: its key is the
    /// IPv4 one.
    pub fn reply_key(&self, proto: u8, rip: IpAddr, rport: u16, lip: IpAddr) -> Option<ReplyKey> {
        let tuple = RssTuple::new(rip, rport, lip, 0)?;
        let v6 = tuple.is_v6();
        Some(ReplyKey {
            prefix: self.hash(proto, &tuple),
            v6,
            ports: self.fields.of(proto, v6) == HashFields::AddressesAndPorts,
        })
    }

    /// The queue on which the reply of `key` to local port `lport`
    /// arrives (as [`RssConfig::queue_of`] of the whole reply).
    #[inline]
    pub fn reply_queue(&self, key: &ReplyKey, lport: u16) -> u16 {
        self.queue_of_hash(self.reply_hash(key, lport))
    }

    #[inline]
    fn reply_hash(&self, key: &ReplyKey, lport: u16) -> u32 {
        if key.ports {
            key.prefix ^ self.toeplitz.u16_at(self.solver(key).at, lport)
        } else {
            key.prefix
        }
    }

    fn solver(&self, key: &ReplyKey) -> &Solver {
        let [v4, v6] = &self.solvers;
        if key.v6 { v6 } else { v4 }
    }

    /// The ports of `ports` whose reply of `key` arrives on `queue`, as
    /// numbered candidates (see the module documentation).
    pub fn reply_ports(
        &self,
        key: &ReplyKey,
        queue: u16,
        ports: RangeInclusive<u16>,
    ) -> ReplyPorts<'_> {
        let (lo, hi) = (u32::from(*ports.start()), u32::from(*ports.end()));
        let solver = self.solver(key);
        let targets = self.targets.of(queue);
        // Without pivots the port moves no bit of the table index.
        let steer = key.ports && solver.pivots != 0;
        let (first, count) = if lo > hi {
            (0, 0)
        } else if !steer {
            let here = self.queue_of_hash(key.prefix) == queue;
            (lo, if here { hi - lo + 1 } else { 0 })
        } else {
            let (b, fb) = (solver.block_bits, solver.free_below);
            let first = (lo >> b) << fb;
            let end = ((hi >> b) + 1) << fb;
            (first, (end - first) * targets.len() as u32)
        };
        ReplyPorts {
            config: self,
            solver,
            targets,
            key: *key,
            steer,
            queue,
            lo,
            hi,
            first,
            count,
        }
    }
}

/// The candidate local ports of one reply key and queue, numbered
/// `0..len()`: each port of the range whose reply arrives on the queue is
/// exactly one candidate, and every `Some` candidate is such a port.
#[derive(Debug, Clone)]
pub struct ReplyPorts<'a> {
    config: &'a RssConfig,
    solver: &'a Solver,
    targets: &'a [u16],
    key: ReplyKey,
    /// Whether the port moves the table index.
    steer: bool,
    queue: u16,
    lo: u32,
    hi: u32,
    /// The first free-bits value (ports hashed) or port (not hashed).
    first: u32,
    count: u32,
}

impl ReplyPorts<'_> {
    /// How many candidates there are: about the range's ports (more when
    /// the range's first and last blocks are partial, or for rare keys
    /// that reach only part of the table).
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether there is no candidate (the queue has no table entry, or
    /// the port cannot steer and the reply lands elsewhere).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Candidate `j`: a port of the range whose reply arrives on the
    /// queue, or `None` when `j` names none (out of range, unreachable, or
    /// `j >= len()`).
    #[inline]
    pub fn candidate(&self, j: u32) -> Option<u16> {
        if j >= self.count {
            return None;
        }
        let port = if self.steer {
            let n = self.targets.len() as u32;
            let index = self.targets.get((j % n) as usize).copied()?;
            let free = self.solver.spread(self.first + j / n);
            let at = self.config.toeplitz.u16_at(self.solver.at, free);
            let target = (u32::from(index) ^ self.key.prefix ^ at) & self.config.mask;
            free | self.solver.solve(target)?
        } else {
            u16::try_from(self.first + j).ok()?
        };
        let in_range = (self.lo..=self.hi).contains(&u32::from(port));
        (in_range && self.config.reply_queue(&self.key, port) == self.queue).then_some(port)
    }

    /// The first port among candidates `start, start + 1, ...` (wrapping)
    /// within `budget` candidates, with its number.
    pub fn pick(&self, start: u32, budget: u32) -> Option<(u32, u16)> {
        let mut j = start.checked_rem(self.count)?;
        for _ in 0..budget.min(self.count) {
            if let Some(port) = self.candidate(j) {
                return Some((j, port));
            }
            j += 1;
            if j == self.count {
                j = 0;
            }
        }
        None
    }

    /// Every port of the range whose reply arrives on the queue, in
    /// candidate order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.count).filter_map(|j| self.candidate(j))
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::rss::config::FlowFields;
    use crate::test_rng::Rng;
    use alloc::collections::BTreeSet;

    const TCP: u8 = 6;

    fn random_config(rng: &mut Rng, queues: u16, table_len: usize) -> RssConfig {
        let key: Vec<u8> = (0..40).map(|_| rng.next() as u8).collect();
        let table: Vec<u16> = (0..table_len)
            .map(|_| (rng.next() % u64::from(queues)) as u16)
            .collect();
        RssConfig::new(&key, &table, FlowFields::ALL_PORTS, queues).unwrap()
    }

    /// The candidates are exactly the ports of the range whose whole reply
    /// the NIC delivers on the queue, each once.
    fn check_exact(
        c: &RssConfig,
        rip: IpAddr,
        rport: u16,
        lip: IpAddr,
        ports: RangeInclusive<u16>,
    ) {
        let key = c.reply_key(TCP, rip, rport, lip).unwrap();
        let mut brute = alloc::vec![BTreeSet::new(); usize::from(c.queues())];
        for p in ports.clone() {
            let reply = RssTuple::new(rip, rport, lip, p).unwrap();
            let queue = c.queue_of(TCP, &reply);
            assert_eq!(c.reply_queue(&key, p), queue);
            brute[usize::from(queue)].insert(p);
        }
        for (queue, brute) in (0..c.queues()).zip(&brute) {
            let candidates = c.reply_ports(&key, queue, ports.clone());
            let listed: Vec<u16> = candidates.iter().collect();
            let unique: BTreeSet<u16> = listed.iter().copied().collect();
            assert_eq!(unique.len(), listed.len(), "a port listed twice");
            assert_eq!(&unique, brute, "queue {queue}, {ports:?}");
        }
    }

    #[test]
    fn candidates_are_exactly_the_ports_of_the_queue() {
        let mut rng = Rng(15);
        let v4 = (IpAddr::from([192, 0, 2, 10]), IpAddr::from([10, 0, 0, 100]));
        let v6: (IpAddr, IpAddr) = (
            "2001:db8::10".parse().unwrap(),
            "2001:db8::100".parse().unwrap(),
        );
        for (queues, table_len) in [(1, 1), (2, 2), (3, 128), (4, 512), (8, 64), (5, 2048)] {
            let c = random_config(&mut rng, queues, table_len);
            for (rip, lip) in [v4, v6] {
                let rport = rng.next() as u16;
                check_exact(&c, rip, rport, lip, 1024..=65535);
                check_exact(&c, rip, rport, lip, 5000..=5007);
                check_exact(&c, rip, rport, lip, 1..=1);
                let a = rng.next() as u16;
                let b = rng.next() as u16;
                check_exact(&c, rip, rport, lip, a.min(b)..=a.max(b));
            }
        }
    }

    #[test]
    fn a_key_of_full_rank_reaches_every_entry() {
        // Microsoft's key with a 128-entry table: the port's map onto the
        // 7 index bits has full rank (pivots: port bits 0-5 and 7), so the
        // range 1024..=65535, whole blocks of 256 ports, has no `None`.
        let key = [
            0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
            0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
            0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
        ];
        let table: Vec<u16> = (0..128).map(|i| i % 4).collect();
        let c = RssConfig::new(&key, &table, FlowFields::ALL_PORTS, 4).unwrap();
        let [v4, v6] = &c.solvers;
        for s in [v4, v6] {
            assert_eq!(s.pivots.count_ones(), 7);
            assert!(s.block_bits <= 10, "{}", s.block_bits);
        }
        for (rip, lip) in [
            (IpAddr::from([192, 0, 2, 10]), IpAddr::from([10, 0, 0, 100])),
            (
                "2001:db8::10".parse().unwrap(),
                "2001:db8::100".parse().unwrap(),
            ),
        ] {
            let k = c.reply_key(TCP, rip, 80, lip).unwrap();
            for queue in 0..4 {
                let ports = c.reply_ports(&k, queue, 1024..=65535);
                // A quarter of the range's 64512 ports, each a candidate.
                assert_eq!(ports.len(), 64512 / 4);
                assert!((0..ports.len()).all(|j| ports.candidate(j).is_some()));
                assert_eq!(ports.pick(7, 1), ports.candidate(7).map(|p| (7, p)));
                assert_eq!(ports.candidate(ports.len()), None);
            }
        }
    }

    #[test]
    fn unhashed_ports_cannot_steer() {
        let mut rng = Rng(3);
        let key: Vec<u8> = (0..40).map(|_| rng.next() as u8).collect();
        let fields = FlowFields {
            udp4: HashFields::Addresses,
            ..FlowFields::ALL_PORTS
        };
        let c = RssConfig::new(&key, &[0, 1, 2, 3], fields, 4).unwrap();
        let (rip, lip) = (IpAddr::from([192, 0, 2, 10]), IpAddr::from([10, 0, 0, 100]));
        let k = c.reply_key(17, rip, 53, lip).unwrap();
        let here = c.reply_queue(&k, 0);
        for queue in 0..4 {
            let ports = c.reply_ports(&k, queue, 2000..=2999);
            if queue == here {
                assert_eq!(
                    ports.iter().collect::<Vec<_>>(),
                    (2000..=2999).collect::<Vec<_>>()
                );
            } else {
                assert!(ports.is_empty());
                assert_eq!(ports.pick(0, 100), None);
            }
        }
        // Families must agree.
        assert_eq!(c.reply_key(6, rip, 80, "::1".parse().unwrap()), None);
    }

    #[test]
    fn a_port_without_effect_on_the_index_cannot_steer() {
        // A key of zeros past the addresses: the ports move no hash bit.
        let mut key = [0u8; 40];
        key[0] = 0xa5;
        let c = RssConfig::new(&key, &[0, 1], FlowFields::ALL_PORTS, 2).unwrap();
        let k = c
            .reply_key(TCP, [128, 0, 0, 1].into(), 80, [10, 0, 0, 1].into())
            .unwrap();
        let here = c.reply_queue(&k, 1);
        assert_eq!(c.reply_ports(&k, here, 1..=100).len(), 100);
        assert!(c.reply_ports(&k, 1 - here, 1..=100).is_empty());
    }
}
