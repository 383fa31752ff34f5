//! The fast path: an IPv4 TCP segment of a 4to4 session, either way, that
//! needs nothing but the rewrite.
//!
//! [`Engine::fast_parse`] reads the three fixed headers of an untagged
//! Ethernet frame in one bounds check and takes the frames whose
//! classification needs nothing more: an IPv4 TCP segment that
//! [`Engine::parse`] would accept, with what it would have found (the
//! same [`Packet`], [`FastPacket::packet`]; whether a segment that is not
//! to a VIP is to a local address is settled later, see
//! [`FastPacket::dir`]). Any other frame it leaves to [`Engine::parse`]
//! untouched. [`Engine::fast_forward`] then finds the segment's session,
//! checks that the general path would do nothing more than track it,
//! refresh its deadline, rewrite it and count it, and does exactly that;
//! when a check fails, before anything is changed, it hands the frame to
//! the general path ([`Engine::fast_decline`], [`Engine::finish`]) with
//! the packet already parsed and the session already looked up, so that
//! neither is done twice (the packet is read again from the fixed headers
//! then: [`FastPacket`] holds only what the lookup needs, so that few
//! values stay live across it). A session that is open
//! ([`Session::tcp_open`]), the common one, is tracked and timed inline;
//! any other the fast path also takes, with the general path's trackers
//! and timeouts, in a cold call. The general path then decides as it
//! always has: the fast path only takes frames whose outcome it produces
//! byte for byte, state for state and counter for counter. What it leaves
//! to the general path, and why:
//!
//! - VLAN tags, IPv6, IPv4 options, fragments, a bad IPv4 checksum,
//!   lengths that disagree, anything but TCP, TCP flags no segment may
//!   carry, a VIP without a listener on the port: drops, passes,
//!   translation or ICMP, all decided by [`Engine::parse`];
//! - SYN, RST or FIN, or no ACK: new sessions, `syn_again`, the SYN-ACK's
//!   MSS and timestamps edits, state changes that end or close sessions;
//! - a client segment that gets the TTM option ([`Session::wants_ttm`]),
//!   or whose options hold a kind the listener strips, an EOL or a
//!   malformed option ([`tcp_edit::nothing_to_strip`]): the general path
//!   rebuilds those options;
//! - a listener that verifies every transport checksum
//!   ([`ChecksumPolicy::All`]);
//! - 6to4 and 6to6 sessions, and anything with no session.
//!
//! [`Session::wants_ttm`]: crate::session::Session::wants_ttm
//! [`Session::tcp_open`]: crate::session::Session::tcp_open

use super::classify::{Net, Packet, tcp_flags_valid};
use super::keys::{key_hash4, outbound4};
use super::listeners::{Listener, listener_key};
use super::{Engine, ListenerId, TimeoutsMs, client4, client16, server_refresh, tick, u32_of};
use crate::config::ChecksumPolicy;
use crate::frame::Frame;
use crate::half_open::HalfOpen;
use crate::session::{Path, Session};
use crate::table::Dir;
use crate::tcp_edit;
use crate::time::Instant;
use crate::verdict::Verdict;
use crate::wire::checksum;
use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
use crate::wire::{self, ETH_HLEN, Ipv4, L4, ethernet, ipv4, tcp};
use core::net::{IpAddr, Ipv4Addr};

/// Ethernet, a 20-byte IPv4 header and a TCP header's fixed part.
const HEADERS: usize = ETH_HLEN + ipv4::HEADER_LEN + tcp::HEADER_LEN;

/// Views of the fixed headers of a frame that [`Engine::fast_parse`]
/// took: IPv4 (it has no options) and TCP's fixed part.
type Views<'a> = (
    ipv4::Packet<&'a mut [u8; ipv4::HEADER_LEN]>,
    tcp::Packet<&'a mut [u8; tcp::HEADER_LEN]>,
);

/// What [`Engine::fast_parse`] decided of a segment; the rest of what
/// [`Engine::parse`] would have found is in the frame's fixed headers,
/// which [`Engine::fast_forward`] reads again where it needs them (from
/// the cache, where keeping every field here would keep more values live
/// across the session lookup than there are registers).
#[derive(Debug, Clone, Copy)]
pub(super) struct FastPacket {
    /// To a VIP with a listener on the port (`In`), or not (`Out`): then
    /// to a local address if to one of ours at all, which is not checked
    /// when the segment is read. The VIPs and the local addresses are
    /// disjoint (a listener whose local address is a VIP, or the reverse,
    /// is refused), and the local addresses are those of the listeners'
    /// pools ([`Listener::lip4`]): a session found by the whole outbound
    /// key proves that the segment's destination is a local address.
    /// Anything else is checked by [`Engine::fast_decline`] before it
    /// trusts this classification.
    pub(super) dir: Dir,
    /// The listener of a segment to a VIP (0 for `Out`).
    listener: ListenerId,
    /// The IPv4 total length.
    total: u16,
    /// The flow hash of the segment's 5-tuple as received.
    pub(super) hash: u64,
}

