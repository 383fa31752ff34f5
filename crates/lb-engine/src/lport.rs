//! Local addresses (LIPs) and ports for FULLNAT: the pool configuration
//! ([`LocalPool`]), its errors ([`LportError`]), and the allocator that
//! picks `(lip, lport)` for a new session towards a real server (RS)
//! `(rip, rport)`.
//!
//! FULLNAT rewrites `cip:cport -> VIP:vport` to `lip:lport -> rip:rport`.
//! The RS sees only the outbound tuple `(proto, lip, lport, rip, rport)`,
//! so the allocator keeps two promises:
//!
//! * **Unique among live sessions.** A tuple is handed out only if the
//!   session table says it is not live (the `in_use` callback of
//!   [`PortAllocator::allocate`]). The same `(lip, lport)` may serve
//!   several RSes at once: uniqueness is per whole tuple.
//! * **Not reused while the RS may be in TIME-WAIT.** A tuple that closed
//!   within the quarantine period (default 120 s) is skipped, so the engine
//!   can pass TCP timestamps through untouched: a RS refuses a new
//!   incarnation whose timestamps run behind the old one's (RFC 6191 §2,
//!   RFC 7323 §5.3; quoted in [`crate::quarantine`]).
//!
//! A session uses a LIP of the RS's family (IPv4 and IPv6 LIPs may share a
//! pool); a pool with none of that family is its own error
//! ([`AllocateError::NoAddressOfFamily`]), counted apart from exhaustion.
//!
//! # Where the search starts
//!
//! For one family the candidates are the pool's `L` LIPs × `P` ports,
//! numbered `k = port_offset × L + lip_slot`, so that consecutive numbers
//! alternate LIPs. The search starts as RFC 6056 §3.3.4 ("Algorithm 4:
//! Double-Hash Port Selection Algorithm") does: at an offset hashed from
//! the destination `(proto, rip, rport)` plus a counter from a small table
//! indexed by another hash of it, and the counter moves on by the number of
//! candidates looked at. So successive sessions towards one RS walk its
//! tuples in order, and the tuples just ahead of the cursor are the ones
//! released longest ago: out of quarantine first. The walk keeps finding a
//! tuple at the first probe until nearly all of an RS's tuples are live or
//! quarantined, where random probing would need `1 / (1 - f)` probes with a
//! fraction `f` taken. The offset is keyed with the engine's hash seed (RFC
//! 6056's secret): a restarted balancer, whose quarantine starts empty,
//! then starts somewhere else than its predecessor, not on the tuples that
//! the predecessor closed last and the RSs still hold in TIME_WAIT.
//!
//! # How far it searches
//!
//! At most [`PROBE_BUDGET`] (64) candidates per SYN; each costs one
//! session-table lookup and one quarantine lookup (two buckets), which
//! bounds the work a SYN flood can cause.
//!
//! * When a family has at most 64 candidates (e.g. one LIP and 8 ports, or
//!   8 LIPs and 8 ports), one walk looks at every candidate once:
//!   exhaustion is reported exactly when every tuple is live or
//!   quarantined.
//! * Otherwise 32 probes continue the destination's cursor and 32 go to
//!   independent positions derived from `seed` (the engine passes a hash
//!   of the client's tuple), which escape a long run of taken tuples ahead
//!   of the cursor (long-lived sessions, or the closed tuples that a
//!   re-added listener's fresh cursor walks into): with a fraction `f` of
//!   the space taken they all fail with probability `f^32`. A nearly full
//!   pool may then report
//!   exhaustion although a free tuple exists elsewhere; since the cursor
//!   moves on by 32 at each failure, one of the next `ceil(L × P / 32)`
//!   SYNs towards the same RS finds it.
//!
//! Exhaustion drops the SYN; the engine counts it.
//!
//! # RSS-aware mode
//!
//! With an [`RssSteering`] ([`PortAllocator::with_rss`]), the candidates
//! of a LIP are not its ports but the ports whose reply `rip:rport ->
//! lip:lport` the NIC's RSS hash delivers on the engine's queue
//! ([`crate::rss::RssConfig::reply_ports`]: one Toeplitz hash per LIP
//! tried, then a few table lookups per candidate), and the search above
//! runs over them: the walk along one LIP's candidates from the
//! destination's cursor, then positions drawn from `seed`, within the same
//! budget. Every port maps to exactly one queue for a given tuple, so the
//! engines of one NIC never hand out the same tuple, without a share.
//!
//! # Trade-offs
//!
//! The cursor table has [`CURSORS`] entries: destinations whose hashes
//! share one advance a shared counter and skip some of each other's
//! tuples, which costs nothing but order. The destination hash (three
//! rounds of a 64-bit mixer) is a pure function of the destination and
//! the key ([`PortAllocator::destination`]): the engine computes it when
//! a backend is added and keeps it with the backend, so that a SYN does
//! not hash it again. `allocate` does not allocate memory.

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::ops::RangeInclusive;

use crate::owner::PortShare;
use crate::quarantine::{Quarantine, address_bits, mix64};
use crate::rss::{ReplyPorts, RssSteering};
use crate::time::Instant;

/// Candidates looked at per allocation, at most.
pub(crate) const PROBE_BUDGET: u64 = 64;

/// Entries in the table of per-destination cursors.
pub(crate) const CURSORS: usize = 256;

/// A pool of local addresses (LIPs) and ports from which FULLNAT sessions
/// take their source `(lip, lport)` towards the real servers.
///
/// [`LocalPool::new`] and [`Default`] fill in the default ports,
/// `1024..=65535`. The quarantine of closed tuples is engine-wide (one
/// tuple may be reached from several listeners that share local addresses
/// and a backend): see [`crate::EngineConfig::quarantine`]. The pool is checked by [`LocalPool::validate`] (and when the
/// engine takes it).
#[allow(unreachable_pub)] // re-exported by the crate root once the engine exists
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalPool {
    /// The local addresses, IPv4 and IPv6 in any mix; a session uses one of
    /// the RS's family. Unicast, each once, at most [`LocalPool::MAX_ADDRESSES`].
    /// Indices into this list name a LIP in the engine's sessions.
    pub addresses: Vec<IpAddr>,
    /// The local ports, on every address; must not be empty or include 0.
    pub ports: RangeInclusive<u16>,
}

