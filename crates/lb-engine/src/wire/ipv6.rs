//! The IPv6 header (RFC 8200) and the walk over its extension headers to
//! the upper-layer header.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Version| Traffic Class |           Flow Label                  |  0
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Payload Length        |  Next Header  |   Hop Limit   |  4
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                     Source Address (16)                       |  8
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Destination Address (16)                    | 24
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!   then extension headers, then the upper-layer header       at 40
//!
//! hop-by-hop (0), routing (43), destination options (60):
//! | Next Header | Hdr Ext Len |  ... (Hdr Ext Len + 1) * 8 bytes in all
//! routing adds:               | Routing Type | Segments Left | ...
//! fragment (44), 8 bytes:
//! | Next Header | Reserved | Fragment Offset (13) |Res|M| Identification (32) |
//! ```
//!
//! # What the walk does with each Next Header value
//!
//! | value | header | here |
//! |---|---|---|
//! | 0 | hop-by-hop options | skipped, first only |
//! | 60 | destination options | skipped |
//! | 43 | routing | skipped if Segments Left is 0, else refused |
//! | 44 | fragment | an atomic fragment is skipped; any other sets `fragment` and ends the walk |
//! | 50, 51, 135, 139, 140, 253, 254 | ESP, AH, mobility, HIP, shim6, experimental | refused |
//! | anything else | upper layer (TCP, UDP, ICMPv6, No Next Header, ...) | `proto`, as is |
//!
//! "Refused" is [`DropReason::Ipv6Extension`]; so is a chain of more than
//! [`MAX_EXTENSIONS`] extension headers. The choices, against RFC 8200 §4:
//!
//! - §4.1: "IPv6 nodes must accept and attempt to process extension
//!   headers in any order and occurring any number of times in the same
//!   packet, except for the Hop-by-Hop Options header, which is restricted
//!   to appear immediately after an IPv6 header only." A hop-by-hop header
//!   anywhere else is refused. "Any number of times" is bounded here: a
//!   data path that walks a chain of unbounded length is a denial of
//!   service waiting to happen; four headers is more than any real packet
//!   to a load balancer carries.
//! - §4.2, options (hop-by-hop and destination options): an option whose
//!   type the node does not recognise is handled by the type's two
//!   high-order bits, "00 - skip over this option and continue processing
//!   the header", any other value - discard the packet. The only options
//!   recognised are Pad1, PadN and Router Alert (5), all of action 00;
//!   so an option with non-zero action bits (Jumbo Payload among them: no
//!   jumbograms here) refuses the packet. Options that run past their
//!   header refuse it too.
//! - §4.4, routing: "If Segments Left is zero, the node must ignore the
//!   Routing header and proceed to process the next header in the packet";
//!   with Segments Left non-zero and a routing type it does not recognise
//!   (none is recognised here) the node "must discard the packet". RFC
//!   7915 §5.1 says the same for a translator: such a packet "MUST NOT be
//!   translated".
//! - §4.5, fragment: "If the fragment is a whole datagram (that is, both
//!   the Fragment Offset field and the M flag are zero), then it does not
//!   need any further reassembly and should be processed as a fully
//!   reassembled packet": an atomic fragment (RFC 6946) is skipped like
//!   any other extension header. A real fragment sets
//!   [`Ipv6::fragment`]; `proto` is then the fragment header's Next Header
//!   and `l4_off` what follows it (upper-layer bytes only in the first
//!   fragment). The engine does not reassemble, so it drops them.
//! - §4.6 to §4.8 leave ESP, AH and the headers of other protocols
//!   (mobility, HIP, shim6, and the experimental values 253 and 254 of
//!   RFC 3692) to their own specifications; the engine can neither rewrite
//!   nor translate any of them, so they are refused rather than passed off
//!   as an upper-layer protocol.
//!
//! Each extension header's length is checked against the payload length
//! before it is read past its first two bytes; a header that does not fit
//! is [`DropReason::BadIpLength`]: the payload length does not hold it.
//! The fixed header is read and written through the view [`Packet`] and
//! its [`Repr`]; the walk is [`Ipv6::parse`]. The panic contract is the
//! one of [`super`]: every read goes through `get` or [`array()`],
//! whatever the bytes.

