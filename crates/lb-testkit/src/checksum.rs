//! Checksums and IP parsing written apart from the engine's: an oracle
//! that shares no code with `lb-engine`'s checksum module, so that a bug
//! there cannot hide itself here. Lifted from the `engine_packet` fuzz
//! target; it reads frames with Ethernet and up to two VLAN tags.

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// ICMPv6.
pub const PROTO_ICMPV6: u8 = 58;

/// The ones' complement sum of `data` as 16-bit big-endian words (an odd
/// last byte padded with zero), not yet folded.
pub fn ones_sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| {
            let hi = c.first().copied().unwrap_or(0);
            u64::from(u16::from_be_bytes([hi, c.get(1).copied().unwrap_or(0)]))
        })
        .sum()
}

/// A sum folded to 16 bits (RFC 1071).
pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The sum of a pseudo-header, IPv4's or IPv6's alike: their length
/// fields (16 or 32 bits) add up the same for lengths below 65536.
pub fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    ones_sum(src) + ones_sum(dst) + u64::from(proto) + len as u64
}

/// The big-endian 16-bit word at `off` of `b`, if it is there.
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The offset of the IP header behind at most two VLAN tags, if the
/// frame's EtherType says IPv4 or IPv6.
pub fn l3_offset(b: &[u8]) -> Option<usize> {
    let mut off = 12;
    for _ in 0..3 {
        match be16(b, off)? {
            0x8100 | 0x88a8 => off += 4,
            0x0800 | 0x86dd => return Some(off + 2),
            _ => return None,
        }
    }
    None
}

/// An IP packet as the oracle reads it.
#[derive(Debug, Clone, Copy)]
pub struct Ip<'a> {
    /// Where the IP header starts.
    pub l3: usize,
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// The source address, 4 or 16 bytes.
    pub src: &'a [u8],
    /// The destination address.
    pub dst: &'a [u8],
    /// The upper-layer protocol, after any IPv6 extension headers.
    pub proto: u8,
    /// Where the upper-layer header starts.
    pub l4: usize,
    /// Where the packet ends, as its header says: past the end of the
    /// buffer for a packet an ICMP error quotes in part.
    pub end: usize,
}

/// The IP packet at `l3` of `b`, by its version: IPv4 with a header
/// length and total length that hold together, or IPv6 with its hop-by-hop,
/// routing, destination options and fragment headers walked (at most
/// eight) and within its payload length.
pub fn ip_at(b: &[u8], l3: usize) -> Option<Ip<'_>> {
    match b.get(l3)? >> 4 {
        4 => {
            let h = b.get(l3..l3 + 20)?;
            let ihl = usize::from(h.first()? & 0x0f) * 4;
            let total = usize::from(be16(h, 2)?);
            (ihl >= 20 && total >= ihl).then_some(Ip {
                l3,
                v6: false,
                src: h.get(12..16)?,
                dst: h.get(16..20)?,
                proto: *h.get(9)?,
                l4: l3 + ihl,
                end: l3 + total,
            })
        }
        6 => {
            let h = b.get(l3..l3 + 40)?;
            let end = l3 + 40 + usize::from(be16(h, 4)?);
            let (mut next, mut at) = (*h.get(6)?, l3 + 40);
            for _ in 0..8 {
                let len = match next {
                    0 | 43 | 60 => (usize::from(*b.get(at + 1)?) + 1) * 8,
                    44 => 8,
                    _ => break,
                };
                next = *b.get(at)?;
                at += len;
            }
            (at <= end).then_some(Ip {
                l3,
                v6: true,
                src: h.get(8..24)?,
                dst: h.get(24..40)?,
                proto: next,
                l4: at,
                end,
            })
        }
        _ => None,
    }
}

/// The IP packet of a frame, of the family its EtherType says, whole in
/// the frame.
pub fn ip_of(b: &[u8]) -> Option<Ip<'_>> {
    let l3 = l3_offset(b)?;
    let ip = ip_at(b, l3)?;
    let ethertype = if ip.v6 { 0x86dd } else { 0x0800 };
    (be16(b, l3 - 2)? == ethertype && ip.end <= b.len()).then_some(ip)
}

