//! The Ethernet II header (IEEE 802.3) and the walk over at most two VLAN
//! tags (IEEE 802.1Q, 802.1ad QinQ) to the network layer.
//!
//! ```text
//! | Destination (6) | Source (6) | EtherType (2) |   then the payload at 14
//! tagged:         ... | 0x8100 or 0x88a8 | TCI (2) | EtherType ...
//! ```
//!
//! The engine reads the EtherType to find the network layer and writes the
//! header of the frames it makes itself; it forwards MAC addresses as they
//! are. The panic contract is the one of [`super`].

use super::{
    ETH_HLEN, ETHERTYPE_QINQ, ETHERTYPE_VLAN, read, read_u16, slice, slice_mut, write, write_u16,
};
use crate::verdict::DropReason;

/// Field offsets in the header.
mod field {
    pub(super) const DESTINATION: usize = 0;
    pub(super) const SOURCE: usize = 6;
    pub(super) const ETHERTYPE: usize = 12;
    pub(super) const PAYLOAD: usize = 14;
}

/// A view of an Ethernet frame.
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

    /// `Truncated` unless the buffer holds the untagged header.
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        if self.buffer.as_ref().len() < ETH_HLEN {
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
    pub(crate) fn dst_addr(&self) -> [u8; 6] {
        read(self.buffer.as_ref(), field::DESTINATION)
    }

    #[inline]
    pub(crate) fn src_addr(&self) -> [u8; 6] {
        read(self.buffer.as_ref(), field::SOURCE)
    }

    /// The outer EtherType (a VLAN TPID on a tagged frame).
    #[inline]
    pub(crate) fn ethertype(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::ETHERTYPE)
    }

    /// The bytes after the untagged header.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        slice(b, field::PAYLOAD, b.len())
    }

    /// The EtherType of the network layer and its offset in the frame,
    /// behind at most two VLAN tags; see [`network`].
    #[inline]
    pub(crate) fn network(&self) -> Result<(u16, usize), DropReason> {
        network(self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    pub(crate) fn set_dst_addr(&mut self, value: [u8; 6]) {
        write(self.buffer.as_mut(), field::DESTINATION, value);
    }

    #[inline]
    pub(crate) fn set_src_addr(&mut self, value: [u8; 6]) {
        write(self.buffer.as_mut(), field::SOURCE, value);
    }

    #[inline]
    pub(crate) fn set_ethertype(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::ETHERTYPE, value);
    }

    /// The bytes after the untagged header, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let len = b.len();
        slice_mut(b, field::PAYLOAD, len)
    }
}

/// The EtherType and the offset of the network layer in `frame`, behind
/// at most two VLAN tags. `Truncated` if the frame ends inside the tags; a
/// frame with three tags or more gives EtherType 0 (nothing the engine
/// forwards).
#[inline]
pub(crate) fn network(frame: &[u8]) -> Result<(u16, usize), DropReason> {
    let Some(&[.., e0, e1]) = frame.first_chunk::<ETH_HLEN>() else {
        return Err(DropReason::Truncated);
    };
    let ethertype = u16::from_be_bytes([e0, e1]);
    if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
        return Ok((ethertype, ETH_HLEN));
    }
    network_tagged(frame)
}

/// [`network`] behind VLAN tags, off the common path.
#[cold]
fn network_tagged(frame: &[u8]) -> Result<(u16, usize), DropReason> {
    let mut off = field::ETHERTYPE;
    for _ in 0..3 {
        let Some(&[e0, e1]) = frame.get(off..).and_then(<[u8]>::first_chunk::<2>) else {
            return Err(DropReason::Truncated);
        };
        let ethertype = u16::from_be_bytes([e0, e1]);
        if ethertype != ETHERTYPE_VLAN && ethertype != ETHERTYPE_QINQ {
            return Ok((ethertype, off + 2));
        }
        off += 4;
    }
    // Three tags: not something this engine forwards.
    Ok((0, off))
}

/// The EtherType that names the network layer at `l3`, the offset
/// [`network`] gives: the last two bytes before it, behind any VLAN tags.
/// `Truncated` if `frame` has no two bytes before `l3`.
#[inline]
pub(crate) fn network_ethertype(frame: &[u8], l3: usize) -> Result<u16, DropReason> {
    let field = frame.get(..l3).and_then(<[u8]>::last_chunk::<2>);
    field
        .map(|&t| u16::from_be_bytes(t))
        .ok_or(DropReason::Truncated)
}

