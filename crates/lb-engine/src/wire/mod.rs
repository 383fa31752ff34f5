//! Reading and writing the headers the engine touches: Ethernet (only to
//! find the network layer), IPv4, TCP, UDP and ICMP.
//!
//! The panic contract, as smoltcp writes its own: every parser checks
//! lengths first and reads through fixed-size arrays taken with `get`, so
//! no accessor can panic whatever the bytes; a parser that fails says why
//! with a [`DropReason`]. Offsets are from the start of the frame.

pub(crate) mod checksum;
pub(crate) mod ipv6;

use crate::verdict::DropReason;

/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// Length of an Ethernet header without VLAN tags.
pub(crate) const ETH_HLEN: usize = 14;

/// IP protocol numbers.
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_ICMPV6: u8 = 58;

/// TCP flags.
pub(crate) mod tcp_flags {
    pub(crate) const FIN: u8 = 0x01;
    pub(crate) const SYN: u8 = 0x02;
    pub(crate) const RST: u8 = 0x04;
    pub(crate) const ACK: u8 = 0x10;
}

/// A fixed-size view of `N` bytes at `off`, or `Truncated`.
#[inline]
pub(crate) fn array<const N: usize>(bytes: &[u8], off: usize) -> Result<&[u8; N], DropReason> {
    bytes
        .get(off..off.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(DropReason::Truncated)
}

/// A writable fixed-size view of `N` bytes at `off`, or `Truncated`.
#[inline]
pub(crate) fn array_mut<const N: usize>(
    bytes: &mut [u8],
    off: usize,
) -> Result<&mut [u8; N], DropReason> {
    bytes
        .get_mut(off..off.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(DropReason::Truncated)
}

#[inline]
pub(crate) fn be16(bytes: &[u8], off: usize) -> Result<u16, DropReason> {
    array::<2>(bytes, off).map(|a| u16::from_be_bytes(*a))
}

#[inline]
pub(crate) fn set_be16(bytes: &mut [u8], off: usize, value: u16) -> Result<(), DropReason> {
    *array_mut::<2>(bytes, off)? = value.to_be_bytes();
    Ok(())
}

/// The EtherType and the offset of the network layer, behind at most two
/// VLAN tags.
#[inline]
pub(crate) fn ethernet(frame: &[u8]) -> Result<(u16, usize), DropReason> {
    let ethertype = be16(frame, ETH_HLEN - 2)?;
    if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
        return Ok((ethertype, ETH_HLEN));
    }
    ethernet_tagged(frame)
}

/// [`ethernet`] behind VLAN tags, off the common path.
#[cold]
fn ethernet_tagged(frame: &[u8]) -> Result<(u16, usize), DropReason> {
    let mut off = ETH_HLEN - 2;
    for _ in 0..3 {
        let ethertype = be16(frame, off)?;
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            return Ok((ethertype, off + 2));
        }
        off += 4;
    }
    // Three tags: not something this engine forwards.
    Ok((0, off))
}

/// The parts of an IPv4 header the engine uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ipv4 {
    /// Offset of the header in the frame.
    pub(crate) off: usize,
    /// Header length in bytes (IHL * 4).
    pub(crate) hlen: usize,
    /// Total length field: header and payload.
    pub(crate) total: usize,
    pub(crate) proto: u8,
    pub(crate) src: [u8; 4],
    pub(crate) dst: [u8; 4],
    /// More-fragments set or a fragment offset: a fragment.
    pub(crate) fragment: bool,
    /// Whether the header checksum is right (a header with options is
    /// checked over its fixed part only, and refused for its options).
    pub(crate) checksum_ok: bool,
}

/// Field offsets in an IPv4 header.
pub(crate) mod ipv4_field {
    pub(crate) const TTL: usize = 8;
    pub(crate) const CHECKSUM: usize = 10;
    pub(crate) const SRC: usize = 12;
    pub(crate) const DST: usize = 16;
}

impl Ipv4 {
    /// Parse the fixed header at `off`; checks version, IHL and that the
    /// total length fits the frame. Options, fragments and the checksum
    /// are reported, not judged: only traffic for us is held to them.
    #[inline]
    pub(crate) fn parse(frame: &[u8], off: usize) -> Result<Ipv4, DropReason> {
        let h = array::<20>(frame, off)?;
        let [vihl, _tos, t0, t1, _id0, _id1, f0, f1, _ttl, proto, ..] = *h;
        let [.., s0, s1, s2, s3, d0, d1, d2, d3] = *h;
        if vihl >> 4 != 4 || vihl & 0x0f < 5 {
            return Err(DropReason::BadIpHeader);
        }
        let hlen = usize::from(vihl & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([t0, t1]));
        if total < hlen || off + total > frame.len() {
            return Err(DropReason::BadIpLength);
        }
        Ok(Ipv4 {
            off,
            hlen,
            total,
            proto,
            src: [s0, s1, s2, s3],
            dst: [d0, d1, d2, d3],
            fragment: u16::from_be_bytes([f0, f1]) & 0x3fff != 0,
            checksum_ok: checksum::fixed_header_ok(h),
        })
    }

    /// Offset of the transport header.
    pub(crate) fn l4_off(&self) -> usize {
        self.off + self.hlen
    }

    /// Length of the transport header and payload.
    pub(crate) fn l4_len(&self) -> usize {
        self.total - self.hlen
    }
}

/// The parts of a TCP or UDP header the engine uses.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct L4 {
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    /// TCP only (zero for UDP): flags, sequence and acknowledgment numbers.
    pub(crate) flags: u8,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    /// Payload bytes after the transport header.
    pub(crate) payload: usize,
    /// Length of the transport header: TCP's data offset in bytes (over
    /// 20 when it has options), 8 for UDP.
    pub(crate) hlen: usize,
}

