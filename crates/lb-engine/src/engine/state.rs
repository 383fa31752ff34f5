//! The engine's side of a snapshot ([`crate::snapshot`] has the format):
//! which sessions and quarantined tuples [`Engine::export_state`] writes,
//! and how [`Engine::import_state`] maps them onto this engine's
//! configuration.
//!
//! A restored session is found again by address: its listener by VIP, port
//! and protocol, its backend by address and port within that listener (one
//! that is down or at weight 0 keeps its sessions, as it would have), its
//! local address within the listener's pool. Its key hashes and checksum
//! changes are computed by [`Listener::keys`], as for a new session, with
//! this engine's seed. Its deadline is `now` plus what was left of its
//! lifetime, cut to this engine's timeout for its state when that is
//! shorter (a longer timeout applies from its next packet). It counts in
//! its listener's and backend's active sessions and in the least
//! connections scheduler, but not in the new sessions nor in
//! [`Counters::sessions_created`](crate::Counters::sessions_created).
//! Source affinity is not carried over: a client's next new connection
//! may be scheduled afresh.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::net::IpAddr;
use core::time::Duration;

use super::listeners::Listener;
use super::{Engine, ListenerId, tick, u32_of};
use crate::session::{Session, flag};
use crate::snapshot::{
    self, Addr, BackendRec, Counts, ImportReport, ListenerRec, MAX_QUARANTINE_MS, MAX_SESSION_MS,
    Parsed, QuarantineRec, SessionRec, SnapshotError, Writer,
};
use crate::table::Dir;
use crate::time::Instant;
use crate::wire;

/// Why a session record was not restored.
#[derive(Debug, Clone, Copy)]
enum Skip {
    NoListener,
    NoBackend,
    NoLocalAddress,
    TableFull,
    Duplicate,
}

/// The tables of an export, and where each listener slot's entries are.
struct Tables {
    listeners: Vec<ListenerRec>,
    backends: Vec<BackendRec>,
    locals: Vec<Addr>,
    /// By listener slot.
    slots: Vec<Option<SlotRecords>>,
}

/// Where one listener's entries are in the tables.
struct SlotRecords {
    v6: bool,
    /// The index of its first backend record: backend slot `i` is at
    /// `first_backend + i`.
    first_backend: u32,
    backends: u32,
    /// The local address record of each pool index.
    locals: Vec<u32>,
}

impl Tables {
    /// Every listener, every backend slot (removed ones too, while their
    /// sessions last) and every local address, each address once.
    fn of(engine: &Engine) -> Tables {
        let mut t = Tables {
            listeners: Vec::new(),
            backends: Vec::new(),
            locals: Vec::new(),
            slots: Vec::with_capacity(engine.listeners.len()),
        };
        let mut known: BTreeMap<IpAddr, u32> = BTreeMap::new();
        for l in &engine.listeners {
            let Some(l) = l else {
                t.slots.push(None);
                continue;
            };
            let index = u32::try_from(t.listeners.len()).unwrap_or(u32::MAX);
            t.listeners.push(ListenerRec {
                vip: Addr::of(l.config.vip),
                proto: l.proto,
                port: l.config.port,
            });
            let first_backend = u32::try_from(t.backends.len()).unwrap_or(u32::MAX);
            t.backends.extend(l.backends.iter().map(|b| BackendRec {
                listener: index,
                addr: Addr::of(b.config.addr),
                port: b.config.port,
            }));
            let locals = l
                .config
                .local
                .addresses
                .iter()
                .map(|&a| {
                    *known.entry(a).or_insert_with(|| {
                        t.locals.push(Addr::of(a));
                        u32::try_from(t.locals.len() - 1).unwrap_or(u32::MAX)
                    })
                })
                .collect();
            t.slots.push(Some(SlotRecords {
                v6: l.vip6.is_some(),
                first_backend,
                backends: u32::try_from(l.backends.len()).unwrap_or(u32::MAX),
                locals,
            }));
        }
        t
    }

    /// A session's record, and whether its client is IPv6; `None` for a
    /// session whose listener, backend or local address has no entry
    /// (none: sessions only name live slots).
    fn record(&self, s: &Session, now_tick: u32) -> Option<(SessionRec, bool)> {
        let slot = self.slots.get(usize::from(s.listener))?.as_ref()?;
        let backend = (s.backend < slot.backends).then_some(slot.first_backend + s.backend)?;
        let lip = *slot.locals.get(usize::from(s.lip))?;
        let left = s.expires.wrapping_sub(now_tick) as i32;
        let rec = SessionRec {
            backend,
            lip,
            cport: s.cport,
            lport: s.lport,
            flags: s.flags,
            // A `now` before the session's last packet (a clock that went
            // back) cannot give more than the format carries.
            remaining_ms: u32::try_from(left).map_or(0, |ms| ms.min(MAX_SESSION_MS)),
            c_next: s.c_next,
            c_ack: s.c_ack,
            s_next: s.s_next,
            s_ack: s.s_ack,
            client: s.client,
        };
        Some((rec, slot.v6))
    }
}

