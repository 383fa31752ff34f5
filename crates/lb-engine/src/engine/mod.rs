//! [`Engine`]: configuration changes, the packet path, and expiry.
//!
//! The packet path, for a frame addressed to one of our IPv4 addresses:
//!
//! 1. find the network layer; hold the IPv4 header to what we forward
//!    (no options, no fragments, a right checksum, lengths that agree);
//! 2. a packet to a VIP looks up its session by the inbound key (listener,
//!    client address, client port); a TCP SYN or a UDP datagram that has
//!    none starts one, once its transport checksum is verified (see
//!    [`ChecksumPolicy`]): affinity or scheduler, local port, table insert.
//!    A full table gives a SYN the place of its oldest half-open session
//!    ([`HalfOpen`]). A SYN that finds a closing session, or a half-open
//!    one the server has not answered whose backend can take no new
//!    session, replaces it with a new one;
//! 3. a packet to a local address looks up its session by the outbound key
//!    (server address and port, local address and port);
//! 4. TCP state and the deadline are updated (a half-open session's by
//!    its client's packets only), addresses and ports are rewritten, and
//!    checksums are updated incrementally (RFC 1624).
//!
//! Before these steps, the fast path (the `fast` module) takes the common
//! segment: IPv4 TCP of a 4to4 session, either way, that needs nothing but
//! tracking, a new deadline, the rewrite and the traffic counts. It does
//! exactly what the steps above would, in fewer instructions; anything
//! else it leaves to them, with what it has already parsed and looked up
//! (step 1 for a TCP segment to one of our addresses, step 2's lookup).
//!
//! Expiry is an incremental sweep: each [`Engine::handle_timeout`] checks
//! its share of the table, so that every session is checked once per
//! [`EngineConfig::sweep_period`]. It costs O(1) per session per period,
//! and no memory in the session (no timer links): a session expires at
//! most one period after its deadline.
//!
//! This module holds the [`Engine`] struct, [`Engine::new`], the
//! accessors and small address helpers; each concern is a module of its
//! own, an `impl Engine` block or a type: `listeners` (listeners,
//! backends, the VIP and local address index), `keys` (a session's key
//! hashes and the outbound key match), `classify` (what a frame is),
//! `batch` (the entry points), `fast` (the fast path), `inbound`,
//! `new_session` and `outbound` (forwarding), `icmp`, `expiry`, `transmit`
//! (what the engine sends itself), `rewrite` (addresses and ports), and
//! `state` (snapshot export and import).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use crate::config::{ConfigError, EngineConfig, Timeouts};
use crate::counters::{Counters, Traffic};
use crate::half_open::HalfOpen;
use crate::quarantine::Quarantine;
use crate::sched::AffinityTable;
use crate::session::{Session, TcpState, flag};
use crate::table::Table;
use crate::time::Instant;
use crate::wire;
use listeners::Listener;
use transmit::PendingRst;

mod batch;
mod classify;
mod expiry;
mod fast;
mod icmp;
mod inbound;
mod keys;
mod listeners;
mod new_session;
mod outbound;
mod rewrite;
mod state;
mod transmit;

/// A listener's handle: its slot in the engine.
pub type ListenerId = u16;

/// A backend's handle: its slot in its listener's pool. A slot is reused
/// once a removed backend's last session has ended.
pub type BackendId = u32;

/// Up to this many sessions (about 1 MB of entries and index lines) the
/// table is taken to be in the CPU's caches, and the batch path does not
/// touch it ahead of the work.
const CACHED_SESSIONS: u32 = 8192;