/// Set the EtherType that names the network layer at `l3` (see
/// [`network_ethertype`]): for a frame whose network layer changes family.
/// `Truncated`, and nothing written, if `frame` has no two bytes before
/// `l3`.
#[inline]
pub(crate) fn set_network_ethertype(
    frame: &mut [u8],
    l3: usize,
    value: u16,
) -> Result<(), DropReason> {
    let field = frame.get_mut(..l3).and_then(<[u8]>::last_chunk_mut::<2>);
    *field.ok_or(DropReason::Truncated)? = value.to_be_bytes();
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};

    static FRAME: [u8; 18] = [
        0x02, 0, 0, 0, 0, 0x01, // destination
        0x02, 0, 0, 0, 0, 0x02, // source
        0x86, 0xdd, // IPv6
        0xde, 0xad, 0xbe, 0xef, // payload
    ];

    static TAGGED: [u8; 24] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        0x81, 0x00, 0, 5, // 802.1Q, VLAN 5
        0x88, 0xa8, 0, 6, // 802.1ad, VLAN 6
        0x08, 0x00, // IPv4
        0x45, 0,
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&FRAME[..]).unwrap();
        assert_eq!(p.dst_addr(), [0x02, 0, 0, 0, 0, 0x01]);
        assert_eq!(p.src_addr(), [0x02, 0, 0, 0, 0, 0x02]);
        assert_eq!(p.ethertype(), ETHERTYPE_IPV6);
        assert_eq!(p.payload(), &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(p.network(), Ok((ETHERTYPE_IPV6, 14)));
        assert_eq!(p.into_inner(), &FRAME[..]);
    }

    #[test]
    fn construct() {
        let mut bytes = [0u8; 18];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_dst_addr([0x02, 0, 0, 0, 0, 0x01]);
        p.set_src_addr([0x02, 0, 0, 0, 0, 0x02]);
        p.set_ethertype(ETHERTYPE_IPV6);
        p.payload_mut().copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(bytes, FRAME);
    }

    #[test]
    fn vlan_tags_are_skipped() {
        assert_eq!(network(&TAGGED), Ok((ETHERTYPE_IPV4, 22)));
        assert_eq!(network(&TAGGED[..21]), Err(DropReason::Truncated));
        let mut three = [0u8; 28];
        for tag in three.get_mut(12..24).unwrap().chunks_exact_mut(4) {
            tag.copy_from_slice(&[0x81, 0, 0, 1]);
        }
        assert_eq!(network(&three), Ok((0, 24)));
    }

    #[test]
    fn network_ethertype_behind_tags() {
        let mut f = TAGGED;
        assert_eq!(network_ethertype(&f, 22), Ok(ETHERTYPE_IPV4));
        assert_eq!(network_ethertype(&FRAME, 14), Ok(ETHERTYPE_IPV6));
        assert_eq!(set_network_ethertype(&mut f, 22, ETHERTYPE_IPV6), Ok(()));
        assert_eq!(network(&f), Ok((ETHERTYPE_IPV6, 22)));
        assert_eq!(f[..20], TAGGED[..20]);
        assert_eq!(f[22..], TAGGED[22..]);
        // No two bytes before `l3`, or `l3` past the frame: nothing written.
        for l3 in [0, 1, 25, usize::MAX] {
            assert_eq!(network_ethertype(&f, l3), Err(DropReason::Truncated));
            let before = f;
            assert_eq!(
                set_network_ethertype(&mut f, l3, 0),
                Err(DropReason::Truncated)
            );
            assert_eq!(f, before);
        }
    }

    #[test]
    fn truncated() {
        assert_eq!(network(&[0u8; 5]), Err(DropReason::Truncated));
        assert_eq!(
            Packet::new_checked(&FRAME[..13]).unwrap_err(),
            DropReason::Truncated
        );
        // Unchecked getters on a short buffer read zeros, setters write
        // nothing.
        let mut short = [0xffu8; 7];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.ethertype(), p.src_addr()), (0, [0; 6]));
        assert!(p.payload().is_empty());
        p.set_ethertype(1);
        p.set_src_addr([1; 6]);
        assert_eq!(short, [0xff; 7]);
    }
}
