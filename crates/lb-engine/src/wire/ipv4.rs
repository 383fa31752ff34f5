//! The IPv4 header (RFC 791).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version|  IHL  |    DSCP/ECN   |          Total Length         |  0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Identification        |Flags|      Fragment Offset    |  4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Time to Live |    Protocol   |         Header Checksum       |  8
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       Source Address                          | 12
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Destination Address                        | 16
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (IHL > 5)                          | 20
//! ```
//!
//! [`Packet::check_len`] holds a packet to a version of 4, an IHL of at
//! least 5 and a Total Length that covers the header and fits the buffer;
//! the checksum, options and fragments are reported by getters, not
//! judged: only traffic for the engine itself is held to them. The panic
//! contract is the one of [`super`].

use super::checksum;
use super::{read, read_u8, read_u16, slice, slice_mut, write, write_u8, write_u16};
use crate::verdict::DropReason;

/// Length of the header without options.
pub(crate) const HEADER_LEN: usize = 20;

/// Don't Fragment, in the flags and fragment offset word.
pub(crate) const DONT_FRAG: u16 = 0x4000;
/// More Fragments, in the flags and fragment offset word.
pub(crate) const MORE_FRAGS: u16 = 0x2000;
/// The fragment offset (in 8-byte units), in the flags and fragment
/// offset word.
pub(crate) const FRAG_OFFSET: u16 = 0x1fff;

/// Field offsets in the header.
mod field {
    pub(super) const VER_IHL: usize = 0;
    pub(super) const TOS: usize = 1;
    pub(super) const LENGTH: usize = 2;
    pub(super) const IDENT: usize = 4;
    pub(super) const FLG_OFF: usize = 6;
    pub(super) const TTL: usize = 8;
    pub(super) const PROTOCOL: usize = 9;
    pub(super) const CHECKSUM: usize = 10;
    pub(super) const SRC_ADDR: usize = 12;
    pub(super) const DST_ADDR: usize = 16;
}

/// A view of an IPv4 packet: the header at the start of the buffer, then
/// options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap `buffer` without checking it.
    #[inline]
    pub(crate) const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap `buffer` and [`check_len`](Self::check_len) it.
    #[inline]
    pub(crate) fn new_checked(buffer: T) -> Result<Packet<T>, DropReason> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer ends inside the fixed header;
    /// `BadIpHeader` if the version is not 4 or the IHL below 5;
    /// `BadIpLength` if the Total Length is shorter than the header or
    /// longer than the buffer. The buffer may run on past Total Length
    /// (Ethernet padding).
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        let Some(&[vihl, _, t0, t1, ..]) = b.first_chunk::<HEADER_LEN>() else {
            return Err(DropReason::Truncated);
        };
        if vihl >> 4 != 4 || vihl & 0x0f < 5 {
            return Err(DropReason::BadIpHeader);
        }
        let total = usize::from(u16::from_be_bytes([t0, t1]));
        if total < usize::from(vihl & 0x0f) * 4 || total > b.len() {
            return Err(DropReason::BadIpLength);
        }
        Ok(())
    }

    /// The buffer.
    #[inline]
    pub(crate) fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub(crate) fn version(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// The header's length in bytes (IHL * 4), options included.
    #[inline]
    pub(crate) fn header_len(&self) -> usize {
        usize::from(read_u8(self.buffer.as_ref(), field::VER_IHL) & 0x0f) * 4
    }

    /// Where the payload starts: the header's end, never inside the fixed
    /// header (a bad length field before `check_len` gives no payload).
    #[inline]
    fn payload_start(&self) -> usize {
        self.header_len().max(HEADER_LEN)
    }

    /// The DSCP and ECN byte (the old Type of Service).
    #[inline]
    pub(crate) fn tos(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::TOS)
    }

    /// Total Length: header and payload.
    #[inline]
    pub(crate) fn total_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub(crate) fn ident(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::IDENT)
    }

    /// The flags and fragment offset word, as is (see [`DONT_FRAG`],
    /// [`MORE_FRAGS`], [`FRAG_OFFSET`]).
    #[inline]
    pub(crate) fn flags_frag(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLG_OFF)
    }

    #[inline]
    pub(crate) fn dont_frag(&self) -> bool {
        self.flags_frag() & DONT_FRAG != 0
    }

    /// More Fragments set or a fragment offset: a fragment.
    #[inline]
    pub(crate) fn is_fragment(&self) -> bool {
        self.flags_frag() & (MORE_FRAGS | FRAG_OFFSET) != 0
    }

    #[inline]
    pub(crate) fn ttl(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::TTL)
    }

    #[inline]
    pub(crate) fn protocol(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// The TTL and Protocol as one word: what a change of TTL changes in
    /// the header checksum.
    #[inline]
    pub(crate) fn ttl_protocol(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TTL)
    }

    #[inline]
    pub(crate) fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    #[inline]
    pub(crate) fn src_addr(&self) -> [u8; 4] {
        read(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline]
    pub(crate) fn dst_addr(&self) -> [u8; 4] {
        read(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The fixed header (zeros if the buffer is shorter).
    #[inline]
    pub(crate) fn fixed_header(&self) -> [u8; HEADER_LEN] {
        read(self.buffer.as_ref(), 0)
    }

    /// Whether the checksum over the fixed header is right (a header with
    /// options is checked over its fixed part only).
    #[inline]
    pub(crate) fn checksum_ok(&self) -> bool {
        checksum::fixed_header_ok(&self.fixed_header())
    }

    /// The options: the header past its fixed 20 bytes.
    #[inline]
    pub(crate) fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The payload: from the end of the header to Total Length.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let (from, to) = (self.payload_start(), usize::from(self.total_len()));
        slice(self.buffer.as_ref(), from, to)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set version 4 and an IHL for `len` bytes of header (a multiple of 4
    /// from 20 to 60).
    #[inline]
    pub(crate) fn set_version_and_header_len(&mut self, len: usize) {
        let ihl = ((len / 4) & 0x0f) as u8;
        write_u8(self.buffer.as_mut(), field::VER_IHL, 0x40 | ihl);
    }

    #[inline]
    pub(crate) fn set_tos(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::TOS, value);
    }

    #[inline]
    pub(crate) fn set_total_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub(crate) fn set_ident(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::IDENT, value);
    }

    /// Set the flags and fragment offset word.
    #[inline]
    pub(crate) fn set_flags_frag(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::FLG_OFF, value);
    }

    #[inline]
    pub(crate) fn set_ttl(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::TTL, value);
    }

    #[inline]
    pub(crate) fn set_protocol(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::PROTOCOL, value);
    }

    #[inline]
    pub(crate) fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub(crate) fn set_src_addr(&mut self, value: [u8; 4]) {
        write(self.buffer.as_mut(), field::SRC_ADDR, value);
    }

    #[inline]
    pub(crate) fn set_dst_addr(&mut self, value: [u8; 4]) {
        write(self.buffer.as_mut(), field::DST_ADDR, value);
    }

    /// Compute and write the header checksum over the whole header,
    /// options included.
    #[inline]
    pub(crate) fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::of(slice(self.buffer.as_ref(), 0, self.header_len()));
        self.set_checksum(sum);
    }

    /// The options, writable.
    #[inline]
    pub(crate) fn options_mut(&mut self) -> &mut [u8] {
        let to = self.header_len();
        slice_mut(self.buffer.as_mut(), HEADER_LEN, to)
    }

    /// The payload, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let (from, to) = (self.payload_start(), usize::from(self.total_len()));
        slice_mut(self.buffer.as_mut(), from, to)
    }
}

