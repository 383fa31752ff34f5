//! The TCP header (RFC 9293 §3.1).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Source Port          |       Destination Port        |  0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                        Sequence Number                        |  4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Acknowledgment Number                      |  8
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Data |       |C|E|U|A|P|R|S|F|                               |
//! | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             | 12
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Checksum            |         Urgent Pointer        | 16
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Options (Data Offset > 5)                  | 20
//! ```
//!
//! A view's buffer is the whole segment, header and payload, and nothing
//! after it: its length is the segment's length. The options are
//! `tcp_edit`'s (through `ttm_core`); here they are only a slice. The
//! panic contract is the one of [`super`].

use super::{
    checksum, read_u8, read_u16, read_u32, slice, slice_mut, write_u8, write_u16, write_u32,
};
use crate::verdict::DropReason;

/// Length of the header without options.
pub(crate) const HEADER_LEN: usize = 20;

/// Field offsets in the header.
mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const SEQ_NUM: usize = 4;
    pub(super) const ACK_NUM: usize = 8;
    pub(super) const DATA_OFF: usize = 12;
    pub(super) const FLAGS: usize = 13;
    pub(super) const WIN_SIZE: usize = 14;
    pub(super) const CHECKSUM: usize = 16;
    pub(super) const URGENT: usize = 18;
}

/// A view of a TCP segment.
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
    /// `BadL4Header` if the data offset is below 5 words or past the end
    /// of the segment.
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        let Some(&[.., doff, _, _, _, _, _, _, _]) = b.first_chunk::<HEADER_LEN>() else {
            return Err(DropReason::Truncated);
        };
        let hlen = usize::from(doff >> 4) * 4;
        if hlen < HEADER_LEN || hlen > b.len() {
            return Err(DropReason::BadL4Header);
        }
        Ok(())
    }

    /// The buffer.
    #[inline]
    pub(crate) fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub(crate) fn src_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::SRC_PORT)
    }

    #[inline]
    pub(crate) fn dst_port(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DST_PORT)
    }

    #[inline]
    pub(crate) fn seq_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SEQ_NUM)
    }

    #[inline]
    pub(crate) fn ack_number(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::ACK_NUM)
    }

    /// The header's length in bytes (data offset * 4), options included.
    #[inline]
    pub(crate) fn header_len(&self) -> usize {
        usize::from(read_u8(self.buffer.as_ref(), field::DATA_OFF) >> 4) * 4
    }

    /// Where the payload starts: the header's end, never inside the fixed
    /// header (a bad length field before `check_len` gives no payload).
    #[inline]
    fn payload_start(&self) -> usize {
        self.header_len().max(HEADER_LEN)
    }

    /// The data offset and flags word (bytes 12 and 13), as is: what a
    /// change of data offset changes in the checksum.
    #[inline]
    pub(crate) fn data_off_flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::DATA_OFF)
    }

    /// The flags byte (CWR to FIN; see [`super::tcp_flags`]).
    #[inline]
    pub(crate) fn flags(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::FLAGS)
    }

    #[inline]
    pub(crate) fn window_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::WIN_SIZE)
    }

    #[inline]
    pub(crate) fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Whether the buffer holds the checksum field: a segment quoted in an
    /// ICMP error may stop short of it (RFC 792 quotes 8 bytes).
    #[inline]
    pub(crate) fn has_checksum(&self) -> bool {
        self.buffer.as_ref().len() >= field::CHECKSUM + 2
    }

    #[inline]
    pub(crate) fn urgent_at(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::URGENT)
    }

    /// The options area: the header past its fixed 20 bytes.
    #[inline]
    pub(crate) fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN, self.header_len())
    }

    /// The payload: the segment after the header.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, self.payload_start(), b.len())
    }

    /// Whether the checksum is right, `pseudo` being the pseudo-header's
    /// sum ([`checksum::pseudo4`] or [`checksum::pseudo6`]).
    #[inline]
    pub(crate) fn checksum_ok(&self, pseudo: u32) -> bool {
        checksum::finish(checksum::sum(pseudo, self.buffer.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub(crate) fn set_src_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::SRC_PORT, value);
    }

    #[inline]
    pub(crate) fn set_dst_port(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::DST_PORT, value);
    }

    #[inline]
    pub(crate) fn set_seq_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::SEQ_NUM, value);
    }

    #[inline]
    pub(crate) fn set_ack_number(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::ACK_NUM, value);
    }

    /// Set the data offset for `len` bytes of header (a multiple of 4
    /// from 20 to 60), keeping the reserved bits.
    #[inline]
    pub(crate) fn set_header_len(&mut self, len: usize) {
        let b = self.buffer.as_mut();
        let low = read_u8(b, field::DATA_OFF) & 0x0f;
        write_u8(b, field::DATA_OFF, (((len / 4) as u8) << 4) | low);
    }

    #[inline]
    pub(crate) fn set_flags(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::FLAGS, value);
    }

    #[inline]
    pub(crate) fn set_window_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::WIN_SIZE, value);
    }

    #[inline]
    pub(crate) fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    #[inline]
    pub(crate) fn set_urgent_at(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::URGENT, value);
    }

    /// Compute and write the checksum over the whole segment, `pseudo`
    /// being the pseudo-header's sum.
    #[inline]
    pub(crate) fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::sum(pseudo, self.buffer.as_ref()));
        self.set_checksum(sum);
    }

    /// The options area, writable.
    #[inline]
    pub(crate) fn options_mut(&mut self) -> &mut [u8] {
        let to = self.header_len();
        slice_mut(self.buffer.as_mut(), HEADER_LEN, to)
    }

    /// The payload, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let from = self.payload_start();
        let b = self.buffer.as_mut();
        let len = b.len();
        slice_mut(b, from, len)
    }
}

