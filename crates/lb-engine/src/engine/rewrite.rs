//! The rewrite of a forwarded packet's addresses and ports, with the
//! session's precomputed checksum changes (RFC 1624), through the wire
//! views.
//!
//! Each function takes the headers it writes as one slice of fixed length
//! (`get_mut(at..at + LEN)`, a branch): the compiler then knows every
//! field the views write is inside it, and the setters are plain stores.
//! A frame too short for them is `Truncated`, and nothing is written.

use crate::verdict::DropReason;
use crate::wire::checksum::Delta;
use crate::wire::ipv6::Ipv6;
use crate::wire::{self, Ipv4, ipv4, ipv6, tcp, udp};

/// Rewrite an IPv6 TCP/UDP packet's source to `src` and destination to
/// `dst` (6to6), applying the session's precomputed change to the
/// transport checksum (IPv6 has no header checksum).
pub(super) fn rewrite6(
    bytes: &mut [u8],
    ip6: &Ipv6,
    src: ([u8; 16], u16),
    dst: ([u8; 16], u16),
    l4_delta: Delta,
) -> Result<(), DropReason> {
    let header = bytes
        .get_mut(ip6.off..ip6.off + ipv6::HLEN)
        .ok_or(DropReason::Truncated)?;
    let mut p = ipv6::Packet::new_unchecked(header);
    p.set_src_addr(src.0);
    p.set_dst_addr(dst.0);
    rewrite_ports(bytes, ip6.l4_off, ip6.proto, (src.1, dst.1), l4_delta)
}

/// Rewrite the ports of a TCP or UDP header at `l4_off` to `ports`
/// (source, destination), applying `l4_delta` to its checksum: the 6to4
/// path, where translation has already written the addresses.
pub(super) fn rewrite_ports(
    bytes: &mut [u8],
    l4_off: usize,
    proto: u8,
    ports: (u16, u16),
    l4_delta: Delta,
) -> Result<(), DropReason> {
    if proto == wire::PROTO_TCP {
        let header = bytes
            .get_mut(l4_off..l4_off + tcp::HEADER_LEN)
            .ok_or(DropReason::Truncated)?;
        tcp_ports(&mut tcp::Packet::new_unchecked(header), ports, l4_delta);
    } else {
        let header = bytes
            .get_mut(l4_off..l4_off + udp::HEADER_LEN)
            .ok_or(DropReason::Truncated)?;
        udp_ports(&mut udp::Packet::new_unchecked(header), ports, l4_delta);
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
pub(super) fn rewrite4(
    bytes: &mut [u8],
    ip: &Ipv4,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    ip_delta: Delta,
    l4_delta: Delta,
) -> Result<(), DropReason> {
    // The IPv4 header and the TCP or UDP header after it, as one slice
    // per protocol: each branch's lengths are then constants.
    let ip_header = if ip.proto == wire::PROTO_TCP {
        let (ip_header, l4_header) = headers(bytes, ip.off, tcp::HEADER_LEN)?;
        tcp_ports(
            &mut tcp::Packet::new_unchecked(l4_header),
            (src.1, dst.1),
            l4_delta,
        );
        ip_header
    } else {
        let (ip_header, l4_header) = headers(bytes, ip.off, udp::HEADER_LEN)?;
        udp_ports(
            &mut udp::Packet::new_unchecked(l4_header),
            (src.1, dst.1),
            l4_delta,
        );
        ip_header
    };
    let mut p = ipv4::Packet::new_unchecked(ip_header);
    p.set_checksum(ip_delta.apply(p.checksum()));
    p.set_src_addr(src.0);
    p.set_dst_addr(dst.0);
    Ok(())
}

/// The IPv4 header without options at `off` and the `l4_len` bytes of
/// transport header after it; `Truncated` if the frame ends before them.
#[inline(always)]
fn headers(
    bytes: &mut [u8],
    off: usize,
    l4_len: usize,
) -> Result<(&mut [u8], &mut [u8]), DropReason> {
    bytes
        .get_mut(off..off + ipv4::HEADER_LEN + l4_len)
        .and_then(|h| h.split_at_mut_checked(ipv4::HEADER_LEN))
        .ok_or(DropReason::Truncated)
}

/// Set a TCP header's ports and apply `l4_delta` to its checksum.
#[inline(always)]
fn tcp_ports(p: &mut tcp::Packet<&mut [u8]>, (sport, dport): (u16, u16), l4_delta: Delta) {
    p.set_checksum(l4_delta.apply(p.checksum()));
    p.set_src_port(sport);
    p.set_dst_port(dport);
}

/// Set a UDP header's ports and apply `l4_delta` to its checksum (a UDP
/// checksum of 0 stays 0: [`Delta::apply_udp4`]).
#[inline(always)]
fn udp_ports(p: &mut udp::Packet<&mut [u8]>, (sport, dport): (u16, u16), l4_delta: Delta) {
    p.set_checksum(l4_delta.apply_udp4(p.checksum()));
    p.set_src_port(sport);
    p.set_dst_port(dport);
}