/// Whether an IPv4 header's checksum is right (false if it is not whole
/// in `b`).
pub fn header_sum_ok(b: &[u8], ip: &Ip) -> bool {
    b.get(ip.l3..ip.l4)
        .is_some_and(|h| fold(ones_sum(h)) == 0xffff)
}

/// The state of a packet's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Sum {
    /// Not TCP, UDP, ICMP or ICMPv6, or not parseable.
    Unknown,
    /// Right.
    Valid,
    /// Wrong.
    Invalid,
    /// UDP without a checksum (0).
    Absent,
}

/// The transport checksum of a frame's IP packet.
pub fn l4_sum(b: &[u8]) -> L4Sum {
    ip_of(b).map_or(L4Sum::Unknown, |ip| l4_sum_of(b, &ip))
}

/// The transport checksum of the packet `ip` in `b` (`Unknown` if it is
/// not whole there).
pub fn l4_sum_of(b: &[u8], ip: &Ip) -> L4Sum {
    let Some(seg) = b.get(ip.l4..ip.end) else {
        return L4Sum::Unknown;
    };
    let sum = match ip.proto {
        PROTO_TCP if seg.len() >= 20 => pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg),
        PROTO_UDP if seg.len() >= 8 => {
            if seg.get(6..8) == Some(&[0, 0]) {
                return L4Sum::Absent;
            }
            pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg)
        }
        PROTO_ICMP if !ip.v6 && seg.len() >= 4 => ones_sum(seg),
        PROTO_ICMPV6 if ip.v6 && seg.len() >= 4 => {
            pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg)
        }
        _ => return L4Sum::Unknown,
    };
    if fold(sum) == 0xffff {
        L4Sum::Valid
    } else {
        L4Sum::Invalid
    }
}

/// Whether a frame's transport checksum is right, pseudo-header included:
/// UDP's 0 ("none") is right over IPv4 only.
pub fn l4_right(b: &[u8]) -> bool {
    match ip_of(b) {
        Some(ip) => match l4_sum_of(b, &ip) {
            L4Sum::Valid => true,
            L4Sum::Absent => !ip.v6,
            L4Sum::Invalid | L4Sum::Unknown => false,
        },
        None => false,
    }
}

/// Recompute the checksums of the packet at `l3`, as far as the frame
/// holds them: IPv6's transport checksum, or IPv4's header checksum and
/// transport checksum.
pub fn fix_checksums(b: &mut [u8], l3: usize) {
    if b.get(l3).is_some_and(|v| v >> 4 == 6) {
        fix_checksums6(b, l3);
    } else {
        fix_checksums4(b, l3);
    }
}

/// An IPv4 packet's header length, total length and protocol, when the
/// header and the total length fit the frame.
fn ipv4_fields(b: &[u8], l3: usize) -> Option<(usize, usize, u8)> {
    let h = b.get(l3..l3 + 20)?;
    let ihl = usize::from(h.first()? & 0x0f) * 4;
    let total = usize::from(be16(h, 2)?);
    (ihl >= 20 && total >= ihl && l3 + total <= b.len()).then_some((ihl, total, *h.get(9)?))
}

/// Write `sum` at `at` of `b`, if it is there.
fn put16(b: &mut [u8], at: usize, sum: u16) {
    if let Some(w) = b.get_mut(at..at + 2) {
        w.copy_from_slice(&sum.to_be_bytes());
    }
}

