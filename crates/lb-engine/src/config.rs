//! Configuration: the engine, its listeners, their backends and timeouts,
//! and [`ConfigError`].
//!
//! Every change is validated whole before anything is applied, so a
//! rejected change leaves the previous configuration exactly as it was.

use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use crate::lport::{LocalPool, LportError};
use crate::owner::PortShare;
use crate::rss::RssSteering;
use crate::sched::{Affinity, SchedError, SchedulerKind};

/// Transport protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP: stateful, with the TTM option and RSTs on idle expiry.
    Tcp,
    /// UDP: sessions idle out silently.
    Udp,
}

impl Protocol {
    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => crate::wire::PROTO_TCP,
            Protocol::Udp => crate::wire::PROTO_UDP,
        }
    }
}

/// Idle timeouts of a listener's sessions, by state.
///
/// Defaults: TCP established 900 s and UDP 120 s (the product FAQ); the
/// short TCP states follow IPVS's table, shortened where the port
/// quarantine already covers what a long state protected (`time_wait`:
/// the RS keeps its own TIME_WAIT, and a closed tuple is not reused for the
/// quarantine period).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP after the handshake: 900 s.
    pub tcp_established: Duration,
    /// TCP between the client's SYN and its ACK of the SYN-ACK: 30 s.
    pub syn_recv: Duration,
    /// TCP after the client's FIN: 60 s.
    pub fin_wait: Duration,
    /// TCP after the server's FIN: 60 s.
    pub close_wait: Duration,
    /// TCP after both FINs, before the last ACK: 30 s.
    pub last_ack: Duration,
    /// TCP after both FINs were acknowledged: 10 s.
    pub time_wait: Duration,
    /// TCP after an RST: 10 s.
    pub close: Duration,
    /// UDP: 120 s.
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(900),
            syn_recv: Duration::from_secs(30),
            fin_wait: Duration::from_secs(60),
            close_wait: Duration::from_secs(60),
            last_ack: Duration::from_secs(30),
            time_wait: Duration::from_secs(10),
            close: Duration::from_secs(10),
            udp: Duration::from_secs(120),
        }
    }
}

impl Timeouts {
    /// The longest timeout the engine's wrapping millisecond deadlines
    /// can hold: 24 days.
    pub const MAX: Duration = Duration::from_secs(24 * 24 * 3600);

    fn all(&self) -> [Duration; 8] {
        [
            self.tcp_established,
            self.syn_recv,
            self.fin_wait,
            self.close_wait,
            self.last_ack,
            self.time_wait,
            self.close,
            self.udp,
        ]
    }
}

/// A real server in a listener's pool. The same host on two ports is two
/// backends (FAQ Q11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendConfig {
    /// The server's address.
    pub addr: IpAddr,
    /// The server's port.
    pub port: u16,
    /// Relative share of new sessions; 0 drains (no new sessions, old ones
    /// continue).
    pub weight: u16,
    /// Whether health checks consider it up; a down backend gets no new
    /// sessions.
    pub up: bool,
}

impl BackendConfig {
    /// A backend that is up with weight 1.
    pub const fn new(addr: IpAddr, port: u16) -> BackendConfig {
        BackendConfig {
            addr,
            port,
            weight: 1,
            up: true,
        }
    }

    /// The same backend with `weight`.
    pub const fn weight(mut self, weight: u16) -> BackendConfig {
        self.weight = weight;
        self
    }
}

/// The TTM option of a TCP listener: whether the engine writes the client's
/// address into the handshake, with which kind, which client-supplied
/// options it removes, and whether it strips TCP timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtmConfig {
    /// Insert the option (on by default for TCP listeners).
    pub enabled: bool,
    /// The option kind written: 254 by default.
    pub kind: u8,
    /// Kinds removed from every client segment before anything is inserted,
    /// so that a client can never choose the address the server sees: 253
    /// and 254 by default (the TOA family's kinds). The engine always adds
    /// `kind` itself to this set.
    pub strip: ttm_core::KindSet,
    /// Strip TCP timestamps (RFC 7323) from the handshake, as the product
    /// FAQ's balancer does; off by default, since the port quarantine makes
    /// keeping them safe (the FAQ's CASE 2 is what stripping costs).
    pub strip_timestamps: bool,
}