use super::{
    array, read, read_u8, read_u16, read_u32, slice, slice_mut, write, write_u8, write_u16,
    write_u32,
};
use crate::verdict::DropReason;

/// Length of the fixed IPv6 header.
pub(crate) const HLEN: usize = 40;

/// Most extension headers walked before the packet is refused.
pub(crate) const MAX_EXTENSIONS: usize = 4;

/// Field offsets in the fixed header.
mod field {
    pub(super) const VER_TC_FLOW: usize = 0;
    pub(super) const TC_LOW: usize = 1;
    pub(super) const LENGTH: usize = 4;
    pub(super) const NXT_HDR: usize = 6;
    pub(super) const HOP_LIMIT: usize = 7;
    pub(super) const SRC_ADDR: usize = 8;
    pub(super) const DST_ADDR: usize = 24;
}

/// A view of an IPv6 packet: the fixed header at the start of the buffer,
/// then extension headers and the upper layer (its payload). The view
/// does not walk the extension headers: that is [`Ipv6::parse`].
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
    /// `BadIpHeader` if the version is not 6; `BadIpLength` if the Payload
    /// Length runs past the buffer. The buffer may run on past the packet
    /// (Ethernet padding).
    #[inline]
    pub(crate) fn check_len(&self) -> Result<(), DropReason> {
        self.check_header()?;
        if HLEN + usize::from(self.payload_len()) > self.buffer.as_ref().len() {
            return Err(DropReason::BadIpLength);
        }
        Ok(())
    }

    /// [`check_len`](Self::check_len) without the Payload Length: for a
    /// packet quoted in an ICMPv6 error, cut short by the error's end.
    /// After it the fixed header's getters return the real values; the
    /// payload is what the buffer holds of it.
    #[inline]
    pub(crate) fn check_header(&self) -> Result<(), DropReason> {
        let Some(&[v, ..]) = self.buffer.as_ref().first_chunk::<HLEN>() else {
            return Err(DropReason::Truncated);
        };
        if v >> 4 != 6 {
            return Err(DropReason::BadIpHeader);
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
        read_u8(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4
    }

    #[inline]
    pub(crate) fn traffic_class(&self) -> u8 {
        let [b0, b1] = read(self.buffer.as_ref(), field::VER_TC_FLOW);
        (b0 << 4) | (b1 >> 4)
    }

    /// The 20-bit flow label.
    #[inline]
    pub(crate) fn flow_label(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Payload Length: extension headers and upper layer.
    #[inline]
    pub(crate) fn payload_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// The fixed header's Next Header: the first extension header or the
    /// upper-layer protocol.
    #[inline]
    pub(crate) fn next_header(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::NXT_HDR)
    }

    #[inline]
    pub(crate) fn hop_limit(&self) -> u8 {
        read_u8(self.buffer.as_ref(), field::HOP_LIMIT)
    }

    #[inline]
    pub(crate) fn src_addr(&self) -> [u8; 16] {
        read(self.buffer.as_ref(), field::SRC_ADDR)
    }

    #[inline]
    pub(crate) fn dst_addr(&self) -> [u8; 16] {
        read(self.buffer.as_ref(), field::DST_ADDR)
    }

    /// The payload: from the fixed header to Payload Length, or what the
    /// buffer holds of it.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        let to = HLEN + usize::from(self.payload_len());
        slice(self.buffer.as_ref(), HLEN, to)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version (6), the traffic class and the flow label (its low
    /// 20 bits).
    #[inline]
    pub(crate) fn set_version_tc_flow(&mut self, traffic_class: u8, flow_label: u32) {
        let word = (6 << 28) | (u32::from(traffic_class) << 20) | (flow_label & 0x000f_ffff);
        write_u32(self.buffer.as_mut(), field::VER_TC_FLOW, word);
    }

    /// Set the traffic class, keeping the version and flow label.
    #[inline]
    pub(crate) fn set_traffic_class(&mut self, value: u8) {
        let b = self.buffer.as_mut();
        let [b0, b1] = read(b, field::VER_TC_FLOW);
        if b.len() >= 2 {
            write_u8(b, field::VER_TC_FLOW, (b0 & 0xf0) | (value >> 4));
            write_u8(b, field::TC_LOW, (value << 4) | (b1 & 0x0f));
        }
    }

    #[inline]
    pub(crate) fn set_payload_len(&mut self, value: u16) {
        write_u16(self.buffer.as_mut(), field::LENGTH, value);
    }

    #[inline]
    pub(crate) fn set_next_header(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::NXT_HDR, value);
    }

    #[inline]
    pub(crate) fn set_hop_limit(&mut self, value: u8) {
        write_u8(self.buffer.as_mut(), field::HOP_LIMIT, value);
    }

    #[inline]
    pub(crate) fn set_src_addr(&mut self, value: [u8; 16]) {
        write(self.buffer.as_mut(), field::SRC_ADDR, value);
    }

    #[inline]
    pub(crate) fn set_dst_addr(&mut self, value: [u8; 16]) {
        write(self.buffer.as_mut(), field::DST_ADDR, value);
    }

    /// The payload, writable.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        let to = HLEN + usize::from(self.payload_len());
        slice_mut(self.buffer.as_mut(), HLEN, to)
    }
}