/// A TCP header without options or payload, as the engine writes it (the
/// RSTs it sends when a half-open session expires).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repr {
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq_number: u32,
    pub(crate) ack_number: u32,
    pub(crate) flags: u8,
    pub(crate) window_len: u16,
}

impl Repr {
    /// The fields of a checked segment. `BadL4Header` for one this `Repr`
    /// cannot write back: with options or payload.
    pub(crate) fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, DropReason> {
        packet.check_len()?;
        if packet.header_len() != HEADER_LEN || !packet.payload().is_empty() {
            return Err(DropReason::BadL4Header);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
        })
    }

    /// The length of the segment [`emit`](Self::emit) writes.
    #[inline]
    pub(crate) const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the segment at the start of `packet`, its checksum over the
    /// pseudo-header sum `pseudo` (whose length is [`Self::buffer_len`]);
    /// urgent pointer 0. See the panic contract in [`super`] for a shorter
    /// buffer.
    #[inline]
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, pseudo: u32) {
        let mut h = [0u8; HEADER_LEN];
        let mut seg = Packet::new_unchecked(&mut h[..]);
        seg.set_src_port(self.src_port);
        seg.set_dst_port(self.dst_port);
        seg.set_seq_number(self.seq_number);
        seg.set_ack_number(self.ack_number);
        seg.set_header_len(HEADER_LEN);
        seg.set_flags(self.flags);
        seg.set_window_len(self.window_len);
        seg.fill_checksum(pseudo);
        let b = packet.buffer.as_mut();
        b.iter_mut().zip(h).for_each(|(o, v)| *o = v);
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::{PROTO_TCP, tcp_flags};

    const SRC: [u8; 4] = [192, 0, 2, 1];
    const DST: [u8; 4] = [198, 51, 100, 2];

    /// A segment 12345 -> 80 with an MSS option and 4 bytes of payload;
    /// checksum over the pseudo-header of SRC -> DST.
    static SEGMENT: [u8; 28] = [
        0x30, 0x39, 0x00, 0x50, // ports
        0x01, 0x02, 0x03, 0x04, // sequence
        0x0a, 0x0b, 0x0c, 0x0d, // acknowledgment
        0x60, 0x18, 0x72, 0x10, // data offset 6, PSH|ACK, window
        0x77, 0x84, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0xaa, 0xbb, 0xcc, 0xdd, // payload
    ];

    fn pseudo(len: usize) -> u32 {
        checksum::pseudo4(SRC, DST, PROTO_TCP, len)
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&SEGMENT[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (12345, 80));
        assert_eq!((p.seq_number(), p.ack_number()), (0x0102_0304, 0x0a0b_0c0d));
        assert_eq!((p.header_len(), p.data_off_flags()), (24, 0x6018));
        assert_eq!(p.flags(), tcp_flags::ACK | 0x08);
        assert_eq!(
            (p.window_len(), p.checksum(), p.urgent_at()),
            (0x7210, 0x7784, 0)
        );
        assert_eq!(p.options(), &[0x02, 0x04, 0x05, 0xb4]);
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
        assert!(p.checksum_ok(pseudo(28)));
        assert_eq!(Repr::parse(&p), Err(DropReason::BadL4Header));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_src_port(12345);
        p.set_dst_port(80);
        p.set_seq_number(0x0102_0304);
        p.set_ack_number(0x0a0b_0c0d);
        p.set_header_len(24);
        p.set_flags(0x18);
        p.set_window_len(0x7210);
        p.set_urgent_at(0);
        p.options_mut().copy_from_slice(&[0x02, 0x04, 0x05, 0xb4]);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb, 0xcc, 0xdd]);
        p.fill_checksum(pseudo(28));
        assert_eq!(bytes, SEGMENT);
    }

    #[test]
    fn emit_then_parse() {
        let rst = Repr {
            src_port: 80,
            dst_port: 12345,
            seq_number: 7,
            ack_number: 9,
            flags: tcp_flags::RST | tcp_flags::ACK,
            window_len: 0,
        };
        let mut bytes = [0xffu8; 20];
        rst.emit(&mut Packet::new_unchecked(&mut bytes[..]), pseudo(20));
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert!(p.checksum_ok(pseudo(20)));
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(Repr::parse(&p), Ok(rst));
        assert_eq!(rst.buffer_len(), 20);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&SEGMENT[..19]).unwrap_err(),
            DropReason::Truncated
        );
        // The options run past a 22-byte segment.
        assert_eq!(
            Packet::new_checked(&SEGMENT[..22]).unwrap_err(),
            DropReason::BadL4Header
        );
        let mut short = [0xffu8; 6];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.seq_number(), p.flags(), p.header_len()), (0, 0, 0));
        assert!(p.options().is_empty() && p.payload().is_empty());
        p.set_seq_number(1);
        p.set_checksum(1);
        p.fill_checksum(0);
        assert_eq!(short, [0xff; 6]);
        // A quote that stops inside the checksum field does not hold it.
        assert!(!Packet::new_unchecked(&SEGMENT[..17]).has_checksum());
        assert!(Packet::new_unchecked(&SEGMENT[..18]).has_checksum());
    }

    #[test]
    fn malformed() {
        let mut bytes = SEGMENT;
        bytes[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            DropReason::BadL4Header
        );
        bytes[12] = 0x80;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            DropReason::BadL4Header
        );
        bytes[12] = 0x60;
        bytes[27] ^= 1;
        assert!(
            !Packet::new_checked(&bytes[..])
                .unwrap()
                .checksum_ok(pseudo(28))
        );
    }
}