impl Default for TtmConfig {
    fn default() -> Self {
        TtmConfig {
            enabled: true,
            kind: ttm_core::DEFAULT_KIND,
            // Neither 253 nor 254 is a standard kind, so `new` accepts them.
            strip: ttm_core::KindSet::new(&[253, 254]).unwrap_or(ttm_core::KindSet::DEFAULT),
            strip_timestamps: false,
        }
    }
}

/// Which packets of a listener's sessions have their TCP or UDP checksum
/// verified (pseudo-header included, IPv4 and IPv6) before the engine acts
/// on them. A wrong one is dropped and counted as
/// [`crate::DropReason::BadL4Checksum`]; so is a UDP datagram over IPv6
/// with checksum 0 (RFC 8200 §8.1), while over IPv4 0 means "none" and
/// passes (RFC 768).
///
/// Packets that are not verified are forwarded with their checksum updated
/// incrementally (RFC 1624): a wrong one stays wrong, and the receiver
/// drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumPolicy {
    /// The packets that would start a session: a TCP SYN or a UDP datagram
    /// that has none, and a SYN that replaces a closing session or
    /// reschedules a half-open one. Verified before anything changes, so a
    /// corrupt or forged packet takes no table entry, no local port and no
    /// server's attention. SYNs are small: it costs little. The default.
    #[default]
    New,
    /// Every packet of the listener's sessions, both ways (a server's
    /// packet once its session is found): the cost of summing each
    /// packet whole.
    All,
    /// None.
    Off,
}

/// A listener: a VIP, a port and a protocol, and what serves it.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// The virtual address clients connect to.
    pub vip: IpAddr,
    /// The port clients connect to.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The backend pool.
    pub backends: Vec<BackendConfig>,
    /// How new sessions choose a backend.
    pub scheduler: SchedulerKind,
    /// Source-address affinity, if wanted.
    pub affinity: Option<Affinity>,
    /// Idle timeouts.
    pub timeouts: Timeouts,
    /// The local addresses and ports sessions go out from.
    pub local: LocalPool,
    /// Whether the VIP answers ping while this listener has a live backend
    /// (FAQ Q1). A VIP answers if any of its listeners does.
    pub ping: bool,
    /// The TTM option (TCP listeners only; ignored for UDP).
    pub ttm: TtmConfig,
    /// Which packets have their TCP or UDP checksum verified.
    pub verify_checksums: ChecksumPolicy,
}

impl ListenerConfig {
    /// A listener with default scheduler (smooth weighted round robin),
    /// timeouts, ping on and checksums of new sessions verified, no
    /// backends yet, going out from `local`.
    pub fn new(vip: IpAddr, port: u16, protocol: Protocol, local: LocalPool) -> ListenerConfig {
        ListenerConfig {
            vip,
            port,
            protocol,
            backends: Vec::new(),
            scheduler: SchedulerKind::default(),
            affinity: None,
            timeouts: Timeouts::default(),
            local,
            ping: true,
            ttm: TtmConfig::default(),
            verify_checksums: ChecksumPolicy::default(),
        }
    }
}

