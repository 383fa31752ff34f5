//! Reading and writing the headers the engine touches, one module per
//! header, smoltcp-style: Ethernet (with its VLAN walk), IPv4, IPv6 (with
//! its extension-header walk), TCP, UDP, ICMP and ICMPv6, and the Internet
//! checksum in [`checksum`].
//!
//! Each header module holds a zero-copy view `Packet<T: AsRef<[u8]>>`
//! over the bytes that start with the header: `new_unchecked` wraps any
//! buffer, `check_len` says whether the buffer holds a well-formed header
//! (and, where the header says so, its payload) and why not with a
//! [`DropReason`] (`Truncated` when the bytes end early, a bad-header
//! reason when they are there but wrong), `new_checked` does both, and
//! `into_inner` gives the buffer back. Getters sit in one `impl` block,
//! setters in an `impl` on `AsRef + AsMut`; the field offsets are in a
//! private `mod field`. Where the engine writes whole headers a `Repr`
//! holds the fields with `parse`, `buffer_len` and `emit`.
//!
//! # The panic contract
//!
//! Stronger than smoltcp's, and true of every view and `Repr` here:
//!
//! - **No accessor and no `emit` ever panics**, whatever the buffer and
//!   whatever its bytes, checked or not. Every read goes through `get`
//!   into a fixed-size array ([`read`] and its kin); nothing indexes.
//! - **After `check_len` succeeds every getter returns the field's real
//!   value**, and every setter writes it. Before (or when it fails), a
//!   getter whose field lies past the end of the buffer returns 0 (an
//!   empty slice for a payload), and such a setter writes nothing.
//! - `emit` into a buffer shorter than `buffer_len()` writes what fits of
//!   the fields and nothing else; the engine sizes its buffers so that
//!   this never happens.
//!
//! After `check_len` the compiler sees the length test and the reads
//! compile to plain loads (the instruction counts of
//! `scripts/instructions` hold this), provided the view wraps a slice
//! taken with a branch, `frame.get(off..).ok_or(DropReason::Truncated)?`,
//! and not a select such as `.unwrap_or_default()`: through a select the
//! compiler loses the tested length and keeps a check in every getter.
//!
//! Besides the views, the classification summaries ([`ethernet()`],
//! [`Ipv4::parse`], [`L4`], [`ipv6::Ipv6`]) read once what the engine
//! decides on, through the views; their offsets are from the start of the
//! frame, a view's from the start of its header. No field offset of a
//! header is written outside this module.

// Each view is complete for its header, as smoltcp's are: every field
// has its getter and setter, tested in the module, whether or not the
// engine's packet path needs it today (an accessor with no caller costs
// nothing, and the next protocol feature finds it there).
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod checksum;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod ethernet;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod icmpv4;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod icmpv6;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod ipv4;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod ipv6;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod tcp;
#[allow(dead_code, reason = "complete views: not every accessor has a caller")]
pub(crate) mod udp;

pub(crate) use ethernet::network as ethernet;

use crate::verdict::DropReason;

/// EtherType of IPv4.
pub(crate) const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETHERTYPE_IPV6: u16 = 0x86dd;
/// EtherType (TPID) of an 802.1Q VLAN tag.
pub(crate) const ETHERTYPE_VLAN: u16 = 0x8100;
/// EtherType (TPID) of an 802.1ad (QinQ) service tag.
pub(crate) const ETHERTYPE_QINQ: u16 = 0x88a8;

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

/// The `N` bytes at `at`, or zeros if `bytes` ends before them: the one
/// read every view's getters go through.
#[inline(always)]
fn read<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    match bytes.get(at..).and_then(<[u8]>::first_chunk::<N>) {
        Some(a) => *a,
        None => [0; N],
    }
}

/// The byte at `at`, or 0.
#[inline(always)]
fn read_u8(bytes: &[u8], at: usize) -> u8 {
    bytes.get(at).copied().unwrap_or(0)
}

/// The big-endian `u16` at `at`, or 0.
#[inline(always)]
fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes(read(bytes, at))
}

