//! The fast path: an IPv4 TCP segment of a 4to4 session, either way, that
//! needs nothing but the rewrite.
//!
//! [`Engine::fast_parse`] reads the three fixed headers of an untagged
//! Ethernet frame in one bounds check and keeps only what such a segment
//! needs; [`Engine::fast_forward`] finds its session, checks that the
//! general path would do nothing more than track it, refresh its deadline,
//! rewrite it and count it, and does exactly that. Every check that fails
//! returns `None` before anything is changed, and the caller hands the
//! frame to the general path ([`Engine::parse`], [`Engine::finish`]), which
//! then decides as it always has: the fast path only takes frames whose
//! outcome it produces byte for byte, state for state and counter for
//! counter. What it leaves to the general path, and why:
//!
//! - VLAN tags, IPv6, IPv4 options, fragments, a bad IPv4 checksum,
//!   lengths that disagree, anything but TCP: drops, passes, translation
//!   or ICMP, all decided there;
//! - SYN, RST or FIN, or no ACK: new sessions, `syn_again`, the SYN-ACK's
//!   MSS and timestamps edits, state changes that end or close sessions;
//! - a client segment that gets the TTM option ([`Session::wants_ttm`]),
//!   or whose options hold a kind the listener strips, an EOL or a
//!   malformed option ([`tcp_edit::nothing_to_strip`]): the general path
//!   rebuilds those options;
//! - a listener that verifies every transport checksum
//!   ([`ChecksumPolicy::All`]);
//! - 6to4 and 6to6 sessions, and anything with no session.

use super::keys::outbound4;
use super::listeners::Listener;
use super::rewrite::rewrite4;
use super::{Engine, ListenerId, client4, client16, server_refresh, tick};
use crate::config::ChecksumPolicy;
use crate::frame::Frame;
use crate::hash;
use crate::session::Path;

use crate::table::Dir;
use crate::tcp_edit;
use crate::time::Instant;
use crate::verdict::Verdict;
use crate::wire::checksum::{self, Delta};
use crate::wire::{self, ETH_HLEN, Ipv4, tcp_flags};
use core::net::{IpAddr, Ipv4Addr};

/// The fixed part of a TCP header.
const TCP_FIXED: usize = 20;

/// Ethernet, a 20-byte IPv4 header and a TCP header's fixed part.
const HEADERS: usize = ETH_HLEN + 20 + TCP_FIXED;

/// What [`Engine::fast_parse`] read of a segment that may take the fast
/// path.
#[derive(Debug, Clone, Copy)]
pub(super) struct FastPacket {
    /// To a VIP (`In`) or to a local address (`Out`).
    pub(super) dir: Dir,
    /// The listener of a segment to a VIP (0 for `Out`).
    listener: ListenerId,
    /// The flow hash of the segment's 5-tuple as received.
    pub(super) hash: u64,
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    /// The IPv4 total length.
    total: usize,
    /// The TCP header's length.
    tcp_hlen: usize,
}

impl FastPacket {
    /// Payload bytes, which are its length in sequence space (no SYN, no
    /// FIN).
    fn seq_len(&self) -> u32 {
        (self.total - 20 - self.tcp_hlen) as u32
    }

    /// The IPv4 header as [`Engine::parse`] would have read it.
    fn ipv4(&self) -> Ipv4 {
        Ipv4 {
            off: ETH_HLEN,
            hlen: 20,
            total: self.total,
            proto: wire::PROTO_TCP,
            src: self.src,
            dst: self.dst,
            fragment: false,
            checksum_ok: true,
        }
    }
}

