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
//! else it leaves to them untouched.
//!
//! Expiry is an incremental sweep: each [`Engine::handle_timeout`] checks
//! its share of the table, so that every session is checked once per
//! [`EngineConfig::sweep_period`]. It costs O(1) per session per period,
//! and no memory in the session (no timer links): a session expires at
//! most one period after its deadline.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::time::Duration;

use crate::config::{
    BackendConfig, ChecksumPolicy, ConfigError, EngineConfig, ListenerConfig, Protocol, Timeouts,
};
use crate::counters::{Counters, Traffic};
use crate::frame::Frame;
use crate::half_open::HalfOpen;
use crate::hash;
use crate::lport::{AllocateError, LocalTuple, PortAllocator};
use crate::quarantine::Quarantine;
use crate::sched::{self, AffinityTable, Candidate, Scheduler, is_eligible};
use crate::session::{Session, TcpState, flag};
use crate::table::{Dir, Table};
use crate::tcp_edit::{self, Family, Headers, Insertion, OptionEdit};
use crate::time::Instant;
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum::{self, Delta};
use crate::wire::ipv6::Ipv6;
use crate::wire::{self, Ipv4, L4, ipv4_field, tcp_flags};
use crate::xlat;
use core::net::SocketAddr;
use ttm_core::{KindSet, TtmOption};

mod fast;
mod state;

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

/// One backend slot of a listener.
#[derive(Debug, Clone)]
struct Backend {
    config: BackendConfig,
    /// `config.addr`, ready for the packet path: IPv4 in `addr4`, or IPv6
    /// in `addr6` (the other is zero).
    addr4: [u8; 4],
    addr6: Option<[u8; 16]>,
    /// Removed by configuration; kept until its last session ends.
    removed: bool,
    traffic: Traffic,
}

/// A listener and the state that serves it.
struct Listener {
    /// The listener's configuration; its `backends` are moved into
    /// `backends` below.
    config: ListenerConfig,
    /// The IPv4 VIP (zero for an IPv6 VIP).
    vip4: [u8; 4],
    /// The IPv6 VIP of a 6to4 listener: IPv6 clients, IPv4 local
    /// addresses and servers, headers translated (RFC 7915).
    vip6: Option<[u8; 16]>,
    proto: u8,
    /// Timeouts in milliseconds, by [`TcpState`] and for UDP.
    timeouts_ms: TimeoutsMs,
    scheduler: Scheduler,
    allocator: PortAllocator,
    backends: Vec<Backend>,
    /// The local addresses by the allocator's index, IPv4 ones ready for
    /// the packet path.
    lips4: Vec<Option<[u8; 4]>>,
    /// The same for IPv6 local addresses (6to6).
    lips6: Vec<Option<[u8; 16]>>,
    /// The scheduler's view of `backends`, same indices.
    candidates: Vec<Candidate>,
    traffic: Traffic,
    /// A TCP listener with the TTM option on.
    ttm_on: bool,
}

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

impl Listener {
    /// A session's client address as an `IpAddr`.
    fn client_ip(&self, client: [u8; 16]) -> IpAddr {
        match self.vip6 {
            Some(_) => IpAddr::V6(Ipv6Addr::from(client)),
            None => IpAddr::V4(Ipv4Addr::from(client4_of(client))),
        }
    }

    #[inline]
    fn backend_addr4(&self, id: u32) -> Option<([u8; 4], u16)> {
        let b = self.backends.get(id as usize)?;
        Some((b.addr4, b.config.port))
    }

    #[inline]
    fn lip4(&self, index: u16) -> Option<[u8; 4]> {
        self.lips4.get(usize::from(index)).copied().flatten()
    }

    #[inline]
    fn lip6(&self, index: u16) -> Option<[u8; 16]> {
        self.lips6.get(usize::from(index)).copied().flatten()
    }

    /// A 6to6 session's server and local addresses (IPv6 backend).
    #[inline]
    fn v6_path(&self, s: &Session) -> Option<([u8; 16], u16, [u8; 16])> {
        let b = self.backends.get(s.backend as usize)?;
        Some((b.addr6?, b.config.port, self.lip6(s.lip)?))
    }

    /// A session's two key hashes and the checksum changes of its inbound
    /// rewrite, from its addresses and ports: the one place they are
    /// computed, for a new session, a restored one and one that ends.
    /// `None` when its backend or local address is not in the listener.
    fn keys(&self, seed: u64, s: &Session) -> Option<SessionKeys> {
        let b = self.backends.get(s.backend as usize)?;
        let (rip, rport, vport) = (b.addr4, b.config.port, self.config.port);
        // 4to4 and 6to6: the addresses and ports change in place (no IPv6
        // header checksum, but the transport's covers the addresses).
        // 6to4: translation redoes the checksums for the addresses; only
        // the ports are ours.
        let (in_hash, ip_delta, addr_delta, out_hash) = match (self.vip6, b.addr6) {
            (None, _) => {
                let (client, lip4) = (client4_of(s.client), self.lip4(s.lip)?);
                let d = Delta::default().addr4(client, lip4).addr4(self.vip4, rip);
                (
                    hash::flow4(seed, s.proto, client, s.cport, self.vip4, vport),
                    d,
                    d,
                    hash::flow4(seed, s.proto, rip, rport, lip4, s.lport),
                )
            }
            (Some(vip6), Some(rip6)) => {
                let lip6 = self.lip6(s.lip)?;
                (
                    hash::flow6(seed, s.proto, &s.client, s.cport, &vip6, vport),
                    Delta::default(),
                    Delta::default()
                        .addr16(&s.client, &lip6)
                        .addr16(&vip6, &rip6),
                    hash::flow6(seed, s.proto, &rip6, rport, &lip6, s.lport),
                )
            }
            (Some(vip6), None) => {
                let lip4 = self.lip4(s.lip)?;
                (
                    hash::flow6(seed, s.proto, &s.client, s.cport, &vip6, vport),
                    Delta::default(),
                    Delta::default(),
                    hash::flow4(seed, s.proto, rip, rport, lip4, s.lport),
                )
            }
        };
        Some(SessionKeys {
            in_hash,
            out_hash,
            ip_delta: ip_delta.folded(),
            l4_delta: addr_delta
                .word(s.cport, s.lport)
                .word(vport, rport)
                .folded(),
        })
    }

    fn has_live_backend(&self) -> bool {
        self.candidates.iter().any(Candidate::eligible)
    }

    fn candidate(b: &Backend) -> Candidate {
        Candidate {
            id: sched::backend_id(&u128::from(v6(b.config.addr)).to_be_bytes(), b.config.port),
            weight: b.config.weight,
            up: b.config.up && !b.removed,
            active: 0,
        }
    }
}

/// What [`Listener::keys`] computes of a session.
#[derive(Debug, Clone, Copy)]
struct SessionKeys {
    /// The hash of its inbound key (client, VIP).
    in_hash: u64,
    /// The hash of its outbound key (server, local address).
    out_hash: u64,
    /// [`Session::ip_delta`].
    ip_delta: u16,
    /// [`Session::l4_delta`].
    l4_delta: u16,
}

/// An RST to send because an established session idled out.
#[derive(Debug, Clone, Copy)]
struct PendingRst {
    to_client: bool,
    /// IPv6 (to a 6to4 listener's client); else IPv4 in the first 4 bytes.
    v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
}

/// Why a session ends, for [`Engine::end_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Closed by the packet path or by configuration.
    Closed,
    /// Idled out (RSTs to both sides if established).
    Expired,
    /// Evicted for a new SYN while half-open.
    Evicted,
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

/// What [`Engine::parse`] learned of a frame for us.
#[derive(Debug, Clone, Copy)]
struct Packet {
    net: Net,
    l4: L4,
    dir: Dir,
    /// The listener, for a packet to a VIP.
    listener: ListenerId,
    /// The flow hash of the packet's 5-tuple as received.
    hash: u64,
}

/// A frame of a batch, read by the fast path's parser or else the general
/// one ([`Engine::handle_batch`]).
#[derive(Debug, Clone, Copy)]
enum Parsed {
    Fast(fast::FastPacket),
    General(Result<Packet, Verdict>),
}

impl Parsed {
    /// The flow hash and direction to look the session up by.
    fn key(&self) -> Option<(u64, Dir)> {
        match self {
            Parsed::Fast(p) => Some((p.hash, p.dir)),
            Parsed::General(Ok(p)) => Some((p.hash, p.dir)),
            Parsed::General(Err(_)) => None,
        }
    }
}

/// The network header of a packet for us.
#[derive(Debug, Clone, Copy)]
enum Net {
    V4(Ipv4),
    /// IPv6, to an IPv6 VIP (6to4 listeners).
    V6(Ipv6),
}

/// Where a packet's TCP header is, for `tcp_edit`.
trait TcpAt {
    fn headers(&self) -> Headers;
}

impl TcpAt for Ipv4 {
    fn headers(&self) -> Headers {
        Headers {
            family: Family::V4,
            l3: self.off,
            l4: self.l4_off(),
        }
    }
}

impl TcpAt for Ipv6 {
    fn headers(&self) -> Headers {
        Headers {
            family: Family::V6,
            l3: self.off,
            l4: self.l4_off,
        }
    }
}

/// How a packet from a client reaches its server.
#[derive(Debug, Clone, Copy)]
enum Path {
    /// IPv4 to IPv4, and the session's local address.
    Four(Ipv4, [u8; 4]),
    /// IPv6 translated to IPv4: the translated header.
    SixToFour(Ipv4),
    /// IPv6 to IPv6: the header, the local and the server's addresses.
    SixToSix(Ipv6, [u8; 16], [u8; 16]),
}

/// What a client's SYN does to the session it finds
/// ([`Engine::syn_again`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SynAgain {
    /// The session carries it (a retransmission, or a stray SYN on an
    /// established session).
    Same,
    /// The session is closing: a new one replaces it.
    Replace,
    /// The session is half-open toward a backend that can take no new
    /// session: a new one, on another backend, replaces it.
    Reschedule,
}

/// The port and protocol half of an IPv6 listener's key.
fn port_proto(port: u16, proto: u8) -> u32 {
    (u32::from(port) << 8) | u32::from(proto)
}