/// The big-endian `u32` at `at`, or 0.
#[inline(always)]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(read(bytes, at))
}

/// Write `value` at `at`, or nothing if `bytes` ends before its end: the
/// one write every view's setters go through.
#[inline(always)]
fn write<const N: usize>(bytes: &mut [u8], at: usize, value: [u8; N]) {
    if let Some(a) = bytes.get_mut(at..).and_then(<[u8]>::first_chunk_mut::<N>) {
        *a = value;
    }
}

/// Write the byte at `at`, or nothing.
#[inline(always)]
fn write_u8(bytes: &mut [u8], at: usize, value: u8) {
    if let Some(b) = bytes.get_mut(at) {
        *b = value;
    }
}

/// Write a big-endian `u16` at `at`, or nothing.
#[inline(always)]
fn write_u16(bytes: &mut [u8], at: usize, value: u16) {
    write(bytes, at, value.to_be_bytes());
}

/// Write a big-endian `u32` at `at`, or nothing.
#[inline(always)]
fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    write(bytes, at, value.to_be_bytes());
}

/// The bytes `from..to`, or what of them the buffer holds (empty if
/// `from` is past its end or `to < from`).
#[inline(always)]
fn slice(bytes: &[u8], from: usize, to: usize) -> &[u8] {
    let to = to.min(bytes.len());
    bytes.get(from..to).unwrap_or_default()
}

/// [`slice`], writable.
#[inline(always)]
fn slice_mut(bytes: &mut [u8], from: usize, to: usize) -> &mut [u8] {
    let to = to.min(bytes.len());
    bytes.get_mut(from..to).unwrap_or_default()
}

/// A fixed-size view of `N` bytes at `off`, or `Truncated`: for the
/// extension-header walk, whose headers have no view of their own.
#[inline]
pub(crate) fn array<const N: usize>(bytes: &[u8], off: usize) -> Result<&[u8; N], DropReason> {
    bytes
        .get(off..off.saturating_add(N))
        .and_then(|s| s.try_into().ok())
        .ok_or(DropReason::Truncated)
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

impl Ipv4 {
    /// Parse the fixed header at `off`; checks version, IHL and that the
    /// total length fits the frame. Options, fragments and the checksum
    /// are reported, not judged: only traffic for us is held to them.
    #[inline]
    pub(crate) fn parse(frame: &[u8], off: usize) -> Result<Ipv4, DropReason> {
        let p = ipv4::Packet::new_checked(frame.get(off..).ok_or(DropReason::Truncated)?)?;
        Ok(Ipv4 {
            off,
            hlen: p.header_len(),
            total: usize::from(p.total_len()),
            proto: p.protocol(),
            src: p.src_addr(),
            dst: p.dst_addr(),
            fragment: p.is_fragment(),
            checksum_ok: p.checksum_ok(),
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
        if len < tcp::HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        // A branch, not `slice`'s select: the compiler then keeps the length
        // that `check_len` tested and the getters are plain loads.
        let segment = frame.get(off..off.saturating_add(len));
        let p = tcp::Packet::new_checked(segment.ok_or(DropReason::Truncated)?)?;
        let hlen = p.header_len();
        Ok(L4 {
            sport: p.src_port(),
            dport: p.dst_port(),
            flags: p.flags(),
            seq: p.seq_number(),
            ack: p.ack_number(),
            payload: len - hlen,
            hlen,
        })
    }

    /// Parse a UDP header at `off` with `len` bytes of datagram; the UDP
    /// length must equal `len`.
    #[inline]
    pub(crate) fn udp(frame: &[u8], off: usize, len: usize) -> Result<L4, DropReason> {
        if len < udp::HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        let p = udp::Packet::new_checked(frame.get(off..).ok_or(DropReason::Truncated)?)?;
        if usize::from(p.len()) != len {
            return Err(DropReason::BadL4Header);
        }
        Ok(L4 {
            sport: p.src_port(),
            dport: p.dst_port(),
            flags: 0,
            seq: 0,
            ack: 0,
            payload: len - udp::HEADER_LEN,
            hlen: udp::HEADER_LEN,
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