/// Milliseconds of a duration, at most `u32::MAX`.
fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Engine {
    /// Every live session.
    fn sessions(&self) -> impl Iterator<Item = &Session> + '_ {
        (0..self.table.id_bound()).filter_map(|id| self.table.get(id))
    }

    /// Append a snapshot of the sessions and the quarantine to `out`, as
    /// they are at `now`; see [`crate::snapshot`] for the format and what
    /// [`Engine::import_state`] does with it. Each session carries what is
    /// left of its lifetime (a session past its deadline that the sweep has
    /// not ended yet, none). Allocates `out`'s room once; changes nothing.
    pub fn export_state(&self, now: Instant, out: &mut Vec<u8>) {
        let tables = Tables::of(self);
        let now_tick = tick(now);
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let mut counts = Counts {
            listeners: len32(tables.listeners.len()),
            backends: len32(tables.backends.len()),
            locals: len32(tables.locals.len()),
            quarantine: len32(self.quarantine.held(now).count()),
            ..Counts::default()
        };
        for (_, v6) in self.sessions().filter_map(|s| tables.record(s, now_tick)) {
            if v6 {
                counts.sessions6 += 1;
            } else {
                counts.sessions4 += 1;
            }
        }
        let mut w = Writer::new(out, self.config.hash_seed, &counts);
        tables.listeners.iter().for_each(|l| w.listener(l));
        tables.backends.iter().for_each(|b| w.backend(b));
        tables.locals.iter().for_each(|&a| w.local(a));
        for section in [false, true] {
            for (rec, v6) in self.sessions().filter_map(|s| tables.record(s, now_tick)) {
                if v6 == section {
                    w.session(&rec, v6);
                }
            }
        }
        for (fingerprint, left) in self.quarantine.held(now) {
            w.quarantine(&QuarantineRec {
                fingerprint,
                remaining_ms: millis(left).min(MAX_QUARANTINE_MS),
            });
        }
        w.finish();
    }

    /// Restore the sessions and quarantined tuples of a snapshot that
    /// [`Engine::export_state`] wrote, possibly by an engine with another
    /// configuration (capacity, timeouts, hash seed, listeners). `now` is
    /// this engine's clock, and `elapsed` the time that passed since the
    /// export (while the snapshot waited on disk): each session, and each
    /// quarantined tuple, lives for what was left of it less `elapsed`,
    /// from now (see the module documentation for the details).
    ///
    /// A session that this configuration cannot take is skipped and
    /// counted in the report: its listener, backend or local address is
    /// gone, the table is full, or a live session has its client or its
    /// outbound tuple (a restored tuple stays unique, so a new session
    /// never gets it).
    ///
    /// # Errors
    /// Any [`SnapshotError`]: the whole input is checked first, and when
    /// anything in it is wrong nothing is restored and the engine is left
    /// as it was.
    pub fn import_state(
        &mut self,
        now: Instant,
        elapsed: Duration,
        bytes: &[u8],
    ) -> Result<ImportReport, SnapshotError> {
        let p = snapshot::parse(bytes)?;
        self.latest = self.latest.max(now);
        let mut report = ImportReport {
            sessions: p.session_count(),
            ..ImportReport::default()
        };
        let map = Mapping::new(self, &p);
        let elapsed_ms = u32::try_from(elapsed.as_millis()).unwrap_or(u32::MAX);
        for mut rec in p.sessions() {
            rec.remaining_ms = rec.remaining_ms.saturating_sub(elapsed_ms);
            match self.restore_session(now, &p, &map, &rec) {
                Ok(()) => {
                    report.restored += 1;
                    report.overdue += u32::from(rec.remaining_ms == 0);
                }
                Err(Skip::NoListener) => report.no_listener += 1,
                Err(Skip::NoBackend) => report.no_backend += 1,
                Err(Skip::NoLocalAddress) => report.no_local_address += 1,
                Err(Skip::TableFull) => report.table_full += 1,
                Err(Skip::Duplicate) => report.duplicate += 1,
            }
        }
        for q in p.quarantine() {
            let left = Duration::from_millis(u64::from(q.remaining_ms)).saturating_sub(elapsed);
            if self.quarantine.restore(now, q.fingerprint, left) {
                report.quarantine_restored += 1;
            } else {
                report.quarantine_skipped += 1;
            }
        }
        Ok(report)
    }

    /// Restore one session record.
    fn restore_session(
        &mut self,
        now: Instant,
        p: &Parsed<'_>,
        map: &Mapping,
        rec: &SessionRec,
    ) -> Result<(), Skip> {
        let b = p
            .backends
            .get(rec.backend as usize)
            .ok_or(Skip::NoBackend)?;
        let lid = map.listener(b.listener).ok_or(Skip::NoListener)?;
        let backend = map.backend(rec.backend).ok_or(Skip::NoBackend)?;
        let lip = p
            .locals
            .get(rec.lip as usize)
            .and_then(|a| map.local(b.listener, a.ip()))
            .ok_or(Skip::NoLocalAddress)?;
        if self.table.is_full() {
            return Err(Skip::TableFull);
        }
        let mut s = Session {
            client: rec.client,
            cport: rec.cport,
            lport: rec.lport,
            listener: lid,
            lip,
            backend,
            proto: p.protocol(rec).ok_or(Skip::NoListener)?,
            flags: rec.flags,
            c_next: rec.c_next,
            c_ack: rec.c_ack,
            s_next: rec.s_next,
            s_ack: rec.s_ack,
            ..Session::default()
        };
        let l = self.listener(lid).ok_or(Skip::NoListener)?;
        // Not in the snapshot: derived, as for a new session.
        s.path = l.path_to(backend).ok_or(Skip::NoBackend)?;
        let keys = l
            .keys(self.config.hash_seed, &s)
            .ok_or(Skip::NoLocalAddress)?;
        s.ip_delta = keys.ip_delta;
        s.l4_delta = keys.l4_delta;
        let left = rec.remaining_ms.min(l.timeouts_ms.for_session(&s));
        s.expires = tick(now).wrapping_add(left);
        let same_client = self
            .table
            .find(keys.in_hash, Dir::In, |o| {
                o.of_client(lid, &s.client, s.cport)
            })
            .is_some();
        let same_tuple = match l.v6_path(&s) {
            Some((rip6, rport, lip6)) => {
                self.find_outbound6(keys.out_hash, s.proto, (rip6, rport), (lip6, s.lport))
            }
            None => {
                let server = l.backend_addr4(backend).ok_or(Skip::NoBackend)?;
                let lip4 = l.lip4(lip).ok_or(Skip::NoLocalAddress)?;
                self.find_outbound(keys.out_hash, s.proto, server, (lip4, s.lport))
            }
        }
        .is_some();
        if same_client || same_tuple {
            return Err(Skip::Duplicate);
        }
        let id = self
            .table
            .insert(s, keys.in_hash, keys.out_hash)
            .map_err(|_| Skip::TableFull)?;
        // A half-open TCP session can be evicted, as if made here.
        if s.proto == wire::PROTO_TCP && s.flags & flag::ESTABLISHED == 0 {
            self.half_open.push(id);
        }
        self.counters.sessions_restored += 1;
        let l = self
            .listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)
            .ok_or(Skip::NoListener)?;
        if let Some(c) = l.candidates.get_mut(backend as usize) {
            c.active += 1;
        }
        if let Some(b) = l.backends.get_mut(backend as usize) {
            b.traffic.active_sessions += 1;
        }
        l.traffic.active_sessions += 1;
        Ok(())
    }
}