/// A fixed IPv6 header, as the translator writes it (RFC 7915 §4.1):
/// no extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repr {
    pub(crate) src_addr: [u8; 16],
    pub(crate) dst_addr: [u8; 16],
    pub(crate) next_header: u8,
    pub(crate) hop_limit: u8,
    pub(crate) traffic_class: u8,
    /// The 20-bit flow label (the translator writes 0).
    pub(crate) flow_label: u32,
    /// Bytes after the fixed header.
    pub(crate) payload_len: u16,
}

impl Repr {
    /// The fixed header of a checked packet, as is: its Next Header may
    /// name an extension header.
    pub(crate) fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, DropReason> {
        packet.check_len()?;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
            payload_len: packet.payload_len(),
        })
    }

    /// The length of the header [`emit`](Self::emit) writes.
    #[inline]
    pub(crate) const fn buffer_len(&self) -> usize {
        HLEN
    }

    /// Write the fixed header at the start of `packet`. See the panic
    /// contract in [`super`] for a shorter buffer.
    #[inline]
    pub(crate) fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_version_tc_flow(self.traffic_class, self.flow_label);
        packet.set_payload_len(self.payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
    }
}

/// Next Header values of extension headers (IANA "IPv6 Extension Header
/// Types").
pub(crate) mod next_header {
    pub(crate) const HOP_BY_HOP: u8 = 0;
    pub(crate) const ROUTING: u8 = 43;
    pub(crate) const FRAGMENT: u8 = 44;
    pub(crate) const ESP: u8 = 50;
    pub(crate) const AH: u8 = 51;
    pub(crate) const DEST_OPTIONS: u8 = 60;
    pub(crate) const MOBILITY: u8 = 135;
    pub(crate) const HIP: u8 = 139;
    pub(crate) const SHIM6: u8 = 140;
    pub(crate) const EXPERIMENT_1: u8 = 253;
    pub(crate) const EXPERIMENT_2: u8 = 254;
}

/// Whether `value` names an IPv6 extension header rather than an
/// upper-layer protocol.
pub(crate) fn is_extension(value: u8) -> bool {
    use next_header::*;
    matches!(
        value,
        HOP_BY_HOP
            | ROUTING
            | FRAGMENT
            | ESP
            | AH
            | DEST_OPTIONS
            | MOBILITY
            | HIP
            | SHIM6
            | EXPERIMENT_1
            | EXPERIMENT_2
    )
}