/// Most RSTs waiting for [`Engine::poll_transmit`]; the sweep pauses
/// rather than lose one.
const PENDING_RSTS: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct TimeoutsMs {
    established: u32,
    syn_recv: u32,
    fin_wait: u32,
    close_wait: u32,
    last_ack: u32,
    time_wait: u32,
    close: u32,
    udp: u32,
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl TimeoutsMs {
    fn new(t: &Timeouts) -> TimeoutsMs {
        TimeoutsMs {
            established: ms(t.tcp_established),
            syn_recv: ms(t.syn_recv),
            fin_wait: ms(t.fin_wait),
            close_wait: ms(t.close_wait),
            last_ack: ms(t.last_ack),
            time_wait: ms(t.time_wait),
            close: ms(t.close),
            udp: ms(t.udp),
        }
    }

    #[inline]
    fn for_session(&self, s: &Session) -> u32 {
        if s.proto != wire::PROTO_TCP {
            return self.udp;
        }
        // The common case first: established, no FIN or RST seen.
        let open = flag::SYNACK | flag::SERVER_SENT | flag::ESTABLISHED;
        if s.flags & !open == 0 && s.flags & flag::ESTABLISHED != 0 {
            return self.established;
        }
        match s.tcp_state() {
            TcpState::SynRecv => self.syn_recv,
            TcpState::Established => self.established,
            TcpState::FinWait => self.fin_wait,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
        }
    }
}

/// The FULLNAT engine. See the crate documentation.
pub struct Engine {
    config: EngineConfig,
    table: Table<Session>,
    listeners: Vec<Option<Listener>>,
    /// Sorted (VIP, port, protocol) -> listener.
    by_key: Vec<(u64, ListenerId)>,
    /// Sorted (IPv6 VIP, port and protocol) -> listener.
    by_key6: Vec<((u128, u32), ListenerId)>,
    /// Sorted IPv6 VIPs.
    vips6: Vec<u128>,
    /// Sorted IPv6 local addresses (6to6).
    locals6: Vec<u128>,
    /// Sorted VIPs (IPv4 as u32).
    vips: Vec<u32>,
    /// Sorted local addresses of all listeners (IPv4 as u32).
    locals: Vec<u32>,
    affinity: AffinityTable,
    quarantine: Quarantine,
    /// The half-open TCP sessions, oldest first: a SYN that finds the
    /// table full takes the place of the oldest.
    half_open: HalfOpen,
    counters: Counters,
    sweep_cursor: u32,
    next_sweep: Instant,
    /// The latest `now` the caller has passed in: the time of
    /// configuration changes, which take none (a reset session's tuple is
    /// quarantined from then).
    latest: Instant,
    pending: VecDeque<PendingRst>,
    /// Whether [`Engine::fast_parse`] may take frames (see
    /// [`Engine::set_fast_path`]).
    fast_path: bool,
    /// Frames the fast path forwarded.
    fast_forwarded: u64,
}

/// Engine ticks: milliseconds, wrapping. Deadlines compare with serial
/// arithmetic, so timeouts up to 24 days are safe.
fn tick(now: Instant) -> u32 {
    now.as_millis() as u32
}

fn expired(deadline: u32, now: u32) -> bool {
    (now.wrapping_sub(deadline) as i32) >= 0
}

/// Whether tick `a` comes before tick `b` (serial arithmetic).
fn before(a: u32, b: u32) -> bool {
    (b.wrapping_sub(a) as i32) > 0
}

/// A server's packet sets its session's deadline to `deadline`, except
/// that a half-open TCP session lives by its client's packets: the
/// server's (SYN-ACK retransmissions to a spoofed client) may bring its
/// deadline nearer (an RST), never push it back.
#[inline]
fn server_refresh(s: &mut Session, deadline: u32) {
    if s.proto != wire::PROTO_TCP || s.flags & flag::ESTABLISHED != 0 || before(deadline, s.expires)
    {
        s.expires = deadline;
    }
}

/// An IPv4 address's octets, zero for IPv6.
fn ipv4_octets(addr: IpAddr) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => [0; 4],
    }
}

/// An IPv6 address's octets.
fn ipv6_octets(addr: IpAddr) -> Option<[u8; 16]> {
    match addr {
        IpAddr::V4(_) => None,
        IpAddr::V6(a) => Some(a.octets()),
    }
}

