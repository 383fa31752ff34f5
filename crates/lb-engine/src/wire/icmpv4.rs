//! The ICMPv4 header (RFC 792), the common 8 bytes of every message: the
//! engine reads and translates error messages (RFC 7915 §4.2, §5.2) and
//! answers none.
//!
//! ```text
//! |  Type (1)  |  Code (1)  |  Checksum (2)  |  Rest of Header (4)  |
//! then the message body (for an error, the start of the packet in error)
//! ```
//!
//! The Rest of Header is read as a whole or as the fields of the messages
//! the engine translates: Destination Unreachable "fragmentation needed" carries the next-hop MTU in its last two bytes (RFC 1191), Parameter Problem a pointer in its first byte.
//! The checksum covers the whole message (no pseudo-header over IPv4). A view's buffer is the
//! whole message. The panic contract is the one of [`super`].

use super::{checksum, read, read_u8, read_u16, slice, slice_mut, write, write_u8, write_u16};
use crate::verdict::DropReason;

/// Length of the header.
pub(crate) const HEADER_LEN: usize = 8;

/// Field offsets in the header.
mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const REST: usize = 4;
    pub(super) const POINTER: usize = 4;
    pub(super) const LENGTH: usize = 5;
    pub(super) const MTU: usize = 6;
}

/// A view of an ICMPv4 message.
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

    /// `Truncated` if the buffer ends inside the header. Every message
    /// whose header fits is well-formed here; its type and code are the
    /// reader's to judge.
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            return Err(DropReason::Truncated);
        }
        Ok(())
    }

    /// The buffer.
    #[inline]
    pub(crate) fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub(crate) fn msg_type(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::TYPE)
    }

    #[inline]
    pub(crate) fn msg_code(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::CODE)
    }

    #[inline]
    pub(crate) fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The Rest of Header, as is.
    #[inline]
    pub(crate) fn rest(&self) -> [u8; 4] {
        read(self.buffer.as_ref(), field::REST)
    }

    /// The first header word, type and code: what a translation of type
    /// or code changes in the checksum.
    #[inline]
    pub(crate) fn type_code(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::TYPE)
    }

    /// The Parameter Problem pointer: the offending byte's offset.
    #[inline]
    pub(crate) fn pointer(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::POINTER)
    }

    /// The next-hop MTU of a "fragmentation needed" (RFC 1191).
    #[inline]
    pub(crate) fn next_hop_mtu(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MTU)
    }

    /// The RFC 4884 length attribute of an error that may carry
    /// extensions (types 3, 11 and 12): the length of the quoted original
    /// datagram in bytes (the field counts 32-bit words); 0 when the
    /// message does not give it.
    #[inline]
    pub(crate) fn original_len(&self) -> usize {
        usize::from(read_u8(self.buffer.as_ref(), field::LENGTH)) * 4
    }

    /// The message body: for an error, the quoted packet.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, HEADER_LEN, b.len())
    }

    /// Whether the checksum over the whole message is right.
    #[inline]
    pub(crate) fn checksum_ok(&self) -> bool {
        checksum::finish(checksum::sum(0, self.buffer.as_ref())) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub(crate) fn set_msg_type(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::TYPE, value);
    }

    #[inline]
    pub(crate) fn set_msg_code(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::CODE, value);
    }

    #[inline]
    pub(crate) fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// Set the Rest of Header.
    #[inline]
    pub(crate) fn set_rest(&mut self, value: [u8; 4]) {
        write(self.buffer.as_mut(), field::REST, value);
    }

    #[inline]
    pub(crate) fn set_pointer(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::POINTER, value);
    }

    #[inline]
    pub(crate) fn set_next_hop_mtu(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::MTU, value);
    }

    /// Compute and write the checksum over the whole message.
    #[inline]
    pub(crate) fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::sum(0, self.buffer.as_ref()));
        self.set_checksum(sum);
    }

    /// The message body, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let len = b.len();
        slice_mut(b, HEADER_LEN, len)
    }
}

/// The header of an ICMPv4 error message, as the translator writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repr {
    pub(crate) msg_type: u8,
    pub(crate) msg_code: u8,
    /// The Rest of Header (MTU, pointer or unused).
    pub(crate) rest: [u8; 4],
}

