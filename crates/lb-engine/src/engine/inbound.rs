//! Forwarding from a client to its server: the session lookup by the
//! inbound key, TCP state, the TTM option and the rewrite (translated for
//! 6to4).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::classify::{Net, Packet, TcpAt, transport_checksum};
use super::expiry::End;
use super::rewrite::{rewrite_ports, rewrite4, rewrite6};
use super::{Engine, client16, tick};
use crate::config::ChecksumPolicy;
use crate::frame::Frame;
use crate::sched::is_eligible;
use crate::session::{Path, TcpState, flag};
use crate::table::Dir;
use crate::tcp_edit::{self, Headers, Insertion, OptionEdit};
use crate::time::Instant;
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum::Delta;
use crate::wire::ipv6::Ipv6;
use crate::wire::{self, Ipv4, tcp_flags};
use crate::xlat;
use core::net::SocketAddr;
use ttm_core::TtmOption;

/// What the rewrite of a client's packet toward its server needs, by the
/// session's [`Path`].
#[derive(Debug, Clone, Copy)]
enum ServerSide {
    /// IPv4 to IPv4, and the session's local address.
    Four(Ipv4, [u8; 4]),
    /// IPv6 translated to IPv4: the translated header.
    SixToFour(Ipv4),
    /// IPv6 to IPv6: the header, the local and the server's addresses.
    SixToSix(Ipv6, [u8; 16], [u8; 16]),
}

impl ServerSide {
    /// Where the TCP header is in the packet the server will see.
    fn headers(&self) -> Headers {
        match self {
            ServerSide::Four(ip, _) | ServerSide::SixToFour(ip) => ip.headers(),
            ServerSide::SixToSix(ip6, _, _) => ip6.headers(),
        }
    }
}

/// What a client's SYN does to the session it finds
/// ([`Engine::syn_again`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SynAgain {
    /// The session carries it (a retransmission, or a stray SYN on an
    /// established session).
    Same,
    /// The session is closing: a new one replaces it.
    Replace,
    /// The session is half-open toward a backend that can take no new
    /// session: a new one, on another backend, replaces it.
    Reschedule,
}

impl Engine {
    /// A packet to a VIP: its session (or a new one), TCP state, the TTM
    /// option, and the rewrite toward the server. An IPv6 packet (6to4)
    /// is translated to IPv4 first, so that the option and the ports are
    /// written on the packet the server will see. `found`, when the
    /// caller has looked the session up already (the fast path), is what
    /// that lookup gave.
    ///
    /// Inlined into both its callers: [`Engine::finish`], and
    /// [`Engine::fast_decline`] for an IPv4 TCP segment (a SYN above all),
    /// where the family and the protocol are then known and every branch
    /// for the others goes (some 140 instructions a SYN).
    #[inline(always)]
    pub(super) fn inbound(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &Packet,
        found: Option<Option<u32>>,
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
        let found = found.unwrap_or_else(|| {
            self.table
                .find(h, Dir::In, |s| s.of_client(lid, &client, sport))
        });
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
                    self.new_session(now, lid, h, proto, client, sport)?
                }
            },
            Some(id) => id,
            None if proto == wire::PROTO_TCP && !is_syn => return Err(DropReason::NoSession),
            None => {
                if policy == ChecksumPolicy::New {
                    transport_checksum(frame.bytes(), &p.net)?;
                }
                self.new_session(now, lid, h, proto, client, sport)?
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
        let (rip, rport) = (b.addr4, b.config.port);
        // 4to4 and 6to4 reach the server as IPv4 (6to4 translated here
        // first); 6to6 stays IPv6. The packet's family is the listener's,
        // so the client side of the session's path.
        let side = match (&p.net, s.path) {
            (Net::V4(ip), _) => {
                let lip = listener.lip4(s.lip).ok_or(DropReason::NoSession)?;
                ServerSide::Four(*ip, lip)
            }
            (Net::V6(ip6), Path::SixToSix) => {
                let rip6 = b.addr6.ok_or(DropReason::NoSession)?;
                let lip6 = listener.lip6(s.lip).ok_or(DropReason::NoSession)?;
                ServerSide::SixToSix(*ip6, lip6, rip6)
            }
            (Net::V6(ip6), _) => {
                let lip = listener.lip4(s.lip).ok_or(DropReason::NoSession)?;
                ServerSide::SixToFour(xlat::v6_to_v4(frame, ip6, lip, rip)?)
            }
        };
        let mut edited = None;
        if proto == wire::PROTO_TCP {
            let ttm = &listener.config.ttm;
            // `wants_ttm` is false for a SYN: said first, so that a SYN
            // skips its tests.
            let wants = listener.ttm_on && !is_syn && s.wants_ttm(l4.flags, l4.ack);
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
                // A copy lent, so that the packet's own fields need not
                // live in memory on the paths with no edit.
                let l4 = *l4;
                edited = Some(tcp_edit::edit_options(frame, side.headers(), &l4, &edit)?);
            }
        }
        s.expires = tick(now).wrapping_add(listener.timeouts_ms.for_session(s));
        let (ip_delta, l4_delta) = (
            Delta::from_folded(s.ip_delta, false),
            Delta::from_folded(s.l4_delta, false),
        );
        let bytes = frame.bytes_mut();
        let next_hop = match side {
            ServerSide::Four(ip, lip) => {
                rewrite4(bytes, &ip, (lip, lport), (rip, rport), ip_delta, l4_delta)?;
                IpAddr::V4(Ipv4Addr::from(rip))
            }
            ServerSide::SixToFour(ip) => {
                rewrite_ports(bytes, ip.l4_off(), proto, (lport, rport), l4_delta)?;
                IpAddr::V4(Ipv4Addr::from(rip))
            }
            ServerSide::SixToSix(ip6, lip6, rip6) => {
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

    /// What a client's SYN does to the session it finds: a closing one
    /// (TIME_WAIT or CLOSE) gives way to a new one, as in IPVS (the client
    /// reuses its port); so does a half-open one that the server has not
    /// answered while its backend can take no new session (down, removed
    /// or at weight 0) and another can, so that the client's SYN
    /// retransmissions reach a live server. Any other session, established
    /// ones above all, keeps its backend.
    pub(super) fn syn_again(&self, id: u32) -> SynAgain {
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
}