impl FastPacket {
    /// The packet as [`Engine::parse`] would have returned it, from the
    /// fixed headers [`Engine::fast_parse`] read.
    fn packet(&self, ip: &ipv4::Packet<&[u8; ipv4::HEADER_LEN]>, tcp: &Tcp<'_>) -> Packet {
        let total = usize::from(self.total);
        let hlen = tcp.header_len();
        Packet {
            net: Net::V4(Ipv4 {
                off: ETH_HLEN,
                hlen: ipv4::HEADER_LEN,
                total,
                proto: wire::PROTO_TCP,
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                fragment: false,
                checksum_ok: true,
            }),
            l4: L4 {
                sport: tcp.src_port(),
                dport: tcp.dst_port(),
                flags: tcp.flags(),
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                payload: total - ipv4::HEADER_LEN - hlen,
                hlen,
            },
            dir: self.dir,
            listener: self.listener,
            hash: self.hash,
        }
    }
}

/// A TCP fixed header, read-only.
type Tcp<'a> = tcp::Packet<&'a [u8; tcp::HEADER_LEN]>;

/// Why [`Engine::fast_forward`] left a segment to the general path: the
/// session lookup it made, for [`Engine::inbound`] (`None`: none made).
pub(super) type Declined = Option<Option<u32>>;

/// Declined before looking the session up.
const NO_LOOKUP: Declined = None;

/// Payload bytes of a segment of IPv4 total length `total` whose TCP
/// header is `tcp`.
#[inline(always)]
fn payload(total: u16, tcp: &tcp::Packet<&mut [u8; tcp::HEADER_LEN]>) -> u32 {
    u32::from(total) - ipv4::HEADER_LEN as u32 - tcp.header_len() as u32
}

/// Whether a TCP flags byte is an ACK without SYN, RST or FIN: the
/// segments [`Engine::fast_forward`] may take.
#[inline(always)]
fn plain_ack(flags: u8) -> bool {
    flags & (SYN | RST | FIN | ACK) == ACK
}

/// Views of the fixed headers of an untagged IPv4 TCP frame, read-only.
type ReadViews<'a> = (
    ethernet::Packet<&'a [u8; ETH_HLEN]>,
    ipv4::Packet<&'a [u8; ipv4::HEADER_LEN]>,
    Tcp<'a>,
);

/// The fixed headers of an untagged IPv4 TCP frame, read-only.
#[inline(always)]
fn split(h: &[u8; HEADERS]) -> Option<ReadViews<'_>> {
    let (eth, rest) = h.split_first_chunk::<ETH_HLEN>()?;
    let (ip, rest) = rest.split_first_chunk::<{ ipv4::HEADER_LEN }>()?;
    let tcp = rest.first_chunk::<{ tcp::HEADER_LEN }>()?;
    Some((
        ethernet::Packet::new_unchecked(eth),
        ipv4::Packet::new_unchecked(ip),
        tcp::Packet::new_unchecked(tcp),
    ))
}