#[allow(unreachable_pub)] // re-exported by the crate root once the engine exists
impl LocalPool {
    /// The default local ports: every port outside the well-known range.
    pub const DEFAULT_PORTS: RangeInclusive<u16> = 1024..=65535;

    /// The most addresses in one pool (an address is named by a `u16`).
    pub const MAX_ADDRESSES: usize = 1 << 16;

    /// A pool of `addresses` with the default ports.
    pub fn new(addresses: Vec<IpAddr>) -> LocalPool {
        LocalPool {
            addresses,
            ports: LocalPool::DEFAULT_PORTS,
        }
    }

    /// Checks the pool: at least one address, none unusable as a source or
    /// listed twice, and a port range that is not empty and excludes 0.
    pub fn validate(&self) -> Result<(), LportError> {
        if self.addresses.is_empty() {
            return Err(LportError::NoAddresses);
        }
        if self.addresses.len() > LocalPool::MAX_ADDRESSES {
            return Err(LportError::TooManyAddresses {
                count: self.addresses.len(),
                max: LocalPool::MAX_ADDRESSES,
            });
        }
        let mut seen = BTreeSet::new();
        for &address in &self.addresses {
            if !usable_source(address) {
                return Err(LportError::UnusableAddress(address));
            }
            if !seen.insert(address) {
                return Err(LportError::DuplicateAddress(address));
            }
        }
        let (start, end) = (*self.ports.start(), *self.ports.end());
        if start == 0 || start > end {
            return Err(LportError::EmptyPortRange { start, end });
        }
        Ok(())
    }
}

impl Default for LocalPool {
    /// No addresses (set them before use) and the default ports.
    fn default() -> LocalPool {
        LocalPool::new(Vec::new())
    }
}

/// Whether a LIP can be the source of packets to a RS: not unspecified,
/// multicast, the IPv4 broadcast address, or an IPv4-mapped IPv6 address
/// (give the IPv4 address itself).
fn usable_source(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => {
            !(v6.is_unspecified() || v6.is_multicast() || v6.to_ipv4_mapped().is_some())
        }
    }
}

/// Why a [`LocalPool`] was refused.
#[allow(unreachable_pub)] // re-exported by the crate root once the engine exists
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LportError {
    /// The pool lists no address.
    #[error("the local address pool has no addresses")]
    NoAddresses,

    /// The pool lists more addresses than a session can name.
    #[error("the local address pool has {count} addresses; at most {max} are allowed")]
    TooManyAddresses {
        /// Addresses listed.
        count: usize,
        /// [`LocalPool::MAX_ADDRESSES`].
        max: usize,
    },

    /// An address is listed twice.
    #[error("local address {0} is listed twice")]
    DuplicateAddress(IpAddr),

    /// An address cannot be a source: unspecified, multicast, the IPv4
    /// broadcast address, or IPv4-mapped IPv6.
    #[error(
        "local address {0} cannot be a source (unspecified, multicast, broadcast or IPv4-mapped)"
    )]
    UnusableAddress(IpAddr),

    /// The port range is empty (`start > end`) or starts at port 0.
    #[error("local port range {start}..={end} is empty or includes port 0")]
    EmptyPortRange {
        /// The first port of the range.
        start: u16,
        /// The last port of the range.
        end: u16,
    },
}

/// An outbound tuple as the RS sees it: `lip:lport -> rip:rport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LocalTuple {
    /// The IP protocol number (6 TCP, 17 UDP).
    pub(crate) proto: u8,
    /// The local address.
    pub(crate) lip: IpAddr,
    /// The local port.
    pub(crate) lport: u16,
    /// The real server's address.
    pub(crate) rip: IpAddr,
    /// The real server's port.
    pub(crate) rport: u16,
}

/// Why [`PortAllocator::allocate`] found no tuple; the engine counts each
/// apart and drops the SYN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllocateError {
    /// The pool has no LIP of the RS's family (a configuration problem).
    NoAddressOfFamily,
    /// Every candidate looked at is live or quarantined (see the module
    /// documentation for how many are looked at).
    Exhausted,
}

/// Hands out `(lip, lport)` for new sessions from one [`LocalPool`]. See
/// the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct PortAllocator {
    /// All LIPs, in the pool's order; a LIP index is a position here.
    addresses: Vec<IpAddr>,
    /// Indices of the IPv4 LIPs.
    v4: Vec<u16>,
    /// Indices of the IPv6 LIPs.
    v6: Vec<u16>,
    /// The first port of the range (of the engine's share of it).
    first_port: u16,
    /// Ports in the range, 1..=65535 (in the share, 0..=65535; 0 in
    /// RSS-aware mode, whose ports are chosen in `range`).
    port_count: u32,
    /// From one port of the share to the next: 1, or the number of engines
    /// that share the range (see [`PortAllocator::with_share`]).
    port_step: u16,
    /// Per-destination cursors (RFC 6056 Algorithm 4's `table`).
    cursors: Vec<u64>,
    /// The destination hash's starting value, from its key.
    key_mix: u64,
    /// The pool's whole port range (RSS-aware mode chooses in it).
    range: RangeInclusive<u16>,
    /// RSS-aware mode (see [`PortAllocator::with_rss`]).
    rss: Option<RssSteering>,
}

/// A destination of the allocator: what [`destination_hash`] hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Destination {
    proto: u8,
    rip: IpAddr,
    rport: u16,
}