impl Engine {
    /// Read a frame for the fast path: `None` unless it is an untagged
    /// IPv4 TCP segment to one of our addresses that [`Engine::parse`]
    /// would accept (20-byte IPv4 header, not a fragment, right IPv4
    /// checksum, lengths that agree, a listener for a VIP) and whose flags
    /// are ACK without SYN, RST or FIN. Reads only; the frame is not cut
    /// to its IPv4 length until [`Engine::fast_forward`] takes it.
    #[inline]
    pub(super) fn fast_parse(&self, bytes: &[u8]) -> Option<FastPacket> {
        if !self.fast_path {
            return None;
        }
        let h = wire::array::<HEADERS>(bytes, 0).ok()?;
        let (eth, rest) = h.split_first_chunk::<ETH_HLEN>()?;
        let (ip, tcp) = rest.split_first_chunk::<20>()?;
        let tcp: &[u8; 20] = tcp.try_into().ok()?;
        let [.., e0, e1] = *eth;
        let [vihl, _, t0, t1, _, _, f0, f1, _, proto, ..] = *ip;
        let [.., s0, s1, s2, s3, d0, d1, d2, d3] = *ip;
        let [
            sp0,
            sp1,
            dp0,
            dp1,
            q0,
            q1,
            q2,
            q3,
            a0,
            a1,
            a2,
            a3,
            doff,
            flags,
            ..,
        ] = *tcp;
        if u16::from_be_bytes([e0, e1]) != wire::ETHERTYPE_IPV4 || vihl != 0x45 {
            return None;
        }
        let dst = [d0, d1, d2, d3];
        let dst32 = u32::from_be_bytes(dst);
        // As `parse` decides: a VIP first, then a local address.
        let dir = if self.vips.binary_search(&dst32).is_ok() {
            Dir::In
        } else if self.locals.binary_search(&dst32).is_ok() {
            Dir::Out
        } else {
            return None;
        };
        let total = usize::from(u16::from_be_bytes([t0, t1]));
        let tcp_hlen = usize::from(doff >> 4) * 4;
        let ours = proto == wire::PROTO_TCP
            && u16::from_be_bytes([f0, f1]) & 0x3fff == 0
            && total >= 40
            && ETH_HLEN + total <= bytes.len()
            && tcp_hlen >= 20
            && tcp_hlen <= total - 20
            && flags & (tcp_flags::SYN | tcp_flags::RST | tcp_flags::FIN) == 0
            && flags & tcp_flags::ACK != 0
            && checksum::fixed_header_ok(ip);
        if !ours {
            return None;
        }
        let (sport, dport) = (
            u16::from_be_bytes([sp0, sp1]),
            u16::from_be_bytes([dp0, dp1]),
        );
        let listener = match dir {
            Dir::In => self.find_listener(dst32, dport, wire::PROTO_TCP)?,
            Dir::Out => 0,
        };
        let src = [s0, s1, s2, s3];
        Some(FastPacket {
            dir,
            listener,
            hash: hash::flow4(
                self.config.hash_seed,
                wire::PROTO_TCP,
                src,
                sport,
                dst,
                dport,
            ),
            src,
            dst,
            sport,
            dport,
            flags,
            seq: u32::from_be_bytes([q0, q1, q2, q3]),
            ack: u32::from_be_bytes([a0, a1, a2, a3]),
            total,
            tcp_hlen,
        })
    }

    /// Forward a segment [`Engine::fast_parse`] read, if it needs nothing
    /// but the rewrite: the verdict, which the caller counts as the
    /// general path's; `None`, with nothing changed, for the general path
    /// to handle it.
    #[inline]
    pub(super) fn fast_forward(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &FastPacket,
    ) -> Option<Verdict> {
        let verdict = match p.dir {
            Dir::In => self.fast_inbound(now, frame, p),
            Dir::Out => self.fast_outbound(now, frame, p),
        };
        self.fast_forwarded += u64::from(verdict.is_some());
        verdict
    }