impl Engine {
    /// Read a frame for the fast path: `None` unless it is an untagged
    /// IPv4 TCP segment that [`Engine::parse`] would accept and classify
    /// in full if it is to one of our addresses (20-byte IPv4 header, not
    /// a fragment, right IPv4 checksum, lengths that agree, valid TCP
    /// flags), to a VIP with a listener on its port or maybe to a local
    /// address ([`FastPacket::dir`]). Reads only; the frame is cut to its
    /// IPv4 length when [`Engine::fast_forward`] takes it.
    #[inline(always)]
    pub(super) fn fast_parse(&self, frame: &Frame<'_>) -> Option<FastPacket> {
        if !self.fast_path {
            return None;
        }
        let (h, len) = frame.head::<HEADERS>()?;
        let (eth, ip, tcp) = split(h)?;
        if eth.ethertype() != wire::ETHERTYPE_IPV4
            || ip.version() != 4
            || ip.header_len() != ipv4::HEADER_LEN
        {
            return None;
        }
        let total = ip.total_len();
        let tcp_hlen = tcp.header_len();
        let ours = ip.protocol() == wire::PROTO_TCP
            && !ip.is_fragment()
            && usize::from(total) >= ipv4::HEADER_LEN + tcp::HEADER_LEN
            && ETH_HLEN + usize::from(total) <= len
            && tcp_hlen >= tcp::HEADER_LEN
            && tcp_hlen <= usize::from(total) - ipv4::HEADER_LEN
            && tcp_flags_valid(tcp.flags())
            && ip.checksum_ok();
        if !ours {
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let (sport, dport) = (tcp.src_port(), tcp.dst_port());
        // As `parse` decides: to a VIP, whose listener is then looked up,
        // or else maybe to a local address, which is not checked here (see
        // `FastPacket::dir`).
        let key = listener_key(u32_of(dst), dport, wire::PROTO_TCP);
        let (dir, listener) = match self.by_key.binary_search_by_key(&key, |&(k, _)| k) {
            Ok(i) => (Dir::In, self.by_key.get(i)?.1),
            Err(_) => (Dir::Out, 0),
        };
        Some(FastPacket {
            dir,
            listener,
            total,
            hash: key_hash4(
                self.config.hash_seed,
                wire::PROTO_TCP,
                (src, sport),
                (dst, dport),
            ),
        })
    }

    /// Forward a segment [`Engine::fast_parse`] read, if the rewrite alone
    /// is all it needs, writing its verdict (which needs no counting:
    /// neither a drop nor a pass) into `verdict`. `Err`, with nothing
    /// changed, for the caller to hand the segment to
    /// [`Engine::fast_decline`].
    #[inline(always)]
    pub(super) fn fast_forward(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: &FastPacket,
        verdict: &mut Verdict,
    ) -> Result<(), Declined> {
        let (h, rest) = frame.head_mut::<HEADERS>().ok_or(NO_LOOKUP)?;
        let views = views(h).ok_or(NO_LOOKUP)?;
        if !plain_ack(views.1.flags()) {
            return Err(NO_LOOKUP);
        }
        match p.dir {
            Dir::In => self.fast_inbound(now, views, rest, p, verdict)?,
            Dir::Out => self.fast_outbound(now, views, p, verdict)?,
        }
        frame.truncate(ETH_HLEN + usize::from(p.total));
        self.fast_forwarded += 1;
        Ok(())
    }

    /// The general path for a segment the fast path read but does not
    /// forward: as [`Engine::parse`] and [`Engine::finish`] would handle
    /// it, without the parse if the segment is to a VIP or a local
    /// address, and for a segment to a VIP without the session lookup if
    /// one was made. A segment to neither gets the whole general path.
    /// A segment to a VIP goes straight to [`Engine::inbound`] (what
    /// `finish` would do with it), which is inlined here for IPv4 TCP.
    #[cold]
    #[inline(never)]
    pub(super) fn fast_decline(
        &mut self,
        now: Instant,
        frame: &mut Frame<'_>,
        p: FastPacket,
        found: Declined,
    ) -> Verdict {
        let packet = frame.head::<HEADERS>().and_then(|(h, _)| {
            let (_, ip, tcp) = split(h)?;
            Some(p.packet(&ip, &tcp))
        });
        let ours = packet.is_some_and(|packet| {
            let Net::V4(ip) = packet.net else {
                return false;
            };
            p.dir == Dir::In || self.locals.binary_search(&u32_of(ip.dst)).is_ok()
        });
        match packet {
            Some(packet) if ours && p.dir == Dir::In => {
                frame.truncate(ETH_HLEN + usize::from(p.total));
                let verdict = self
                    .inbound(now, frame, &packet, found)
                    .unwrap_or_else(Verdict::Drop);
                self.count(verdict)
            }
            Some(packet) if ours => {
                frame.truncate(ETH_HLEN + usize::from(p.total));
                self.finish(now, frame, &Ok(packet), found)
            }
            _ => {
                let parsed = self.parse(frame);
                self.finish(now, frame, &parsed, None)
            }
        }
    }

    /// [`Engine::inbound`] for a segment that takes the fast path; `Err`
    /// with the lookup made, with nothing changed, for one that does not.
    #[inline(always)]
    fn fast_inbound(
        &mut self,
        now: Instant,
        (ip, tcp): Views<'_>,
        rest: &[u8],
        p: &FastPacket,
        verdict: &mut Verdict,
    ) -> Result<(), Declined> {
        let lid = p.listener;
        let (sport, client) = (tcp.src_port(), client16(ip.src_addr()));
        let Some((id, s)) = self
            .table
            .find_mut(p.hash, Dir::In, |s| s.of_client(lid, &client, sport))
        else {
            return Err(Some(None));
        };
        let declined = Err(Some(Some(id)));
        let Some(listener) = self
            .listeners
            .get_mut(usize::from(lid))
            .and_then(Option::as_mut)
        else {
            return declined;
        };
        let ack = tcp.ack_number();
        // `wants_ttm` and `track_client` read only SYN, RST, FIN and ACK:
        // ACK alone stands for the segment's flags.
        if !plain(listener) || (listener.ttm_on && s.wants_ttm(ACK, ack)) {
            return declined;
        }
        if s.path != Path::FourToFour {
            return declined;
        }
        let (Some(lip), Some(b)) = (
            listener.lip4(s.lip),
            listener.backends.get_mut(s.backend as usize),
        ) else {
            return declined;
        };
        let (rip, rport) = (b.addr4, b.config.port);
        // The general path removes spoofed options from every client
        // segment that has options: take only those it leaves alone.
        let tcp_hlen = tcp.header_len();
        if tcp_hlen > tcp::HEADER_LEN && !listener.config.ttm.strip.is_empty() {
            let area = rest.get(..tcp_hlen - tcp::HEADER_LEN);
            if !area.is_some_and(|a| tcp_edit::nothing_to_strip(a, &listener.config.ttm.strip)) {
                return declined;
            }
        }
        // From here on, what the general path does, in its order.
        // An open session, the common one, here: `track_client` cannot
        // complete its handshake (nothing for the half-open list), and its
        // timeout is the established one. Any other, in a call.
        let (seq, seq_len) = (tcp.seq_number(), payload(p.total, &tcp));
        if s.tcp_open() {
            s.track_client_ack(seq, ack, seq_len);
            s.expires = tick(now).wrapping_add(listener.timeouts_ms.established);
        } else {
            track_client(
                &mut self.half_open,
                &listener.timeouts_ms,
                (id, s),
                (seq, ack, seq_len),
                tick(now),
            );
        }
        rewrite(
            (ip, tcp),
            (lip, s.lport),
            (rip, rport),
            (s.ip_delta, s.l4_delta),
            false,
        );
        let total = usize::from(p.total);
        listener.traffic.inbound(total);
        b.traffic.inbound(total);
        *verdict = Verdict::ToServer {
            next_hop: IpAddr::V4(Ipv4Addr::from(rip)),
        };
        Ok(())
    }

    /// [`Engine::outbound`] for a segment that takes the fast path; `Err`,
    /// with nothing changed, for one that does not.
    #[inline(always)]
    fn fast_outbound(
        &mut self,
        now: Instant,
        (ip, tcp): Views<'_>,
        p: &FastPacket,
        verdict: &mut Verdict,
    ) -> Result<(), Declined> {
        // `find_outbound`, lending the session, in two steps: the table
        // walk compares the local port and protocol only (a small test
        // the walk inlines), then the whole key is checked on the entry
        // found. That entry is `find_outbound`'s when the whole key
        // matches (any earlier entry with the whole key would have
        // matched the part); when it does not, the general path looks on.
        let lport = tcp.dst_port();
        let (_, s) = self
            .table
            .find_mut(p.hash, Dir::Out, |s| {
                s.lport == lport && s.proto == wire::PROTO_TCP
            })
            .ok_or(NO_LOOKUP)?;
        let server = (ip.src_addr(), tcp.src_port());
        if !outbound4(
            &self.listeners,
            wire::PROTO_TCP,
            server,
            (ip.dst_addr(), lport),
        )(s)
        {
            return Err(NO_LOOKUP);
        }
        let listener = self
            .listeners
            .get_mut(usize::from(s.listener))
            .and_then(Option::as_mut)
            .ok_or(NO_LOOKUP)?;
        if !plain(listener) {
            return Err(NO_LOOKUP);
        }
        // An open session, the common one, here; any other in a call (so
        // that the rare call does not cost the common case registers).
        if s.tcp_open() {
            outbound_tail::<true>(listener, s, (ip, tcp), p.total, tick(now), verdict);
        } else {
            outbound_tail_any(listener, s, (ip, tcp), p.total, tick(now), verdict);
        }
        Ok(())
    }
}

/// The end of [`Engine::fast_outbound`] for a session `s` of `listener`
/// at tick `now`: track the server's ACK without SYN, RST or FIN
/// (`track_server` reads only those flags), set the deadline, rewrite,
/// count, and write the verdict. `OPEN` for a [`Session::tcp_open`]
/// session, whose tracking is [`Session::track_server_ack`], whose
/// deadline `server_refresh` always sets and whose timeout is the
/// established one.
#[inline(always)]
fn outbound_tail<const OPEN: bool>(
    listener: &mut Listener,
    s: &mut Session,
    (ip, tcp): Views<'_>,
    total: u16,
    now: u32,
    verdict: &mut Verdict,
) {
    let (seq, ack, seq_len) = (tcp.seq_number(), tcp.ack_number(), payload(total, &tcp));
    if OPEN {
        s.track_server_ack(seq, ack, seq_len);
        s.expires = now.wrapping_add(listener.timeouts_ms.established);
    } else {
        s.track_server(ACK, seq, ack, seq_len);
        server_refresh(s, now.wrapping_add(listener.timeouts_ms.for_session(s)));
    }
    let client = client4(s);
    rewrite(
        (ip, tcp),
        (listener.vip4, listener.config.port),
        (client, s.cport),
        (s.ip_delta, s.l4_delta),
        true,
    );
    let total = usize::from(total);
    listener.traffic.outbound(total);
    if let Some(b) = listener.backends.get_mut(s.backend as usize) {
        b.traffic.outbound(total);
    }
    *verdict = Verdict::ToClient {
        next_hop: IpAddr::V4(Ipv4Addr::from(client)),
    };
}

/// [`outbound_tail`] for any session.
#[cold]
#[inline(never)]
fn outbound_tail_any(
    listener: &mut Listener,
    s: &mut Session,
    views: Views<'_>,
    total: u16,
    now: u32,
    verdict: &mut Verdict,
) {
    outbound_tail::<false>(listener, s, views, total, now, verdict);
}

/// What [`Engine::inbound`] does to a session that is not
/// [`Session::tcp_open`] for a client's ACK without SYN, RST or FIN at
/// tick `now` (`track_client` reads only those flags): track it, take it
/// off the half-open list if the ACK completes its handshake, set its
/// deadline.
#[cold]
#[inline(never)]
fn track_client(
    half_open: &mut HalfOpen,
    timeouts: &TimeoutsMs,
    (id, s): (u32, &mut Session),
    (seq, ack, seq_len): (u32, u32, u32),
    now: u32,
) {
    if s.track_client(ACK, seq, ack, seq_len) {
        half_open.remove(id);
    }
    s.expires = now.wrapping_add(timeouts.for_session(s));
}

/// The IPv4 and TCP views of a frame's fixed headers.
#[inline(always)]
fn views(h: &mut [u8; HEADERS]) -> Option<Views<'_>> {
    let (_, rest) = h.split_first_chunk_mut::<ETH_HLEN>()?;
    let (ip, rest) = rest.split_first_chunk_mut::<{ ipv4::HEADER_LEN }>()?;
    let tcp = rest.first_chunk_mut::<{ tcp::HEADER_LEN }>()?;
    Some((
        ipv4::Packet::new_unchecked(ip),
        tcp::Packet::new_unchecked(tcp),
    ))
}

/// [`super::rewrite::rewrite4`] on the fixed headers of a TCP segment:
/// the source to `src`, the destination to `dst`, and the session's
/// stored checksum changes (RFC 1624; their inverse for `inverse`)
/// applied, the IPv4 header's (`ip_delta`) and the TCP checksum's
/// (`l4_delta`).
#[inline(always)]
fn rewrite(
    (mut ip, mut tcp): Views<'_>,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    (ip_delta, l4_delta): (u16, u16),
    inverse: bool,
) {
    tcp.set_checksum(checksum::apply_folded(tcp.checksum(), l4_delta, inverse));
    ip.set_checksum(checksum::apply_folded(ip.checksum(), ip_delta, inverse));
    ip.set_src_addr(src.0);
    ip.set_dst_addr(dst.0);
    tcp.set_src_port(src.1);
    tcp.set_dst_port(dst.1);
}

/// A listener whose sessions' segments can take the fast path: IPv4 VIP
/// (no translation) and not verifying every transport checksum.
#[inline(always)]
fn plain(l: &Listener) -> bool {
    l.vip6.is_none() && l.config.verify_checksums != ChecksumPolicy::All
}
