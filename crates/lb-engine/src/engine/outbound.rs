//! Forwarding from a server back to its client: the session lookup by
//! the outbound key, TCP state and the rewrite (translated for 6to4).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::classify::{Net, Packet, TcpAt, transport_checksum};
use super::keys::{outbound_key, outbound4};
use super::listeners::Listener;
use super::rewrite::{rewrite_ports, rewrite4, rewrite6};
use super::{Engine, client4, server_refresh, tick};
use crate::config::ChecksumPolicy;
use crate::frame::Frame;
use crate::session::{Path, Session};
use crate::table::Dir;
use crate::tcp_edit::{self, OptionEdit};
use crate::time::Instant;
use crate::verdict::{DropReason, Verdict};
use crate::wire::checksum::Delta;
use crate::wire::{self, Ipv4, tcp_flags};
use crate::xlat;
use ttm_core::KindSet;

impl Engine {
    /// The session of a packet from a server `(rip, rport)` to a local
    /// address `(lip, lport)`, whose flow hash is `h` (4to4 and 6to4).
    #[inline]
    pub(super) fn find_outbound(
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
    pub(super) fn find_outbound6(
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

    #[inline]
    pub(super) fn outbound(
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
                let mut seg = tcp_edit::Segment::known(at, l4)?;
                if listener.config.ttm.strip_timestamps {
                    let edit = OptionEdit {
                        strip: &KindSet::EMPTY,
                        strip_timestamps: true,
                        insert: None,
                    };
                    seg.edit_options(frame, &edit)?;
                }
                // Room for the option in a full-size segment: the client's
                // segments carry it (8 bytes for an IPv4 client, 20 for an
                // IPv6 one). A 6to4 client's segment, sized by its own
                // MTU, shrinks by 20 bytes when translated to IPv4, and
                // the server's, sized by the client's MSS, grows by 20
                // toward an MTU the client's MSS already accounts for: the
                // option is all there is to make room for.
                let by = match (listener.ttm_on, s.path.client_v6()) {
                    (false, _) => 0,
                    (true, false) => ttm_core::V4_LEN,
                    (true, true) => ttm_core::V6_LEN,
                };
                mss_lowered = by > 0 && seg.lower_mss(frame, by as u16)?.is_some();
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
        let next_hop = match (&p.net, s.path, listener.vip6) {
            (Net::V4(ip), Path::FourToFour, _) => {
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
            (Net::V6(ip6), Path::SixToSix, Some(vip6)) => {
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
            (Net::V4(ip), Path::SixToFour, Some(vip6)) => {
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
            // The lookup matched the packet's family to the server side;
            // a 6to4 or 6to6 listener has an IPv6 VIP (4to6 is refused by
            // configuration).
            _ => return Err(DropReason::NoSession),
        };
        self.counters.mss_lowered += u64::from(mss_lowered);
        listener.traffic.outbound(received);
        if let Some(b) = listener.backends.get_mut(s.backend as usize) {
            b.traffic.outbound(received);
        }
        Ok(Verdict::ToClient { next_hop })
    }
}