/// Engine-wide settings, fixed at creation: everything the engine
/// allocates is sized here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most sessions held at once; new sessions beyond are refused.
    pub capacity: u32,
    /// Entries of the source-affinity table (shared by all listeners).
    pub affinity_capacity: u32,
    /// Seed of the flow hash; pick it at random in production so that
    /// clients cannot aim collisions at the table.
    pub hash_seed: u64,
    /// Every session is checked for expiry at least once per period; a
    /// session expires at most this late.
    pub sweep_period: Duration,
    /// How often [`crate::Engine::poll_timeout`] asks to be called while
    /// sessions exist; each call sweeps its share of the table.
    pub sweep_tick: Duration,
    /// How long a closed session's outbound tuple (local address and port,
    /// server address and port) is not handed out again: longer than the
    /// real servers' TIME_WAIT (60 s on Linux), so that TCP timestamps can
    /// pass through untouched. 120 s; zero turns the quarantine off; at
    /// most one hour.
    pub quarantine: Duration,
    /// Most tuples the quarantine holds at once, at 15 bytes each: closes
    /// per second times the period. A tuple closed while it is full is
    /// counted in [`crate::Counters::quarantine_overflow`] and may be
    /// handed out again at once. 2²¹ (about 31 MB, 17k closes/s for 120 s).
    pub quarantine_capacity: u32,
    /// The local ports this engine allocates, when one engine runs per
    /// receive queue: only those of its share of every pool's range (see
    /// [`PortShare`]). [`PortShare::ALL`] (every port) by default.
    pub port_share: PortShare,
    /// RSS-aware mode: when set, the engine takes only local ports whose
    /// reply the NIC's RSS hash delivers on the queue it names (see
    /// [`crate::rss`]); `port_share` must then be [`PortShare::ALL`] (a
    /// port's reply lands on one queue per tuple, so the engines of an
    /// interface never hand out the same tuple). `None` (the default):
    /// every port of the share.
    pub rss: Option<RssSteering>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            capacity: 1 << 20,
            affinity_capacity: 1 << 16,
            hash_seed: 0x9e37_79b9_7f4a_7c15,
            sweep_period: Duration::from_secs(1),
            sweep_tick: Duration::from_millis(100),
            quarantine: Duration::from_secs(120),
            quarantine_capacity: 1 << 21,
            port_share: PortShare::ALL,
            rss: None,
        }
    }
}

/// A configuration the engine refuses; the previous configuration stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The session table, the affinity table or (when the quarantine
    /// period is not zero) the quarantine would hold nothing.
    #[error("capacity must be above zero")]
    ZeroCapacity,
    /// The session table cannot be that large.
    #[error("capacity {0} is more than the session table can index")]
    CapacityTooLarge(u32),
    /// The quarantine is longer than an hour.
    #[error("a quarantine of {0:?} is longer than the maximum of one hour")]
    QuarantineTooLong(Duration),
    /// The tables could not be allocated.
    #[error("not enough memory for the configured capacities")]
    OutOfMemory,
    /// The sweep tick is zero or longer than the sweep period.
    #[error("sweep tick must be above zero and at most the sweep period")]
    BadSweep,
    /// A listener with the same VIP, port and protocol exists.
    #[error("a listener for {vip} port {port} ({protocol:?}) exists already")]
    DuplicateListener {
        /// The VIP.
        vip: IpAddr,
        /// The port.
        port: u16,
        /// The protocol.
        protocol: Protocol,
    },
    /// A local address equals a VIP (of this or another listener).
    #[error("local address {0} is also a VIP")]
    LocalIsVip(IpAddr),
    /// A backend with the same address and port is in the pool already.
    #[error("backend {addr} port {port} is in the pool already")]
    DuplicateBackend {
        /// Its address.
        addr: IpAddr,
        /// Its port.
        port: u16,
    },
    /// The backend's family has no local address to reach it from.
    #[error("backend {0} has no local address of its family")]
    NoLocalAddressFor(IpAddr),
    /// An IPv6 backend behind an IPv4 VIP (4to6) is not served; 4to4, 6to4
    /// and 6to6 are.
    #[error("{0}: an IPv6 backend behind an IPv4 VIP (4to6) is not supported")]
    Ipv6Unsupported(IpAddr),
    /// A timeout is zero or longer than [`Timeouts::MAX`].
    #[error("timeouts must be above zero and at most 24 days")]
    BadTimeout,
    /// No listener with that id.
    #[error("no listener {0}")]
    NoSuchListener(u16),
    /// No backend with that id in the listener.
    #[error("no backend {backend} in listener {listener}")]
    NoSuchBackend {
        /// The listener.
        listener: u16,
        /// The backend.
        backend: u32,
    },
    /// More listeners than a session can name.
    #[error("too many listeners")]
    TooManyListeners,
    /// The TTM kind is one the TCP options walk reads as a standard option
    /// (0, 1, 2, 3, 4, 5, 8).
    #[error("TTM option kind {0} is a standard TCP option kind")]
    BadTtmKind(u8),
    /// The scheduler's settings are wrong.
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedError),
    /// The local address pool's settings are wrong.
    #[error("local address pool: {0}")]
    LocalPool(#[from] LportError),
    /// RSS-aware mode with a port share other than every port, or a
    /// queue the RSS configuration does not serve.
    #[error(
        "RSS steering to queue {queue} of {queues} with port share {share} of {shares}: the queue must be served and the share all ports"
    )]
    BadRssSteering {
        /// The queue named.
        queue: u16,
        /// Queues the RSS configuration serves.
        queues: u16,
        /// The port share's index.
        share: u16,
        /// The port share's count.
        shares: u16,
    },
}

