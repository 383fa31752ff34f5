//! Listeners and backends: their state ([`Listener`], [`Backend`]), the
//! configuration calls that add, change and remove them, and the sorted
//! indexes of VIPs and local addresses the packet path looks up.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::expiry::End;
use super::keys::backend_delta4;
use super::{
    BackendId, Engine, ListenerId, TimeoutsMs, client4_of, ipv4_octets, ipv6_octets, u32_of, v6,
};
use crate::config::{BackendConfig, ConfigError, ListenerConfig, Protocol};
use crate::counters::Traffic;
use crate::lport::PortAllocator;
use crate::sched::{self, Candidate, Scheduler};
use crate::session::{Path, Session};

/// One backend slot of a listener.
#[derive(Debug, Clone)]
pub(super) struct Backend {
    pub(super) config: BackendConfig,
    /// `config.addr`, ready for the packet path: IPv4 in `addr4`, or IPv6
    /// in `addr6` (the other is zero).
    pub(super) addr4: [u8; 4],
    pub(super) addr6: Option<[u8; 16]>,
    /// Removed by configuration; kept until its last session ends.
    pub(super) removed: bool,
    pub(super) traffic: Traffic,
    /// The part of a 4to4 session's checksum changes that only the VIP
    /// and this backend make, folded ([`backend_delta4`]). See
    /// [`Listener::keys`].
    pub(super) delta4: (u16, u16),
    /// The listener's port allocator's [`PortAllocator::destination`] hash
    /// of this backend (and the listener's protocol).
    pub(super) destination: u64,
}

impl Backend {
    /// A backend of a listener with IPv4 VIP `vip4` (zero for an IPv6
    /// VIP), port `vport`, protocol `proto` and port allocator `allocator`.
    pub(super) fn new(
        config: BackendConfig,
        (vip4, vport, proto): ([u8; 4], u16, u8),
        allocator: &PortAllocator,
    ) -> Backend {
        let addr4 = ipv4_octets(config.addr);
        Backend {
            config,
            addr4,
            addr6: ipv6_octets(config.addr),
            removed: false,
            traffic: Traffic::default(),
            delta4: backend_delta4((vip4, vport), (addr4, config.port)),
            destination: allocator.destination(proto, config.addr, config.port),
        }
    }
}

/// A listener and the state that serves it.
pub(super) struct Listener {
    /// The listener's configuration; its `backends` are moved into
    /// `backends` below.
    pub(super) config: ListenerConfig,
    /// The IPv4 VIP (zero for an IPv6 VIP).
    pub(super) vip4: [u8; 4],
    /// The IPv6 VIP of a 6to4 listener: IPv6 clients, IPv4 local
    /// addresses and servers, headers translated (RFC 7915).
    pub(super) vip6: Option<[u8; 16]>,
    pub(super) proto: u8,
    /// Timeouts in milliseconds, by [`TcpState`] and for UDP.
    pub(super) timeouts_ms: TimeoutsMs,
    pub(super) scheduler: Scheduler,
    pub(super) allocator: PortAllocator,
    pub(super) backends: Vec<Backend>,
    /// The local addresses by the allocator's index, IPv4 ones ready for
    /// the packet path.
    pub(super) lips4: Vec<Option<[u8; 4]>>,
    /// The same for IPv6 local addresses (6to6).
    pub(super) lips6: Vec<Option<[u8; 16]>>,
    /// The scheduler's view of `backends`, same indices.
    pub(super) candidates: Vec<Candidate>,
    pub(super) traffic: Traffic,
    /// A TCP listener with the TTM option on.
    pub(super) ttm_on: bool,
}

impl Listener {
    /// A session's client address as an `IpAddr`.
    pub(super) fn client_ip(&self, client: [u8; 16]) -> IpAddr {
        match self.vip6 {
            Some(_) => IpAddr::V6(Ipv6Addr::from(client)),
            None => IpAddr::V4(Ipv4Addr::from(client4_of(client))),
        }
    }

    #[inline]
    pub(super) fn backend_addr4(&self, id: u32) -> Option<([u8; 4], u16)> {
        let b = self.backends.get(id as usize)?;
        Some((b.addr4, b.config.port))
    }

    #[inline]
    pub(super) fn lip4(&self, index: u16) -> Option<[u8; 4]> {
        self.lips4.get(usize::from(index)).copied().flatten()
    }

    #[inline]
    pub(super) fn lip6(&self, index: u16) -> Option<[u8; 16]> {
        self.lips6.get(usize::from(index)).copied().flatten()
    }

    /// The path of a session of this listener on backend `backend`: the
    /// VIP's family and the backend's. `None` for no such backend.
    pub(super) fn path_to(&self, backend: u32) -> Option<Path> {
        Some(self.path_of(self.backends.get(backend as usize)?))
    }

    /// [`Listener::path_to`] for one of its backends.
    #[inline]
    pub(super) fn path_of(&self, b: &Backend) -> Path {
        match (self.vip6.is_some(), b.addr6.is_some()) {
            (false, _) => Path::FourToFour,
            (true, false) => Path::SixToFour,
            (true, true) => Path::SixToSix,
        }
    }

    /// A 6to6 session's server and local addresses; `None` for another
    /// path.
    #[inline]
    pub(super) fn v6_path(&self, s: &Session) -> Option<([u8; 16], u16, [u8; 16])> {
        if !s.path.server_v6() {
            return None;
        }
        let b = self.backends.get(s.backend as usize)?;
        Some((b.addr6?, b.config.port, self.lip6(s.lip)?))
    }

    pub(super) fn has_live_backend(&self) -> bool {
        self.candidates.iter().any(Candidate::eligible)
    }

    pub(super) fn candidate(b: &Backend) -> Candidate {
        Candidate {
            id: sched::backend_id(&u128::from(v6(b.config.addr)).to_be_bytes(), b.config.port),
            weight: b.config.weight,
            up: b.config.up && !b.removed,
            active: 0,
        }
    }
}

/// The port and protocol half of an IPv6 listener's key.
pub(super) fn port_proto(port: u16, proto: u8) -> u32 {
    (u32::from(port) << 8) | u32::from(proto)
}

/// The sort key of a listener: VIP, port, protocol.
pub(super) fn listener_key(vip: u32, port: u16, proto: u8) -> u64 {
    (u64::from(vip) << 24) | (u64::from(port) << 8) | u64::from(proto)
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
    pub(super) fn listener(&self, id: ListenerId) -> Option<&Listener> {
        self.listeners.get(usize::from(id))?.as_ref()
    }

    fn listener_mut(&mut self, id: ListenerId) -> Result<&mut Listener, ConfigError> {
        self.listeners
            .get_mut(usize::from(id))
            .and_then(Option::as_mut)
            .ok_or(ConfigError::NoSuchListener(id))
    }

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
        let allocator = PortAllocator::new(&config.local, self.config.hash_seed)?
            .with_share(self.config.port_share)
            .with_rss(self.config.rss);
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| Backend::new(*b, (vip, config.port, proto), &allocator))
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
        let entry = Backend::new(backend, (l.vip4, l.config.port, l.proto), &l.allocator);
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
}