/// The parts of an IPv6 header and its extension headers the engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv6 {
    /// Offset of the fixed header in the frame.
    pub(crate) off: usize,
    /// Payload Length field: extension headers and upper layer.
    pub(crate) payload_len: usize,
    pub(crate) src: [u8; 16],
    pub(crate) dst: [u8; 16],
    pub(crate) hop_limit: u8,
    pub(crate) traffic_class: u8,
    /// The 20-bit flow label.
    pub(crate) flow_label: u32,
    /// The upper-layer protocol, after the skipped extension headers.
    pub(crate) proto: u8,
    /// Offset of the upper-layer header in the frame.
    pub(crate) l4_off: usize,
    /// A fragment header that is not an atomic fragment: a fragment.
    pub(crate) fragment: bool,
}

impl Ipv6 {
    /// Parse the header at `off` and walk its extension headers; checks
    /// the version and that the payload length fits the frame.
    pub(crate) fn parse(frame: &[u8], off: usize) -> Result<Ipv6, DropReason> {
        let p = Packet::new_checked(frame.get(off..).ok_or(DropReason::Truncated)?)?;
        let end = off + HLEN + usize::from(p.payload_len());
        walk(frame, &p, off, end)
    }

    /// Parse the header of a packet quoted in an ICMPv6 error: as
    /// [`Ipv6::parse`], except that the packet may be cut short by the end
    /// of `frame` (an error quotes only the start of the packet). The
    /// extension headers must be quoted whole; `payload_len` is the field
    /// as quoted, not what is left of it.
    pub(crate) fn parse_quoted(frame: &[u8], off: usize) -> Result<Ipv6, DropReason> {
        let p = Packet::new_unchecked(frame.get(off..).ok_or(DropReason::Truncated)?);
        p.check_header()?;
        let end = (off + HLEN + usize::from(p.payload_len())).min(frame.len());
        walk(frame, &p, off, end)
    }

    /// End of the packet in the frame (exclusive).
    pub(crate) fn end(&self) -> usize {
        self.off + HLEN + self.payload_len
    }

    /// Length of the fixed header and the skipped extension headers.
    pub(crate) fn header_len(&self) -> usize {
        self.l4_off.saturating_sub(self.off)
    }

    /// Length of the upper-layer header and payload.
    pub(crate) fn l4_len(&self) -> usize {
        self.end().saturating_sub(self.l4_off)
    }
}

/// Walk the extension headers of the packet whose checked fixed header
/// `p` is at `off`, none of them reaching past `end`.
fn walk(frame: &[u8], p: &Packet<&[u8]>, off: usize, end: usize) -> Result<Ipv6, DropReason> {
    use next_header::*;
    let mut next = p.next_header();
    let mut at = off + HLEN;
    let mut fragment = false;
    let mut walked = 0;
    while is_extension(next) {
        if walked == MAX_EXTENSIONS {
            return Err(DropReason::Ipv6Extension);
        }
        walked += 1;
        let [following, ext_len] = *array::<2>(frame, at).map_err(|_| DropReason::BadIpLength)?;
        let len = match next {
            FRAGMENT => 8,
            HOP_BY_HOP | ROUTING | DEST_OPTIONS => (usize::from(ext_len) + 1) * 8,
            _ => return Err(DropReason::Ipv6Extension),
        };
        let ext = frame
            .get(at..at + len)
            .filter(|_| at + len <= end)
            .ok_or(DropReason::BadIpLength)?;
        match next {
            HOP_BY_HOP if walked != 1 => return Err(DropReason::Ipv6Extension),
            HOP_BY_HOP | DEST_OPTIONS => options_ok(ext)?,
            ROUTING => {
                // Segments Left is the fourth byte (RFC 8200 §4.4).
                if ext.get(3).copied().unwrap_or(0) != 0 {
                    return Err(DropReason::Ipv6Extension);
                }
            }
            _ => {
                let [_, _, f0, f1, ..] = *array::<8>(ext, 0)?;
                let offset_and_m = u16::from_be_bytes([f0, f1]);
                // Fragment Offset is the high 13 bits, M the lowest.
                if offset_and_m & 0xfff9 != 0 {
                    fragment = true;
                    next = following;
                    at += len;
                    break;
                }
            }
        }
        next = following;
        at += len;
    }
    Ok(Ipv6 {
        off,
        payload_len: usize::from(p.payload_len()),
        src: p.src_addr(),
        dst: p.dst_addr(),
        hop_limit: p.hop_limit(),
        traffic_class: p.traffic_class(),
        flow_label: p.flow_label(),
        proto: next,
        l4_off: at,
        fragment,
    })
}