impl PortAllocator {
    /// An allocator over `pool`, which it validates, whose search offsets
    /// are keyed with `key`. Allocates here, never in
    /// [`PortAllocator::allocate`].
    pub(crate) fn new(pool: &LocalPool, key: u64) -> Result<PortAllocator, LportError> {
        pool.validate()?;
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for (index, address) in pool.addresses.iter().enumerate() {
            // `validate` bounds the count to `u16::MAX + 1`.
            let index = u16::try_from(index).map_err(|_| LportError::TooManyAddresses {
                count: pool.addresses.len(),
                max: LocalPool::MAX_ADDRESSES,
            })?;
            match address {
                IpAddr::V4(_) => v4.push(index),
                IpAddr::V6(_) => v6.push(index),
            }
        }
        let (first_port, last_port) = (*pool.ports.start(), *pool.ports.end());
        Ok(PortAllocator {
            addresses: pool.addresses.clone(),
            v4,
            v6,
            first_port,
            port_count: u32::from(last_port - first_port) + 1,
            port_step: 1,
            cursors: vec![0; CURSORS],
            key_mix: destination_key_mix(key),
            range: pool.ports.clone(),
            rss: None,
        })
    }

    /// The same allocator in RSS-aware mode when `rss` is set: it hands
    /// out only ports of the pool's range whose reply `rip:rport ->
    /// lip:lport` the NIC's RSS hash delivers on the steering's queue,
    /// whatever share it was given (the engine's configuration allows only
    /// [`PortShare::ALL`] with it). See the module documentation.
    pub(crate) fn with_rss(mut self, rss: Option<RssSteering>) -> PortAllocator {
        if rss.is_some() {
            // Sends `allocate_to` to `allocate_rss` (see there).
            self.port_count = 0;
        }
        self.rss = rss;
        self
    }

    /// The same allocator, handing out only the ports of `share` (every
    /// port for [`PortShare::ALL`]). A share with no port in the range
    /// leaves nothing to allocate: every allocation is exhaustion.
    pub(crate) fn with_share(mut self, share: PortShare) -> PortAllocator {
        if share.count() > 1 && self.port_step == 1 && self.rss.is_none() {
            // `port_count` is 1..=65535 here: the range's.
            let last = self
                .first_port
                .saturating_add(u16::try_from(self.port_count - 1).unwrap_or(u16::MAX));
            let ports = self.first_port..=last;
            // The share's ports are `first + k × count` for `k` below its
            // length.
            self.port_count = share.len_in(&ports);
            self.first_port = share.nth_in(&ports, 0).unwrap_or(self.first_port);
            self.port_step = share.count();
        }
        self
    }

    /// The LIP at `index` (a position in the pool's `addresses`).
    #[cfg(test)]
    pub(crate) fn lip(&self, index: u16) -> Option<IpAddr> {
        self.addresses.get(usize::from(index)).copied()
    }

    /// Picks `(lip index, lport)` for a new session of protocol `proto`
    /// towards `rip:rport`: a LIP of `rip`'s family and a port such that
    /// the outbound tuple is neither live (`in_use`, asked of the session
    /// table) nor held by `quarantine` at `now`. `seed` (a hash of the
    /// client's tuple) chooses where the second half of a long search
    /// starts. Looks at no more than [`PROBE_BUDGET`] candidates and does
    /// not allocate.
    ///
    /// The tuple is unique among live sessions only if the caller records
    /// it in the session table before the next allocation. `in_use` is
    /// asked about the tuple returned last (the engine keeps the hash it
    /// computed for it).
    #[cfg(test)]
    #[allow(clippy::too_many_arguments)] // the engine's state, passed in
    pub(crate) fn allocate(
        &mut self,
        now: Instant,
        proto: u8,
        rip: IpAddr,
        rport: u16,
        seed: u64,
        quarantine: &Quarantine,
        in_use: impl FnMut(&LocalTuple) -> bool,
    ) -> Result<(u16, u16), AllocateError> {
        let destination = self.destination(proto, rip, rport);
        self.allocate_to(
            now,
            (proto, rip, rport),
            destination,
            seed,
            quarantine,
            in_use,
        )
    }

    /// The hash of the destination `(proto, rip, rport)` that
    /// [`PortAllocator::allocate_to`] takes: a pure function of it and
    /// the allocator's key, which the caller may keep.
    pub(crate) fn destination(&self, proto: u8, rip: IpAddr, rport: u16) -> u64 {
        destination_hash(self.key_mix, Destination { proto, rip, rport })
    }