impl L4 {
    /// Parse a TCP header at `off` with `len` bytes of segment.
    #[inline]
    pub(crate) fn tcp(frame: &[u8], off: usize, len: usize) -> Result<L4, DropReason> {
        if len < 20 {
            return Err(DropReason::Truncated);
        }
        let h = array::<20>(frame, off)?;
        let [
            sp0,
            sp1,
            dp0,
            dp1,
            s0,
            s1,
            s2,
            s3,
            a0,
            a1,
            a2,
            a3,
            doff,
            flags,
            ..,
        ] = *h;
        let hlen = usize::from(doff >> 4) * 4;
        if hlen < 20 || hlen > len {
            return Err(DropReason::BadL4Header);
        }
        Ok(L4 {
            sport: u16::from_be_bytes([sp0, sp1]),
            dport: u16::from_be_bytes([dp0, dp1]),
            flags,
            seq: u32::from_be_bytes([s0, s1, s2, s3]),
            ack: u32::from_be_bytes([a0, a1, a2, a3]),
            payload: len - hlen,
            hlen,
        })
    }

    /// Parse a UDP header at `off` with `len` bytes of datagram; the UDP
    /// length must equal `len`.
    #[inline]
    pub(crate) fn udp(frame: &[u8], off: usize, len: usize) -> Result<L4, DropReason> {
        if len < 8 {
            return Err(DropReason::Truncated);
        }
        let h = array::<8>(frame, off)?;
        let [sp0, sp1, dp0, dp1, l0, l1, ..] = *h;
        if usize::from(u16::from_be_bytes([l0, l1])) != len {
            return Err(DropReason::BadL4Header);
        }
        Ok(L4 {
            sport: u16::from_be_bytes([sp0, sp1]),
            dport: u16::from_be_bytes([dp0, dp1]),
            flags: 0,
            seq: 0,
            ack: 0,
            payload: len - 8,
            hlen: 8,
        })
    }

    /// The segment's length in sequence space: payload, plus one for SYN
    /// and one for FIN (RFC 9293 §3.4).
    pub(crate) fn seq_len(&self) -> u32 {
        let syn = u32::from(self.flags & tcp_flags::SYN != 0);
        let fin = u32::from(self.flags & tcp_flags::FIN != 0);
        (self.payload as u32).wrapping_add(syn).wrapping_add(fin)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn frame_v4(ip: &[u8]) -> alloc::vec::Vec<u8> {
        let mut f = alloc::vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let mut f = alloc::vec![0u8; 12];
        f.extend_from_slice(&[0x81, 0x00, 0, 5, 0x88, 0xa8, 0, 6, 0x08, 0x00]);
        assert_eq!(ethernet(&f), Ok((ETHERTYPE_IPV4, 22)));
        assert_eq!(ethernet(&f[..21]), Err(DropReason::Truncated));
        assert_eq!(ethernet(&[0u8; 5]), Err(DropReason::Truncated));
    }

    #[test]
    fn ipv4_header_checks() {
        let mut ip = [0u8; 28];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&28u16.to_be_bytes());
        ip[9] = PROTO_UDP;
        let f = frame_v4(&ip);
        let h = Ipv4::parse(&f, 14).unwrap();
        assert_eq!(
            (h.hlen, h.total, h.l4_len(), h.fragment),
            (20, 28, 8, false)
        );
        let mut bad = ip;
        bad[0] = 0x44;
        assert_eq!(
            Ipv4::parse(&frame_v4(&bad), 14).unwrap_err(),
            DropReason::BadIpHeader
        );
        bad[0] = 0x65;
        assert_eq!(
            Ipv4::parse(&frame_v4(&bad), 14).unwrap_err(),
            DropReason::BadIpHeader
        );
        let mut lie = ip;
        lie[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert_eq!(
            Ipv4::parse(&frame_v4(&lie), 14).unwrap_err(),
            DropReason::BadIpLength
        );
        lie[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Ipv4::parse(&frame_v4(&lie), 14).unwrap_err(),
            DropReason::BadIpLength
        );
        assert_eq!(
            Ipv4::parse(&f[..33], 14).unwrap_err(),
            DropReason::Truncated
        );
        let mut frag = ip;
        frag[6] = 0x20; // more fragments
        assert!(Ipv4::parse(&frame_v4(&frag), 14).unwrap().fragment);
        frag[6] = 0x40; // don't fragment only
        assert!(!Ipv4::parse(&frame_v4(&frag), 14).unwrap().fragment);
    }

    #[test]
    fn tcp_and_udp_header_checks() {
        let mut seg = [0u8; 24];
        seg[12] = 6 << 4;
        seg[13] = tcp_flags::SYN | tcp_flags::FIN;
        let t = L4::tcp(&seg, 0, 24).unwrap();
        assert_eq!((t.payload, t.seq_len()), (0, 2));
        seg[12] = 7 << 4;
        assert_eq!(L4::tcp(&seg, 0, 24).unwrap_err(), DropReason::BadL4Header);
        seg[12] = 4 << 4;
        assert_eq!(L4::tcp(&seg, 0, 24).unwrap_err(), DropReason::BadL4Header);
        assert_eq!(L4::tcp(&seg, 0, 19).unwrap_err(), DropReason::Truncated);
        let mut dgram = [0u8; 12];
        dgram[4..6].copy_from_slice(&12u16.to_be_bytes());
        assert_eq!(L4::udp(&dgram, 0, 12).unwrap().payload, 4);
        assert_eq!(L4::udp(&dgram, 0, 11).unwrap_err(), DropReason::BadL4Header);
        assert_eq!(L4::udp(&dgram, 0, 7).unwrap_err(), DropReason::Truncated);
    }
}