/// An IPv4 header without options, as the engine writes it (translated
/// packets, expiry RSTs): never a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repr {
    pub(crate) src_addr: [u8; 4],
    pub(crate) dst_addr: [u8; 4],
    pub(crate) protocol: u8,
    pub(crate) ttl: u8,
    pub(crate) tos: u8,
    pub(crate) ident: u16,
    pub(crate) dont_frag: bool,
    /// Bytes after the header.
    pub(crate) payload_len: usize,
}

impl Repr {
    /// The fields of a checked packet. `BadIpHeader` for a header this
    /// `Repr` cannot write back: options, or a fragment.
    pub(crate) fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, DropReason> {
        packet.check_len()?;
        if packet.header_len() != HEADER_LEN || packet.is_fragment() {
            return Err(DropReason::BadIpHeader);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            payload_len: usize::from(packet.total_len()).saturating_sub(HEADER_LEN),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    #[inline]
    pub(crate) const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// The whole header as bytes, checksum included. Total Length
    /// saturates at 65535.
    #[inline]
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let total = u16::try_from(HEADER_LEN + self.payload_len).unwrap_or(u16::MAX);
        let [t0, t1] = total.to_be_bytes();
        let [i0, i1] = self.ident.to_be_bytes();
        let flags = if self.dont_frag { 0x40 } else { 0 };
        let [s0, s1, s2, s3] = self.src_addr;
        let [d0, d1, d2, d3] = self.dst_addr;
        let (ttl, proto) = (self.ttl, self.protocol);
        let mut h = [
            0x45, self.tos, t0, t1, i0, i1, flags, 0, ttl, proto, 0, 0, s0, s1, s2, s3, d0, d1, d2,
            d3,
        ];
        let sum = checksum::fixed_header(&h);
        write_u16(&mut h, field::CHECKSUM, sum);
        h
    }

    /// Write the header at the start of `packet`; see the panic contract
    /// in [`super`] for a buffer shorter than [`buffer_len`](Self::buffer_len).
    #[inline]
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let h = self.to_bytes();
        let b = packet.buffer.as_mut();
        b.iter_mut().zip(h).for_each(|(o, v)| *o = v);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::PROTO_UDP;

    /// A UDP datagram of 8 bytes from 192.0.2.1 to 198.51.100.2, ident
    /// 0x1234, DF, TTL 64, and two bytes of Ethernet padding.
    static PACKET: [u8; 30] = [
        0x45, 0x00, 0x00, 0x1c, // version, IHL, TOS, total 28
        0x12, 0x34, 0x40, 0x00, // ident, DF
        0x40, 0x11, 0x00, 0x00, // TTL 64, UDP, checksum (filled below)
        192, 0, 2, 1, // source
        198, 51, 100, 2, // destination
        0x30, 0x39, 0x00, 0x35, 0x00, 0x08, 0x00, 0x00, // UDP header
        0xee, 0xee, // padding
    ];

    fn packet() -> [u8; 30] {
        let mut p = PACKET;
        let sum = checksum::of(p.first_chunk::<20>().unwrap());
        p[10..12].copy_from_slice(&sum.to_be_bytes());
        p
    }

    fn repr() -> Repr {
        Repr {
            src_addr: [192, 0, 2, 1],
            dst_addr: [198, 51, 100, 2],
            protocol: PROTO_UDP,
            ttl: 64,
            tos: 0,
            ident: 0x1234,
            dont_frag: true,
            payload_len: 8,
        }
    }

    #[test]
    fn deconstruct() {
        let bytes = packet();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((p.version(), p.header_len(), p.total_len()), (4, 20, 28));
        assert_eq!(
            (p.ident(), p.dont_frag(), p.is_fragment()),
            (0x1234, true, false)
        );
        assert_eq!((p.ttl(), p.protocol(), p.tos()), (64, PROTO_UDP, 0));
        assert_eq!(p.ttl_protocol(), 0x4011);
        assert_eq!(
            (p.src_addr(), p.dst_addr()),
            ([192, 0, 2, 1], [198, 51, 100, 2])
        );
        assert!(p.checksum_ok());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 8);
        assert_eq!(Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn construct() {
        let mut bytes = PACKET;
        bytes[..20].fill(0);
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_version_and_header_len(20);
        p.set_tos(0);
        p.set_total_len(28);
        p.set_ident(0x1234);
        p.set_flags_frag(DONT_FRAG);
        p.set_ttl(64);
        p.set_protocol(PROTO_UDP);
        p.set_src_addr([192, 0, 2, 1]);
        p.set_dst_addr([198, 51, 100, 2]);
        p.fill_checksum();
        assert_eq!(bytes, packet());
    }

    #[test]
    fn emit_then_parse() {
        let mut bytes = PACKET;
        bytes[..20].fill(0);
        let r = repr();
        assert_eq!(r.buffer_len(), 20);
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, packet());
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(r));
    }