    /// [`PortAllocator::allocate`] towards `(proto, rip, rport)`, whose
    /// [`PortAllocator::destination`] hash the caller kept and passes in.
    pub(crate) fn allocate_to(
        &mut self,
        now: Instant,
        (proto, rip, rport): (u8, IpAddr, u16),
        destination: u64,
        seed: u64,
        quarantine: &Quarantine,
        mut in_use: impl FnMut(&LocalTuple) -> bool,
    ) -> Result<(u16, u16), AllocateError> {
        debug_assert_eq!(
            destination,
            self.destination(proto, rip, rport),
            "the destination hash kept is the destination's"
        );
        let lips = match rip {
            IpAddr::V4(_) => self.v4.len(),
            IpAddr::V6(_) => self.v6.len(),
        } as u64;
        if lips == 0 {
            return Err(AllocateError::NoAddressOfFamily);
        }
        let family: &[u16] = match rip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let space = lips * u64::from(self.port_count);
        if space == 0 {
            // RSS-aware mode (which leaves `port_count` at 0 so that this
            // mode's path pays nothing for it), or a share with no port in
            // the range.
            if let Some(rss) = self.rss {
                return self.allocate_rss(
                    rss,
                    now,
                    (proto, rip, rport),
                    destination,
                    seed,
                    quarantine,
                    in_use,
                );
            }
            return Err(AllocateError::Exhausted);
        }
        let addresses = &self.addresses;
        let (first_port, step) = (self.first_port, u64::from(self.port_step));
        let held = quarantine.at(now);
        // The tuple asked about: the destination is written once, the LIP
        // and port by each probe.
        let mut tuple = LocalTuple {
            proto,
            lip: rip,
            lport: 0,
            rip,
            rport,
        };
        let mut probe = |k: u64| -> Option<(u16, u16)> {
            let index = *family.get(usize::try_from(k % lips).ok()?)?;
            let lport = first_port.checked_add(u16::try_from(k / lips * step).ok()?)?;
            tuple.lip = *addresses.get(usize::from(index))?;
            tuple.lport = lport;
            (!in_use(&tuple) && !held.is_some_and(|q| q.contains(&tuple))).then_some((index, lport))
        };

        let slot = (destination >> 56) as usize % CURSORS;
        let cursor = self.cursors.get(slot).copied().unwrap_or(0);
        // A small space is searched whole; a large one in two halves.
        let (walk, jump) = if space <= PROBE_BUDGET {
            (space, 0)
        } else {
            (PROBE_BUDGET / 2, PROBE_BUDGET / 2)
        };

        let start = destination.wrapping_add(cursor) % space;
        let mut advance = walk;
        let mut found = None;
        for i in 0..walk {
            if let Some(hit) = probe((start + i) % space) {
                found = Some(hit);
                advance = i + 1;
                break;
            }
        }
        if found.is_none() {
            // Independent positions, not a run: when a fraction `f` of the
            // space is taken (live or quarantined, often in long runs, such
            // as the tuples a re-added listener's fresh cursor walks into),
            // all of them fail with probability `f^jump`.
            found = (0..jump).find_map(|i| {
                probe(mix64(seed ^ destination ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % space)
            });
        }
        if let Some(cursor) = self.cursors.get_mut(slot) {
            *cursor = cursor.wrapping_add(advance);
        }
        found.ok_or(AllocateError::Exhausted)
    }

    /// [`PortAllocator::allocate_to`] in RSS-aware mode: the candidates
    /// of a LIP are the ports whose reply the NIC delivers on `rss.queue`
    /// ([`crate::rss::RssConfig::reply_ports`], numbered from 0), and the
    /// search is the one of the module documentation over them: half the
    /// budget walks one LIP's candidates from the destination's cursor
    /// (LIP `start % L`, candidate `start / L`), the other half probes
    /// positions drawn from `seed`. A candidate that names no port of the
    /// range counts against the budget like a taken one, so a pool whose
    /// range is much smaller than the NIC's port blocks may report
    /// exhaustion with free ports left (the default range, whole blocks,
    /// has no such candidate for keys of full rank).
    #[allow(clippy::too_many_arguments)] // the engine's state, passed in
    #[inline(never)] // kept out of the other mode's path
    fn allocate_rss(
        &mut self,
        rss: RssSteering,
        now: Instant,
        (proto, rip, rport): (u8, IpAddr, u16),
        destination: u64,
        seed: u64,
        quarantine: &Quarantine,
        mut in_use: impl FnMut(&LocalTuple) -> bool,
    ) -> Result<(u16, u16), AllocateError> {
        let family: &[u16] = match rip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let lips = family.len() as u64;
        if lips == 0 {
            return Err(AllocateError::NoAddressOfFamily);
        }
        let (addresses, range, config) = (&self.addresses, &self.range, rss.config);
        // The LIP at `slot` of the family and its candidates: one Toeplitz
        // hash of the reply without its port.
        let lip_ports = |slot: u64| -> Option<(u16, ReplyPorts<'static>)> {
            let index = *family.get(usize::try_from(slot % lips).ok()?)?;
            let lip = *addresses.get(usize::from(index))?;
            let key = config.reply_key(proto, rip, rport, lip)?;
            Some((index, config.reply_ports(&key, rss.queue, range.clone())))
        };
        let held = quarantine.at(now);
        let mut tuple = LocalTuple {
            proto,
            lip: rip,
            lport: 0,
            rip,
            rport,
        };
        let mut free = |index: u16, lport: u16| -> Option<(u16, u16)> {
            tuple.lip = *addresses.get(usize::from(index))?;
            tuple.lport = lport;
            (!in_use(&tuple) && !held.is_some_and(|q| q.contains(&tuple))).then_some((index, lport))
        };

        let slot = (destination >> 56) as usize % CURSORS;
        let cursor = self.cursors.get(slot).copied().unwrap_or(0);
        let start = destination.wrapping_add(cursor);
        let walk = (PROBE_BUDGET / 2) as u32;
        let mut advance = u64::from(walk);
        let mut found = None;
        let mut looked = 0u32;
        let current = lip_ports(start);
        if let Some((index, ports)) = &current
            && !ports.is_empty()
        {
            let n = u64::from(ports.len());
            // Below `len()`, a `u32`.
            let mut j = ((start / lips) % n) as u32;
            while looked < walk {
                let Some((at, lport)) = ports.pick(j, walk - looked) else {
                    break;
                };
                // The candidates from `j` to `at`, wrapping.
                looked += ((u64::from(at) + n - u64::from(j)) % n) as u32 + 1;
                if let Some(hit) = free(*index, lport) {
                    found = Some(hit);
                    advance = u64::from(looked);
                    break;
                }
                j = if at + 1 == ports.len() { 0 } else { at + 1 };
            }
        }
        if found.is_none() {
            // Independent positions, each a LIP and a candidate of it (a
            // LIP's candidates are found again only when it changes).
            let mut current = current.map(|(index, ports)| (start % lips, index, ports));
            for i in 0..PROBE_BUDGET / 2 {
                let r = mix64(seed ^ destination ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let at = r % lips;
                if current.as_ref().is_none_or(|c| c.0 != at) {
                    current = lip_ports(at).map(|(index, ports)| (at, index, ports));
                }
                let Some((_, index, ports)) = &current else {
                    continue;
                };
                let Some(j) = (r / lips).checked_rem(u64::from(ports.len())) else {
                    continue;
                };
                let lport = u32::try_from(j).ok().and_then(|j| ports.candidate(j));
                if let Some(hit) = lport.and_then(|lport| free(*index, lport)) {
                    found = Some(hit);
                    break;
                }
            }
        }
        if let Some(cursor) = self.cursors.get_mut(slot) {
            *cursor = cursor.wrapping_add(advance);
        }
        found.ok_or(AllocateError::Exhausted)
    }
}

/// The starting value of the destination hash keyed with `key`.
fn destination_key_mix(key: u64) -> u64 {
    mix64(0xD6E8_FEB8_6659_FD93 ^ key)
}

/// A hash of a destination `(proto, rip, rport)` keyed with the key whose
/// [`destination_key_mix`] is `key_mix`: RFC 6056's `F` (the whole value)
/// and `G` (its top byte picks the cursor).
fn destination_hash(key_mix: u64, d: Destination) -> u64 {
    let (family, bits) = address_bits(d.rip);
    [
        u64::from(d.proto) << 17 | family << 16 | u64::from(d.rport),
        (bits >> 64) as u64,
        bits as u64,
    ]
    .into_iter()
    .fold(key_mix, |hash, word| mix64(hash ^ word))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;
    use alloc::collections::BTreeMap;
    use alloc::string::ToString;
    use core::net::Ipv4Addr;
    use core::time::Duration;

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pool(addresses: &[&str], ports: RangeInclusive<u16>) -> LocalPool {
        LocalPool {
            addresses: addresses.iter().map(|a| ip(a)).collect(),
            ports,
        }
    }

    /// The session table, as far as the allocator can tell.
    struct Sessions {
        live: BTreeSet<LocalTuple>,
        probes: usize,
    }

    impl Sessions {
        fn new() -> Sessions {
            Sessions {
                live: BTreeSet::new(),
                probes: 0,
            }
        }

        /// Allocates for `rip:rport` and records the session, checking
        /// that the tuple was neither live nor quarantined.
        #[allow(clippy::too_many_arguments)]
        fn open(
            &mut self,
            allocator: &mut PortAllocator,
            quarantine: &Quarantine,
            now: Instant,
            proto: u8,
            rip: IpAddr,
            rport: u16,
            seed: u64,
        ) -> Result<LocalTuple, AllocateError> {
            let live = &self.live;
            let mut probes = 0;
            let result = allocator.allocate(now, proto, rip, rport, seed, quarantine, |t| {
                probes += 1;
                live.contains(t)
            });
            self.probes += probes;
            assert!(probes as u64 <= PROBE_BUDGET);
            let (index, lport) = result?;
            let tuple = LocalTuple {
                proto,
                lip: allocator.lip(index).unwrap(),
                lport,
                rip,
                rport,
            };
            assert_eq!(tuple.lip.is_ipv4(), rip.is_ipv4(), "family");
            assert!(allocator.lip(index).is_some());
            assert!(
                !quarantine.contains(now, &tuple),
                "quarantined tuple handed out"
            );
            assert!(
                self.live.insert(tuple),
                "live tuple handed out again: {tuple:?}"
            );
            Ok(tuple)
        }

        /// Closes a session: its tuple goes into the quarantine.
        fn close(&mut self, quarantine: &mut Quarantine, now: Instant, tuple: &LocalTuple) {
            assert!(self.live.remove(tuple));
            assert!(quarantine.insert(now, tuple));
        }
    }

    fn quarantine_for(pool: &LocalPool) -> Quarantine {
        let _ = pool;
        Quarantine::with_capacity(100_000, Duration::from_secs(120))
    }

    /// The destination hash as first written, keyed with `key`.
    fn destination_hash_of(key: u64, proto: u8, rip: IpAddr, rport: u16) -> u64 {
        let (family, bits) = address_bits(rip);
        [
            u64::from(proto) << 17 | family << 16 | u64::from(rport),
            (bits >> 64) as u64,
            bits as u64,
        ]
        .into_iter()
        .fold(mix64(0xD6E8_FEB8_6659_FD93 ^ key), |hash, word| {
            mix64(hash ^ word)
        })
    }

    #[test]
    fn destination_hashes_are_the_hashes() {
        let key = 0x1234_5678_9abc_def0;
        let a = PortAllocator::new(&pool(&["10.0.0.1", "2001:db8::1"], 1024..=2047), key).unwrap();
        // Each answer must be the hash as first written.
        let rips = [
            "192.0.2.1",
            "192.0.2.9",
            "192.0.2.2",
            "2001:db8::9",
            "2001:db8::11",
            "::1",
        ];
        let mut rng = Rng(3);
        for _ in 0..2000 {
            let rip = ip(rips[rng.below(rips.len())]);
            let rport = [80, 88, 8080, 443][rng.below(4)];
            let proto = [TCP, UDP][rng.below(2)];
            assert_eq!(
                a.destination(proto, rip, rport),
                destination_hash_of(key, proto, rip, rport)
            );
        }
    }

    #[test]
    fn defaults() {
        let p = LocalPool::new(vec![ip("10.0.0.1")]);
        assert_eq!(p.ports, 1024..=65535);
        assert_eq!(p.validate(), Ok(()));
        assert_eq!(
            LocalPool::default().validate(),
            Err(LportError::NoAddresses)
        );
        let a = PortAllocator::new(&p, 0).unwrap();
        assert_eq!(a.port_count, 64512);
    }

    #[test]
    #[allow(clippy::reversed_empty_ranges)] // an empty range is the point
    fn config_errors() {
        let ok = pool(&["10.0.0.1", "2001:db8::1"], 1000..=2000);
        assert_eq!(ok.validate(), Ok(()));

        let cases: [(LocalPool, LportError); 10] = [
            (pool(&[], 1000..=2000), LportError::NoAddresses),
            (
                pool(&["10.0.0.1", "10.0.0.2", "10.0.0.1"], 1000..=2000),
                LportError::DuplicateAddress(ip("10.0.0.1")),
            ),
            (
                pool(&["2001:db8::1", "2001:db8:0::1"], 1000..=2000),
                LportError::DuplicateAddress(ip("2001:db8::1")),
            ),
            (
                pool(&["10.0.0.1", "0.0.0.0"], 1000..=2000),
                LportError::UnusableAddress(ip("0.0.0.0")),
            ),
            (
                pool(&["::"], 1000..=2000),
                LportError::UnusableAddress(ip("::")),
            ),
            (
                pool(&["224.0.0.1"], 1000..=2000),
                LportError::UnusableAddress(ip("224.0.0.1")),
            ),
            (
                pool(&["255.255.255.255"], 1000..=2000),
                LportError::UnusableAddress(ip("255.255.255.255")),
            ),
            (
                pool(&["::ffff:10.0.0.1"], 1000..=2000),
                LportError::UnusableAddress(ip("::ffff:10.0.0.1")),
            ),
            (
                pool(&["10.0.0.1"], 0..=100),
                LportError::EmptyPortRange { start: 0, end: 100 },
            ),
            (
                pool(&["10.0.0.1"], 2000..=1000),
                LportError::EmptyPortRange {
                    start: 2000,
                    end: 1000,
                },
            ),
        ];
        for (p, error) in cases {
            assert_eq!(p.validate(), Err(error.clone()), "{p:?}");
            assert_eq!(PortAllocator::new(&p, 0).unwrap_err(), error);
        }

        // A single port is a range.
        assert_eq!(pool(&["10.0.0.1"], 65535..=65535).validate(), Ok(()));

        let many = LocalPool::new(
            (0..=65536u32)
                .map(|i| IpAddr::V4(Ipv4Addr::from_bits(0x0A00_0000 + i)))
                .collect(),
        );
        assert_eq!(
            many.validate(),
            Err(LportError::TooManyAddresses {
                count: 65537,
                max: 65536
            })
        );

        assert_eq!(
            LportError::EmptyPortRange { start: 0, end: 9 }.to_string(),
            "local port range 0..=9 is empty or includes port 0"
        );
    }

    #[test]
    fn the_key_moves_where_the_walk_starts() {
        // A restarted balancer (new key, empty quarantine) must not walk
        // the tuples its predecessor used last: the RSs hold them in
        // TIME_WAIT. Same key, same tuples; another key, none shared.
        let p = pool(&["10.0.0.1", "10.0.0.2"], 1024..=65535);
        let first = |key: u64| {
            let mut a = PortAllocator::new(&p, key).unwrap();
            let q = quarantine_for(&p);
            let mut s = Sessions::new();
            (0..200)
                .map(|i| {
                    s.open(&mut a, &q, Instant::ZERO, TCP, ip("192.0.2.10"), 80, i)
                        .unwrap()
                })
                .collect::<BTreeSet<_>>()
        };
        let before = first(0x1234_5678_9abc_def0);
        assert_eq!(before.len(), 200);
        assert_eq!(first(0x1234_5678_9abc_def0), before);
        assert!(first(0x0fed_cba9_8765_4321).is_disjoint(&before));
    }

    #[test]
    fn family_selection() {
        let p = pool(
            &["10.0.0.1", "2001:db8::1", "10.0.0.2", "2001:db8::2"],
            2000..=2999,
        );
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let q = quarantine_for(&p);
        let mut s = Sessions::new();
        let mut v4_lips = BTreeSet::new();
        let mut v6_lips = BTreeSet::new();
        for i in 0..8 {
            let t = s
                .open(&mut a, &q, Instant::ZERO, TCP, ip("192.0.2.10"), 80, i)
                .unwrap();
            assert!(t.lip.is_ipv4());
            v4_lips.insert(t.lip);
            let t = s
                .open(&mut a, &q, Instant::ZERO, TCP, ip("2001:db8:1::10"), 443, i)
                .unwrap();
            assert!(t.lip.is_ipv6());
            v6_lips.insert(t.lip);
        }
        // Both LIPs of each family are used.
        assert_eq!(v4_lips.len(), 2);
        assert_eq!(v6_lips.len(), 2);

        let v4_only = pool(&["10.0.0.1"], 2000..=2999);
        let mut a = PortAllocator::new(&v4_only, 0).unwrap();
        let mut asked = false;
        let r = a.allocate(Instant::ZERO, TCP, ip("2001:db8:1::10"), 80, 0, &q, |_| {
            asked = true;
            false
        });
        assert_eq!(r, Err(AllocateError::NoAddressOfFamily));
        assert!(!asked);

        let v6_only = pool(&["2001:db8::1"], 2000..=2999);
        let mut a = PortAllocator::new(&v6_only, 0).unwrap();
        let r = a.allocate(Instant::ZERO, TCP, ip("192.0.2.10"), 80, 0, &q, |_| false);
        assert_eq!(r, Err(AllocateError::NoAddressOfFamily));
    }

    #[test]
    fn lip_accessor_follows_the_pool_order() {
        let p = pool(&["2001:db8::1", "10.0.0.1"], 2000..=2999);
        let a = PortAllocator::new(&p, 0).unwrap();
        assert_eq!(a.lip(0), Some(ip("2001:db8::1")));
        assert_eq!(a.lip(1), Some(ip("10.0.0.1")));
        assert_eq!(a.lip(2), None);
    }

    #[test]
    fn small_range_exhaustion_is_exact_and_recovers_after_the_period() {
        let p = pool(&["10.0.0.1"], 5000..=5007);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let mut q = quarantine_for(&p);
        let mut s = Sessions::new();
        let rs = ip("192.0.2.10");
        let t0 = Instant::from_secs(10);
        let mut ports = BTreeSet::new();
        for seed in 0..8 {
            ports.insert(s.open(&mut a, &q, t0, TCP, rs, 80, seed).unwrap().lport);
        }
        assert_eq!(ports, (5000..=5007).collect());
        assert_eq!(
            s.open(&mut a, &q, t0, TCP, rs, 80, 99),
            Err(AllocateError::Exhausted)
        );

        // Release one: it is quarantined, so the range stays exhausted...
        let released = *s.live.iter().find(|t| t.lport == 5003).unwrap();
        s.close(&mut q, t0, &released);
        for seed in 0..20 {
            assert_eq!(
                s.open(&mut a, &q, Instant::from_secs(11), TCP, rs, 80, seed),
                Err(AllocateError::Exhausted)
            );
        }
        assert_eq!(
            s.open(&mut a, &q, Instant::from_millis(129_999), TCP, rs, 80, 1),
            Err(AllocateError::Exhausted)
        );
        // ... until the period has passed; then it is the one handed out.
        let again = s
            .open(&mut a, &q, Instant::from_secs(130), TCP, rs, 80, 1)
            .unwrap();
        assert_eq!(again, released);
        assert_eq!(
            s.open(&mut a, &q, Instant::from_secs(130), TCP, rs, 80, 2),
            Err(AllocateError::Exhausted)
        );
    }

    #[test]
    fn the_last_free_tuple_of_a_small_space_is_always_found() {
        // 2 LIPs x 32 ports = 64 candidates: searched whole.
        let p = pool(&["10.0.0.1", "10.0.0.2"], 6000..=6031);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let q = quarantine_for(&p);
        let mut s = Sessions::new();
        let rs = ip("192.0.2.10");
        let mut opened = Vec::new();
        for seed in 0..64 {
            opened.push(
                s.open(&mut a, &q, Instant::ZERO, TCP, rs, 80, seed)
                    .unwrap(),
            );
        }
        let mut rng = Rng(7);
        for round in 0..200 {
            // Free one (without quarantine: e.g. a UDP pool with it off) and
            // ask again from a random seed: that one comes back.
            let t = opened[rng.below(opened.len())];
            assert!(s.live.remove(&t));
            let got = s
                .open(&mut a, &q, Instant::ZERO, TCP, rs, 80, rng.next())
                .unwrap();
            assert_eq!(got, t, "round {round}");
        }
    }

    #[test]
    fn each_rs_has_its_own_tuples() {
        let p = pool(&["10.0.0.1"], 7000..=7007);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let q = quarantine_for(&p);
        let mut s = Sessions::new();
        for rs in [("192.0.2.10", 80), ("192.0.2.10", 8080), ("192.0.2.11", 80)] {
            for seed in 0..8 {
                s.open(&mut a, &q, Instant::ZERO, TCP, ip(rs.0), rs.1, seed)
                    .unwrap();
            }
            assert_eq!(
                s.open(&mut a, &q, Instant::ZERO, TCP, ip(rs.0), rs.1, 8),
                Err(AllocateError::Exhausted)
            );
        }
        // And each protocol.
        for seed in 0..8 {
            s.open(&mut a, &q, Instant::ZERO, UDP, ip("192.0.2.10"), 80, seed)
                .unwrap();
        }
        assert_eq!(s.live.len(), 32);
    }

    #[test]
    fn in_use_is_asked_last_about_the_tuple_returned() {
        // The engine keeps the hash it computed in `in_use` for the tuple
        // handed out. Live and quarantined tuples make searches skip some.
        let p = pool(&["10.0.0.1", "10.0.0.2"], 2000..=2099);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let mut q = quarantine_for(&p);
        let rs = ip("192.0.2.10");
        let mut live = BTreeSet::new();
        let mut rng = Rng(5);
        let mut handed_out = 0;
        for round in 0..300 {
            let mut last = None;
            let r = a.allocate(Instant::ZERO, TCP, rs, 80, rng.next(), &q, |t| {
                last = Some(*t);
                live.contains(t)
            });
            let Ok((index, lport)) = r else { continue };
            handed_out += 1;
            let t = last.unwrap();
            assert_eq!(
                (Some(t.lip), t.lport),
                (a.lip(index), lport),
                "round {round}"
            );
            if rng.below(3) == 0 {
                assert!(q.insert(Instant::ZERO, &t));
            } else {
                live.insert(t);
            }
        }
        assert!(handed_out > 150, "{handed_out}");
    }

    /// An RSS steering to `queue` of a random NIC with `queues` queues.
    fn steering(rng: &mut Rng, queues: u16, queue: u16) -> RssSteering {
        use crate::rss::{FlowFields, RssConfig};
        let key: Vec<u8> = (0..40).map(|_| rng.next() as u8).collect();
        let table: Vec<u16> = (0..128).map(|i| i % queues).collect();
        let config = RssConfig::new(&key, &table, FlowFields::ALL_PORTS, queues).unwrap();
        RssSteering {
            config: alloc::boxed::Box::leak(alloc::boxed::Box::new(config)),
            queue,
        }
    }

    #[test]
    fn rss_mode_hands_out_only_ports_that_steer_home() {
        // Random opens and closes across RSes of both families and two LIPs
        // each: every tuple handed out is free, and its reply reaches the
        // engine's queue.
        let mut rng = Rng(77);
        let rss = steering(&mut rng, 4, 3);
        let p = pool(
            &["10.0.0.1", "2001:db8::1", "10.0.0.2", "2001:db8::2"],
            1024..=65535,
        );
        let mut a = PortAllocator::new(&p, 5).unwrap().with_rss(Some(rss));
        let mut q = quarantine_for(&p);
        let mut s = Sessions::new();
        let servers = [
            (ip("192.0.2.10"), 80),
            (ip("192.0.2.11"), 443),
            (ip("2001:db8:1::10"), 443),
        ];
        let mut lips = BTreeSet::new();
        let mut now = Instant::from_secs(1);
        for _ in 0..3000 {
            now = now + Duration::from_millis(rng.next() % 20);
            if rng.below(3) < 2 || s.live.is_empty() {
                let (rip, rport) = servers[rng.below(servers.len())];
                let proto = if rng.below(2) == 0 { TCP } else { UDP };
                let t = s
                    .open(&mut a, &q, now, proto, rip, rport, rng.next())
                    .unwrap();
                let key = rss.config.reply_key(proto, rip, rport, t.lip).unwrap();
                assert_eq!(rss.config.reply_queue(&key, t.lport), 3, "{t:?}");
                lips.insert(t.lip);
            } else {
                let t = *s.live.iter().nth(rng.below(s.live.len())).unwrap();
                s.close(&mut q, now, &t);
            }
        }
        assert_eq!(lips.len(), 4, "every LIP is used");
        // No LIP of the family: its own error.
        let v4_only = pool(&["10.0.0.1"], 2000..=2999);
        let mut a = PortAllocator::new(&v4_only, 0).unwrap().with_rss(Some(rss));
        let r = a.allocate(Instant::ZERO, TCP, ip("2001:db8:1::10"), 80, 0, &q, |_| {
            false
        });
        assert_eq!(r, Err(AllocateError::NoAddressOfFamily));
    }

    #[test]
    fn rss_mode_probes_are_bounded() {
        let mut rng = Rng(78);
        let rss = steering(&mut rng, 2, 0);
        let q = Quarantine::with_capacity(16, Duration::from_secs(120));
        let p = pool(&["10.0.0.1", "10.0.0.2", "10.0.0.3"], 1024..=65535);
        let mut a = PortAllocator::new(&p, 0).unwrap().with_rss(Some(rss));
        let mut probes = 0;
        let r = a.allocate(Instant::ZERO, TCP, ip("192.0.2.10"), 80, 5, &q, |t| {
            let key = rss.config.reply_key(TCP, t.rip, t.rport, t.lip).unwrap();
            assert_eq!(rss.config.reply_queue(&key, t.lport), 0);
            probes += 1;
            true
        });
        assert_eq!(r, Err(AllocateError::Exhausted));
        assert!((32..=PROBE_BUDGET).contains(&probes), "{probes}");
    }

    #[test]
    fn probes_are_bounded() {
        let q = Quarantine::with_capacity(16, Duration::from_secs(120));
        let busy = |p: &LocalPool| {
            let mut a = PortAllocator::new(p, 0).unwrap();
            let mut probes = 0;
            let r = a.allocate(Instant::ZERO, TCP, ip("192.0.2.10"), 80, 5, &q, |_| {
                probes += 1;
                true
            });
            assert_eq!(r, Err(AllocateError::Exhausted));
            probes
        };
        // A large space: 64 probes, then exhaustion (maybe early).
        assert_eq!(
            busy(&pool(&["10.0.0.1", "10.0.0.2", "10.0.0.3"], 1024..=65535)),
            64
        );
        // A small space: every candidate, once.
        assert_eq!(busy(&pool(&["10.0.0.1", "10.0.0.2"], 9000..=9007)), 16);
        assert_eq!(busy(&pool(&["10.0.0.1"], 9000..=9000)), 1);
    }

    #[test]
    fn a_large_space_fills_completely_within_bounded_retries() {
        // 2 LIPs x 100 ports = 200 candidates, more than one search covers:
        // a SYN may fail early, but the cursor moves on by 32, so one of the
        // next ceil(200 / 32) = 7 SYNs finds a free tuple if there is one.
        let p = pool(&["10.0.0.1", "10.0.0.2"], 2000..=2099);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let q = quarantine_for(&p);
        let mut s = Sessions::new();
        let mut rng = Rng(11);
        for rs in [ip("192.0.2.10"), ip("192.0.2.11")] {
            let before = s.live.len();
            let mut failures_in_a_row = 0;
            while s.live.len() - before < 200 {
                match s.open(&mut a, &q, Instant::ZERO, TCP, rs, 80, rng.next()) {
                    Ok(_) => failures_in_a_row = 0,
                    Err(e) => {
                        assert_eq!(e, AllocateError::Exhausted);
                        failures_in_a_row += 1;
                        assert!(failures_in_a_row <= 7, "free tuples left but not found");
                    }
                }
            }
            for _ in 0..10 {
                assert_eq!(
                    s.open(&mut a, &q, Instant::ZERO, TCP, rs, 80, rng.next()),
                    Err(AllocateError::Exhausted)
                );
            }
        }
        assert_eq!(s.live.len(), 400);
    }

    #[test]
    fn the_cursor_walks_past_quarantined_tuples() {
        // Open and close 900 sessions in a row on 1000 ports: each new one
        // takes the next port at the first probe, never one just released.
        let p = pool(&["10.0.0.1"], 10_000..=10_999);
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let mut q = quarantine_for(&p);
        let mut s = Sessions::new();
        let rs = ip("192.0.2.10");
        let mut rng = Rng(3);
        for i in 0..900u64 {
            let now = Instant::from_millis(i);
            let t = s.open(&mut a, &q, now, TCP, rs, 80, rng.next()).unwrap();
            s.close(&mut q, now, &t);
        }
        assert_eq!(s.probes, 900);
        assert_eq!(q.len(), 900);
    }

    #[test]
    fn never_hands_out_a_live_or_quarantined_tuple() {
        // Random opens and closes across three RSes, two families and a
        // moving clock, checked against a model of live and quarantined
        // tuples. Each family's space (2 LIPs x 24 ports) is searched
        // whole, so exhaustion must be exact too.
        let period = Duration::from_secs(20);
        let p = pool(
            &["10.0.0.1", "2001:db8::1", "10.0.0.2", "2001:db8::2"],
            3000..=3023,
        );
        let mut a = PortAllocator::new(&p, 0).unwrap();
        let mut q = Quarantine::with_capacity(100_000, period);
        let mut s = Sessions::new();
        let mut closed: BTreeMap<LocalTuple, Instant> = BTreeMap::new();
        let servers = [
            (ip("192.0.2.10"), 80),
            (ip("192.0.2.11"), 80),
            (ip("2001:db8:1::10"), 443),
        ];
        let mut rng = Rng(2024);
        let mut now = Instant::from_secs(1);
        let (mut opened, mut exhausted) = (0, 0);
        for round in 0..6000 {
            now = now + Duration::from_millis(rng.next() % 50);
            if rng.below(5) < 3 {
                let (rip, rport) = servers[rng.below(servers.len())];
                match s.open(&mut a, &q, now, TCP, rip, rport, rng.next()) {
                    Ok(t) => {
                        opened += 1;
                        // Not closed within the period.
                        if let Some(&at) = closed.get(&t) {
                            assert!(now >= at + period, "round {round}: reused early");
                        }
                    }
                    Err(e) => {
                        assert_eq!(e, AllocateError::Exhausted);
                        exhausted += 1;
                        // Every candidate is live or still quarantined.
                        let lips = p.addresses.iter().filter(|l| l.is_ipv4() == rip.is_ipv4());
                        for &lip in lips {
                            for lport in p.ports.clone() {
                                let t = LocalTuple {
                                    proto: TCP,
                                    lip,
                                    lport,
                                    rip,
                                    rport,
                                };
                                assert!(
                                    s.live.contains(&t) || q.contains(now, &t),
                                    "round {round}: {t:?} was free"
                                );
                            }
                        }
                    }
                }
            } else if !s.live.is_empty() {
                let t = *s.live.iter().nth(rng.below(s.live.len())).unwrap();
                s.close(&mut q, now, &t);
                closed.insert(t, now);
            }
        }
        assert!(
            opened > 1000 && exhausted > 100,
            "{opened} opened, {exhausted} exhausted"
        );
    }
}