    /// [`Engine::inbound`] for a segment that takes the fast path.
    #[inline]
    fn fast_inbound(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &FastPacket,
    ) -> Option<Verdict> {
        let lid = p.listener;
        let listener = self
            .listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)?;
        if !plain(listener) {
            return None;
        }
        // The general path removes spoofed options from every client
        // segment that has options: take only those it leaves alone.
        if p.tcp_hlen > TCP_FIXED && !listener.config.ttm.strip.is_empty() {
            let area = frame
                .bytes()
                .get(HEADERS..HEADERS - TCP_FIXED + p.tcp_hlen)?;
            if !tcp_edit::nothing_to_strip(area, &listener.config.ttm.strip) {
                return None;
            }
        }
        let (sport, client) = (p.sport, client16(p.src));
        let (id, s) = self
            .table
            .find_mut(p.hash, Dir::In, |s| s.of_client(lid, &client, sport))?;
        if listener.ttm_on && s.wants_ttm(p.flags, p.ack) {
            return None;
        }
        if s.path != Path::FourToFour {
            return None;
        }
        let b = listener.backends.get(s.backend as usize)?;
        let (rip, rport) = (b.addr4, b.config.port);
        let lip = listener.lip4(s.lip)?;
        // From here on, what the general path does, in its order.
        frame.truncate(ETH_HLEN + p.total);
        if s.track_client(p.flags, p.seq, p.ack, p.seq_len()) {
            self.half_open.remove(id);
        }
        s.expires = tick(now).wrapping_add(listener.timeouts_ms.for_session(s));
        let (ip_delta, l4_delta) = (
            Delta::from_folded(s.ip_delta, false),
            Delta::from_folded(s.l4_delta, false),
        );
        if let Err(reason) = rewrite4(
            frame.bytes_mut(),
            &p.ipv4(),
            (lip, s.lport),
            (rip, rport),
            ip_delta,
            l4_delta,
        ) {
            return Some(Verdict::Drop(reason));
        }
        listener.traffic.inbound(p.total);
        if let Some(b) = listener.backends.get_mut(s.backend as usize) {
            b.traffic.inbound(p.total);
        }
        Some(Verdict::ToServer {
            next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
        })
    }

    /// [`Engine::outbound`] for a segment that takes the fast path.
    #[inline]
    fn fast_outbound(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &FastPacket,
    ) -> Option<Verdict> {
        // `find_outbound`, lending the session.
        let key = outbound4(
            &self.listeners,
            wire::PROTO_TCP,
            (p.src, p.sport),
            (p.dst, p.dport),
        );
        let (_, s) = self.table.find_mut(p.hash, Dir::Out, key)?;
        let listener = self
            .listeners
            .get_mut(usize::from(s.listener))
            .and_then(Option::as_mut)?;
        if !plain(listener) {
            return None;
        }
        frame.truncate(ETH_HLEN + p.total);
        s.track_server(p.flags, p.seq, p.ack, p.seq_len());
        server_refresh(
            s,
            tick(now).wrapping_add(listener.timeouts_ms.for_session(s)),
        );
        let (ip_delta, l4_delta) = (
            Delta::from_folded(s.ip_delta, true),
            Delta::from_folded(s.l4_delta, true),
        );
        let client = client4(s);
        if let Err(reason) = rewrite4(
            frame.bytes_mut(),
            &p.ipv4(),
            (listener.vip4, listener.config.port),
            (client, s.cport),
            ip_delta,
            l4_delta,
        ) {
            return Some(Verdict::Drop(reason));
        }
        listener.traffic.outbound(p.total);
        if let Some(b) = listener.backends.get_mut(s.backend as usize) {
            b.traffic.outbound(p.total);
        }
        Some(Verdict::ToClient {
            next_hop: IpAddr::V4(Ipv4Addr::from(client)),
        })
    }
}

/// A listener whose sessions' segments can take the fast path: IPv4 VIP
/// (no translation) and not verifying every transport checksum.
fn plain(l: &Listener) -> bool {
    l.vip6.is_none() && l.config.verify_checksums != ChecksumPolicy::All
}
