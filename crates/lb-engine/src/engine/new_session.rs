//! New sessions: backend (affinity or scheduler), local port, the
//! eviction of a half-open session from a full table, and the insert.

use super::expiry::End;
use super::keys::tuple_live;
use super::{Engine, ListenerId, tick};
use crate::hash;
use crate::lport::{AllocateError, LocalTuple};
use crate::sched::is_eligible;
use crate::session::Session;
use crate::time::Instant;
use crate::verdict::DropReason;
use crate::wire;

impl Engine {
    /// Start a session for a client (IPv4 in the first 4 bytes of
    /// `client`, or IPv6 for a 6to4 listener) from port `cport`.
    ///
    /// A full table refuses a UDP datagram; a TCP SYN takes the place of
    /// the oldest half-open session (evicted: see [`Engine::end_session`]
    /// for its RST to the server), once the new session has its backend
    /// and local port, so that
    /// a SYN that cannot be served evicts nothing. Only a table full of
    /// established (or UDP) sessions refuses a SYN.
    pub(super) fn new_session(
        &mut self,
        now: Instant,
        lid: ListenerId,
        h: u64,
        proto: u8,
        client: [u8; 16],
        cport: u16,
    ) -> Result<u32, DropReason> {
        let (session, out_hash) = self.plan_session(now, lid, h, proto, client, cport)?;
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
        cport: u16,
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
                let source_hash = if l.scheduler.uses_source_hash() {
                    hash::source(seed, l.client_ip(client))
                } else {
                    0
                };
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
        let (rport, path) = (b.config.port, l.path_of(b));
        let destination = (proto, b.config.addr, rport);
        // The outbound hash of the last tuple asked about: the allocator
        // asks last about the tuple it returns.
        let mut asked = (0u16, 0u64);
        let (lip, lport) = l
            .allocator
            .allocate_to(
                now,
                destination,
                b.destination,
                h,
                quarantine,
                |t: &LocalTuple| {
                    let (live, out_hash) = tuple_live(table, seed, t);
                    asked = (t.lport, out_hash);
                    live
                },
            )
            .map_err(|e| match e {
                AllocateError::NoAddressOfFamily => DropReason::NoLocalAddress,
                AllocateError::Exhausted => DropReason::PortsExhausted,
            })?;
        let mut session = Session {
            client,
            cport,
            lport,
            listener: lid,
            lip,
            backend,
            expires: tick(now),
            proto,
            path,
            ..Session::default()
        };
        // The packet's flow hash is the inbound key's hash.
        let hashes = (asked.0 == lport).then_some((h, asked.1));
        let keys = l
            .keys_with(seed, &session, hashes)
            .ok_or(DropReason::NoLocalAddress)?;
        debug_assert_eq!(
            l.keys(seed, &session).map(|k| (k.in_hash, k.out_hash)),
            Some((keys.in_hash, keys.out_hash)),
            "the hashes taken are the session's"
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
        // The session moves into the table: what is needed of it after
        // is read first, so that it is not copied for the call.
        let (lid, backend, proto) = (session.listener, session.backend, session.proto);
        let l = listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)
            .ok_or(DropReason::NoListener)?;
        let id = table
            .insert(session, h, out_hash)
            .map_err(|_| DropReason::TableFull)?;
        if proto == wire::PROTO_TCP {
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
        if let Some(a) = l.config.affinity
            && let Some(s) = table.get(id)
        {
            affinity.insert(now, lid, &s.client, backend, a.timeout);
        }
        Ok(id)
    }
}