/// The sort key of a listener: VIP, port, protocol.
fn listener_key(vip: u32, port: u16, proto: u8) -> u64 {
    (u64::from(vip) << 24) | (u64::from(port) << 8) | u64::from(proto)
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

/// Whether a session is the one of a packet from a server to a local
/// address on port `lport`: the protocol and local port, then the
/// addresses that `server_is` compares through the session's listener.
/// The outbound lookup both families share (the table's candidates for
/// the packet's hash are checked with it).
#[inline]
fn outbound_key(
    listeners: &[Option<Listener>],
    proto: u8,
    lport: u16,
    server_is: impl Fn(&Listener, &Session) -> bool,
) -> impl Fn(&Session) -> bool {
    move |s: &Session| {
        s.lport == lport
            && s.proto == proto
            && listeners
                .get(usize::from(s.listener))
                .and_then(Option::as_ref)
                .is_some_and(|l| server_is(l, s))
    }
}

/// [`outbound_key`] for an IPv4 server and local address (4to4, 6to4).
#[inline]
fn outbound4(
    listeners: &[Option<Listener>],
    proto: u8,
    (rip, rport): ([u8; 4], u16),
    (lip, lport): ([u8; 4], u16),
) -> impl Fn(&Session) -> bool {
    outbound_key(listeners, proto, lport, move |l, s| {
        l.backend_addr4(s.backend) == Some((rip, rport)) && l.lip4(s.lip) == Some(lip)
    })
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

/// Add local addresses to the sorted sets of each family.
fn index_locals(locals: &mut Vec<u32>, locals6: &mut Vec<u128>, addresses: &[IpAddr]) {
    for addr in addresses {
        match addr {
            IpAddr::V4(a) => insert_sorted(locals, u32_of(a.octets())),
            IpAddr::V6(a) => insert_sorted(locals6, u128::from_be_bytes(a.octets())),
        }
    }
}

fn insert_sorted<T: Ord + Copy>(v: &mut Vec<T>, x: T) {
    if let Err(i) = v.binary_search(&x) {
        v.insert(i, x);
    }
}

impl Engine {
    /// Bytes [`Engine::poll_transmit`] needs in its buffer.
    pub const TRANSMIT_LEN: usize = wire::ETH_HLEN + 40 + 20;

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

    fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(usize::from(id))?.as_ref()
    }

    fn listener_mut(&mut self, id: ListenerId) -> Result<&mut Listener, ConfigError> {
        self.listeners
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(ConfigError::NoSuchListener(id))
    }

    // ----- configuration -------------------------------------------------

    /// Add a listener and its backends.
    ///
    /// # Errors
    /// Any [`ConfigError`] about the listener, its pool or its backends;
    /// nothing is changed then.
    pub fn add_listener(&mut self, mut config: ListenerConfig) -> Result<ListenerId, ConfigError> {
        config.validate()?;
        let (vip, vip6) = match config.vip {
            IpAddr::V4(v4) => (v4.octets(), None),
            IpAddr::V6(v6) => ([0; 4], Some(v6.octets())),
        };
        let proto = config.protocol.number();
        let exists = match vip6 {
            None => self.find_listener(u32_of(vip), config.port, proto),
            Some(v6) => self.find_listener6(u128::from_be_bytes(v6), config.port, proto),
        };
        if exists.is_some() {
            return Err(ConfigError::DuplicateListener {
                vip: config.vip,
                port: config.port,
                protocol: config.protocol,
            });
        }
        for addr in &config.local.addresses {
            if let IpAddr::V4(a) = addr
                && self.vips.binary_search(&u32_of(a.octets())).is_ok()
            {
                return Err(ConfigError::LocalIsVip(*addr));
            }
        }
        if vip6.is_none() && self.locals.binary_search(&u32_of(vip)).is_ok() {
            return Err(ConfigError::LocalIsVip(config.vip));
        }
        let mut scheduler = Scheduler::new(&config.scheduler)?;
        let allocator = PortAllocator::new(&config.local, self.config.hash_seed)?;
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| Backend {
                config: *b,
                addr4: ipv4_octets(b.addr),
                addr6: ipv6_octets(b.addr),
                removed: false,
                traffic: Traffic::default(),
            })
            .collect();
        let candidates: Vec<Candidate> = backends.iter().map(Listener::candidate).collect();
        scheduler.rebuild(&candidates);
        // From here on the backend slots are the pool; the copy in the
        // configuration would only go stale.
        config.backends = Vec::new();
        let slot = match self.listeners.iter().position(Option::is_none) {
            Some(free) => free,
            None => self.listeners.len(),
        };
        let id = ListenerId::try_from(slot).map_err(|_| ConfigError::TooManyListeners)?;
        let lips4 = config
            .local
            .addresses
            .iter()
            .map(|a| match a {
                IpAddr::V4(v4) => Some(v4.octets()),
                IpAddr::V6(_) => None,
            })
            .collect();
        // A client must never send the kind we write: strip it whatever
        // the configured set says (validate() checked it can be added).
        config.ttm.strip = config
            .ttm
            .strip
            .with(config.ttm.kind)
            .unwrap_or(config.ttm.strip);
        let lips6 = config
            .local
            .addresses
            .iter()
            .map(|&a| ipv6_octets(a))
            .collect();
        let ttm_on = config.protocol == Protocol::Tcp && config.ttm.enabled;
        let listener = Listener {
            ttm_on,
            lips4,
            lips6,
            vip4: vip,
            vip6,
            proto,
            timeouts_ms: TimeoutsMs::new(&config.timeouts),
            scheduler,
            allocator,
            backends,
            candidates,
            traffic: Traffic::default(),
            config,
        };
        index_locals(
            &mut self.locals,
            &mut self.locals6,
            &listener.config.local.addresses,
        );
        self.index_vip(&listener, id);
        if slot == self.listeners.len() {
            self.listeners.push(Some(listener));
        } else if let Some(s) = self.listeners.get_mut(slot) {
            *s = Some(listener);
        }
        Ok(id)
    }

    /// Remove a listener; its sessions end now (no RST is sent), and their
    /// tuples are quarantined from the latest time the engine was given.
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`].
    pub fn remove_listener(&mut self, id: ListenerId) -> Result<(), ConfigError> {
        self.listener_mut(id)?;
        self.reset_sessions(|s| s.listener == id);
        self.affinity.forget_listener(id);
        if let Some(slot) = self.listeners.get_mut(usize::from(id)) {
            *slot = None;
        }
        self.rebuild_address_sets();
        Ok(())
    }

    fn index_vip(&mut self, l: &Listener, id: ListenerId) {
        Self::index_vip_into(
            &mut self.by_key,
            &mut self.vips,
            &mut self.by_key6,
            &mut self.vips6,
            l,
            id,
        );
    }

    /// Add a listener's VIP and key to the sorted lookup sets.
    fn index_vip_into(
        by_key: &mut Vec<(u64, ListenerId)>,
        vips: &mut Vec<u32>,
        by_key6: &mut Vec<((u128, u32), ListenerId)>,
        vips6: &mut Vec<u128>,
        l: &Listener,
        id: ListenerId,
    ) {
        match l.vip6 {
            None => {
                insert_sorted(
                    by_key,
                    (listener_key(u32_of(l.vip4), l.config.port, l.proto), id),
                );
                insert_sorted(vips, u32_of(l.vip4));
            }
            Some(v6) => {
                let vip = u128::from_be_bytes(v6);
                insert_sorted(by_key6, ((vip, port_proto(l.config.port, l.proto)), id));
                insert_sorted(vips6, vip);
            }
        }
    }

    fn rebuild_address_sets(&mut self) {
        self.by_key6.clear();
        self.vips6.clear();
        self.by_key.clear();
        self.vips.clear();
        self.locals.clear();
        self.locals6.clear();
        for (i, l) in self.listeners.iter().enumerate() {
            let Some(l) = l else { continue };
            let id = ListenerId::try_from(i).unwrap_or(ListenerId::MAX);
            Self::index_vip_into(
                &mut self.by_key,
                &mut self.vips,
                &mut self.by_key6,
                &mut self.vips6,
                l,
                id,
            );
            index_locals(
                &mut self.locals,
                &mut self.locals6,
                &l.config.local.addresses,
            );
        }
    }

    /// Add a backend to a listener's pool.
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`], [`ConfigError::DuplicateBackend`],
    /// [`ConfigError::NoLocalAddressFor`].
    pub fn add_backend(
        &mut self,
        listener: ListenerId,
        backend: BackendConfig,
    ) -> Result<BackendId, ConfigError> {
        let l = self.listener_mut(listener)?;
        if l.backends
            .iter()
            .any(|b| !b.removed && b.config.addr == backend.addr && b.config.port == backend.port)
        {
            return Err(ConfigError::DuplicateBackend {
                addr: backend.addr,
                port: backend.port,
            });
        }
        l.config.check_backend_family(&backend)?;
        l.config.check_backend_mode(&backend)?;
        let entry = Backend {
            config: backend,
            addr4: ipv4_octets(backend.addr),
            addr6: ipv6_octets(backend.addr),
            removed: false,
            traffic: Traffic::default(),
        };
        // Reuse the slot of a removed backend whose sessions have all ended.
        let free = l
            .backends
            .iter()
            .zip(&l.candidates)
            .position(|(b, c)| b.removed && c.active == 0);
        let id = match free {
            Some(i) => {
                if let (Some(b), Some(c)) = (l.backends.get_mut(i), l.candidates.get_mut(i)) {
                    *b = entry;
                    *c = Listener::candidate(b);
                }
                i
            }
            None => {
                l.candidates.push(Listener::candidate(&entry));
                l.backends.push(entry);
                l.backends.len() - 1
            }
        };
        l.scheduler.rebuild(&l.candidates);
        BackendId::try_from(id).map_err(|_| ConfigError::NoSuchBackend {
            listener,
            backend: u32::MAX,
        })
    }

    fn backend_mut(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
    ) -> Result<(&mut Listener, usize), ConfigError> {
        let l = self.listener_mut(listener)?;
        let i = backend as usize;
        match l.backends.get(i) {
            Some(b) if !b.removed => Ok((l, i)),
            _ => Err(ConfigError::NoSuchBackend { listener, backend }),
        }
    }

    fn update_backend(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
        change: impl FnOnce(&mut Backend),
    ) -> Result<(), ConfigError> {
        let (l, i) = self.backend_mut(listener, backend)?;
        if let (Some(b), Some(c)) = (l.backends.get_mut(i), l.candidates.get_mut(i)) {
            change(b);
            let fresh = Listener::candidate(b);
            c.weight = fresh.weight;
            c.up = fresh.up;
        }
        l.scheduler.rebuild(&l.candidates);
        Ok(())
    }

    /// Set a backend's weight; 0 drains it (its sessions continue).
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`], [`ConfigError::NoSuchBackend`].
    pub fn set_weight(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
        weight: u16,
    ) -> Result<(), ConfigError> {
        self.update_backend(listener, backend, |b| b.config.weight = weight)
    }

    /// Mark a backend up or down (health checks); a down backend gets no
    /// new sessions, and its existing ones continue unless reset.
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`], [`ConfigError::NoSuchBackend`].
    pub fn set_up(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
        up: bool,
    ) -> Result<(), ConfigError> {
        self.update_backend(listener, backend, |b| b.config.up = up)?;
        if !up {
            self.affinity.forget_backend(listener, backend);
        }
        Ok(())
    }

    /// Remove a backend. Its sessions continue until they end, unless
    /// `reset`, which ends them now (no RST is sent).
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`], [`ConfigError::NoSuchBackend`].
    pub fn remove_backend(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
        reset: bool,
    ) -> Result<(), ConfigError> {
        let (l, i) = self.backend_mut(listener, backend)?;
        if let (Some(b), Some(c)) = (l.backends.get_mut(i), l.candidates.get_mut(i)) {
            b.removed = true;
            c.up = false;
        }
        l.scheduler.rebuild(&l.candidates);
        self.affinity.forget_backend(listener, backend);
        if reset {
            self.reset_sessions(|s| s.listener == listener && s.backend == backend);
        }
        Ok(())
    }

    /// End every session of a backend now (no RST is sent).
    ///
    /// # Errors
    /// [`ConfigError::NoSuchListener`], [`ConfigError::NoSuchBackend`].
    pub fn reset_backend(
        &mut self,
        listener: ListenerId,
        backend: BackendId,
    ) -> Result<(), ConfigError> {
        self.backend_mut(listener, backend)?;
        self.affinity.forget_backend(listener, backend);
        self.reset_sessions(|s| s.listener == listener && s.backend == backend);
        Ok(())
    }

    /// Remove every session `matches` selects: a scan of the table, on the
    /// control path.
    fn reset_sessions(&mut self, matches: impl Fn(&Session) -> bool) {
        for id in 0..self.table.id_bound() {
            if self.table.get(id).is_some_and(&matches)
                && self.end_session(id, self.latest, End::Closed)
            {
                self.counters.sessions_reset += 1;
            }
        }
    }

    // ----- the packet path ---------------------------------------------

    /// Process one frame; see [`Verdict`].
    pub fn handle_packet(&mut self, now: Instant, frame: &mut Frame<'_>) -> Verdict {
        self.latest = self.latest.max(now);
        if let Some(p) = self.fast_parse(frame.bytes())
            && let Some(verdict) = self.fast_forward(now, frame, &p)
        {
            return self.count(verdict);
        }
        let parsed = self.parse(frame);
        self.finish(now, frame, &parsed)
    }

    /// Process a batch of frames, writing `verdicts[i]` for `frames[i]`
    /// (extra frames or verdicts are left alone). The same result as
    /// [`Engine::handle_packet`] on each frame in order; faster, because
    /// the table's memory is touched for the whole batch before any
    /// packet is processed, so that cache misses overlap.
    pub fn handle_batch(
        &mut self,
        now: Instant,
        frames: &mut [Frame<'_>],
        verdicts: &mut [Verdict],
    ) {
        const CHUNK: usize = 32;
        self.latest = self.latest.max(now);
        let mut parsed = [Parsed::General(Err(Verdict::Pass)); CHUNK];
        let mut start = 0;
        while start < frames.len().min(verdicts.len()) {
            let end = (start + CHUNK).min(frames.len()).min(verdicts.len());
            let (Some(chunk), Some(out)) =
                (frames.get_mut(start..end), verdicts.get_mut(start..end))
            else {
                break;
            };
            // 1. Parse and hash every frame; 2. load each home slot of the
            //    index; 3. find each candidate entry and load it; 4. do the
            //    work, by now mostly from cache.
            // With few sessions the table is in the caches already, and
            // touching it ahead would only cost instructions.
            if self.table.len() <= CACHED_SESSIONS {
                for (frame, verdict) in chunk.iter_mut().zip(out.iter_mut()) {
                    *verdict = self.handle_packet(now, frame);
                }
                start = end;
                continue;
            }
            for (frame, p) in chunk.iter_mut().zip(parsed.iter_mut()) {
                *p = match self.fast_parse(frame.bytes()) {
                    Some(fast) => Parsed::Fast(fast),
                    None => Parsed::General(self.parse(frame)),
                };
            }
            // Tight loops, so that the out-of-order window holds many of
            // these loads at once and their misses overlap.
            let mut sink = 0u64;
            for p in parsed.iter().take(chunk.len()) {
                if let Some((hash, _)) = p.key() {
                    sink ^= self.table.touch(hash);
                }
            }
            for p in parsed.iter().take(chunk.len()) {
                if let Some(id) = p.key().and_then(|(h, dir)| self.table.candidate(h, dir)) {
                    sink ^= u64::from(self.table.touch_entry(id, |s| s.flags));
                }
            }
            core::hint::black_box(sink);
            for ((frame, verdict), p) in chunk.iter_mut().zip(out.iter_mut()).zip(&parsed) {
                *verdict = match p {
                    Parsed::Fast(fast) => match self.fast_forward(now, frame, fast) {
                        Some(v) => self.count(v),
                        None => {
                            let general = self.parse(frame);
                            self.finish(now, frame, &general)
                        }
                    },
                    Parsed::General(general) => self.finish(now, frame, general),
                };
            }
            start = end;
        }
    }

    /// Count a verdict that is a drop or a pass.
    #[inline]
    fn count(&mut self, verdict: Verdict) -> Verdict {
        match verdict {
            Verdict::Drop(reason) => self.counters.drop(reason),
            Verdict::Pass => self.counters.passed += 1,
            _ => {}
        }
        verdict
    }

    /// Act on a parsed frame, and count the verdict.
    #[inline]
    fn finish(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        parsed: &Result<Packet, Verdict>,
    ) -> Verdict {
        let verdict = match parsed {
            Err(verdict) => *verdict,
            Ok(p) => {
                let result = match (&p.net, p.dir) {
                    (Net::V4(ip), dir) if ip.proto == wire::PROTO_ICMP => {
                        Ok(self.icmp4(frame, ip, dir))
                    }
                    (Net::V6(ip6), dir) if ip6.proto == wire::PROTO_ICMPV6 => {
                        Ok(self.icmp6(frame, ip6, dir))
                    }
                    (_, Dir::In) => self.inbound(now, frame, p),
                    (_, Dir::Out) => self.outbound(now, frame, p),
                };
                result.unwrap_or_else(Verdict::Drop)
            }
        };
        self.count(verdict)
    }

    /// Read a frame and decide everything that needs no table: `Err` with
    /// the verdict for a frame that is not ours or is dropped on its
    /// headers alone; otherwise the packet, its direction, its listener
    /// (inbound) and its flow hash. Cuts Ethernet padding off the frame.
    #[inline]
    fn parse(&self, frame: &mut Frame<'_>) -> Result<Packet, Verdict> {
        let bytes = frame.bytes();
        let (ethertype, l3) = wire::ethernet(bytes).map_err(Verdict::Drop)?;
        if ethertype == wire::ETHERTYPE_IPV6 {
            return self.parse6(frame, l3);
        }
        if ethertype != wire::ETHERTYPE_IPV4 {
            return Err(Verdict::Pass);
        }
        let ip = Ipv4::parse(bytes, l3).map_err(Verdict::Drop)?;
        let dst = u32_of(ip.dst);
        let to_vip = self.vips.binary_search(&dst).is_ok();
        if !to_vip && self.locals.binary_search(&dst).is_err() {
            return Err(Verdict::Pass);
        }
        if ip.hlen != 20 {
            return Err(Verdict::Drop(DropReason::IpOptions));
        }
        if ip.fragment {
            return Err(Verdict::Drop(DropReason::Fragment));
        }
        if !ip.checksum_ok {
            return Err(Verdict::Drop(DropReason::BadIpChecksum));
        }
        frame.truncate(l3 + ip.total);
        let bytes = frame.bytes();
        let l4 = match ip.proto {
            wire::PROTO_TCP => L4::tcp(bytes, ip.l4_off(), ip.l4_len()),
            wire::PROTO_UDP => L4::udp(bytes, ip.l4_off(), ip.l4_len()),
            wire::PROTO_ICMP => {
                return Ok(Packet {
                    net: Net::V4(ip),
                    l4: L4::default(),
                    dir: if to_vip { Dir::In } else { Dir::Out },
                    listener: 0,
                    hash: 0,
                });
            }
            _ => return Err(Verdict::Drop(DropReason::UnsupportedProtocol)),
        }
        .map_err(Verdict::Drop)?;
        if ip.proto == wire::PROTO_TCP && !tcp_flags_valid(l4.flags) {
            return Err(Verdict::Drop(DropReason::BadTcpFlags));
        }
        let listener = if to_vip {
            self.find_listener(dst, l4.dport, ip.proto)
                .ok_or(Verdict::Drop(DropReason::NoListener))?
        } else {
            0
        };
        let hash = hash::flow4(
            self.config.hash_seed,
            ip.proto,
            ip.src,
            l4.sport,
            ip.dst,
            l4.dport,
        );
        Ok(Packet {
            net: Net::V4(ip),
            l4,
            dir: if to_vip { Dir::In } else { Dir::Out },
            listener,
            hash,
        })
    }

    fn find_listener6(&self, vip: u128, port: u16, proto: u8) -> Option<ListenerId> {
        let key = (vip, port_proto(port, proto));
        let i = self.by_key6.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        self.by_key6.get(i).map(|&(_, id)| id)
    }

    /// [`Engine::parse`] for an IPv6 frame: ours toward an IPv6 VIP (6to4
    /// and 6to6 listeners) or an IPv6 local address (6to6 replies).
    fn parse6(&self, frame: &mut Frame<'_>, l3: usize) -> Result<Packet, Verdict> {
        let bytes = frame.bytes();
        let dst = *wire::array::<16>(bytes, l3 + 24).map_err(Verdict::Drop)?;
        let to_vip = self.vips6.binary_search(&u128::from_be_bytes(dst)).is_ok();
        if !to_vip
            && self
                .locals6
                .binary_search(&u128::from_be_bytes(dst))
                .is_err()
        {
            return Err(Verdict::Pass);
        }
        let dir = if to_vip { Dir::In } else { Dir::Out };
        let ip6 = Ipv6::parse(bytes, l3).map_err(Verdict::Drop)?;
        if ip6.fragment {
            return Err(Verdict::Drop(DropReason::Fragment));
        }
        frame.truncate(ip6.end());
        let bytes = frame.bytes();
        let l4 = match ip6.proto {
            wire::PROTO_TCP => L4::tcp(bytes, ip6.l4_off, ip6.l4_len()),
            wire::PROTO_UDP => L4::udp(bytes, ip6.l4_off, ip6.l4_len()),
            wire::PROTO_ICMPV6 => {
                return Ok(Packet {
                    net: Net::V6(ip6),
                    l4: L4::default(),
                    dir,
                    listener: 0,
                    hash: 0,
                });
            }
            _ => return Err(Verdict::Drop(DropReason::UnsupportedProtocol)),
        }
        .map_err(Verdict::Drop)?;
        if ip6.proto == wire::PROTO_TCP && !tcp_flags_valid(l4.flags) {
            return Err(Verdict::Drop(DropReason::BadTcpFlags));
        }
        let listener = match dir {
            Dir::In => self
                .find_listener6(u128::from_be_bytes(dst), l4.dport, ip6.proto)
                .ok_or(Verdict::Drop(DropReason::NoListener))?,
            Dir::Out => 0,
        };
        let hash = hash::flow6(
            self.config.hash_seed,
            ip6.proto,
            &ip6.src,
            l4.sport,
            &ip6.dst,
            l4.dport,
        );
        Ok(Packet {
            net: Net::V6(ip6),
            l4,
            dir,
            listener,
            hash,
        })
    }

    #[inline]
    fn find_listener(&self, vip: u32, port: u16, proto: u8) -> Option<ListenerId> {
        let key = listener_key(vip, port, proto);
        let i = self.by_key.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        self.by_key.get(i).map(|&(_, id)| id)
    }

    /// A packet to a VIP: its session (or a new one), TCP state, the TTM
    /// option, and the rewrite toward the server. An IPv6 packet (6to4)
    /// is translated to IPv4 first, so that the option and the ports are
    /// written on the packet the server will see.
    #[inline]
    fn inbound(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &Packet,
    ) -> Result<Verdict, DropReason> {
        let (l4, lid, h) = (&p.l4, p.listener, p.hash);
        let (proto, client, received) = match &p.net {
            Net::V4(ip) => (ip.proto, client16(ip.src), ip.total),
            Net::V6(ip6) => (ip6.proto, ip6.src, ip6.end() - ip6.off),
        };
        let policy = self
            .listener(lid)
            .map_or(ChecksumPolicy::Off, |l| l.config.verify_checksums);
        if policy == ChecksumPolicy::All {
            transport_checksum(frame.bytes(), &p.net)?;
        }
        let sport = l4.sport;
        let found = self
            .table
            .find(h, Dir::In, |s| s.of_client(lid, &client, sport));
        let is_syn = proto == wire::PROTO_TCP
            && l4.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN;
        let id = match found {
            Some(id) if is_syn => match self.syn_again(id) {
                SynAgain::Same => id,
                again => {
                    // Checked before the old session ends.
                    if policy == ChecksumPolicy::New {
                        transport_checksum(frame.bytes(), &p.net)?;
                    }
                    if self.end_session(id, now, End::Closed) {
                        match again {
                            SynAgain::Replace => self.counters.sessions_replaced += 1,
                            _ => self.counters.sessions_rescheduled += 1,
                        }
                    }
                    self.new_session(now, lid, h, proto, client, l4)?
                }
            },
            Some(id) => id,
            None if proto == wire::PROTO_TCP && !is_syn => return Err(DropReason::NoSession),
            None => {
                if policy == ChecksumPolicy::New {
                    transport_checksum(frame.bytes(), &p.net)?;
                }
                self.new_session(now, lid, h, proto, client, l4)?
            }
        };
        let listener = self
            .listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut);
        let (Some(listener), Some(s)) = (listener, self.table.get_mut(id)) else {
            return Err(DropReason::NoSession);
        };
        let lport = s.lport;
        let b = listener
            .backends
            .get(s.backend as usize)
            .ok_or(DropReason::NoSession)?;
        let (rip, rport, rip6) = (b.addr4, b.config.port, b.addr6);
        // 4to4 and 6to4 reach the server as IPv4 (6to4 translated here
        // first); 6to6 stays IPv6.
        let (at, path) = match (&p.net, rip6) {
            (Net::V4(ip), _) => {
                let lip = listener.lip4(s.lip).ok_or(DropReason::NoSession)?;
                (ip.headers(), Path::Four(*ip, lip))
            }
            (Net::V6(ip6), None) => {
                let lip = listener.lip4(s.lip).ok_or(DropReason::NoSession)?;
                xlat::v6_to_v4(frame, ip6, lip, rip)?;
                let ip = Ipv4::parse(frame.bytes(), ip6.off)?;
                (ip.headers(), Path::SixToFour(ip))
            }
            (Net::V6(ip6), Some(rip6)) => {
                let lip6 = listener.lip6(s.lip).ok_or(DropReason::NoSession)?;
                (ip6.headers(), Path::SixToSix(*ip6, lip6, rip6))
            }
        };
        let mut edited = None;
        if proto == wire::PROTO_TCP {
            let ttm = &listener.config.ttm;
            let wants = listener.ttm_on && s.wants_ttm(l4.flags, l4.ack);
            if s.track_client(l4.flags, l4.seq, l4.ack, l4.seq_len()) {
                self.half_open.remove(id);
            }
            let strip_timestamps = ttm.strip_timestamps && is_syn;
            // Client-supplied TTM/TOA options are removed from every
            // segment, whether or not this one gets ours.
            if wants || strip_timestamps || (l4.hlen > 20 && !ttm.strip.is_empty()) {
                let client = SocketAddr::new(listener.client_ip(s.client), s.cport);
                let edit = OptionEdit {
                    strip: &ttm.strip,
                    strip_timestamps,
                    insert: wants.then(|| TtmOption::new(ttm.kind, client)),
                };
                edited = Some(tcp_edit::edit_options(frame, at, &edit)?);
            }
        }
        s.expires = tick(now).wrapping_add(listener.timeouts_ms.for_session(s));
        let (ip_delta, l4_delta) = (
            Delta::from_folded(s.ip_delta, false),
            Delta::from_folded(s.l4_delta, false),
        );
        let bytes = frame.bytes_mut();
        let next_hop = match path {
            Path::Four(ip, lip) => {
                rewrite4(bytes, &ip, (lip, lport), (rip, rport), ip_delta, l4_delta)?;
                IpAddr::V4(Ipv4Addr::from(rip))
            }
            Path::SixToFour(ip) => {
                rewrite_ports(bytes, ip.l4_off(), proto, (lport, rport), l4_delta)?;
                IpAddr::V4(Ipv4Addr::from(rip))
            }
            Path::SixToSix(ip6, lip6, rip6) => {
                rewrite6(bytes, &ip6, (lip6, lport), (rip6, rport), l4_delta)?;
                IpAddr::V6(Ipv6Addr::from(rip6))
            }
        };
        // Bytes as received, before translation or any option.
        listener.traffic.inbound(received);
        if let Some(b) = listener.backends.get_mut(s.backend as usize) {
            b.traffic.inbound(received);
        }
        if let Some(e) = edited {
            let c = &mut self.counters;
            c.ttm_inserted += u64::from(e.insertion == Insertion::Inserted);
            c.ttm_missed += u64::from(e.missed());
            c.ttm_pruned += u64::from(e.pruned > 0);
            c.ttm_spoofed += u64::from(e.spoofed);
        }
        Ok(Verdict::ToServer { next_hop })
    }

    /// The session of a packet from a server `(rip, rport)` to a local
    /// address `(lip, lport)`, whose flow hash is `h` (4to4 and 6to4).
    #[inline]
    fn find_outbound(
        &self,
        h: u64,
        proto: u8,
        server: ([u8; 4], u16),
        local: ([u8; 4], u16),
    ) -> Option<u32> {
        self.table.find(
            h,
            Dir::Out,
            outbound4(&self.listeners, proto, server, local),
        )
    }

    /// [`Engine::find_outbound`] for a 6to6 session's IPv6 packet.
    #[inline]
    fn find_outbound6(
        &self,
        h: u64,
        proto: u8,
        (rip, rport): ([u8; 16], u16),
        (lip, lport): ([u8; 16], u16),
    ) -> Option<u32> {
        self.find_outbound_by(h, proto, lport, |l, s| {
            l.v6_path(s) == Some((rip, rport, lip))
        })
    }

    /// [`Engine::find_outbound`]'s lookup for a 6to6 session.
    #[inline]
    fn find_outbound_by(
        &self,
        h: u64,
        proto: u8,
        lport: u16,
        server_is: impl Fn(&Listener, &Session) -> bool,
    ) -> Option<u32> {
        self.table.find(
            h,
            Dir::Out,
            outbound_key(&self.listeners, proto, lport, server_is),
        )
    }

    /// What a client's SYN does to the session it finds: a closing one
    /// (TIME_WAIT or CLOSE) gives way to a new one, as in IPVS (the client
    /// reuses its port); so does a half-open one that the server has not
    /// answered while its backend can take no new session (down, removed
    /// or at weight 0) and another can, so that the client's SYN
    /// retransmissions reach a live server. Any other session, established
    /// ones above all, keeps its backend.
    fn syn_again(&self, id: u32) -> SynAgain {
        let Some(s) = self.table.get(id) else {
            return SynAgain::Same;
        };
        if matches!(s.tcp_state(), TcpState::TimeWait | TcpState::Close) {
            return SynAgain::Replace;
        }
        let stranded = s.flags & flag::SYNACK == 0
            && self
                .listener(s.listener)
                .is_some_and(|l| !is_eligible(&l.candidates, s.backend) && l.has_live_backend());
        if stranded {
            SynAgain::Reschedule
        } else {
            SynAgain::Same
        }
    }

    /// Start a session for a client (IPv4 in the first 4 bytes of
    /// `client`, or IPv6 for a 6to4 listener).
    ///
    /// A full table refuses a UDP datagram; a TCP SYN takes the place of
    /// the oldest half-open session (evicted: see [`Engine::end_session`]
    /// for its RST to the server), once the new session has its backend
    /// and local port, so that
    /// a SYN that cannot be served evicts nothing. Only a table full of
    /// established (or UDP) sessions refuses a SYN.
    fn new_session(
        &mut self,
        now: Instant,
        lid: ListenerId,
        h: u64,
        proto: u8,
        client: [u8; 16],
        l4: &L4,
    ) -> Result<u32, DropReason> {
        let (session, out_hash) = self.plan_session(now, lid, h, proto, client, l4)?;
        if self.table.is_full() {
            let oldest = self.half_open.oldest().ok_or(DropReason::TableFull)?;
            if !self.end_session(oldest, now, End::Evicted) {
                // Not a live session (the list is never left so): forget it.
                self.half_open.remove(oldest);
                return Err(DropReason::TableFull);
            }
            self.counters.sessions_evicted += 1;
        }
        self.add_session(now, session, h, out_hash)
    }

    /// [`Engine::new_session`]'s choices, which change nothing but the
    /// scheduler's state: the backend (affinity or scheduler) and the local
    /// address and port, as the session to insert and its outbound hash.
    fn plan_session(
        &mut self,
        now: Instant,
        lid: ListenerId,
        h: u64,
        proto: u8,
        client: [u8; 16],
        l4: &L4,
    ) -> Result<(Session, u64), DropReason> {
        let seed = self.config.hash_seed;
        let Engine {
            table,
            listeners,
            affinity,
            quarantine,
            half_open,
            ..
        } = self;
        let l = listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)
            .ok_or(DropReason::NoListener)?;
        let affinity_timeout = l.config.affinity.map(|a| a.timeout);
        let sticky = affinity_timeout.and_then(|_| {
            affinity
                .lookup(now, lid, &client)
                .filter(|&b| is_eligible(&l.candidates, b))
        });
        let backend = match sticky {
            Some(b) => b,
            None => {
                let source_hash = hash::source(seed, l.client_ip(client));
                l.scheduler
                    .pick(&l.candidates, h, source_hash)
                    .ok_or(DropReason::NoBackend)?
            }
        };
        if table.is_full() && (proto != wire::PROTO_TCP || half_open.oldest().is_none()) {
            return Err(DropReason::TableFull);
        }
        let b = l
            .backends
            .get(backend as usize)
            .ok_or(DropReason::NoBackend)?;
        let rport = b.config.port;
        let (lip, lport) = l
            .allocator
            .allocate(
                now,
                proto,
                b.config.addr,
                rport,
                h,
                quarantine,
                |t: &LocalTuple| tuple_live(table, seed, t),
            )
            .map_err(|e| match e {
                AllocateError::NoAddressOfFamily => DropReason::NoLocalAddress,
                AllocateError::Exhausted => DropReason::PortsExhausted,
            })?;
        let mut session = Session {
            client,
            cport: l4.sport,
            lport,
            listener: lid,
            lip,
            backend,
            expires: tick(now),
            proto,
            ..Session::default()
        };
        let keys = l.keys(seed, &session).ok_or(DropReason::NoLocalAddress)?;
        debug_assert_eq!(
            keys.in_hash, h,
            "the packet's flow hash is the inbound key's"
        );
        session.ip_delta = keys.ip_delta;
        session.l4_delta = keys.l4_delta;
        Ok((session, keys.out_hash))
    }

    /// Insert a session [`Engine::plan_session`] made, and count it; a TCP
    /// session starts half-open.
    fn add_session(
        &mut self,
        now: Instant,
        session: Session,
        h: u64,
        out_hash: u64,
    ) -> Result<u32, DropReason> {
        let Engine {
            table,
            listeners,
            affinity,
            half_open,
            counters,
            ..
        } = self;
        let (lid, backend) = (session.listener, session.backend);
        let l = listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)
            .ok_or(DropReason::NoListener)?;
        let id = table
            .insert(session, h, out_hash)
            .map_err(|_| DropReason::TableFull)?;
        if session.proto == wire::PROTO_TCP {
            half_open.push(id);
        }
        if let Some(c) = l.candidates.get_mut(backend as usize) {
            c.active += 1;
        }
        if let Some(b) = l.backends.get_mut(backend as usize) {
            b.traffic.new_sessions += 1;
            b.traffic.active_sessions += 1;
        }
        l.traffic.new_sessions += 1;
        l.traffic.active_sessions += 1;
        counters.sessions_created += 1;
        if let Some(a) = l.config.affinity {
            affinity.insert(now, lid, &session.client, backend, a.timeout);
        }
        Ok(id)
    }

    #[inline]
    fn outbound(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &Packet,
    ) -> Result<Verdict, DropReason> {
        let (l4, h) = (&p.l4, p.hash);
        let (proto, at, received, id) = match &p.net {
            Net::V4(ip) => (
                ip.proto,
                ip.headers(),
                ip.total,
                self.find_outbound(h, ip.proto, (ip.src, l4.sport), (ip.dst, l4.dport)),
            ),
            Net::V6(ip6) => (
                ip6.proto,
                ip6.headers(),
                ip6.end() - ip6.off,
                self.find_outbound6(h, ip6.proto, (ip6.src, l4.sport), (ip6.dst, l4.dport)),
            ),
        };
        let id = id.ok_or(DropReason::NoSession)?;
        let s = self.table.get_mut(id).ok_or(DropReason::NoSession)?;
        let listener = self
            .listeners
            .get_mut(usize::from(s.listener))
            .and_then(Option::as_mut)
            .ok_or(DropReason::NoSession)?;
        if listener.config.verify_checksums == ChecksumPolicy::All {
            transport_checksum(frame.bytes(), &p.net)?;
        }
        // Counted once the frame is sure to be forwarded: a later step can
        // still drop it (6to4 without the headroom to grow into IPv6).
        let mut mss_lowered = false;
        if proto == wire::PROTO_TCP {
            s.track_server(l4.flags, l4.seq, l4.ack, l4.seq_len());
            let synack = tcp_flags::SYN | tcp_flags::ACK;
            if l4.flags & synack == synack {
                if listener.config.ttm.strip_timestamps {
                    let edit = OptionEdit {
                        strip: &KindSet::EMPTY,
                        strip_timestamps: true,
                        insert: None,
                    };
                    tcp_edit::edit_options(frame, at, &edit)?;
                }
                // Room for the option in a full-size segment: the client's
                // segments carry it (8 bytes for an IPv4 client, 20 for an
                // IPv6 one). A 6to4 client's segment, sized by its own
                // MTU, shrinks by 20 bytes when translated to IPv4, and
                // the server's, sized by the client's MSS, grows by 20
                // toward an MTU the client's MSS already accounts for: the
                // option is all there is to make room for.
                let by = match (listener.ttm_on, listener.vip6) {
                    (false, _) => 0,
                    (true, None) => ttm_core::V4_LEN,
                    (true, Some(_)) => ttm_core::V6_LEN,
                };
                mss_lowered = by > 0 && tcp_edit::lower_mss(frame, at, by as u16)?.is_some();
            }
        }
        server_refresh(
            s,
            tick(now).wrapping_add(listener.timeouts_ms.for_session(s)),
        );
        let cport = s.cport;
        let vport = listener.config.port;
        let (ip_delta, l4_delta) = (
            Delta::from_folded(s.ip_delta, true),
            Delta::from_folded(s.l4_delta, true),
        );
        let next_hop = match (&p.net, listener.vip6) {
            (Net::V4(ip), None) => {
                let client = client4(s);
                rewrite4(
                    frame.bytes_mut(),
                    ip,
                    (listener.vip4, vport),
                    (client, cport),
                    ip_delta,
                    l4_delta,
                )?;
                IpAddr::V4(Ipv4Addr::from(client))
            }
            (Net::V6(ip6), Some(vip6)) => {
                // 6to6: addresses and ports in place.
                rewrite6(
                    frame.bytes_mut(),
                    ip6,
                    (vip6, vport),
                    (s.client, cport),
                    l4_delta,
                )?;
                IpAddr::V6(Ipv6Addr::from(s.client))
            }
            // An IPv6 session of an IPv4 VIP does not exist (4to6 is
            // refused by configuration).
            (Net::V6(_), None) => return Err(DropReason::NoSession),
            (Net::V4(ip), Some(vip6)) => {
                // 6to4: the ports first, on the IPv4 packet; then the
                // header is translated to IPv6 toward the client. The
                // SYN-ACK's edits may have changed its length: read the
                // header again.
                rewrite_ports(
                    frame.bytes_mut(),
                    ip.l4_off(),
                    proto,
                    (vport, cport),
                    l4_delta,
                )?;
                let now_ip = Ipv4::parse(frame.bytes(), ip.off)?;
                xlat::v4_to_v6(frame, &now_ip, vip6, s.client)?;
                IpAddr::V6(Ipv6Addr::from(s.client))
            }
        };
        self.counters.mss_lowered += u64::from(mss_lowered);
        listener.traffic.outbound(received);
        if let Some(b) = listener.backends.get_mut(s.backend as usize) {
            b.traffic.outbound(received);
        }
        Ok(Verdict::ToClient { next_hop })
    }

    /// ICMP to a VIP (`Dir::In`) or to a local address (`Dir::Out`): an
    /// echo request to a VIP is answered; destination unreachable and time
    /// exceeded about a session are forwarded to its other side; any other
    /// error, and any other ICMP to a VIP, is dropped; other ICMP to a
    /// local address (an echo request, say) is the host's.
    fn icmp4(&mut self, frame: &mut Frame<'_>, ip: &Ipv4, dir: Dir) -> Verdict {
        let kind = frame.bytes().get(ip.l4_off()).copied();
        match (kind, dir) {
            (Some(xlat::icmp_type::V4_ECHO_REQUEST), Dir::In) => self.icmp_to_vip(frame, ip),
            (Some(xlat::icmp_type::V4_DEST_UNREACHABLE | xlat::icmp_type::V4_TIME_EXCEEDED), _) => {
                self.icmp4_error(frame, ip, dir)
                    .unwrap_or_else(Verdict::Drop)
            }
            (None, _) => Verdict::Drop(DropReason::Truncated),
            // Other errors (source quench, redirect, parameter problem):
            // never forwarded.
            (Some(4 | 5 | xlat::icmp_type::V4_PARAMETER_PROBLEM), _) | (_, Dir::In) => {
                Verdict::Drop(DropReason::IcmpUnsupported)
            }
            (_, Dir::Out) => Verdict::Pass,
        }
    }

    /// ICMPv6 to an IPv6 VIP (`Dir::In`) or local address (`Dir::Out`),
    /// as [`Engine::icmp4`] does for ICMP.
    fn icmp6(&mut self, frame: &mut Frame<'_>, ip6: &Ipv6, dir: Dir) -> Verdict {
        match (frame.bytes().get(ip6.l4_off).copied(), dir) {
            (Some(xlat::icmp_type::V6_ECHO_REQUEST), Dir::In) => self.icmp6_to_vip(frame, ip6),
            (
                Some(
                    xlat::icmp_type::V6_DEST_UNREACHABLE
                    | xlat::icmp_type::V6_PACKET_TOO_BIG
                    | xlat::icmp_type::V6_TIME_EXCEEDED,
                ),
                _,
            ) => self
                .icmp6_error(frame, ip6, dir)
                .unwrap_or_else(Verdict::Drop),
            (None, _) => Verdict::Drop(DropReason::Truncated),
            // Neighbour discovery (RFC 4861: router and neighbour
            // solicitations and advertisements, redirect), to a VIP too
            // (unicast reachability probes): the host's.
            (Some(133..=137), _) => Verdict::Pass,
            // Other errors (parameter problem, types below 128) are never
            // forwarded; other informational messages to a local address
            // are the host's.
            (Some(kind), _) if kind < 128 => Verdict::Drop(DropReason::IcmpUnsupported),
            (Some(_), Dir::In) => Verdict::Drop(DropReason::IcmpUnsupported),
            (Some(_), Dir::Out) => Verdict::Pass,
        }
    }

    /// An ICMP error about a packet the engine sent: to a client (it came
    /// back to the VIP, `Dir::In`) or to a server (it came back to the
    /// local address, `Dir::Out`). It goes to the session's other side
    /// with its outer addresses and its quoted packet rewritten as that
    /// side sent it, so that path MTU discovery and unreachables work
    /// through the balancer (6to4: translated to ICMPv6, RFC 7915 §4.2).
    fn icmp4_error(
        &mut self,
        frame: &mut Frame<'_>,
        ip: &Ipv4,
        dir: Dir,
    ) -> Result<Verdict, DropReason> {
        let err = xlat::parse_icmp4_error(frame.bytes(), ip)?;
        let f = err.flow;
        let seed = self.config.hash_seed;
        let id = match dir {
            // We sent VIP:vport -> client:cport.
            Dir::In => {
                let lid = self
                    .find_listener(u32_of(f.src), f.sport, f.proto)
                    .ok_or(DropReason::IcmpNoSession)?;
                let h = hash::flow4(seed, f.proto, f.dst, f.dport, f.src, f.sport);
                let client = client16(f.dst);
                self.table
                    .find(h, Dir::In, |s| s.of_client(lid, &client, f.dport))
                    .ok_or(DropReason::IcmpNoSession)?
            }
            // We sent lip:lport -> rip:rport.
            Dir::Out => {
                let h = hash::flow4(seed, f.proto, f.dst, f.dport, f.src, f.sport);
                self.find_outbound(h, f.proto, (f.dst, f.dport), (f.src, f.sport))
                    .ok_or(DropReason::IcmpNoSession)?
            }
        };
        let s = *self.table.get(id).ok_or(DropReason::IcmpNoSession)?;
        let l = self.listener(s.listener).ok_or(DropReason::IcmpNoSession)?;
        let (rip, rport) = l
            .backend_addr4(s.backend)
            .ok_or(DropReason::IcmpNoSession)?;
        let lip = l.lip4(s.lip).ok_or(DropReason::IcmpNoSession)?;
        let vport = l.config.port;
        let verdict = match (dir, l.vip6) {
            (Dir::In, _) => {
                let to = xlat::ErrorRewrite {
                    src: lip,
                    dst: rip,
                    inner_src: (rip, rport),
                    inner_dst: (lip, s.lport),
                };
                xlat::icmp4_error_rewrite(frame, ip, &err, &to)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
                }
            }
            (Dir::Out, None) => {
                let (vip, client) = (l.vip4, client4(&s));
                let to = xlat::ErrorRewrite {
                    src: vip,
                    dst: client,
                    inner_src: (client, s.cport),
                    inner_dst: (vip, vport),
                };
                xlat::icmp4_error_rewrite(frame, ip, &err, &to)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V4(Ipv4Addr::from(client)),
                }
            }
            (Dir::Out, Some(vip6)) => {
                let to = xlat::ErrorRewrite {
                    src: vip6,
                    dst: s.client,
                    inner_src: (s.client, s.cport),
                    inner_dst: (vip6, vport),
                };
                xlat::icmp4_error_to_v6(frame, ip, &err, &to, xlat::NO_MTU_CAP)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V6(Ipv6Addr::from(s.client)),
                }
            }
        };
        self.counters.icmp_errors_forwarded += 1;
        Ok(verdict)
    }

    /// An ICMPv6 error about a packet the engine sent: to an IPv6 client
    /// (`Dir::In`) or to an IPv6 server (`Dir::Out`, 6to6). Toward an IPv4
    /// server (6to4) it is translated to ICMP (RFC 7915 §5.2, packet too
    /// big becoming fragmentation needed with the MTU less 20); otherwise
    /// rewritten as the other side sent the quoted packet.
    fn icmp6_error(
        &mut self,
        frame: &mut Frame<'_>,
        ip6: &Ipv6,
        dir: Dir,
    ) -> Result<Verdict, DropReason> {
        let err = xlat::parse_icmp6_error(frame.bytes(), ip6)?;
        let f = err.flow;
        let h = hash::flow6(
            self.config.hash_seed,
            f.proto,
            &f.dst,
            f.dport,
            &f.src,
            f.sport,
        );
        let id = match dir {
            // We sent VIP6:vport -> client:cport.
            Dir::In => {
                let lid = self
                    .find_listener6(u128::from_be_bytes(f.src), f.sport, f.proto)
                    .ok_or(DropReason::IcmpNoSession)?;
                self.table
                    .find(h, Dir::In, |s| s.of_client(lid, &f.dst, f.dport))
            }
            // We sent lip6:lport -> rip6:rport.
            Dir::Out => self.find_outbound6(h, f.proto, (f.dst, f.dport), (f.src, f.sport)),
        }
        .ok_or(DropReason::IcmpNoSession)?;
        let s = *self.table.get(id).ok_or(DropReason::IcmpNoSession)?;
        let l = self.listener(s.listener).ok_or(DropReason::IcmpNoSession)?;
        let vip6 = l.vip6.ok_or(DropReason::IcmpNoSession)?;
        let vport = l.config.port;
        let verdict = match (dir, l.v6_path(&s)) {
            (Dir::In, Some((rip6, rport, lip6))) => {
                let to = xlat::ErrorRewrite {
                    src: lip6,
                    dst: rip6,
                    inner_src: (rip6, rport),
                    inner_dst: (lip6, s.lport),
                };
                xlat::icmp6_error_rewrite(frame, ip6, &err, &to)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V6(Ipv6Addr::from(rip6)),
                }
            }
            (Dir::In, None) => {
                let (rip, rport) = l
                    .backend_addr4(s.backend)
                    .ok_or(DropReason::IcmpNoSession)?;
                let lip = l.lip4(s.lip).ok_or(DropReason::IcmpNoSession)?;
                let to = xlat::ErrorRewrite {
                    src: lip,
                    dst: rip,
                    inner_src: (rip, rport),
                    inner_dst: (lip, s.lport),
                };
                xlat::icmp6_error_to_v4(frame, ip6, &err, &to, xlat::NO_MTU_CAP)?;
                Verdict::ToServer {
                    next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
                }
            }
            (Dir::Out, _) => {
                let to = xlat::ErrorRewrite {
                    src: vip6,
                    dst: s.client,
                    inner_src: (s.client, s.cport),
                    inner_dst: (vip6, vport),
                };
                xlat::icmp6_error_rewrite(frame, ip6, &err, &to)?;
                Verdict::ToClient {
                    next_hop: IpAddr::V6(Ipv6Addr::from(s.client)),
                }
            }
        };
        self.counters.icmp_errors_forwarded += 1;
        Ok(verdict)
    }

    /// An echo request to a VIP is answered while any listener of the VIP
    /// that answers ping has a live backend (FAQ Q1).
    fn icmp_to_vip(&mut self, frame: &mut Frame<'_>, ip: &Ipv4) -> Verdict {
        let off = ip.l4_off();
        let bytes = frame.bytes_mut();
        let Ok(&[kind, code, ..]) = wire::array::<8>(bytes, off) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        if (kind, code) != (8, 0) {
            return Verdict::Drop(DropReason::IcmpUnsupported);
        }
        let vip = ip.dst;
        if let Err(reason) = self.answers_ping(|l| l.vip6.is_none() && l.vip4 == vip) {
            return Verdict::Drop(reason);
        }
        // Echo reply: type 8 -> 0 (RFC 792); swap the addresses, which
        // leaves both checksums' address terms unchanged; fresh TTL.
        let Ok(old) = wire::be16(bytes, off + 2) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        // A sum of 0 is sent as 0xffff: an all-zero message's checksum
        // (RFC 1071), which receivers check as such.
        let icmp_sum = match Delta::default().word(0x0800, 0x0000).apply(old) {
            0 => 0xffff,
            sum => sum,
        };
        let ttl_word = |b: &[u8]| wire::be16(b, ip.off + ipv4_field::TTL);
        let Ok(old_ttl_word) = ttl_word(bytes) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let new_ttl_word = (64u16 << 8) | (old_ttl_word & 0x00ff);
        let Ok(old_ip_sum) = wire::be16(bytes, ip.off + ipv4_field::CHECKSUM) else {
            return Verdict::Drop(DropReason::Truncated);
        };
        let ip_sum = Delta::default()
            .word(old_ttl_word, new_ttl_word)
            .apply(old_ip_sum);
        let written = (|| -> Result<(), DropReason> {
            *wire::array_mut::<1>(bytes, off)? = [0];
            wire::set_be16(bytes, off + 2, icmp_sum)?;
            wire::set_be16(bytes, ip.off + ipv4_field::TTL, new_ttl_word)?;
            wire::set_be16(bytes, ip.off + ipv4_field::CHECKSUM, ip_sum)?;
            *wire::array_mut::<4>(bytes, ip.off + ipv4_field::SRC)? = ip.dst;
            *wire::array_mut::<4>(bytes, ip.off + ipv4_field::DST)? = ip.src;
            Ok(())
        })();
        match written {
            Ok(()) => {
                self.counters.echo_replies += 1;
                Verdict::Reply {
                    next_hop: IpAddr::V4(Ipv4Addr::from(ip.src)),
                }
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    /// Whether a VIP (the listeners `of_vip` picks) answers ping: one of
    /// its listeners answers ping and has a live backend (FAQ Q1).
    fn answers_ping(&self, of_vip: impl Fn(&Listener) -> bool) -> Result<(), DropReason> {
        let mut answering = self
            .listeners
            .iter()
            .flatten()
            .filter(|l| of_vip(l) && l.config.ping)
            .peekable();
        if answering.peek().is_none() {
            return Err(DropReason::PingDisabled);
        }
        if !answering.any(Listener::has_live_backend) {
            return Err(DropReason::PingNoBackend);
        }
        Ok(())
    }

    /// An ICMPv6 echo request to an IPv6 VIP, answered as for IPv4: type
    /// 128 becomes 129 (RFC 4443 §4.2), the addresses swap (which leaves
    /// the pseudo-header's sum as it was), and the hop limit is fresh.
    fn icmp6_to_vip(&mut self, frame: &mut Frame<'_>, ip6: &Ipv6) -> Verdict {
        let vip = ip6.dst;
        let reply = (|| -> Result<(), DropReason> {
            let bytes = frame.bytes_mut();
            let [kind, code, ..] = *wire::array::<8>(bytes, ip6.l4_off)?;
            if (kind, code) != (128, 0) {
                return Err(DropReason::IcmpUnsupported);
            }
            self.answers_ping(|l| l.vip6 == Some(vip))?;
            let old = wire::be16(bytes, ip6.l4_off + 2)?;
            let sum = match Delta::default().word(0x8000, 0x8100).apply(old) {
                0 => 0xffff,
                sum => sum,
            };
            *wire::array_mut::<1>(bytes, ip6.l4_off)? = [129];
            wire::set_be16(bytes, ip6.l4_off + 2, sum)?;
            *wire::array_mut::<1>(bytes, ip6.off + 7)? = [64];
            *wire::array_mut::<16>(bytes, ip6.off + 8)? = ip6.dst;
            *wire::array_mut::<16>(bytes, ip6.off + 24)? = ip6.src;
            Ok(())
        })();
        match reply {
            Ok(()) => {
                self.counters.echo_replies += 1;
                Verdict::Reply {
                    next_hop: IpAddr::V6(Ipv6Addr::from(ip6.src)),
                }
            }
            Err(reason) => Verdict::Drop(reason),
        }
    }

    // ----- expiry --------------------------------------------------------

    /// When [`Engine::handle_timeout`] should next be called: `None` while
    /// there is no session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.table.is_empty() {
            None
        } else {
            Some(self.next_sweep)
        }
    }

    /// Sweep this call's share of the table: sessions past their deadline
    /// end, and an established TCP session that idled out queues an RST to
    /// each side (take them with [`Engine::poll_transmit`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.latest = self.latest.max(now);
        if now < self.next_sweep {
            return;
        }
        let bound = self.table.id_bound();
        let ticks_per_period =
            (self.config.sweep_period.as_nanos() / self.config.sweep_tick.as_nanos().max(1)).max(1);
        let share = u32::try_from(u128::from(bound).div_ceil(ticks_per_period)).unwrap_or(bound);
        let now_tick = tick(now);
        let mut cursor = if self.sweep_cursor >= bound {
            0
        } else {
            self.sweep_cursor
        };
        let mut left = share.min(bound);
        while left > 0 {
            let due = self
                .table
                .get(cursor)
                .is_some_and(|s| expired(s.expires, now_tick));
            if due {
                if self.pending.len() + 2 > PENDING_RSTS {
                    // The RST queue is full: stop here, resume from this
                    // session once the caller has taken some.
                    break;
                }
                self.end_session(cursor, now, End::Expired);
            }
            cursor = if cursor + 1 >= bound { 0 } else { cursor + 1 };
            left -= 1;
        }
        self.sweep_cursor = cursor;
        self.next_sweep = now + self.config.sweep_tick;
    }

    /// End a session: RSTs if it idled out established, counters, the
    /// quarantine of its outbound tuple, and the table.
    ///
    /// An evicted half-open session whose server answered gets an RST
    /// toward the server instead of the quarantine: it frees the server's
    /// SYN_RECV entry for the tuple (the RST carries the sequence number
    /// and acknowledgment the server expects), so the tuple can be handed
    /// out again at once. Quarantined, every evicted tuple would be held
    /// for the whole period, and a flood would run the local ports out in
    /// about a second; handed out again without the RST, a new SYN would
    /// meet the server's entry for the old one and be reset. One whose
    /// server has not answered (or when the RST queue is half full) is
    /// quarantined as usual.
    ///
    /// Returns whether it was removed: false, and nothing done, for an id
    /// that is no live session (the callers count only what ended).
    fn end_session(&mut self, id: u32, now: Instant, end: End) -> bool {
        let expired = end == End::Expired;
        let seed = self.config.hash_seed;
        let Some(s) = self.table.get(id).copied() else {
            return false;
        };
        let Some(l) = self
            .listeners
            .get_mut(usize::from(s.listener))
            .and_then(Option::as_mut)
        else {
            return false;
        };
        // The server side: IPv4 (4to4, 6to4) or IPv6 (6to6), as 16 bytes
        // with IPv4 in the first 4.
        let server_side = match l.v6_path(&s) {
            Some((rip6, rport, lip6)) => Some((true, rip6, rport, lip6)),
            None => match (l.backend_addr4(s.backend), l.lip4(s.lip)) {
                (Some((rip, rport)), Some(lip)) => {
                    Some((false, client16(rip), rport, client16(lip)))
                }
                _ => None,
            },
        };
        let Some((server_v6, rip, rport, lip)) = server_side else {
            return false;
        };
        let Some(keys) = l.keys(seed, &s) else {
            return false;
        };
        if self.table.remove(id, keys.in_hash, keys.out_hash).is_none() {
            return false;
        }
        self.half_open.remove(id);
        if expired && s.proto == wire::PROTO_TCP && s.tcp_state() == TcpState::Established {
            // RFC 9293 §3.10.7.3 / RFC 5961: an RST is accepted at once
            // when its sequence number is the receiver's next expected
            // one, which is the last acknowledgment that side sent.
            let to_client_seq = if s.c_ack != 0 { s.c_ack } else { s.s_next };
            let to_server_seq = if s.s_ack != 0 { s.s_ack } else { s.c_next };
            let (v6, src, dst) = match l.vip6 {
                None => (false, client16(l.vip4), s.client),
                Some(vip6) => (true, vip6, s.client),
            };
            self.pending.push_back(PendingRst {
                to_client: true,
                v6,
                src,
                dst,
                sport: l.config.port,
                dport: s.cport,
                seq: to_client_seq,
                ack: s.c_next,
            });
            self.pending.push_back(PendingRst {
                to_client: false,
                v6: server_v6,
                src: lip,
                dst: rip,
                sport: s.lport,
                dport: rport,
                seq: to_server_seq,
                ack: s.s_next,
            });
        }
        // Half the RST queue stays for the sweep's, which pauses when the
        // queue is full.
        let freed = end == End::Evicted
            && s.flags & flag::SYNACK != 0
            && self.pending.len() < PENDING_RSTS / 2;
        if freed {
            self.pending.push_back(PendingRst {
                to_client: false,
                v6: server_v6,
                src: lip,
                dst: rip,
                sport: s.lport,
                dport: rport,
                seq: s.c_next,
                ack: s.s_next,
            });
        }
        if let Some(c) = l.candidates.get_mut(s.backend as usize) {
            c.active = c.active.saturating_sub(1);
        }
        if let Some(b) = l.backends.get_mut(s.backend as usize) {
            b.traffic.active_sessions = b.traffic.active_sessions.saturating_sub(1);
        }
        l.traffic.active_sessions = l.traffic.active_sessions.saturating_sub(1);
        if expired {
            self.counters.sessions_expired += 1;
        }
        if freed {
            return true;
        }
        let addr = |a: [u8; 16]| {
            if server_v6 {
                IpAddr::V6(Ipv6Addr::from(a))
            } else {
                IpAddr::V4(Ipv4Addr::from(client4_of(a)))
            }
        };
        let tuple = LocalTuple {
            proto: s.proto,
            lip: addr(lip),
            lport: s.lport,
            rip: addr(rip),
            rport,
        };
        if !self.quarantine.insert(now, &tuple) {
            self.counters.quarantine_overflow += 1;
        }
        true
    }

    /// Write the next packet the engine itself sends (the RSTs of idle
    /// expiry) as an Ethernet frame at the start of `buf`, with zero MAC
    /// addresses for the caller to fill. Returns its length and where it
    /// goes; `None` when nothing is waiting or `buf` is shorter than
    /// [`Engine::TRANSMIT_LEN`] (the packet then stays queued).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(usize, Verdict)> {
        let rst = *self.pending.front()?;
        let out = buf.get_mut(..Self::TRANSMIT_LEN)?;
        let (len, next_hop) = if rst.v6 {
            (write_rst6(out, &rst), IpAddr::V6(Ipv6Addr::from(rst.dst)))
        } else {
            (
                write_rst4(out, &rst),
                IpAddr::V4(Ipv4Addr::from(client4_of(rst.dst))),
            )
        };
        self.pending.pop_front();
        self.counters.rst_sent += 1;
        let verdict = if rst.to_client {
            Verdict::ToClient { next_hop }
        } else {
            Verdict::ToServer { next_hop }
        };
        Some((len, verdict))
    }
}

/// Whether an outbound tuple is held by a live session. A match on the
/// index's tag and the local port is taken as live without checking the
/// rest of the key: a rare false positive only skips a free port.
fn tuple_live(table: &Table<Session>, seed: u64, t: &LocalTuple) -> bool {
    let h = match (t.rip, t.lip) {
        (IpAddr::V4(rip), IpAddr::V4(lip)) => {
            hash::flow4(seed, t.proto, rip.octets(), t.rport, lip.octets(), t.lport)
        }
        (IpAddr::V6(rip), IpAddr::V6(lip)) => hash::flow6(
            seed,
            t.proto,
            &rip.octets(),
            t.rport,
            &lip.octets(),
            t.lport,
        ),
        _ => return false,
    };
    table
        .find(h, Dir::Out, |s| s.lport == t.lport && s.proto == t.proto)
        .is_some()
}

/// The RST|ACK segment of a pending RST, with its checksum over
/// `pseudo` (the pseudo-header's sum).
fn rst_segment(rst: &PendingRst, pseudo: u32) -> [u8; 20] {
    let mut seg = [0u8; 20];
    let [s0, s1] = rst.sport.to_be_bytes();
    let [d0, d1] = rst.dport.to_be_bytes();
    let [q0, q1, q2, q3] = rst.seq.to_be_bytes();
    let [a0, a1, a2, a3] = rst.ack.to_be_bytes();
    let flags = tcp_flags::RST | tcp_flags::ACK;
    seg[..14].copy_from_slice(&[
        s0,
        s1,
        d0,
        d1,
        q0,
        q1,
        q2,
        q3,
        a0,
        a1,
        a2,
        a3,
        5 << 4,
        flags,
    ]);
    let sum = checksum::finish(checksum::sum(pseudo, &seg));
    [seg[16], seg[17]] = sum.to_be_bytes();
    seg
}

/// Write an RST|ACK segment in an IPv4 packet in an Ethernet frame with
/// zero MAC addresses; returns its length (54).
fn write_rst4(out: &mut [u8], rst: &PendingRst) -> usize {
    let (src, dst) = (client4_of(rst.src), client4_of(rst.dst));
    let mut frame = [0u8; wire::ETH_HLEN + 40];
    [frame[12], frame[13]] = wire::ETHERTYPE_IPV4.to_be_bytes();
    let mut ip = [0u8; 20];
    ip[..10].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, wire::PROTO_TCP]);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    [ip[10], ip[11]] = checksum::of(&ip).to_be_bytes();
    frame[14..34].copy_from_slice(&ip);
    let pseudo = checksum::sum(
        checksum::sum(checksum::sum(0, &src), &dst),
        &[0, wire::PROTO_TCP, 0, 20],
    );
    frame[34..54].copy_from_slice(&rst_segment(rst, pseudo));
    out.iter_mut().zip(frame).for_each(|(o, b)| *o = b);
    frame.len()
}

/// Write an RST|ACK segment in an IPv6 packet in an Ethernet frame with
/// zero MAC addresses; returns its length (74).
fn write_rst6(out: &mut [u8], rst: &PendingRst) -> usize {
    let mut frame = [0u8; wire::ETH_HLEN + 60];
    [frame[12], frame[13]] = wire::ETHERTYPE_IPV6.to_be_bytes();
    // Version 6, no traffic class or flow label, payload 20, TCP, hop 64.
    frame[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, 20, wire::PROTO_TCP, 64]);
    frame[22..38].copy_from_slice(&rst.src);
    frame[38..54].copy_from_slice(&rst.dst);
    let pseudo = checksum::sum(
        checksum::sum(checksum::sum(0, &rst.src), &rst.dst),
        &[0, 0, 0, 20, 0, 0, 0, wire::PROTO_TCP],
    );
    frame[54..74].copy_from_slice(&rst_segment(rst, pseudo));
    out.iter_mut().zip(frame).for_each(|(o, b)| *o = b);
    frame.len()
}

/// Verify the TCP or UDP checksum of the packet whose network header is
/// `net` (see [`checksum::transport_ok`]): `BadL4Checksum` if it is wrong.
fn transport_checksum(bytes: &[u8], net: &Net) -> Result<(), DropReason> {
    let ok = match net {
        Net::V4(ip) => {
            let (off, len) = (ip.l4_off(), ip.l4_len());
            let seg = bytes.get(off..off + len).ok_or(DropReason::Truncated)?;
            let pseudo = checksum::pseudo4(ip.src, ip.dst, ip.proto, len);
            checksum::transport_ok(pseudo, ip.proto, seg, false)
        }
        Net::V6(ip6) => {
            let seg = bytes
                .get(ip6.l4_off..ip6.end())
                .ok_or(DropReason::Truncated)?;
            let pseudo = checksum::pseudo6(&ip6.src, &ip6.dst, seg.len(), ip6.proto);
            checksum::transport_ok(pseudo, ip6.proto, seg, true)
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DropReason::BadL4Checksum)
    }
}

/// Flags no segment may carry: none of SYN, ACK, RST set; SYN with RST
/// or FIN.
fn tcp_flags_valid(flags: u8) -> bool {
    use tcp_flags::{ACK, FIN, RST, SYN};
    if flags & (SYN | ACK | RST) == 0 {
        return false;
    }
    !(flags & SYN != 0 && flags & (RST | FIN) != 0)
}

/// Rewrite an IPv6 TCP/UDP packet's source to `src` and destination to
/// `dst` (6to6), applying the session's precomputed change to the
/// transport checksum (IPv6 has no header checksum).
fn rewrite6(
    bytes: &mut [u8],
    ip6: &Ipv6,
    src: ([u8; 16], u16),
    dst: ([u8; 16], u16),
    l4_delta: Delta,
) -> Result<(), DropReason> {
    *wire::array_mut::<16>(bytes, ip6.off + 8)? = src.0;
    *wire::array_mut::<16>(bytes, ip6.off + 24)? = dst.0;
    rewrite_ports(bytes, ip6.l4_off, ip6.proto, (src.1, dst.1), l4_delta)
}

/// Rewrite the ports of a TCP or UDP header at `l4_off` to `ports`
/// (source, destination), applying `l4_delta` to its checksum: the 6to4
/// path, where translation has already written the addresses.
fn rewrite_ports(
    bytes: &mut [u8],
    l4_off: usize,
    proto: u8,
    ports: (u16, u16),
    l4_delta: Delta,
) -> Result<(), DropReason> {
    let [s0, s1] = ports.0.to_be_bytes();
    let [d0, d1] = ports.1.to_be_bytes();
    if proto == wire::PROTO_TCP {
        let t = wire::array_mut::<18>(bytes, l4_off)?;
        let old = u16::from_be_bytes([t[16], t[17]]);
        [t[16], t[17]] = l4_delta.apply(old).to_be_bytes();
        [t[0], t[1], t[2], t[3]] = [s0, s1, d0, d1];
    } else {
        let u = wire::array_mut::<8>(bytes, l4_off)?;
        let old = u16::from_be_bytes([u[6], u[7]]);
        [u[6], u[7]] = l4_delta.apply_udp4(old).to_be_bytes();
        [u[0], u[1], u[2], u[3]] = [s0, s1, d0, d1];
    }
    Ok(())
}

/// Rewrite an IPv4 TCP/UDP packet's source to `src` and destination to
/// `dst`, applying the session's precomputed checksum changes (RFC 1624):
/// `ip_delta` to the IPv4 header checksum, `l4_delta` to the transport
/// checksum. The IPv4 header has no options (checked by the caller), so the
/// transport header follows it at once. Always inlined: the protocol is
/// then mostly known where it is called, and the other branch goes.
#[inline(always)]
fn rewrite4(
    bytes: &mut [u8],
    ip: &Ipv4,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ip_delta: Delta,
    l4_delta: Delta,
) -> Result<(), DropReason> {
    let [sp0, sp1] = src.1.to_be_bytes();
    let [dp0, dp1] = dst.1.to_be_bytes();
    // IPv4 header (20 bytes), then TCP up to its checksum (18) or UDP (8).
    let h = if ip.proto == wire::PROTO_TCP {
        let h = wire::array_mut::<38>(bytes, ip.off)?;
        let old = u16::from_be_bytes([h[36], h[37]]);
        [h[36], h[37]] = l4_delta.apply(old).to_be_bytes();
        h.first_chunk_mut::<24>()
    } else {
        let h = wire::array_mut::<28>(bytes, ip.off)?;
        let old = u16::from_be_bytes([h[26], h[27]]);
        [h[26], h[27]] = l4_delta.apply_udp4(old).to_be_bytes();
        h.first_chunk_mut::<24>()
    };
    let h = h.ok_or(DropReason::Truncated)?;
    let old = u16::from_be_bytes([h[10], h[11]]);
    [h[10], h[11]] = ip_delta.apply(old).to_be_bytes();
    [h[12], h[13], h[14], h[15]] = src.0;
    [h[16], h[17], h[18], h[19]] = dst.0;
    [h[20], h[21], h[22], h[23]] = [sp0, sp1, dp0, dp1];
    Ok(())
}