/// An address as IPv6, IPv4 mapped (RFC 4291 §2.5.5.2).
fn v6(addr: IpAddr) -> core::net::Ipv6Addr {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// An IPv4 client address as a session holds it: in the first 4 bytes.
fn client16(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let [a, b, c, d, ..] = &mut out;
    [*a, *b, *c, *d] = addr;
    out
}

/// The IPv4 address in the first 4 bytes of a session's client address.
fn client4_of(client: [u8; 16]) -> [u8; 4] {
    let [a, b, c, d, ..] = client;
    [a, b, c, d]
}

fn client4(s: &Session) -> [u8; 4] {
    let [a, b, c, d, ..] = s.client;
    [a, b, c, d]
}

fn u32_of(a: [u8; 4]) -> u32 {
    u32::from_be_bytes(a)
}

impl Engine {
    /// An engine with no listeners, with every table allocated.
    ///
    /// # Errors
    /// [`ConfigError::ZeroCapacity`], [`ConfigError::CapacityTooLarge`],
    /// [`ConfigError::BadSweep`].
    pub fn new(config: EngineConfig) -> Result<Engine, ConfigError> {
        config.validate()?;
        let table = Table::with_capacity(config.capacity)
            .map_err(|_| ConfigError::CapacityTooLarge(config.capacity))?;
        let quarantine =
            Quarantine::try_with_capacity(config.quarantine_capacity, config.quarantine)
                .map_err(|_| ConfigError::OutOfMemory)?;
        let half_open =
            HalfOpen::with_capacity(config.capacity).map_err(|_| ConfigError::OutOfMemory)?;
        Ok(Engine {
            table,
            listeners: Vec::new(),
            by_key: Vec::new(),
            by_key6: Vec::new(),
            vips6: Vec::new(),
            locals6: Vec::new(),
            vips: Vec::new(),
            locals: Vec::new(),
            affinity: AffinityTable::new(config.affinity_capacity, config.hash_seed),
            quarantine,
            half_open,
            counters: Counters::default(),
            sweep_cursor: 0,
            next_sweep: Instant::ZERO,
            latest: Instant::ZERO,
            pending: VecDeque::with_capacity(PENDING_RSTS),
            fast_path: true,
            fast_forwarded: 0,
            config,
        })
    }

    /// Turn the fast path (the `fast` module) off or on; it is on from
    /// [`Engine::new`]. Either way every frame gets the same verdict, the
    /// same bytes and the same effect on sessions and counters: the switch
    /// is there so that tests and fuzzers can check exactly that, by
    /// running the same traffic through an engine with it off.
    #[doc(hidden)]
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// How many frames the fast path has forwarded: for tests to see that
    /// their traffic takes it.
    #[doc(hidden)]
    pub fn fast_path_forwarded(&self) -> u64 {
        self.fast_forwarded
    }

    /// The engine-wide counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Sessions alive now.
    pub fn session_count(&self) -> u32 {
        self.table.len()
    }

    /// Closed tuples recorded in the quarantine: those held now, and those
    /// whose period has passed but whose room has not been taken back yet
    /// (that happens lazily, as later tuples close).
    pub fn quarantined(&self) -> u32 {
        self.quarantine.len()
    }

    /// Bytes the engine's tables hold (sessions, index, the half-open
    /// list, quarantine).
    pub fn memory_bytes(&self) -> usize {
        self.table.memory_bytes() + self.half_open.memory_bytes() + self.quarantine.memory_bytes()
    }

    /// A listener's traffic counters.
    pub fn listener_traffic(&self, listener: ListenerId) -> Option<&Traffic> {
        Some(&self.listener(listener)?.traffic)
    }

    /// A backend's traffic counters.
    pub fn backend_traffic(&self, listener: ListenerId, backend: BackendId) -> Option<&Traffic> {
        Some(
            &self
                .listener(listener)?
                .backends
                .get(backend as usize)?
                .traffic,
        )
    }
}