    #[test]
    fn truncated() {
        let bytes = packet();
        assert_eq!(
            Packet::new_checked(&bytes[..19]).unwrap_err(),
            DropReason::Truncated
        );
        // Total Length past the buffer.
        assert_eq!(
            Packet::new_checked(&bytes[..27]).unwrap_err(),
            DropReason::BadIpLength
        );
        // Unchecked getters read zeros, setters and emit write nothing
        // past the end.
        let mut short = [0xffu8; 9];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.protocol(), p.checksum(), p.dst_addr()), (0, 0, [0; 4]));
        assert!(p.payload().is_empty() && p.options().is_empty());
        p.set_dst_addr([1; 4]);
        p.fill_checksum();
        assert_eq!(short, [0xff; 9]);
        repr().emit(&mut Packet::new_unchecked(&mut short[..]));
        assert_eq!(short, packet()[..9]);
    }

    #[test]
    fn malformed() {
        let check = |edit: fn(&mut [u8; 30])| {
            let mut bytes = packet();
            edit(&mut bytes);
            Packet::new_checked(&bytes[..]).unwrap_err()
        };
        assert_eq!(check(|b| b[0] = 0x65), DropReason::BadIpHeader);
        assert_eq!(check(|b| b[0] = 0x44), DropReason::BadIpHeader);
        assert_eq!(check(|b| b[3] = 19), DropReason::BadIpLength);
        // An IHL of 6 with a total of 28 fits; 8 (32 bytes) does not.
        assert_eq!(check(|b| b[0] = 0x48), DropReason::BadIpLength);
        let mut frag = packet();
        frag[6] = 0x20;
        let p = Packet::new_checked(&frag[..]).unwrap();
        assert!(p.is_fragment() && !p.checksum_ok());
        assert_eq!(Repr::parse(&p), Err(DropReason::BadIpHeader));
        let mut opts = packet();
        opts[0] = 0x46;
        let p = Packet::new_checked(&opts[..]).unwrap();
        assert_eq!((p.options().len(), p.payload().len()), (4, 4));
        assert_eq!(Repr::parse(&p), Err(DropReason::BadIpHeader));
    }
}
