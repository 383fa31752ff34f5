//! The UDP header (RFC 768).
//!
//! ```text
//! | Source Port (2) | Destination Port (2) | Length (2) | Checksum (2) |
//! ```
//!
//! A view's buffer starts with the header and holds at least the datagram
//! (Length bytes). A checksum of 0 means "none" over IPv4 and is not
//! allowed over IPv6 (see [`super::checksum`]). The panic contract is the
//! one of [`super`].

use super::{read_u16, slice, slice_mut, write_u16};
use crate::verdict::DropReason;

/// Length of the header.
pub(crate) const HEADER_LEN: usize = 8;

/// Field offsets in the header.
mod field {
    pub(super) const SRC_PORT: usize = 0;
    pub(super) const DST_PORT: usize = 2;
    pub(super) const LENGTH: usize = 4;
    pub(super) const CHECKSUM: usize = 6;
}

/// A view of a UDP datagram.
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

    /// `Truncated` if the buffer ends inside the header; `BadL4Header` if
    /// the Length field is below 8 or past the end of the buffer.
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        let b = self.buffer.as_ref();
        let Some(&[_, _, _, _, l0, l1, _, _]) = b.first_chunk::<HEADER_LEN>() else {
            return Err(DropReason::Truncated);
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < HEADER_LEN || len > b.len() {
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

    /// The Length field: header and payload.
    #[inline]
    pub(crate) fn len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    #[inline]
    pub(crate) fn checksum(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// The payload: from the header to Length.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN, usize::from(self.len()))
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
    pub(crate) fn set_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub(crate) fn set_checksum(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::CHECKSUM, value);
    }

    /// The payload, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let to = usize::from(self.len());
        slice_mut(self.buffer.as_mut(), HEADER_LEN, to)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// 12345 -> 53, 4 bytes of payload, checksum 0x1234 (not checked
    /// here), one byte past the datagram.
    static DATAGRAM: [u8; 13] = [
        0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x12, 0x34, 1, 2, 3, 4, 0xee,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&DATAGRAM[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (12345, 53, 12));
        assert_eq!(p.checksum(), 0x1234);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
        assert_eq!(p.into_inner(), &DATAGRAM[..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0xeeu8; 13];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_src_port(12345);
        p.set_dst_port(53);
        p.set_len(12);
        p.set_checksum(0x1234);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(bytes, DATAGRAM);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..7]).unwrap_err(),
            DropReason::Truncated
        );
        let mut short = [0xffu8; 5];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.len(), p.checksum()), (0, 0));
        assert!(p.payload().is_empty());
        p.set_checksum(0);
        assert_eq!(short, [0xff; 5]);
    }

    #[test]
    fn malformed() {
        assert_eq!(
            Packet::new_checked(&DATAGRAM[..11]).unwrap_err(),
            DropReason::BadL4Header
        );
        let mut bytes = DATAGRAM;
        bytes[5] = 7;
        assert_eq!(
            Packet::new_checked(&bytes[..]).unwrap_err(),
            DropReason::BadL4Header
        );
    }
}
