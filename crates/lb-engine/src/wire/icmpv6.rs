//! The ICMPv6 header (RFC 4443), the common 8 bytes of every message: the
//! engine reads and translates error messages (RFC 7915 §4.2, §5.2) and
//! answers none.
//!
//! ```text
//! |  Type (1)  |  Code (1)  |  Checksum (2)  |  Rest of Header (4)  |
//! then the message body (for an error, the start of the packet in error)
//! ```
//!
//! The Rest of Header is read as a whole or as the fields of the messages
//! the engine translates: Packet Too Big carries the MTU and Parameter Problem a pointer, each as the whole 32-bit word.
//! The checksum covers the whole message and the IPv6 pseudo-header (RFC 4443 §2.3). A view's buffer is the
//! whole message. The panic contract is the one of [`super`].

use super::{
    checksum, read, read_u8, read_u16, read_u32, slice, slice_mut, write, write_u8, write_u16,
    write_u32,
};
use crate::verdict::DropReason;

/// Length of the header.
pub(crate) const HEADER_LEN: usize = 8;

/// Field offsets in the header.
mod field {
    pub(super) const TYPE: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const CHECKSUM: usize = 2;
    pub(super) const REST: usize = 4;
    pub(super) const LENGTH: usize = 4;
    pub(super) const WORD: usize = 4;
}

/// A view of an ICMPv6 message.
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

    /// The Packet Too Big MTU, or the Parameter Problem pointer: the Rest
    /// of Header as one word.
    #[inline]
    pub(crate) fn word(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::WORD)
    }

    /// The RFC 4884 length attribute of an error that may carry
    /// extensions (types 1 and 3): the length of the quoted original
    /// datagram in bytes (the field counts 64-bit words); 0 when the
    /// message does not give it.
    #[inline]
    pub(crate) fn original_len(&self) -> usize {
        usize::from(read_u8(self.buffer.as_ref(), field::LENGTH)) * 8
    }

    /// The message body: for an error, the quoted packet.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, HEADER_LEN, b.len())
    }

    /// Whether the checksum over the whole message is right, `pseudo` being the pseudo-header's sum ([`checksum::pseudo6`]).
    #[inline]
    pub(crate) fn checksum_ok(&self, pseudo: u32) -> bool {
        checksum::finish(checksum::sum(pseudo, self.buffer.as_ref())) == 0
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

    /// Set the Rest of Header as one word (MTU or pointer).
    #[inline]
    pub(crate) fn set_word(&mut self, value: u32) {
        write_u32(self.buffer.as_mut(), field::WORD, value);
    }

    /// Compute and write the checksum over the whole message, `pseudo` being the pseudo-header's sum ([`checksum::pseudo6`]).
    #[inline]
    pub(crate) fn fill_checksum(&mut self, pseudo: u32) {
        self.set_checksum(0);
        let sum = checksum::finish(checksum::sum(pseudo, self.buffer.as_ref()));
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

/// The header of an ICMPv6 error message, as the translator writes it.
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
    /// in place, and the checksum over the whole message, `pseudo` being the pseudo-header's sum ([`checksum::pseudo6`]).
    /// See the panic contract in [`super`] for a shorter buffer.
    #[inline]
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>, pseudo: u32) {
        packet.set_msg_type(self.msg_type);
        packet.set_msg_code(self.msg_code);
        packet.set_rest(self.rest);
        packet.fill_checksum(pseudo);
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
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::PROTO_ICMPV6;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// Packet Too Big, MTU 1280, quoting the first four bytes of a packet;
    /// checksum over the pseudo-header of SRC -> DST.
    static MESSAGE: [u8; 12] = [
        2, 0, 0x3d, 0x44, // type, code, checksum
        0, 0, 0x05, 0x00, // MTU
        0x60, 0, 0, 0, // quoted
    ];

    fn pseudo() -> u32 {
        checksum::pseudo6(&SRC, &DST, MESSAGE.len(), PROTO_ICMPV6)
    }

    fn repr() -> Repr {
        Repr {
            msg_type: 2,
            msg_code: 0,
            rest: [0, 0, 0x05, 0x00],
        }
    }

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&MESSAGE[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code(), p.type_code()), (2, 0, 0x0200));
        assert_eq!((p.checksum(), p.word()), (0x3d44, 1280));
        assert_eq!(p.payload(), &[0x60, 0, 0, 0]);
        assert!(p.checksum_ok(pseudo()));
        assert_eq!(Repr::parse(&p), Ok(repr()));
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_msg_type(2);
        p.set_msg_code(0);
        p.set_word(1280);
        p.payload_mut().copy_from_slice(&[0x60, 0, 0, 0]);
        p.fill_checksum(pseudo());
        assert_eq!(bytes, MESSAGE);
    }

    #[test]
    fn emit_then_parse() {
        let mut bytes = MESSAGE;
        bytes[..8].fill(0xff);
        let r = repr();
        assert_eq!(r.buffer_len(), 8);
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]), pseudo());
        assert_eq!(bytes, MESSAGE);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
            Ok(r)
        );
    }

    #[test]
    fn translator_additions() {
        // The RFC 4884 length attribute, in 64-bit words.
        let mut bytes = MESSAGE;
        assert_eq!(Packet::new_unchecked(&bytes[..]).original_len(), 0);
        bytes[4] = 3;
        assert_eq!(Packet::new_unchecked(&bytes[..]).original_len(), 24);
        assert_eq!(Packet::new_unchecked(&bytes[..4]).original_len(), 0);
        // A header with a given checksum; the body is untouched.
        let mut bytes = [0xeeu8; 12];
        repr().emit_with_checksum(&mut Packet::new_unchecked(&mut bytes[..]), 0x1234);
        assert_eq!(bytes[..8], [2, 0, 0x12, 0x34, 0, 0, 0x05, 0x00]);
        assert_eq!(bytes[8..], [0xee; 4]);
        let mut short = [0xffu8; 3];
        repr().emit_with_checksum(&mut Packet::new_unchecked(&mut short[..]), 0x1234);
        assert_eq!(short, [2, 0, 0xff]);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&MESSAGE[..7]).unwrap_err(),
            DropReason::Truncated
        );
        let mut short = [0xffu8; 5];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.word(), p.rest()), (0, [0; 4]));
        assert!(p.payload().is_empty());
        p.set_word(1);
        assert_eq!(short, [0xff; 5]);
    }

    #[test]
    fn malformed() {
        let mut bytes = MESSAGE;
        bytes[11] ^= 1;
        assert!(
            !Packet::new_checked(&bytes[..])
                .unwrap()
                .checksum_ok(pseudo())
        );
    }
}