/// Recompute the IPv4 header checksum and the transport checksum of the
/// packet at `l3`, as far as the frame holds them.
pub fn fix_checksums4(b: &mut [u8], l3: usize) {
    let Some(&vihl) = b.get(l3) else { return };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 || l3 + ihl > b.len() {
        return;
    }
    put16(b, l3 + 10, 0);
    let sum = !fold(b.get(l3..l3 + ihl).map_or(0, ones_sum));
    put16(b, l3 + 10, sum);
    let Some((ihl, total, proto)) = ipv4_fields(b, l3) else {
        return;
    };
    let Some(addrs) = b.get(l3 + 12..l3 + 20).map(<[u8]>::to_vec) else {
        return;
    };
    let (src, dst) = addrs.split_at(4);
    let Some(seg) = b.get_mut(l3 + ihl..l3 + total) else {
        return;
    };
    let at = match proto {
        PROTO_TCP if seg.len() >= 20 => 16,
        PROTO_UDP if seg.len() >= 8 => 6,
        PROTO_ICMP if seg.len() >= 4 => 2,
        _ => return,
    };
    put16(seg, at, 0);
    let base = if proto == PROTO_ICMP {
        0
    } else {
        pseudo(src, dst, proto, seg.len())
    };
    let mut sum = !fold(base + ones_sum(seg));
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    put16(seg, at, sum);
}

/// Recompute the transport checksum (TCP, UDP, ICMPv6) of the IPv6 packet
/// at `l3`, if the frame holds it whole.
pub fn fix_checksums6(b: &mut [u8], l3: usize) {
    let Some(ip) = ip_at(b, l3).filter(|ip| ip.end <= b.len()) else {
        return;
    };
    let base = ones_sum(ip.src) + ones_sum(ip.dst);
    let (proto, l4, end) = (ip.proto, ip.l4, ip.end);
    let Some(seg) = b.get_mut(l4..end) else {
        return;
    };
    let at = match proto {
        PROTO_TCP if seg.len() >= 20 => 16,
        PROTO_UDP if seg.len() >= 8 => 6,
        PROTO_ICMPV6 if seg.len() >= 4 => 2,
        _ => return,
    };
    put16(seg, at, 0);
    let mut sum = !fold(base + u64::from(proto) + seg.len() as u64 + ones_sum(seg));
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    put16(seg, at, sum);
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::{L4Sum, fix_checksums, header_sum_ok, ip_of, l3_offset, l4_right, l4_sum};
    use crate::frame::{Tcp, corrupt, echo, tcp, udp, udp_without_checksum};

    fn ends(v6: bool) -> ((IpAddr, u16), (IpAddr, u16)) {
        let (a, b): (IpAddr, IpAddr) = if v6 {
            (
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
        } else {
            (
                "192.0.2.1".parse().unwrap(),
                "198.51.100.1".parse().unwrap(),
            )
        };
        ((a, 40000), (b, 80))
    }

    /// The oracle agrees with etherparse on what etherparse builds, and
    /// sees a one-bit fault that it did not build.
    #[test]
    fn the_oracle_agrees_with_etherparse_and_sees_faults() {
        for v6 in [false, true] {
            let (c, v) = ends(v6);
            let frames = [
                tcp(c, v, Tcp::syn(1), b""),
                tcp(c, v, Tcp::ack(1, 2), b"odd"),
                udp(c, v, b"datagram"),
                echo(c.0, v.0, false, 64, b"ping"),
            ];
            for f in frames {
                let ip = ip_of(&f).unwrap();
                assert!(v6 || header_sum_ok(&f, &ip));
                assert_eq!(l4_sum(&f), L4Sum::Valid, "{f:?}");
                let mut bad = f.clone();
                *bad.last_mut().unwrap() ^= 0x10;
                assert_eq!(l4_sum(&bad), L4Sum::Invalid);
                let l3 = l3_offset(&bad).unwrap();
                fix_checksums(&mut bad, l3);
                assert_eq!(l4_sum(&bad), L4Sum::Valid);
            }
            assert!(!l4_right(&corrupt(tcp(c, v, Tcp::syn(1), b""))));
            assert!(!l4_right(&corrupt(udp(c, v, b"x"))));
            let none = udp_without_checksum(c, v, b"x");
            assert_eq!(l4_sum(&none), L4Sum::Absent);
            assert_eq!(l4_right(&none), !v6);
        }
    }
}