/// Option types recognised in hop-by-hop and destination options.
const PAD1: u8 = 0;

/// Check the options of a hop-by-hop or destination options header (RFC
/// 8200 §4.2): well-formed TLVs, none whose unrecognised type asks for the
/// packet to be discarded (high-order bits other than 00). Pad1, PadN (1)
/// and Router Alert (5) are the recognised ones, all of action 00, so the
/// action bits alone decide.
fn options_ok(ext: &[u8]) -> Result<(), DropReason> {
    let mut i = 2;
    while let Some(&kind) = ext.get(i) {
        if kind == PAD1 {
            i += 1;
            continue;
        }
        let len = ext.get(i + 1).ok_or(DropReason::Ipv6Extension)?;
        i += 2 + usize::from(*len);
        if i > ext.len() || kind >> 6 != 0 {
            return Err(DropReason::Ipv6Extension);
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::{PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
    use alloc::vec::Vec;

    const SRC: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// An Ethernet frame with an IPv6 packet whose fixed header says
    /// `first` and whose payload (extension headers and all) is `payload`.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = alloc::vec![0u8; 12];
        f.extend_from_slice(&[0x86, 0xdd]);
        f.extend_from_slice(&[0x6a, 0xb1, 0x23, 0x45]);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        f.extend_from_slice(&[first, 63]);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&DST);
        f.extend_from_slice(payload);
        f
    }

    /// An extension header of `len8` 8-byte units: next header, length,
    /// then `body` padded with PadN/zeros.
    fn ext(next: u8, len8: usize, body: &[u8]) -> Vec<u8> {
        let mut e = alloc::vec![next, (len8 - 1) as u8];
        e.extend_from_slice(body);
        let pad = len8 * 8 - e.len();
        if pad == 1 {
            e.push(0);
        } else if pad >= 2 {
            e.extend_from_slice(&[1, (pad - 2) as u8]);
            e.resize(len8 * 8, 0);
        }
        e
    }

    fn udp() -> Vec<u8> {
        alloc::vec![0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4]
    }

    /// A fixed header: traffic class 0xab, flow label 0x12345, 4 bytes of
    /// UDP payload (cut), hop limit 63, SRC -> DST; then one byte past it.
    static PACKET: [u8; 45] = [
        0x6a, 0xb1, 0x23, 0x45, // version, traffic class, flow label
        0x00, 0x04, 17, 63, // payload length, next header, hop limit
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, // destination
        0x30, 0x39, 0x00, 0x35, // payload
        0xee,
    ];

    fn repr() -> Repr {
        Repr {
            src_addr: SRC,
            dst_addr: DST,
            next_header: PROTO_UDP,
            hop_limit: 63,
            traffic_class: 0xab,
            flow_label: 0x12345,
            payload_len: 4,
        }
    }

    #[test]
    fn view_deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(
            (p.version(), p.traffic_class(), p.flow_label()),
            (6, 0xab, 0x12345)
        );
        assert_eq!(
            (p.payload_len(), p.next_header(), p.hop_limit()),
            (4, 17, 63)
        );
        assert_eq!((p.src_addr(), p.dst_addr()), (SRC, DST));
        assert_eq!(p.payload(), &[0x30, 0x39, 0x00, 0x35]);
        assert_eq!(Repr::parse(&p), Ok(repr()));
        assert_eq!(p.into_inner().len(), 45);
    }

    #[test]
    fn view_construct() {
        let mut bytes = [0xeeu8; 45];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_version_tc_flow(0x00, 0x12345);
        p.set_traffic_class(0xab);
        p.set_payload_len(4);
        p.set_next_header(PROTO_UDP);
        p.set_hop_limit(63);
        p.set_src_addr(SRC);
        p.set_dst_addr(DST);
        p.payload_mut().copy_from_slice(&[0x30, 0x39, 0x00, 0x35]);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn view_emit_then_parse() {
        let mut bytes = PACKET;
        bytes[..HLEN].fill(0);
        let r = repr();
        assert_eq!(r.buffer_len(), HLEN);
        r.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        assert_eq!(bytes, PACKET);
        assert_eq!(
            Repr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
            Ok(r)
        );
    }

    #[test]
    fn view_truncated_and_malformed() {
        assert_eq!(
            Packet::new_checked(&PACKET[..39]).unwrap_err(),
            DropReason::Truncated
        );
        assert_eq!(
            Packet::new_checked(&PACKET[..43]).unwrap_err(),
            DropReason::BadIpLength
        );
        // A quoted packet: the header checks, the payload is what is left.
        let quoted = Packet::new_unchecked(&PACKET[..42]);
        assert_eq!(quoted.check_header(), Ok(()));
        assert_eq!(quoted.payload(), &[0x30, 0x39]);
        let mut v4 = PACKET;
        v4[0] = 0x4a;
        assert_eq!(
            Packet::new_checked(&v4[..]).unwrap_err(),
            DropReason::BadIpHeader
        );
        let mut short = [0xffu8; 7];
        let mut p = Packet::new_unchecked(&mut short[..]);
        assert_eq!((p.hop_limit(), p.src_addr()), (0, [0; 16]));
        assert!(p.payload().is_empty());
        p.set_hop_limit(1);
        p.set_src_addr([1; 16]);
        assert_eq!(short, [0xff; 7]);
        repr().emit(&mut Packet::new_unchecked(&mut short[..]));
        assert_eq!(short, PACKET[..7]);
    }

    #[test]
    fn fixed_header_fields() {
        let f = frame(PROTO_UDP, &udp());
        let h = Ipv6::parse(&f, 14).unwrap();
        assert_eq!(h.off, 14);
        assert_eq!(h.payload_len, 12);
        assert_eq!((h.src, h.dst), (SRC, DST));
        assert_eq!(h.traffic_class, 0xab);
        assert_eq!(h.flow_label, 0x12345);
        assert_eq!(h.hop_limit, 63);
        assert_eq!((h.proto, h.l4_off, h.fragment), (PROTO_UDP, 54, false));
        assert_eq!((h.end(), h.header_len(), h.l4_len()), (66, 40, 12));
        // Cross-check with etherparse.
        let e = etherparse::Ipv6HeaderSlice::from_slice(&f[14..]).unwrap();
        assert_eq!(e.traffic_class(), h.traffic_class);
        assert_eq!(e.flow_label().value(), h.flow_label);
    }

    #[test]
    fn version_and_lengths() {
        let f = frame(PROTO_UDP, &udp());
        let mut bad = f.clone();
        bad[14] = 0x4a;
        assert_eq!(Ipv6::parse(&bad, 14), Err(DropReason::BadIpHeader));
        // The payload length claims one byte more than the frame holds.
        let mut lie = f.clone();
        lie[19] += 1;
        assert_eq!(Ipv6::parse(&lie, 14), Err(DropReason::BadIpLength));
        // Fewer than 40 bytes of header.
        assert_eq!(Ipv6::parse(&f[..53], 14), Err(DropReason::Truncated));
        assert_eq!(Ipv6::parse(&f, usize::MAX - 3), Err(DropReason::Truncated));
        // A shorter payload length than the frame: padding, fine.
        let mut short = f.clone();
        short[19] -= 4;
        assert_eq!(Ipv6::parse(&short, 14).unwrap().l4_len(), 8);
    }

    #[test]
    fn extension_headers_are_skipped() {
        use next_header::*;
        let mut p = ext(ROUTING, 1, &[]); // hop-by-hop, 8 bytes, PadN
        p.extend(ext(DEST_OPTIONS, 2, &[0, 0, 0, 0])); // routing, Segments Left 0
        p.extend(ext(PROTO_TCP, 1, &[5, 2, 0, 0])); // destination options with Router Alert
        let mut tcp = [0u8; 20];
        tcp[12] = 5 << 4;
        p.extend_from_slice(&tcp);
        let f = frame(HOP_BY_HOP, &p);
        let h = Ipv6::parse(&f, 14).unwrap();
        assert_eq!((h.proto, h.l4_off, h.l4_len()), (PROTO_TCP, 54 + 32, 20));
        assert_eq!(h.header_len(), 72);
        // etherparse agrees on where the upper layer starts.
        let e = etherparse::PacketHeaders::from_ethernet_slice(&f).unwrap();
        let Some(etherparse::NetHeaders::Ipv6(_, exts)) = e.net else {
            panic!("not IPv6");
        };
        assert_eq!(exts.header_len(), 32);
        assert!(matches!(
            e.transport,
            Some(etherparse::TransportHeader::Tcp(_))
        ));

        // An atomic fragment (offset 0, M 0) is skipped too.
        let mut p = alloc::vec![PROTO_UDP, 0, 0, 0, 1, 2, 3, 4];
        p.extend(udp());
        let h = Ipv6::parse(&frame(FRAGMENT, &p), 14).unwrap();
        assert_eq!((h.proto, h.l4_off, h.fragment), (PROTO_UDP, 62, false));
    }

    #[test]
    fn fragments_are_flagged() {
        use next_header::*;
        // First fragment: offset 0, M set.
        let mut p = alloc::vec![PROTO_UDP, 0, 0x00, 0x01, 1, 2, 3, 4];
        p.extend(udp());
        let h = Ipv6::parse(&frame(FRAGMENT, &p), 14).unwrap();
        assert!(h.fragment);
        assert_eq!((h.proto, h.l4_off), (PROTO_UDP, 62));
        // Later fragment: offset 8 (in 8-byte units: 1), M clear. The walk
        // stops there even if the following bytes look like a header.
        let mut p = alloc::vec![DEST_OPTIONS, 0, 0x00, 0x08, 1, 2, 3, 4];
        p.extend([0xff; 16]);
        let h = Ipv6::parse(&frame(FRAGMENT, &p), 14).unwrap();
        assert!(h.fragment);
        assert_eq!(h.proto, DEST_OPTIONS);
    }

    #[test]
    fn refused_extension_headers() {
        use next_header::*;
        let e = Err(DropReason::Ipv6Extension);
        for value in [ESP, AH, MOBILITY, HIP, SHIM6, EXPERIMENT_1, EXPERIMENT_2] {
            assert_eq!(Ipv6::parse(&frame(value, &[0u8; 16]), 14), e, "{value}");
            // Behind a skipped header too.
            let mut p = ext(value, 1, &[]);
            p.extend([0u8; 16]);
            assert_eq!(Ipv6::parse(&frame(DEST_OPTIONS, &p), 14), e, "{value}");
        }
        // Hop-by-hop anywhere but first.
        let mut p = ext(HOP_BY_HOP, 1, &[]);
        p.extend(ext(PROTO_UDP, 1, &[]));
        assert_eq!(Ipv6::parse(&frame(DEST_OPTIONS, &p), 14), e);
        // Routing with Segments Left 1.
        let p = ext(PROTO_UDP, 1, &[0, 1]);
        assert_eq!(Ipv6::parse(&frame(ROUTING, &p), 14), e);
        // One header too many.
        let mut p = Vec::new();
        for _ in 0..MAX_EXTENSIONS {
            p.extend(ext(DEST_OPTIONS, 1, &[]));
        }
        p.extend(ext(PROTO_UDP, 1, &[]));
        assert_eq!(Ipv6::parse(&frame(DEST_OPTIONS, &p), 14), e);
        // ...but exactly the limit is fine.
        let mut p = Vec::new();
        for _ in 1..MAX_EXTENSIONS {
            p.extend(ext(DEST_OPTIONS, 1, &[]));
        }
        p.extend(ext(PROTO_UDP, 1, &[]));
        p.extend(udp());
        assert_eq!(
            Ipv6::parse(&frame(DEST_OPTIONS, &p), 14).unwrap().proto,
            PROTO_UDP
        );
        // Options: unknown with action 01 and the Jumbo Payload option
        // (0xc2, action 11) refuse; unknown with action 00 is skipped.
        for (kind, ok) in [(0x3e, true), (0x7e, false), (0xc2, false), (0x9e, false)] {
            let mut p = ext(PROTO_UDP, 1, &[kind, 2, 0, 0]);
            p.extend(udp());
            let got = Ipv6::parse(&frame(DEST_OPTIONS, &p), 14);
            assert_eq!(got.is_ok(), ok, "{kind:#x}");
        }
        // An option running past its header.
        let mut p = alloc::vec![PROTO_UDP, 0, 1, 9, 0, 0, 0, 0];
        p.extend(udp());
        assert_eq!(Ipv6::parse(&frame(DEST_OPTIONS, &p), 14), e);
    }

    #[test]
    fn other_protocols_pass_as_is() {
        for proto in [PROTO_ICMPV6, 59, 132, 47, 255] {
            let h = Ipv6::parse(&frame(proto, &[0u8; 8]), 14).unwrap();
            assert_eq!((h.proto, h.l4_off), (proto, 54));
        }
    }

    #[test]
    fn extension_lengths_that_lie() {
        use next_header::*;
        // Header length says 16 bytes, payload holds 8.
        let p = alloc::vec![PROTO_UDP, 1, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            Ipv6::parse(&frame(DEST_OPTIONS, &p), 14),
            Err(DropReason::BadIpLength)
        );
        // Only one byte of extension header.
        assert_eq!(
            Ipv6::parse(&frame(DEST_OPTIONS, &[PROTO_UDP]), 14),
            Err(DropReason::BadIpLength)
        );
        // A payload length that stops inside the extension header, with
        // the bytes there in the frame (Ethernet padding).
        let mut p = ext(PROTO_UDP, 2, &[]);
        p.extend(udp());
        let mut f = frame(HOP_BY_HOP, &p);
        f[18..20].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(Ipv6::parse(&f, 14), Err(DropReason::BadIpLength));
        // The jumbogram form: payload length 0 with a hop-by-hop header.
        f[18..20].copy_from_slice(&0u16.to_be_bytes());
        assert_eq!(Ipv6::parse(&f, 14), Err(DropReason::BadIpLength));
    }

    #[test]
    fn quoted_packets_may_be_cut() {
        let mut p = ext(PROTO_TCP, 1, &[]);
        p.extend([0u8; 20]);
        let mut f = frame(next_header::DEST_OPTIONS, &p);
        f[18..20].copy_from_slice(&1000u16.to_be_bytes());
        assert_eq!(Ipv6::parse(&f, 14), Err(DropReason::BadIpLength));
        let h = Ipv6::parse_quoted(&f, 14).unwrap();
        assert_eq!((h.proto, h.l4_off, h.payload_len), (PROTO_TCP, 62, 1000));
        // Extension headers must be quoted whole.
        assert_eq!(
            Ipv6::parse_quoted(&f[..60], 14),
            Err(DropReason::BadIpLength)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut buf = [0u8; 160];
        for round in 0..20_000 {
            let len = (next() % 160) as usize;
            for b in buf.iter_mut() {
                *b = next() as u8;
            }
            // Mostly plausible headers, so that the walk gets far.
            buf[0] = 0x60 | (buf[0] & 0x0f);
            buf[4] = 0;
            buf[5] = (next() % 140) as u8;
            buf[6] = [0, 43, 44, 60, 6, 17, 58, 50][round % 8];
            for i in (40..len).step_by(8) {
                if next() % 2 == 0 {
                    buf[i] = [0, 43, 44, 60, 6, 17][(next() % 6) as usize];
                    buf[i + 1] = (next() % 3) as u8;
                }
            }
            let f = &buf[..len];
            for h in [Ipv6::parse(f, 0), Ipv6::parse_quoted(f, 0)]
                .into_iter()
                .flatten()
            {
                assert!(h.l4_off <= f.len() && h.l4_off >= 40);
                assert!(h.l4_off <= h.end());
            }
        }
    }
}