/// A snapshot's tables mapped onto an engine's configuration.
struct Mapping {
    /// By listener record: the engine's listener with its VIP, port and
    /// protocol.
    listeners: Vec<Option<ListenerId>>,
    /// By backend record: the backend of that listener with its address
    /// and port.
    backends: Vec<Option<u32>>,
    /// By listener record: that listener's pool, sorted by address, with
    /// each address's index.
    pools: Vec<Vec<(IpAddr, u16)>>,
}

impl Mapping {
    fn new(engine: &Engine, p: &Parsed<'_>) -> Mapping {
        let listeners: Vec<Option<ListenerId>> = p
            .listeners
            .iter()
            .map(|l| match l.vip.ip() {
                IpAddr::V4(vip) => engine.find_listener(u32_of(vip.octets()), l.port, l.proto),
                IpAddr::V6(vip) => engine.find_listener6(vip.to_bits(), l.port, l.proto),
            })
            .collect();
        let engine_listener = |record: u32| -> Option<&Listener> {
            engine.listener(listeners.get(record as usize).copied().flatten()?)
        };
        let backends =
            p.backends
                .iter()
                .map(|b| {
                    let l = engine_listener(b.listener)?;
                    let addr = b.addr.ip();
                    let slot = l.backends.iter().position(|o| {
                        !o.removed && o.config.addr == addr && o.config.port == b.port
                    })?;
                    u32::try_from(slot).ok()
                })
                .collect();
        let pools = (0..p.listeners.len())
            .map(|record| {
                let Some(l) = u32::try_from(record).ok().and_then(engine_listener) else {
                    return Vec::new();
                };
                let mut pool: Vec<(IpAddr, u16)> = l
                    .config
                    .local
                    .addresses
                    .iter()
                    .zip(0..=u16::MAX)
                    .map(|(&a, i)| (a, i))
                    .collect();
                pool.sort_unstable();
                pool
            })
            .collect();
        Mapping {
            listeners,
            backends,
            pools,
        }
    }

    fn listener(&self, record: u32) -> Option<ListenerId> {
        self.listeners.get(record as usize).copied().flatten()
    }

    fn backend(&self, record: u32) -> Option<u32> {
        self.backends.get(record as usize).copied().flatten()
    }

    /// The pool index of `addr` in the listener of listener record
    /// `record`.
    fn local(&self, record: u32, addr: IpAddr) -> Option<u16> {
        let pool = self.pools.get(record as usize)?;
        let i = pool.binary_search_by_key(&addr, |&(a, _)| a).ok()?;
        pool.get(i).map(|&(_, index)| index)
    }
}
