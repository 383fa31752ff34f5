//! The rewrite of a forwarded packet's addresses and ports, with the
//! session's precomputed checksum changes (RFC 1624).

use crate::verdict::DropReason;
use crate::wire::checksum::Delta;
use crate::wire::ipv6::Ipv6;
use crate::wire::{self, Ipv4};

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
    *wire::array_mut::<16>(bytes, ip6.off + 8)? = src.0;
    *wire::array_mut::<16>(bytes, ip6.off + 24)? = dst.0;
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
    let [s0, s1] = ports.0.to_be_bytes();
    let [d0, d1] = ports.1.to_be_bytes();
    if proto == wire::PROTO_TCP {
        let t = wire::array_mut::<18>(bytes, l4_off)?;
        let old = u16::from_be_bytes([t[16], t[17]]);
        [t[16], t[17]] = l4_delta.apply(old).to_be_bytes();
        [t[0], t[1], t[2], t[3]] = [s0, s1, d0, d1];
    } else {
        let u = wire::array_mut::<8>(bytes, l4_off)?;
        let old = u16::from_be_bytes([u[6], u[7]]);
        [u[6], u[7]] = l4_delta.apply_udp4(old).to_be_bytes();
        [u[0], u[1], u[2], u[3]] = [s0, s1, d0, d1];
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
    let [sp0, sp1] = src.1.to_be_bytes();
    let [dp0, dp1] = dst.1.to_be_bytes();
    // IPv4 header (20 bytes), then TCP up to its checksum (18) or UDP (8).
    let h = if ip.proto == wire::PROTO_TCP {
        let h = wire::array_mut::<38>(bytes, ip.off)?;
        let old = u16::from_be_bytes([h[36], h[37]]);
        [h[36], h[37]] = l4_delta.apply(old).to_be_bytes();
        h.first_chunk_mut::<24>()
    } else {
        let h = wire::array_mut::<28>(bytes, ip.off)?;
        let old = u16::from_be_bytes([h[26], h[27]]);
        [h[26], h[27]] = l4_delta.apply_udp4(old).to_be_bytes();
        h.first_chunk_mut::<24>()
    };
    let h = h.ok_or(DropReason::Truncated)?;
    let old = u16::from_be_bytes([h[10], h[11]]);
    [h[10], h[11]] = ip_delta.apply(old).to_be_bytes();
    [h[12], h[13], h[14], h[15]] = src.0;
    [h[16], h[17], h[18], h[19]] = dst.0;
    [h[20], h[21], h[22], h[23]] = [sp0, sp1, dp0, dp1];
    Ok(())
}