impl EngineConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.capacity == 0 || self.affinity_capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if self.sweep_tick.is_zero() || self.sweep_tick > self.sweep_period {
            return Err(ConfigError::BadSweep);
        }
        if self.quarantine > crate::quarantine::MAX_PERIOD {
            return Err(ConfigError::QuarantineTooLong(self.quarantine));
        }
        if !self.quarantine.is_zero() && self.quarantine_capacity == 0 {
            return Err(ConfigError::ZeroCapacity);
        }
        if let Some(rss) = self.rss
            && (rss.queue >= rss.config.queues() || self.port_share != PortShare::ALL)
        {
            return Err(ConfigError::BadRssSteering {
                queue: rss.queue,
                queues: rss.config.queues(),
                share: self.port_share.index(),
                shares: self.port_share.count(),
            });
        }
        Ok(())
    }
}

impl ListenerConfig {
    /// Checks that need nothing but the listener itself.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self
            .timeouts
            .all()
            .iter()
            .any(|t| t.is_zero() || *t > Timeouts::MAX)
        {
            return Err(ConfigError::BadTimeout);
        }
        if self.ttm.strip.with(self.ttm.kind).is_err() {
            return Err(ConfigError::BadTtmKind(self.ttm.kind));
        }
        if let Some(a) = self.affinity
            && (a.timeout.is_zero() || a.timeout > Timeouts::MAX)
        {
            return Err(ConfigError::BadTimeout);
        }
        if self.local.addresses.contains(&self.vip) {
            return Err(ConfigError::LocalIsVip(self.vip));
        }
        for (i, b) in self.backends.iter().enumerate() {
            if self
                .backends
                .iter()
                .take(i)
                .any(|o| o.addr == b.addr && o.port == b.port)
            {
                return Err(ConfigError::DuplicateBackend {
                    addr: b.addr,
                    port: b.port,
                });
            }
            self.check_backend_family(b)?;
            self.check_backend_mode(b)?;
        }
        Ok(())
    }

    /// 4to4, 6to4 and 6to6 are served; an IPv6 backend behind an IPv4 VIP
    /// (4to6) is not.
    pub(crate) fn check_backend_mode(&self, b: &BackendConfig) -> Result<(), ConfigError> {
        if self.vip.is_ipv4() && b.addr.is_ipv6() {
            return Err(ConfigError::Ipv6Unsupported(b.addr));
        }
        Ok(())
    }

    pub(crate) fn check_backend_family(&self, b: &BackendConfig) -> Result<(), ConfigError> {
        if self
            .local
            .addresses
            .iter()
            .any(|l| l.is_ipv4() == b.addr.is_ipv4())
        {
            Ok(())
        } else {
            Err(ConfigError::NoLocalAddressFor(b.addr))
        }
    }
}
