//! Expiry: the incremental sweep ([`Engine::poll_timeout`],
//! [`Engine::handle_timeout`]) and the end of a session, whatever ends
//! it ([`Engine::end_session`]).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::transmit::PendingRst;
use super::{Engine, PENDING_RSTS, client4_of, client16, expired, tick};
use crate::lport::LocalTuple;
use crate::session::{TcpState, flag};
use crate::time::Instant;
use crate::wire;

/// Why a session ends, for [`Engine::end_session`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Closed by the packet path or by configuration.
    Closed,
    /// Idled out (RSTs to both sides if established).
    Expired,
    /// Evicted for a new SYN while half-open.
    Evicted,
}

impl Engine {
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
    pub(super) fn end_session(&mut self, id: u32, now: Instant, end: End) -> bool {
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
            let (v6, src, dst) = match (s.path.client_v6(), l.vip6) {
                (true, Some(vip6)) => (true, vip6, s.client),
                _ => (false, client16(l.vip4), s.client),
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
}