impl Repr {
    /// The header of a checked message.
    pub(crate) fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, DropReason> {
        packet.check_len()?;
        Ok(Repr {
            msg_type: packet.msg_type(),
            msg_code: packet.msg_code(),
            rest: packet.rest(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes; the body
    /// follows it.
    #[inline]
    pub(crate) const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header at the start of `packet`, whose body is already
    /// in place, and the checksum over the whole message.
    /// See the panic contract in [`super`] for a shorter buffer.
    #[inline]
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_msg_type(self.msg_type);
        packet.set_msg_code(self.msg_code);
        packet.set_rest(self.rest);
        packet.fill_checksum();
    }

    /// Write the header at the start of `packet` with `checksum` as its
    /// checksum, the body left alone: for a translator that updates the
    /// checksum incrementally (RFC 1624), so that a message corrupted on
    /// the way stays detectably corrupt. See the panic contract in
    /// [`super`] for a shorter buffer.
    #[inline]
    pub(crate) fn emit_with_checksum<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        checksum: u16,
    ) {
        packet.set_msg_type(self.msg_type);
        packet.set_msg_code(self.msg_code);
        packet.set_checksum(checksum);
        packet.set_rest(self.rest);
    }

    /// The Rest of Header of a Destination Unreachable "fragmentation
    /// needed": unused, then the next-hop MTU (RFC 1191).
    #[inline]
    pub(crate) fn mtu_rest(mtu: u16) -> [u8; 4] {
        let mut rest = [0; 4];
        write_u16(&mut rest, field::MTU - field::REST, mtu);
        rest
    }

    /// The Rest of Header of a Parameter Problem: the pointer, then
    /// unused.
    #[inline]
    pub(crate) fn pointer_rest(pointer: u8) -> [u8; 4] {
        let mut rest = [0; 4];
        write_u8(&mut rest, field::POINTER - field::REST, pointer);
        rest
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// Destination Unreachable, fragmentation needed, next-hop MTU 1500,
    /// quoting the first four bytes of a packet.
    static MESSAGE: [u8; 12] = [
        3, 4, 0xb2, 0x03, // type, code, checksum
        0, 0, 0x05, 0xdc, // unused, MTU
        0x45, 0, 0, 0x1c, // quoted
    ];

    fn repr() -> Repr {
        Repr {
            msg_type: 3,
            msg_code: 4,
            rest: [0, 0, 0x05, 0xdc],
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&MESSAGE[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code(), p.type_code()), (3, 4, 0x0304));
        assert_eq!((p.checksum(), p.rest()), (0xb203, [0, 0, 0x05, 0xdc]));
        assert_eq!((p.pointer(), p.next_hop_mtu()), (0, 1500));
        assert_eq!(p.payload(), &[0x45, 0, 0, 0x1c]);
        assert!(p.checksum_ok());
        assert_eq!(Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(3);
        p.set_msg_code(4);
        p.set_next_hop_mtu(1500);
        p.payload_mut().copy_from_slice(&[0x45, 0, 0, 0x1c]);
        p.fill_checksum();
        p.set_pointer(9);
        assert_eq!(p.rest(), [9, 0, 0x05, 0xdc]);
        p.set_pointer(0);
        assert_eq!(bytes, MESSAGE);
    }

    #[test]
    fn emit_then_parse() {
        let mut bytes = MESSAGE;
        bytes[..8].fill(0xff);
        let r = repr();
        assert_eq!(r.buffer_len(), 8);
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, MESSAGE);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
            Ok(r)
        );
    }

    #[test]
    fn translator_additions() {
        assert_eq!(Repr::mtu_rest(1500), [0, 0, 0x05, 0xdc]);
        assert_eq!(Repr::pointer_rest(9), [9, 0, 0, 0]);
        // The RFC 4884 length attribute, in 32-bit words.
        let mut bytes = MESSAGE;
        assert_eq!(Packet::new_unchecked(&bytes[..]).original_len(), 0);
        bytes[5] = 7;
        assert_eq!(Packet::new_unchecked(&bytes[..]).original_len(), 28);
        assert_eq!(Packet::new_unchecked(&bytes[..5]).original_len(), 0);
        // A header with a given checksum; the body is untouched.
        let mut bytes = [0xeeu8; 12];
        repr().emit_with_checksum(&mut Packet::new_unchecked(&mut bytes[..]), 0x1234);
        assert_eq!(bytes[..8], [3, 4, 0x12, 0x34, 0, 0, 0x05, 0xdc]);
        assert_eq!(bytes[8..], [0xee; 4]);
        let mut short = [0xffu8; 3];
        repr().emit_with_checksum(&mut Packet::new_unchecked(&mut short[..]), 0x1234);
        assert_eq!(short, [3, 4, 0xff]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&MESSAGE[..7]).unwrap_err(),
            DropReason::Truncated
        );
        let mut short = [0xffu8; 5];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.next_hop_mtu(), p.rest()), (0, [0; 4]));
        assert!(p.payload().is_empty());
        p.set_next_hop_mtu(1);
        p.set_rest([1; 4]);
        assert_eq!(short, [0xff; 5]);
        repr().emit(&mut Packet::new_unchecked(&mut short[..]));
        assert_eq!(short[..2], [3, 4]);
    }

    #[test]
    fn malformed() {
        let mut bytes = MESSAGE;
        bytes[11] ^= 1;
        assert!(!Packet::new_checked(&bytes[..]).unwrap().checksum_ok());
    }
}
