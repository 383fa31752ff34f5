//! IPv4/IPv6 header translation (RFC 7915, "IP/ICMP Translation
//! Algorithm") for 6to4 FULLNAT, and the rewrite of ICMP errors about a
//! FULLNAT session, translated or within one family.
//!
//! The engine decides which packets to translate and with which addresses
//! and ports; this module does the bytes: pure functions over a [`Frame`],
//! no allocation, no panic whatever the bytes, a [`DropReason`] when a
//! packet cannot be translated. On `Err` the frame is left as it was.
//! Every header field is read and written through the views of
//! [`crate::wire`]; the headers a translation makes are written whole by
//! their `Repr`'s `emit` (an ICMP header with the checksum computed here
//! incrementally, `emit_with_checksum`). The offsets here are where
//! headers start in the frame, never fields inside them.
//!
//! # Layout: the payload never moves
//!
//! Headers change size; the upper-layer header and its payload stay where
//! they are in the buffer, and the Ethernet header (with any VLAN tags)
//! moves by the difference, its last EtherType rewritten:
//!
//! ```text
//! v6_to_v4: [ headroom      | eth | IPv6 40 | ext ... | L4 ...]
//!           [ headroom            ...   | eth | IPv4 20 | L4 ...]   start += 20 + ext
//! v4_to_v6: [ headroom      | eth | IPv4 20 | L4 ...]
//!           [ headroom | eth | IPv6 40      | L4 ...]               start -= 20
//!
//! icmp4_error_to_v6:
//!   [ headroom           | eth | IPv4 20 | ICMP 8 | IPv4 20 | L4 quoted ...]
//!   [ headroom | eth | IPv6 40 | ICMPv6 8 | IPv6 40         | L4 quoted ...]  start -= 40
//! icmp6_error_to_v4: the reverse, start += 40 plus both packets' extension headers
//! ```
//!
//! Growth is at most [`HEADROOM_NEEDED`] (40) bytes: 20 for a packet, 20
//! more for the packet an ICMP error quotes. [`Frame::HEADROOM`] (64)
//! covers it; a frame with less headroom than its growth is refused with
//! [`DropReason::Truncated`] (as `tcp_edit` does), unchanged. Shrinking
//! needs none. Ethernet padding after the IP packet is cut off.
//!
//! # Header fields
//!
//! | IPv6 (§4.1 from IPv4) | IPv4 (§5.1 from IPv6) |
//! |---|---|
//! | Traffic Class = TOS, all 8 bits | TOS = Traffic Class, all 8 bits |
//! | Flow Label = 0 | IHL = 5: no options |
//! | Payload Length = Total Length - 20 | Total Length = upper-layer length + 20 |
//! | Next Header = Protocol; ICMP (1) becomes 58 | Protocol = upper-layer Next Header; 58 becomes 1 |
//! | Hop Limit = TTL | TTL = Hop Limit |
//! | (IPv4 options: refused, `IpOptions`) | Identification: hashed from the upper layer, see below |
//! | | DF = 1 above 1260 bytes, else 0; MF = 0, offset 0 |
//! | addresses: given | addresses: given; checksum computed |
//!
//! Choices:
//!
//! - **TTL and Hop Limit are copied, not decremented.** RFC 7915 §4.1 and
//!   §5.1: "Since the translator is a router, as part of forwarding the
//!   packet it needs to decrement either the IPv4 TTL (before the
//!   translation) or the IPv6 Hop Limit (after the translation)." A
//!   FULLNAT balancer is not a router on this path: the client's packet
//!   ends at the VIP and the balancer sends a new one from its local
//!   address, as the engine's IPv4 path does (it leaves the TTL alone).
//!   The quoted packet in an ICMP error is never decremented (§4.3, §5.3).
//! - **DF and Identification follow RFC 7915 §5.1**: "The Don't Fragment
//!   (DF) flag is set as follows: If the size of the translated IPv4
//!   packet is less than or equal to 1260 bytes, it is set to zero;
//!   otherwise, it is set to one",
//!   and the translator generates the Identification (§6, for packets of
//!   up to 1280 bytes without a fragment header: "The translator SHOULD
//!   set DF to 0 and generate an IPv4 identification value"; RFC 6145 had
//!   DF always set and Identification 0). With DF clear an IPv4 router
//!   may fragment, and fragments of different packets must not share an
//!   Identification (RFC 6864 §4.1; RFC 4963), so a constant 0 will not
//!   do. Without per-packet state, the value is a hash of the first 20
//!   bytes of the translated upper-layer header (ports, sequence and
//!   acknowledgment numbers, checksum): different packets differ, and a
//!   retransmission gets the same value, which is harmless since its bytes
//!   are the same. Above 1260 bytes the packet is atomic (DF set) and the
//!   value does not matter (RFC 6864 §4.1). This is what makes the §6
//!   clamp below work: an IPv6 host told "1280" sends 1280-byte packets,
//!   which an IPv4 path narrower than 1260 then fragments.
//! - **Fragments are not translated** (`DropReason::Fragment`): the engine
//!   drops them before, and §5.1.1's rules need the fragment's offset.
//!   An atomic fragment header is skipped like any extension header.
//! - **No fragmentation**: §4.1 says a DF-clear IPv4 packet that would
//!   exceed 1280 bytes as IPv6 "SHOULD be fragmented"; this code rewrites
//!   one frame in place and does not; the packet leaves whole (data-center
//!   links carry 1500 bytes), and the next hop's MTU is the caller's.
//!
//! # Transport checksums (§4.5, §5.5)
//!
//! The pseudo-headers differ only in the addresses: the upper-layer length
//! and protocol contribute the same sum whether as IPv4's 16-bit length or
//! IPv6's 32-bit one. So TCP and UDP checksums are updated incrementally
//! (RFC 1624): the old addresses' sum out, the new addresses' sum in.
//!
//! - UDP over IPv4 with checksum 0 (none): "Calculate an IPv6 checksum and
//!   forward the packet" (§4.5, the second option): the whole datagram is
//!   summed, since IPv6 requires one (RFC 8200 §8.1). A computed 0 is sent
//!   as 0xffff both ways.
//! - UDP over IPv6 with checksum 0 is refused (`BadL4Header`): "IPv6
//!   receivers must discard UDP packets containing a zero checksum" (RFC
//!   8200 §8.1).
//! - ICMPv6 includes the IPv6 pseudo-header, ICMP none: translating an
//!   echo adds or removes it with the type change (§4.2, §5.2: "adjust the
//!   ICMP checksum both to take the type change into account and to
//!   include" or "to exclude" the ICMPv6 pseudo-header).
//! - Other protocols are translated with their payload untouched (§4.1:
//!   the protocol "MUST be copied"; §4.5: checksums of other transports
//!   are optional). An IPv4 protocol number that IPv6 reads as an
//!   extension header, or ICMPv6 (58) inside IPv4, is refused
//!   (`UnsupportedProtocol`).
//!
//! # ICMP (§4.2, §5.2)
//!
//! | ICMPv4 | ICMPv6 |
//! |---|---|
//! | echo request 8 / reply 0 | echo request 128 / reply 129 |
//! | dest. unreachable 3, code 0, 1, 5, 6, 7, 8, 11, 12 | dest. unreachable 1, code 0 (no route) |
//! | 3, code 9, 10, 13, 15 | 1, code 1 (administratively prohibited) |
//! | 3, code 3 (port) | 1, code 4 (port) |
//! | 3, code 2 (protocol) | parameter problem 4, code 1, pointer 6 (Next Header) |
//! | 3, code 4 (fragmentation needed), MTU m | packet too big 2, MTU max(1280, min(m + 20, cap)) |
//! | time exceeded 11, code c | time exceeded 3, code c |
//! | parameter problem 12, code 0 or 2, pointer p | parameter problem 4, code 0, pointer per Figure 3 |
//! | anything else (3 code 14, redirect, source quench, ...) | dropped (`IcmpUnsupported`) |
//!
//! | ICMPv6 | ICMPv4 |
//! |---|---|
//! | dest. unreachable 1, code 0, 2, 3 | 3, code 1 (host) |
//! | 1, code 1 | 3, code 10 (host administratively prohibited) |
//! | 1, code 4 (port) | 3, code 3 (port) |
//! | packet too big 2, MTU m | 3, code 4, MTU min(m - d, cap, 65535) |
//! | time exceeded 3, code c | 11, code c |
//! | parameter problem 4, code 0, pointer p | 12, code 0, pointer per Figure 6 |
//! | 4, code 1 (next header) | 3, code 2 (protocol) |
//! | anything else (4 code 2, MLD, ND, ...) | dropped (`IcmpUnsupported`) |
//!
//! The MTU rules:
//!
//! - ICMPv4 to ICMPv6, §4.2: "The MTU field MUST be adjusted for the
//!   difference between the IPv4 and IPv6 header sizes, i.e.,
//!   minimum(advertised MTU+20, MTU_of_IPv6_nexthop,
//!   (MTU_of_IPv4_nexthop)+20)." The last two terms are the caller's
//!   `mtu_cap` ([`NO_MTU_CAP`] when it does not know them). "If the IPv4
//!   router set the MTU field to zero [...] the translator MUST use the
//!   plateau values specified in \[RFC1191\] \[...\] (Use the greatest plateau
//!   value that is less than the returned Total Length field.)" That
//!   plateau stands for the advertised MTU. Then §6: "if the MTU value of
//!   ICMPv4 Packet Too Big (PTB) messages is less than 1280, change it to
//!   1280".
//! - ICMPv6 to ICMPv4, §5.2: "minimum(advertised MTU-20,
//!   MTU_of_IPv4_nexthop, (MTU_of_IPv6_nexthop)-20)", "taking into account
//!   whether or not the packet in error includes a Fragment Header": `d`
//!   is what translating the quoted packet's headers saves, 20 plus its
//!   extension headers. The ICMPv4 field has 16 bits.
//!
//! # The packet an ICMP error quotes (§4.3, §5.3)
//!
//! "The ICMP error messages containing the packet in error MUST be
//! translated just like a normal IP packet (except that the TTL/Hop Limit
//! value of the inner IPv4/IPv6 packet are not decremented)." Its header is
//! translated with the same rules and the addresses and ports the caller
//! gives; its lengths are the quoted packet's own (the Total Length it
//! claims, not what is quoted). Its transport checksum is updated like a
//! packet's (addresses and ports, incrementally) when the quote reaches it
//! (UDP always, within the 8 bytes every error quotes; TCP when 18 bytes
//! are quoted), and otherwise cannot be: RFC 7915 does not require the
//! inner checksum to verify, and a quote rarely holds the whole segment
//! anyway. A quoted UDP checksum of 0 stays 0. The ICMP checksum is updated
//! incrementally over every byte that changes, so an error corrupted on
//! the way stays detectably corrupt.
//!
//! The quote is cut where needed:
//! - RFC 4884 extensions: when the ICMP length attribute (ICMPv4 byte 5,
//!   ICMPv6 byte 4) marks where the original datagram ends, the
//!   extensions after it are removed and the attribute is zeroed (the
//!   message becomes a plain RFC 792/4443 one): §4.2 and §5.2 want the
//!   attribute "adjusted accordingly", and a removed extension is the
//!   simplest correct adjustment; the extension objects (which may hold
//!   addresses of the other family) would not be translated anyway.
//! - RFC 4443 §2.4 (c): an ICMPv6 error holds "as much of invoking packet
//!   as possible without the ICMPv6 packet exceeding the minimum IPv6 MTU":
//!   an ICMPv4 error grown into IPv6 is cut to 1280 bytes.
//!
//! An error within one family ([`icmp4_error_rewrite`],
//! [`icmp6_error_rewrite`]) keeps its size: outer and quoted addresses and
//! quoted ports are rewritten, with the outer IPv4 header checksum, the
//! quoted IPv4 header checksum, the quoted transport checksum and the ICMP
//! checksum (whose ICMPv6 pseudo-header holds the outer addresses) all
//! updated incrementally.

use crate::frame::Frame;
use crate::verdict::DropReason;
use crate::wire::checksum::{self, Delta, pseudo6};
use crate::wire::ipv6::{self, Ipv6};
use crate::wire::{
    ETHERTYPE_IPV4, ETHERTYPE_IPV6, Ipv4, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, ethernet,
    icmpv4, icmpv6, ipv4, tcp, udp,
};

const V4_HLEN: usize = ipv4::HEADER_LEN;
const V6_HLEN: usize = ipv6::HLEN;
const ICMP_HLEN: usize = icmpv4::HEADER_LEN;
const _: () = assert!(icmpv6::HEADER_LEN == ICMP_HLEN);
/// Bytes of the quoted transport header every ICMP error carries (RFC 792:
/// "the internet header plus the first 64 bits of the original datagram's
/// data"); enough for the ports, and for the UDP checksum.
const QUOTED_L4_MIN: usize = 8;
/// How many of a translated packet's first transport bytes its IPv4
/// Identification hashes (see the module docs).
const IDENT_LEN: usize = 20;

/// How much a header grows from IPv4 (without options) to IPv6.
pub(crate) const GROWTH: usize = V6_HLEN - V4_HLEN;

/// The headroom the translations need at most: [`GROWTH`] for a packet,
/// twice that for an ICMP error whose quoted packet grows too.
pub(crate) const HEADROOM_NEEDED: usize = 2 * GROWTH;
const _: () = assert!(HEADROOM_NEEDED <= Frame::HEADROOM);

/// `mtu_cap` for a caller that does not know its next hops' MTUs.
pub(crate) const NO_MTU_CAP: u32 = u32::MAX;

/// The IPv6 minimum link MTU (RFC 8200 §5).
const IPV6_MIN_MTU: usize = 1280;
/// Translated IPv4 packets up to this size leave with DF clear (§5.1).
const DF_ABOVE: usize = 1260;
/// The most of an ICMPv4 error's quote (from its IPv4 header on) that
/// keeps the ICMPv6 error it becomes within [`IPV6_MIN_MTU`].
const MAX_QUOTE4: usize = IPV6_MIN_MTU - V6_HLEN - ICMP_HLEN - GROWTH;

/// RFC 1191 §7's plateau table, highest first.
const PLATEAUS: [u16; 11] = [
    65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68,
];

/// ICMP and ICMPv6 types (RFC 792, RFC 4443).
pub(crate) mod icmp_type {
    pub(crate) const V4_ECHO_REPLY: u8 = 0;
    pub(crate) const V4_DEST_UNREACHABLE: u8 = 3;
    pub(crate) const V4_ECHO_REQUEST: u8 = 8;
    pub(crate) const V4_TIME_EXCEEDED: u8 = 11;
    pub(crate) const V4_PARAMETER_PROBLEM: u8 = 12;
    pub(crate) const V6_DEST_UNREACHABLE: u8 = 1;
    pub(crate) const V6_PACKET_TOO_BIG: u8 = 2;
    pub(crate) const V6_TIME_EXCEEDED: u8 = 3;
    pub(crate) const V6_PARAMETER_PROBLEM: u8 = 4;
    pub(crate) const V6_ECHO_REQUEST: u8 = 128;
    pub(crate) const V6_ECHO_REPLY: u8 = 129;
}
use icmp_type::*;

// ----- packets ---------------------------------------------------------

/// Translate the IPv6 packet `ip6` (parsed from this frame) into IPv4 from
/// `src` to `dst` (§5.1): its fixed and extension headers become one
/// 20-byte IPv4 header; TCP and UDP checksums follow the new
/// pseudo-header; an ICMPv6 echo request or reply becomes ICMP (§5.2). The
/// frame shrinks by 20 plus the extension headers.
///
/// Returns the new IPv4 header's summary, as [`Ipv4::parse`] would read
/// it from the translated frame.
///
/// # Errors
/// `Fragment`; `IcmpUnsupported` for ICMPv6 other than echo (errors go
/// through [`icmp6_error_to_v4`]); `BadL4Header` for UDP without a
/// checksum; `Truncated` for a transport header cut short; `BadIpLength`
/// for a payload too long for IPv4.
pub(crate) fn v6_to_v4(
    frame: &mut Frame<'_>,
    ip6: &Ipv6,
    src: [u8; 4],
    dst: [u8; 4],
) -> Result<Ipv4, DropReason> {
    if ip6.fragment {
        return Err(DropReason::Fragment);
    }
    let (l3, l4, l4_len) = (ip6.off, ip6.l4_off, ip6.l4_len());
    let shrink = ip6
        .header_len()
        .checked_sub(V4_HLEN)
        .filter(|&s| s >= GROWTH)
        .ok_or(DropReason::BadIpHeader)?;
    if u16::try_from(V4_HLEN + l4_len).is_err() {
        return Err(DropReason::BadIpLength);
    }
    ethernet::network_ethertype(frame.bytes(), l3)?;
    let seg = frame
        .bytes()
        .get(l4..l4 + l4_len)
        .ok_or(DropReason::Truncated)?;
    let addrs = (
        checksum::fixed_addr_pair(&ip6.src, &ip6.dst),
        checksum::fixed_addr_pair(&src, &dst),
    );
    let (protocol, edit) = match ip6.proto {
        PROTO_TCP => (PROTO_TCP, tcp_edit(seg, addrs)?),
        PROTO_UDP => {
            let check = udp_header(seg)?.checksum();
            if check == 0 {
                return Err(DropReason::BadL4Header);
            }
            let value = checksum::udp_nonzero(checksum::replace(check, addrs.0, addrs.1));
            (PROTO_UDP, L4Edit::Udp { checksum: value })
        }
        PROTO_ICMPV6 => {
            let icmp = icmpv6::Packet::new_checked(seg)?;
            let to = match icmp.msg_type() {
                V6_ECHO_REQUEST => V4_ECHO_REQUEST,
                V6_ECHO_REPLY => V4_ECHO_REPLY,
                _ => return Err(DropReason::IcmpUnsupported),
            };
            let old =
                pseudo6(&ip6.src, &ip6.dst, l4_len, PROTO_ICMPV6) + u32::from(icmp.type_code());
            let new = checksum::word(to, icmp.msg_code());
            let checksum = checksum::replace(icmp.checksum(), old, new);
            (
                PROTO_ICMP,
                L4Edit::Icmp4 {
                    msg_type: to,
                    checksum,
                },
            )
        }
        other => (other, L4Edit::None),
    };

    let start = frame.start();
    let seg = frame
        .bytes_mut()
        .get_mut(l4..l4 + l4_len)
        .ok_or(DropReason::Truncated)?;
    edit.apply(seg);
    let header = ipv4::Repr {
        src_addr: src,
        dst_addr: dst,
        protocol,
        ttl: ip6.hop_limit,
        tos: ip6.traffic_class,
        ident: ident_of(seg),
        dont_frag: dont_frag(l4_len),
        payload_len: l4_len,
    };
    move_front(frame, start + shrink, start + l4 + l4_len, l3)?;
    let bytes = frame.bytes_mut();
    let h = bytes
        .get_mut(l3..l3 + V4_HLEN)
        .ok_or(DropReason::Truncated)?;
    header.emit(&mut ipv4::Packet::new_unchecked(h));
    ethernet::set_network_ethertype(bytes, l3, ETHERTYPE_IPV4)?;
    Ok(Ipv4 {
        off: l3,
        hlen: V4_HLEN,
        total: V4_HLEN + l4_len,
        proto: protocol,
        src,
        dst,
        fragment: false,
        checksum_ok: true,
    })
}

/// Translate the IPv4 packet `ip4` (parsed from this frame) into IPv6
/// from `src` to `dst` (§4.1): the 20-byte header becomes a 40-byte one,
/// in the headroom; TCP and UDP checksums follow the new pseudo-header
/// (UDP without one gets one); an ICMP echo request or reply becomes
/// ICMPv6 (§4.2).
///
/// # Errors
/// `IpOptions`, `Fragment`; `IcmpUnsupported` for ICMP other than echo
/// (errors go through [`icmp4_error_to_v6`]); `UnsupportedProtocol` for a
/// protocol number IPv6 reads as an extension header, or 58; `Truncated` for a
/// transport header cut short or less than [`GROWTH`] bytes of headroom.
pub(crate) fn v4_to_v6(
    frame: &mut Frame<'_>,
    ip4: &Ipv4,
    src: [u8; 16],
    dst: [u8; 16],
) -> Result<(), DropReason> {
    if ip4.hlen != V4_HLEN {
        return Err(DropReason::IpOptions);
    }
    if ip4.fragment {
        return Err(DropReason::Fragment);
    }
    let (l3, l4, l4_len) = (ip4.off, ip4.l4_off(), ip4.l4_len());
    ethernet::network_ethertype(frame.bytes(), l3)?;
    let start = frame
        .start()
        .checked_sub(GROWTH)
        .ok_or(DropReason::Truncated)?;
    let bytes = frame.bytes();
    let old = ipv4::Packet::new_unchecked(bytes.get(l3..l4).ok_or(DropReason::Truncated)?);
    let seg = bytes.get(l4..l4 + l4_len).ok_or(DropReason::Truncated)?;
    let addrs = (
        checksum::fixed_addr_pair(&ip4.src, &ip4.dst),
        checksum::fixed_addr_pair(&src, &dst),
    );
    let (next_header, edit) = match ip4.proto {
        PROTO_TCP => (PROTO_TCP, tcp_edit(seg, addrs)?),
        PROTO_UDP => {
            let check = udp_header(seg)?.checksum();
            let value = if check == 0 {
                // No checksum over IPv4: compute one (§4.5). The field is
                // 0, so summing the datagram as it is leaves it out.
                checksum::finish(checksum::sum(pseudo6(&src, &dst, l4_len, PROTO_UDP), seg))
            } else {
                checksum::replace(check, addrs.0, addrs.1)
            };
            let value = checksum::udp_nonzero(value);
            (PROTO_UDP, L4Edit::Udp { checksum: value })
        }
        PROTO_ICMP => {
            let icmp = icmpv4::Packet::new_checked(seg)?;
            let to = match icmp.msg_type() {
                V4_ECHO_REQUEST => V6_ECHO_REQUEST,
                V4_ECHO_REPLY => V6_ECHO_REPLY,
                _ => return Err(DropReason::IcmpUnsupported),
            };
            let new =
                pseudo6(&src, &dst, l4_len, PROTO_ICMPV6) + checksum::word(to, icmp.msg_code());
            let old = u32::from(icmp.type_code());
            let checksum = checksum::replace(icmp.checksum(), old, new);
            (
                PROTO_ICMPV6,
                L4Edit::Icmp6 {
                    msg_type: to,
                    checksum,
                },
            )
        }
        other if ipv6::is_extension(other) || other == PROTO_ICMPV6 => {
            return Err(DropReason::UnsupportedProtocol);
        }
        other => (other, L4Edit::None),
    };
    let payload_len = u16::try_from(l4_len).map_err(|_| DropReason::BadIpLength)?;
    let header = ipv6::Repr {
        src_addr: src,
        dst_addr: dst,
        next_header,
        hop_limit: old.ttl(),
        traffic_class: old.tos(),
        flow_label: 0,
        payload_len,
    };

    let end = frame.start() + l4 + l4_len;
    let seg = frame
        .bytes_mut()
        .get_mut(l4..l4 + l4_len)
        .ok_or(DropReason::Truncated)?;
    edit.apply(seg);
    move_front(frame, start, end, l3)?;
    let bytes = frame.bytes_mut();
    let h = bytes
        .get_mut(l3..l3 + V6_HLEN)
        .ok_or(DropReason::Truncated)?;
    header.emit(&mut ipv6::Packet::new_unchecked(h));
    ethernet::set_network_ethertype(bytes, l3, ETHERTYPE_IPV6)
}

/// What a translation changes in the transport header, which stays put.
#[derive(Clone, Copy)]
enum L4Edit {
    None,
    Tcp {
        checksum: u16,
    },
    Udp {
        checksum: u16,
    },
    /// An ICMPv6 echo become ICMP: its type and checksum.
    Icmp4 {
        msg_type: u8,
        checksum: u16,
    },
    /// An ICMP echo become ICMPv6: its type and checksum.
    Icmp6 {
        msg_type: u8,
        checksum: u16,
    },
}

impl L4Edit {
    /// Write the edit into the transport header and payload `seg`, whose
    /// header the edit was made from.
    fn apply(self, seg: &mut [u8]) {
        match self {
            L4Edit::None => {}
            L4Edit::Tcp { checksum } => tcp::Packet::new_unchecked(seg).set_checksum(checksum),
            L4Edit::Udp { checksum } => udp::Packet::new_unchecked(seg).set_checksum(checksum),
            L4Edit::Icmp4 { msg_type, checksum } => {
                let mut icmp = icmpv4::Packet::new_unchecked(seg);
                icmp.set_msg_type(msg_type);
                icmp.set_checksum(checksum);
            }
            L4Edit::Icmp6 { msg_type, checksum } => {
                let mut icmp = icmpv6::Packet::new_unchecked(seg);
                icmp.set_msg_type(msg_type);
                icmp.set_checksum(checksum);
            }
        }
    }
}

/// The TCP checksum for a change of pseudo-header addresses.
fn tcp_edit(seg: &[u8], (old, new): (u32, u32)) -> Result<L4Edit, DropReason> {
    if seg.len() < tcp::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    let check = tcp::Packet::new_unchecked(seg).checksum();
    Ok(L4Edit::Tcp {
        checksum: checksum::replace(check, old, new),
    })
}

/// The UDP header of the datagram `seg`, or `Truncated`. Its length field
/// is not judged: the IP header's length is the datagram's.
fn udp_header(seg: &[u8]) -> Result<udp::Packet<&[u8]>, DropReason> {
    if seg.len() < udp::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    Ok(udp::Packet::new_unchecked(seg))
}

/// DF for a translated IPv4 packet of `payload_len` bytes after its
/// header (§5.1: set above 1260 bytes).
fn dont_frag(payload_len: usize) -> bool {
    V4_HLEN + payload_len > DF_ABOVE
}

// ----- ICMP errors -----------------------------------------------------

/// A quoted packet's flow, as the quoted packet carries it: `src` and
/// `sport` are its sender's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flow<A> {
    pub(crate) proto: u8,
    pub(crate) src: A,
    pub(crate) sport: u16,
    pub(crate) dst: A,
    pub(crate) dport: u16,
}

/// An ICMPv4 error about a TCP or UDP packet, read far enough to find the
/// session and to rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError4 {
    /// ICMP type: 3 (destination unreachable), 11 (time exceeded) or 12
    /// (parameter problem).
    pub(crate) kind: u8,
    pub(crate) code: u8,
    /// Offset of the ICMP header in the frame.
    pub(crate) icmp_off: usize,
    /// Offset of the quoted IPv4 header, its length (IHL * 4) and its
    /// Total Length field.
    pub(crate) inner_off: usize,
    pub(crate) inner_hlen: usize,
    pub(crate) inner_total: usize,
    /// The quoted packet's flow.
    pub(crate) flow: Flow<[u8; 4]>,
}

/// An ICMPv6 error about a TCP or UDP packet, read far enough to find the
/// session and to rewrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IcmpError6 {
    /// ICMPv6 type: 1 (destination unreachable), 2 (packet too big), 3
    /// (time exceeded) or 4 (parameter problem).
    pub(crate) kind: u8,
    pub(crate) code: u8,
    /// Offset of the ICMPv6 header in the frame.
    pub(crate) icmp_off: usize,
    /// The quoted packet's header (its `payload_len` as quoted, its
    /// extension headers quoted whole).
    pub(crate) inner: Ipv6,
    /// The quoted packet's flow.
    pub(crate) flow: Flow<[u8; 16]>,
}

/// The addresses and ports an ICMP error is forwarded with: the outer
/// packet's source and destination, and the quoted packet's (its sender's
/// address and port first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ErrorRewrite<A> {
    pub(crate) src: A,
    pub(crate) dst: A,
    pub(crate) inner_src: (A, u16),
    pub(crate) inner_dst: (A, u16),
}

/// Read the ICMPv4 error in the packet `ip` (parsed from `frame`) up to
/// the quoted packet's flow, for the session lookup.
///
/// # Errors
/// `IcmpUnsupported` if `ip` is not ICMP or the type is not an error this
/// module rewrites (3, 11, 12); `Fragment`; `Truncated` for an ICMP header
/// cut short; `IcmpNoSession` when the quote is not a TCP or UDP packet's
/// IPv4 header and at least 8 bytes of its transport header, or is a
/// non-first fragment.
pub(crate) fn parse_icmp4_error(frame: &[u8], ip: &Ipv4) -> Result<IcmpError4, DropReason> {
    if ip.proto != PROTO_ICMP {
        return Err(DropReason::IcmpUnsupported);
    }
    if ip.fragment {
        return Err(DropReason::Fragment);
    }
    let icmp_off = ip.l4_off();
    let end = ip.off + ip.total;
    let message = frame.get(icmp_off..end).ok_or(DropReason::Truncated)?;
    let icmp = icmpv4::Packet::new_checked(message)?;
    let (kind, code) = (icmp.msg_type(), icmp.msg_code());
    if !matches!(
        kind,
        V4_DEST_UNREACHABLE | V4_TIME_EXCEEDED | V4_PARAMETER_PROBLEM
    ) {
        return Err(DropReason::IcmpUnsupported);
    }
    // The quoted header is cut short by the quote: its Total Length is
    // the original packet's, so `check_len` does not apply.
    let quote = icmp.payload();
    if quote.len() < V4_HLEN {
        return Err(DropReason::IcmpNoSession);
    }
    let inner = ipv4::Packet::new_unchecked(quote);
    let inner_hlen = inner.header_len();
    let inner_total = usize::from(inner.total_len());
    let proto = inner.protocol();
    if inner.version() != 4
        || inner_hlen < V4_HLEN
        || inner_total < inner_hlen + QUOTED_L4_MIN
        || inner.flags_frag() & ipv4::FRAG_OFFSET != 0
        || !matches!(proto, PROTO_TCP | PROTO_UDP)
    {
        return Err(DropReason::IcmpNoSession);
    }
    let (sport, dport) =
        quoted_ports(proto, quote.get(inner_hlen..)).ok_or(DropReason::IcmpNoSession)?;
    Ok(IcmpError4 {
        kind,
        code,
        icmp_off,
        inner_off: icmp_off + ICMP_HLEN,
        inner_hlen,
        inner_total,
        flow: Flow {
            proto,
            src: inner.src_addr(),
            sport,
            dst: inner.dst_addr(),
            dport,
        },
    })
}

/// Read the ICMPv6 error in the packet `ip` (parsed from `frame`) up to
/// the quoted packet's flow, for the session lookup.
///
/// # Errors
/// As [`parse_icmp4_error`], for ICMPv6 types 1 to 4; the quoted packet's
/// extension headers must be quoted whole and skippable, and it must not
/// be a fragment.
pub(crate) fn parse_icmp6_error(frame: &[u8], ip: &Ipv6) -> Result<IcmpError6, DropReason> {
    if ip.proto != PROTO_ICMPV6 {
        return Err(DropReason::IcmpUnsupported);
    }
    if ip.fragment {
        return Err(DropReason::Fragment);
    }
    let icmp_off = ip.l4_off;
    let packet = frame.get(..ip.end()).ok_or(DropReason::Truncated)?;
    let message = packet.get(icmp_off..).ok_or(DropReason::Truncated)?;
    let icmp = icmpv6::Packet::new_checked(message)?;
    let (kind, code) = (icmp.msg_type(), icmp.msg_code());
    if !matches!(
        kind,
        V6_DEST_UNREACHABLE | V6_PACKET_TOO_BIG | V6_TIME_EXCEEDED | V6_PARAMETER_PROBLEM
    ) {
        return Err(DropReason::IcmpUnsupported);
    }
    let inner = Ipv6::parse_quoted(packet, icmp_off + ICMP_HLEN)
        .ok()
        .filter(|q| !q.fragment && matches!(q.proto, PROTO_TCP | PROTO_UDP))
        .filter(|q| q.l4_len() >= QUOTED_L4_MIN)
        .ok_or(DropReason::IcmpNoSession)?;
    let (sport, dport) =
        quoted_ports(inner.proto, packet.get(inner.l4_off..)).ok_or(DropReason::IcmpNoSession)?;
    Ok(IcmpError6 {
        kind,
        code,
        icmp_off,
        inner,
        flow: Flow {
            proto: inner.proto,
            src: inner.src,
            sport,
            dst: inner.dst,
            dport,
        },
    })
}

/// The ports of a quoted TCP or UDP header `l4`, if the quote holds the
/// [`QUOTED_L4_MIN`] bytes every error carries.
fn quoted_ports(proto: u8, l4: Option<&[u8]>) -> Option<(u16, u16)> {
    let l4 = l4.filter(|l4| l4.len() >= QUOTED_L4_MIN)?;
    match proto {
        PROTO_TCP => {
            let p = tcp::Packet::new_unchecked(l4);
            Some((p.src_port(), p.dst_port()))
        }
        PROTO_UDP => {
            let p = udp::Packet::new_unchecked(l4);
            Some((p.src_port(), p.dst_port()))
        }
        _ => None,
    }
}

/// Translate the ICMPv4 error `err` (from [`parse_icmp4_error`] on this
/// frame's packet `ip`) into ICMPv6 (§4.2, §4.3): the outer header to IPv6
/// from `to.src` to `to.dst`, the ICMP type, code and MTU per the module's
/// table, the quoted packet's header to IPv6 with `to.inner_src` and
/// `to.inner_dst` (ports too). `mtu_cap` is min(MTU of the IPv6 next hop,
/// MTU of the IPv4 next hop + 20), or [`NO_MTU_CAP`]. The frame grows by
/// 40 bytes, less whatever is cut from the quote (RFC 4884 extensions,
/// the 1280-byte limit).
///
/// # Errors
/// `IcmpUnsupported` for a type or code RFC 7915 drops; `IpOptions` for
/// options in either IPv4 header; `Truncated` for less than
/// [`HEADROOM_NEEDED`] bytes of headroom; `IcmpNoSession` if `err` does
/// not describe this packet.
pub(crate) fn icmp4_error_to_v6(
    frame: &mut Frame<'_>,
    ip: &Ipv4,
    err: &IcmpError4,
    to: &ErrorRewrite<[u8; 16]>,
    mtu_cap: u32,
) -> Result<(), DropReason> {
    if ip.hlen != V4_HLEN || err.inner_hlen != V4_HLEN {
        return Err(DropReason::IpOptions);
    }
    let (l3, icmp_off) = (ip.off, ip.l4_off());
    let inner_off = icmp_off + ICMP_HLEN;
    if err.icmp_off != icmp_off || err.inner_off != inner_off {
        return Err(DropReason::IcmpNoSession);
    }
    let l4 = inner_off + V4_HLEN;
    let end = l3 + ip.total;
    ethernet::network_ethertype(frame.bytes(), l3)?;
    let start = frame
        .start()
        .checked_sub(HEADROOM_NEEDED)
        .ok_or(DropReason::Truncated)?;

    let bytes = frame.bytes();
    let outer = ipv4::Packet::new_unchecked(bytes.get(l3..icmp_off).ok_or(DropReason::Truncated)?);
    let message = bytes.get(icmp_off..end).ok_or(DropReason::Truncated)?;
    let icmp = icmpv4::Packet::new_checked(message)?;
    let quoted = icmp.payload();

    // The quote: up to the RFC 4884 original datagram's end if the length
    // attribute gives one, and within 1280 bytes.
    let mut quote = quoted.len();
    let original = icmp.original_len();
    if original >= V4_HLEN + QUOTED_L4_MIN && original <= quote {
        quote = original;
    }
    let quote = quote.min(MAX_QUOTE4);
    if quote < V4_HLEN + QUOTED_L4_MIN {
        return Err(DropReason::IcmpNoSession);
    }
    let inner = ipv4::Packet::new_unchecked(quoted);
    let new_icmp = icmp4_to_6(&icmp, err.inner_total, mtu_cap)?;
    let msg_len = ICMP_HLEN + V6_HLEN + (quote - V4_HLEN);
    let inner_payload = err
        .inner_total
        .checked_sub(V4_HLEN)
        .and_then(|n| u16::try_from(n).ok())
        .ok_or(DropReason::IcmpNoSession)?;
    let inner_proto = inner.protocol();
    let new_inner = ipv6::Repr {
        src_addr: to.inner_src.0,
        dst_addr: to.inner_dst.0,
        next_header: if inner_proto == PROTO_ICMP {
            PROTO_ICMPV6
        } else {
            inner_proto
        },
        hop_limit: inner.ttl(),
        traffic_class: inner.tos(),
        flow_label: 0,
        payload_len: inner_payload,
    };
    let new_outer = ipv6::Repr {
        src_addr: to.src,
        dst_addr: to.dst,
        next_header: PROTO_ICMPV6,
        hop_limit: outer.ttl(),
        traffic_class: outer.tos(),
        flow_label: 0,
        payload_len: msg_len as u16,
    };
    let cut = quoted.get(quote..).ok_or(DropReason::Truncated)?;
    let before = header_sum(icmp.msg_type(), icmp.msg_code(), icmp.rest())
        + checksum::sum(0, &inner.fixed_header())
        + checksum::sum(0, cut);
    let addrs = (
        checksum::addr_pair(&inner.src_addr(), &inner.dst_addr()),
        checksum::addr_pair(&to.inner_src.0, &to.inner_dst.0),
    );
    let icmp_check = icmp.checksum();

    let quoted_l4 = frame
        .bytes_mut()
        .get_mut(l4..inner_off + quote)
        .ok_or(DropReason::Truncated)?;
    let quoted = rewrite_quoted_l4(
        quoted_l4,
        inner_proto,
        addrs,
        (to.inner_src.1, to.inner_dst.1),
    );
    move_front(
        frame,
        start,
        start + HEADROOM_NEEDED + inner_off + quote,
        l3,
    )?;
    let bytes = frame.bytes_mut();
    let mut outer = ipv6::Packet::new_unchecked(bytes.get_mut(l3..).ok_or(DropReason::Truncated)?);
    new_outer.emit(&mut outer);
    let mut icmp = icmpv6::Packet::new_unchecked(outer.payload_mut());
    let mut inner = ipv6::Packet::new_unchecked(icmp.payload_mut());
    new_inner.emit(&mut inner);
    let inner_sum = checksum::sum(0, inner.into_inner().get(..V6_HLEN).unwrap_or_default());
    let after = pseudo6(&to.src, &to.dst, msg_len, PROTO_ICMPV6)
        + header_sum(new_icmp.msg_type, new_icmp.msg_code, new_icmp.rest)
        + inner_sum;
    let check = checksum::replace(icmp_check, before + quoted.0, after + quoted.1);
    new_icmp.emit_with_checksum(&mut icmp, check);
    ethernet::set_network_ethertype(bytes, l3, ETHERTYPE_IPV6)
}

/// Translate the ICMPv6 error `err` (from [`parse_icmp6_error`] on this
/// frame's packet `ip`) into ICMPv4 (§5.2, §5.3): the outer header and its
/// extension headers to IPv4 from `to.src` to `to.dst`, the type, code and
/// MTU per the module's table, the quoted packet's header and extension
/// headers to IPv4 with `to.inner_src` and `to.inner_dst` (ports too).
/// `mtu_cap` is min(MTU of the IPv4 next hop, MTU of the IPv6 next hop -
/// 20), or [`NO_MTU_CAP`]. The frame shrinks by 40 bytes plus both
/// packets' extension headers (plus RFC 4884 extensions).
///
/// # Errors
/// `IcmpUnsupported` for a type or code RFC 7915 drops; `Fragment`;
/// `IcmpNoSession` if `err` does not describe this packet; `BadIpLength`
/// if a length does not fit IPv4's 16 bits.
pub(crate) fn icmp6_error_to_v4(
    frame: &mut Frame<'_>,
    ip: &Ipv6,
    err: &IcmpError6,
    to: &ErrorRewrite<[u8; 4]>,
    mtu_cap: u32,
) -> Result<(), DropReason> {
    if ip.fragment {
        return Err(DropReason::Fragment);
    }
    let (l3, icmp_off, inner) = (ip.off, ip.l4_off, &err.inner);
    if err.icmp_off != icmp_off || inner.off != icmp_off + ICMP_HLEN {
        return Err(DropReason::IcmpNoSession);
    }
    let inner_hlen = inner.header_len();
    let shrink = (ip.header_len() + inner_hlen)
        .checked_sub(2 * V4_HLEN)
        .filter(|&s| s >= HEADROOM_NEEDED)
        .ok_or(DropReason::IcmpNoSession)?;
    let (l4, end) = (inner.l4_off, ip.end());
    ethernet::network_ethertype(frame.bytes(), l3)?;

    let message = frame
        .bytes()
        .get(icmp_off..end)
        .ok_or(DropReason::Truncated)?;
    let icmp = icmpv6::Packet::new_checked(message)?;
    let quoted = icmp.payload();
    // The quote: up to the RFC 4884 original datagram's end if the length
    // attribute (types 1 and 3) gives one.
    let mut quote = quoted.len();
    let original = icmp.original_len();
    if matches!(icmp.msg_type(), V6_DEST_UNREACHABLE | V6_TIME_EXCEEDED)
        && original >= inner_hlen + QUOTED_L4_MIN
        && original <= quote
    {
        quote = original;
    }
    if quote < inner_hlen + QUOTED_L4_MIN {
        return Err(DropReason::IcmpNoSession);
    }
    let header_diff = inner_hlen.saturating_sub(V4_HLEN);
    let new_icmp = icmp6_to_4(&icmp, header_diff, mtu_cap)?;
    if u16::try_from(V4_HLEN + inner.l4_len()).is_err() {
        return Err(DropReason::BadIpLength);
    }
    let msg_len = ICMP_HLEN + V4_HLEN + (quote - inner_hlen);
    if u16::try_from(V4_HLEN + msg_len).is_err() {
        return Err(DropReason::BadIpLength);
    }
    let old_headers = quoted.get(..inner_hlen).ok_or(DropReason::Truncated)?;
    let cut = quoted.get(quote..).ok_or(DropReason::Truncated)?;
    let before = pseudo6(&ip.src, &ip.dst, message.len(), PROTO_ICMPV6)
        + header_sum(icmp.msg_type(), icmp.msg_code(), icmp.rest())
        + checksum::sum(0, old_headers)
        + checksum::sum(0, cut);
    let icmp_check = icmp.checksum();

    let start = frame.start();
    let quoted_l4 = frame
        .bytes_mut()
        .get_mut(l4..inner.off + quote)
        .ok_or(DropReason::Truncated)?;
    let quoted = rewrite_quoted_l4(
        quoted_l4,
        inner.proto,
        (
            checksum::addr_pair(&inner.src, &inner.dst),
            checksum::addr_pair(&to.inner_src.0, &to.inner_dst.0),
        ),
        (to.inner_src.1, to.inner_dst.1),
    );
    let new_inner = ipv4::Repr {
        src_addr: to.inner_src.0,
        dst_addr: to.inner_dst.0,
        protocol: if inner.proto == PROTO_ICMPV6 {
            PROTO_ICMP
        } else {
            inner.proto
        },
        ttl: inner.hop_limit,
        tos: inner.traffic_class,
        ident: ident_of(quoted_l4),
        dont_frag: dont_frag(inner.l4_len()),
        payload_len: inner.l4_len(),
    };
    let after = header_sum(new_icmp.msg_type, new_icmp.msg_code, new_icmp.rest)
        + checksum::sum(0, &new_inner.to_bytes());
    let check = checksum::replace(icmp_check, before + quoted.0, after + quoted.1);

    move_front(frame, start + shrink, start + inner.off + quote, l3)?;
    let packet = frame
        .bytes_mut()
        .get_mut(l3..)
        .ok_or(DropReason::Truncated)?;
    let (outer, message) = packet
        .split_at_mut_checked(V4_HLEN)
        .ok_or(DropReason::Truncated)?;
    let mut icmp = icmpv4::Packet::new_unchecked(message);
    new_icmp.emit_with_checksum(&mut icmp, check);
    new_inner.emit(&mut ipv4::Packet::new_unchecked(icmp.payload_mut()));
    // The outer Identification hashes the ICMP header and the quoted IPv4
    // header, as they now are.
    let headers = icmp.into_inner().get(..ICMP_HLEN + V4_HLEN);
    let new_outer = ipv4::Repr {
        src_addr: to.src,
        dst_addr: to.dst,
        protocol: PROTO_ICMP,
        ttl: ip.hop_limit,
        tos: ip.traffic_class,
        ident: ident(headers.unwrap_or_default()),
        dont_frag: dont_frag(msg_len),
        payload_len: msg_len,
    };
    new_outer.emit(&mut ipv4::Packet::new_unchecked(outer));
    ethernet::set_network_ethertype(frame.bytes_mut(), l3, ETHERTYPE_IPV4)
}

/// Forward the ICMPv4 error `err` (from [`parse_icmp4_error`] on this
/// frame's packet `ip`) within IPv4: outer addresses to `to.src` and
/// `to.dst`, the quoted packet's addresses and ports to `to.inner_src` and
/// `to.inner_dst`; the outer header checksum, the quoted header checksum,
/// the quoted transport checksum (if quoted) and the ICMP checksum are
/// updated incrementally. Type, code and MTU are left alone.
///
/// # Errors
/// `IcmpNoSession` if `err` does not describe this packet; `Truncated` if
/// the headers are not in the frame.
pub(crate) fn icmp4_error_rewrite(
    frame: &mut Frame<'_>,
    ip: &Ipv4,
    err: &IcmpError4,
    to: &ErrorRewrite<[u8; 4]>,
) -> Result<(), DropReason> {
    let (l3, icmp_off) = (ip.off, ip.l4_off());
    let inner_off = icmp_off + ICMP_HLEN;
    if err.icmp_off != icmp_off || err.inner_off != inner_off {
        return Err(DropReason::IcmpNoSession);
    }
    let end = l3 + ip.total;
    if end < inner_off + err.inner_hlen + QUOTED_L4_MIN {
        return Err(DropReason::IcmpNoSession);
    }
    let (head, message) = frame
        .bytes_mut()
        .get_mut(..end)
        .and_then(|b| b.split_at_mut_checked(icmp_off))
        .ok_or(DropReason::Truncated)?;
    let outer_h = head.get_mut(l3..).ok_or(DropReason::Truncated)?;
    let mut icmp = icmpv4::Packet::new_checked(message)?;
    let icmp_check = icmp.checksum();
    let (inner_h, quoted_l4) = icmp
        .payload_mut()
        .split_at_mut_checked(err.inner_hlen)
        .ok_or(DropReason::Truncated)?;
    if outer_h.len() < V4_HLEN || inner_h.len() < V4_HLEN {
        return Err(DropReason::Truncated);
    }

    let mut outer = ipv4::Packet::new_unchecked(outer_h);
    let outer_check = Delta::default()
        .addr4(outer.src_addr(), to.src)
        .addr4(outer.dst_addr(), to.dst)
        .apply(outer.checksum());
    outer.set_checksum(outer_check);
    outer.set_src_addr(to.src);
    outer.set_dst_addr(to.dst);

    let inner_before = checksum::sum(0, inner_h);
    let mut inner = ipv4::Packet::new_unchecked(inner_h);
    let (old_src, old_dst) = (inner.src_addr(), inner.dst_addr());
    let inner_check = Delta::default()
        .addr4(old_src, to.inner_src.0)
        .addr4(old_dst, to.inner_dst.0)
        .apply(inner.checksum());
    inner.set_checksum(inner_check);
    inner.set_src_addr(to.inner_src.0);
    inner.set_dst_addr(to.inner_dst.0);
    let inner_after = checksum::sum(0, inner.into_inner());

    let quoted = rewrite_quoted_l4(
        quoted_l4,
        err.flow.proto,
        (
            checksum::addr_pair(&old_src, &old_dst),
            checksum::addr_pair(&to.inner_src.0, &to.inner_dst.0),
        ),
        (to.inner_src.1, to.inner_dst.1),
    );
    let check = checksum::replace(icmp_check, inner_before + quoted.0, inner_after + quoted.1);
    icmp.set_checksum(check);
    Ok(())
}

/// Forward the ICMPv6 error `err` (from [`parse_icmp6_error`] on this
/// frame's packet `ip`) within IPv6: as [`icmp4_error_rewrite`]; the
/// ICMPv6 checksum covers the outer addresses through its pseudo-header.
///
/// # Errors
/// `IcmpNoSession` if `err` does not describe this packet; `Truncated` if
/// the headers are not in the frame.
pub(crate) fn icmp6_error_rewrite(
    frame: &mut Frame<'_>,
    ip: &Ipv6,
    err: &IcmpError6,
    to: &ErrorRewrite<[u8; 16]>,
) -> Result<(), DropReason> {
    let (l3, icmp_off, inner) = (ip.off, ip.l4_off, &err.inner);
    if err.icmp_off != icmp_off || inner.off != icmp_off + ICMP_HLEN {
        return Err(DropReason::IcmpNoSession);
    }
    let end = ip.end();
    if end < inner.l4_off + QUOTED_L4_MIN {
        return Err(DropReason::IcmpNoSession);
    }
    let (head, message) = frame
        .bytes_mut()
        .get_mut(..end)
        .and_then(|b| b.split_at_mut_checked(icmp_off))
        .ok_or(DropReason::Truncated)?;
    let outer_h = head.get_mut(l3..).ok_or(DropReason::Truncated)?;
    let mut icmp = icmpv6::Packet::new_checked(message)?;
    let icmp_check = icmp.checksum();
    let (inner_h, quoted_l4) = icmp
        .payload_mut()
        .split_at_mut_checked(inner.header_len())
        .ok_or(DropReason::Truncated)?;
    if outer_h.len() < V6_HLEN || inner_h.len() < V6_HLEN {
        return Err(DropReason::Truncated);
    }

    let mut outer = ipv6::Packet::new_unchecked(outer_h);
    let outer_before = checksum::addr_pair(&outer.src_addr(), &outer.dst_addr());
    outer.set_src_addr(to.src);
    outer.set_dst_addr(to.dst);
    let mut inner = ipv6::Packet::new_unchecked(inner_h);
    let inner_before = checksum::addr_pair(&inner.src_addr(), &inner.dst_addr());
    let inner_after = checksum::addr_pair(&to.inner_src.0, &to.inner_dst.0);
    inner.set_src_addr(to.inner_src.0);
    inner.set_dst_addr(to.inner_dst.0);
    let quoted = rewrite_quoted_l4(
        quoted_l4,
        err.flow.proto,
        (inner_before, inner_after),
        (to.inner_src.1, to.inner_dst.1),
    );
    let check = checksum::replace(
        icmp_check,
        outer_before + inner_before + quoted.0,
        checksum::addr_pair(&to.src, &to.dst) + inner_after + quoted.1,
    );
    icmp.set_checksum(check);
    Ok(())
}

/// Rewrite the ports of the quoted TCP or UDP header `l4` (the quoted
/// bytes, at least [`QUOTED_L4_MIN`]), and its checksum if quoted, for the
/// new ports and the pseudo-header addresses' sum changing from `addrs.0`
/// to `addrs.1`. A quoted UDP checksum of 0 stays 0. Returns the sums of
/// the changed words before and after, for the ICMP checksum.
fn rewrite_quoted_l4(
    l4: &mut [u8],
    proto: u8,
    addrs: (u32, u32),
    (sport, dport): (u16, u16),
) -> (u32, u32) {
    let after = u32::from(sport) + u32::from(dport);
    // The new checksum, and the sums of the changed words with it.
    let update = |before: u32, check: u16, udp: bool| {
        let value = checksum::replace(check, addrs.0 + before, addrs.1 + after);
        let value = match (udp, check) {
            (true, 0) => 0,
            (true, _) => checksum::udp_nonzero(value),
            (false, _) => value,
        };
        let sums = (before + u32::from(check), after + u32::from(value));
        (value, sums)
    };
    match proto {
        PROTO_TCP => {
            let mut p = tcp::Packet::new_unchecked(l4);
            let before = u32::from(p.src_port()) + u32::from(p.dst_port());
            p.set_src_port(sport);
            p.set_dst_port(dport);
            if !p.has_checksum() {
                return (before, after);
            }
            let (value, sums) = update(before, p.checksum(), false);
            p.set_checksum(value);
            sums
        }
        PROTO_UDP => {
            let mut p = udp::Packet::new_unchecked(l4);
            let before = u32::from(p.src_port()) + u32::from(p.dst_port());
            p.set_src_port(sport);
            p.set_dst_port(dport);
            let (value, sums) = update(before, p.checksum(), true);
            p.set_checksum(value);
            sums
        }
        // The parsers let only TCP and UDP through.
        _ => (0, 0),
    }
}

/// What an ICMP header adds to its checksum, the checksum field left out:
/// the type and code word and the Rest of Header.
fn header_sum(msg_type: u8, msg_code: u8, rest: [u8; 4]) -> u32 {
    checksum::word(msg_type, msg_code) + checksum::sum(0, &rest)
}

/// The ICMPv6 header for an ICMPv4 error's type, code and Rest of Header
/// (§4.2), about a packet of `returned_total` bytes.
fn icmp4_to_6(
    icmp: &icmpv4::Packet<&[u8]>,
    returned_total: usize,
    mtu_cap: u32,
) -> Result<icmpv6::Repr, DropReason> {
    const NONE: [u8; 4] = [0; 4];
    let code = icmp.msg_code();
    // ICMPv6's Packet Too Big MTU and Parameter Problem pointer are the
    // whole Rest of Header, one 32-bit word.
    let (msg_type, msg_code, rest) = match (icmp.msg_type(), code) {
        (V4_DEST_UNREACHABLE, 0 | 1 | 5..=8 | 11 | 12) => (V6_DEST_UNREACHABLE, 0, NONE),
        (V4_DEST_UNREACHABLE, 9 | 10 | 13 | 15) => (V6_DEST_UNREACHABLE, 1, NONE),
        (V4_DEST_UNREACHABLE, 3) => (V6_DEST_UNREACHABLE, 4, NONE),
        // The pointer names the IPv6 Next Header field (byte 6).
        (V4_DEST_UNREACHABLE, 2) => (V6_PARAMETER_PROBLEM, 1, 6u32.to_be_bytes()),
        (V4_DEST_UNREACHABLE, 4) => {
            let mtu = mtu4_to_6(icmp.next_hop_mtu(), returned_total, mtu_cap);
            (V6_PACKET_TOO_BIG, 0, mtu.to_be_bytes())
        }
        (V4_TIME_EXCEEDED, _) => (V6_TIME_EXCEEDED, code, NONE),
        (V4_PARAMETER_PROBLEM, 0 | 2) => {
            let pointer = pointer4_to_6(icmp.pointer()).ok_or(DropReason::IcmpUnsupported)?;
            (V6_PARAMETER_PROBLEM, 0, u32::from(pointer).to_be_bytes())
        }
        _ => return Err(DropReason::IcmpUnsupported),
    };
    Ok(icmpv6::Repr {
        msg_type,
        msg_code,
        rest,
    })
}

/// The ICMPv4 header for an ICMPv6 error's type, code and Rest of Header
/// (§5.2); the quoted packet's headers shrink by `header_diff`.
fn icmp6_to_4(
    icmp: &icmpv6::Packet<&[u8]>,
    header_diff: usize,
    mtu_cap: u32,
) -> Result<icmpv4::Repr, DropReason> {
    const NONE: [u8; 4] = [0; 4];
    let code = icmp.msg_code();
    let (msg_type, msg_code, rest) = match (icmp.msg_type(), code) {
        (V6_DEST_UNREACHABLE, 0 | 2 | 3) => (V4_DEST_UNREACHABLE, 1, NONE),
        (V6_DEST_UNREACHABLE, 1) => (V4_DEST_UNREACHABLE, 10, NONE),
        (V6_DEST_UNREACHABLE, 4) => (V4_DEST_UNREACHABLE, 3, NONE),
        (V6_PACKET_TOO_BIG, _) => {
            let mtu = icmp
                .word()
                .saturating_sub(header_diff as u32)
                .min(mtu_cap)
                .min(u32::from(u16::MAX)) as u16;
            (V4_DEST_UNREACHABLE, 4, icmpv4::Repr::mtu_rest(mtu))
        }
        (V6_TIME_EXCEEDED, _) => (V4_TIME_EXCEEDED, code, NONE),
        (V6_PARAMETER_PROBLEM, 0) => {
            let pointer = pointer6_to_4(icmp.word()).ok_or(DropReason::IcmpUnsupported)?;
            (V4_PARAMETER_PROBLEM, 0, icmpv4::Repr::pointer_rest(pointer))
        }
        (V6_PARAMETER_PROBLEM, 1) => (V4_DEST_UNREACHABLE, 2, NONE),
        _ => return Err(DropReason::IcmpUnsupported),
    };
    Ok(icmpv4::Repr {
        msg_type,
        msg_code,
        rest,
    })
}

/// The ICMPv6 Packet Too Big MTU for an ICMPv4 "fragmentation needed"
/// advertising `advertised` about a packet of `returned_total` bytes
/// (§4.2 and §6, see the module docs).
fn mtu4_to_6(advertised: u16, returned_total: usize, cap: u32) -> u32 {
    let advertised = match advertised {
        0 => PLATEAUS
            .iter()
            .copied()
            .find(|&p| usize::from(p) < returned_total)
            .unwrap_or(68),
        mtu => mtu,
    };
    (u32::from(advertised) + GROWTH as u32)
        .min(cap)
        .max(IPV6_MIN_MTU as u32)
}

/// RFC 7915 Figure 3: an ICMPv4 Parameter Problem pointer into the IPv4
/// header, as a pointer into the IPv6 header; `None` for "n/a".
fn pointer4_to_6(pointer: u8) -> Option<u8> {
    match pointer {
        0 => Some(0),        // Version/IHL -> Version/Traffic Class
        1 => Some(1),        // Type Of Service -> Traffic Class/Flow Label
        2 | 3 => Some(4),    // Total Length -> Payload Length
        8 => Some(7),        // Time to Live -> Hop Limit
        9 => Some(6),        // Protocol -> Next Header
        12..=15 => Some(8),  // Source Address
        16..=19 => Some(24), // Destination Address
        _ => None,           // Identification, Flags/Fragment Offset, Header Checksum, options
    }
}

/// RFC 7915 Figure 6: an ICMPv6 Parameter Problem pointer into the IPv6
/// header, as a pointer into the IPv4 header; `None` for "n/a".
fn pointer6_to_4(pointer: u32) -> Option<u8> {
    match pointer {
        0 => Some(0),        // Version/Traffic Class -> Version/IHL, Type Of Service
        1 => Some(1),        // Traffic Class/Flow Label -> Type Of Service
        4 | 5 => Some(2),    // Payload Length -> Total Length
        6 => Some(9),        // Next Header -> Protocol
        7 => Some(8),        // Hop Limit -> Time to Live
        8..=23 => Some(12),  // Source Address
        24..=39 => Some(16), // Destination Address
        _ => None,           // Flow Label, extension headers, beyond
    }
}

// ----- headers and checksums --------------------------------------------

/// An IPv4 Identification for a translated packet: FNV-1a over `bytes`
/// (see the module docs).
#[inline(always)]
fn ident(bytes: &[u8]) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for &byte in bytes {
        h ^= u32::from(byte);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h ^ (h >> 16)) as u16
}

/// The Identification of a translated packet whose transport header and
/// payload are `l4`: the hash of its first [`IDENT_LEN`] bytes (of all of
/// them if fewer).
#[inline(always)]
fn ident_of(l4: &[u8]) -> u16 {
    match l4.first_chunk::<IDENT_LEN>() {
        Some(head) => ident(head),
        None => ident(l4),
    }
}

/// Move the frame's first `l3` bytes (the Ethernet header) from its start
/// to `new_start` (a buffer index, before or after the start) and make the
/// frame `new_start..new_end`; every other byte stays where it is.
fn move_front(
    frame: &mut Frame<'_>,
    new_start: usize,
    new_end: usize,
    l3: usize,
) -> Result<(), DropReason> {
    let (start, end) = (frame.start(), frame.end());
    let low = start.min(new_start);
    if new_end < new_start + l3 || !frame.set_range(low, end) {
        return Err(DropReason::Truncated);
    }
    let (from, to) = (start - low, new_start - low);
    let window = frame.bytes_mut();
    if from.max(to) + l3 > window.len() {
        frame.set_range(start, end);
        return Err(DropReason::Truncated);
    }
    window.copy_within(from..from + l3, to);
    if frame.set_range(new_start, new_end) {
        Ok(())
    } else {
        Err(DropReason::Truncated)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::test_rng::Rng;
    use crate::wire;
    use alloc::vec::Vec;
    use etherparse::{
        IpDscp, IpEcn, IpHeaders, IpNumber, Ipv4Header, Ipv6Extensions, Ipv6FlowLabel, Ipv6Header,
        Ipv6RawExtHeader, PacketBuilder, TcpHeader, UdpHeader,
    };

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const CIP6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const R6: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe,
    ];
    const LIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    const RIP6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const CIP4: [u8; 4] = [192, 0, 2, 10];
    const VIP4: [u8; 4] = [198, 51, 100, 1];
    const LIP4: [u8; 4] = [10, 0, 0, 100];
    const RIP4: [u8; 4] = [10, 0, 0, 2];
    const R4: [u8; 4] = [192, 0, 2, 254];
    const CPORT: u16 = 40000;
    const VPORT: u16 = 80;
    const LPORT: u16 = 50000;
    const RPORT: u16 = 8080;
    const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";

    // ----- building and checking frames, independently of the code above

    fn v6_header(src: [u8; 16], dst: [u8; 16]) -> Ipv6Header {
        Ipv6Header {
            traffic_class: 0xb9,
            flow_label: Ipv6FlowLabel::try_new(0x12345).unwrap(),
            payload_length: 0,
            next_header: IpNumber::TCP,
            hop_limit: 57,
            source: src,
            destination: dst,
        }
    }

    fn v4_header(src: [u8; 4], dst: [u8; 4]) -> Ipv4Header {
        Ipv4Header {
            dscp: IpDscp::try_new(0xb9 >> 2).unwrap(),
            ecn: IpEcn::try_new(0xb9 & 3).unwrap(),
            time_to_live: 61,
            source: src,
            destination: dst,
            ..Default::default()
        }
    }

    fn tcp6(exts: Ipv6Extensions, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv6(v6_header(CIP6, VIP6), exts))
            .tcp(CPORT, VPORT, 0x0102_0304, 64240)
            .ack(0x0a0b_0c0d)
            .psh()
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn tcp4(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(v4_header(RIP4, LIP4), Default::default()))
            .tcp(RPORT, LPORT, 0x7000_0001, 29200)
            .ack(0x0102_0304)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp6(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv6(v6_header(CIP6, VIP6), Default::default()))
            .udp(CPORT, 53)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(v4_header(RIP4, LIP4), Default::default()))
            .udp(5353, LPORT)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    /// A bare IPv4 packet (the one an ICMP error quotes).
    fn inner4_tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, 0x1111_2222, 1000)
            .ack(0x3333_4444)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn inner4_udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4(src.0, dst.0, 64)
            .udp(src.1, dst.1)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn inner6_tcp(src: ([u8; 16], u16), dst: ([u8; 16], u16), payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv6(src.0, dst.0, 55)
            .tcp(src.1, dst.1, 0x5555_6666, 1000)
            .ack(0x7777_8888)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn inner6_udp(src: ([u8; 16], u16), dst: ([u8; 16], u16), payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv6(src.0, dst.0, 55)
            .udp(src.1, dst.1)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn icmp4_error(src: [u8; 4], dst: [u8; 4], t: (u8, u8, [u8; 4]), quote: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 50)
            .icmpv4_raw(t.0, t.1, t.2)
            .write(&mut out, quote)
            .unwrap();
        out
    }

    fn icmp6_error(src: [u8; 16], dst: [u8; 16], t: (u8, u8, [u8; 4]), quote: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 60)
            .icmpv6_raw(t.0, t.1, t.2)
            .write(&mut out, quote)
            .unwrap();
        out
    }

    /// RFC 1071 over the concatenation of `parts`, folded, not
    /// complemented: 0xffff when a checksum in them is right.
    fn folded(parts: &[&[u8]]) -> u16 {
        let data = parts.concat();
        let mut acc: u64 = data
            .chunks(2)
            .map(|c| (u64::from(c[0]) << 8) | u64::from(*c.get(1).unwrap_or(&0)))
            .sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    fn pseudo4(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> Vec<u8> {
        let mut p = Vec::from(src);
        p.extend(dst);
        p.extend([0, proto]);
        p.extend((len as u16).to_be_bytes());
        p
    }

    fn pseudo6_bytes(src: [u8; 16], dst: [u8; 16], next: u8, len: usize) -> Vec<u8> {
        let mut p = Vec::from(src);
        p.extend(dst);
        p.extend((len as u32).to_be_bytes());
        p.extend([0, 0, 0, next]);
        p
    }

    /// The frame in a buffer with `headroom` bytes before it; `f` applied;
    /// the result, the frame after, and where it starts in the buffer.
    fn run(
        frame: &[u8],
        headroom: usize,
        f: impl FnOnce(&mut Frame<'_>) -> Result<(), DropReason>,
    ) -> (Result<(), DropReason>, Vec<u8>, usize) {
        let mut buf = alloc::vec![0xee; headroom];
        buf.extend_from_slice(frame);
        buf.extend_from_slice(&[0xee; 8]);
        let mut fr = Frame::new(&mut buf, headroom, headroom + frame.len()).unwrap();
        let r = f(&mut fr);
        (r, fr.bytes().to_vec(), fr.start())
    }

    fn ip4_of(frame: &[u8]) -> Ipv4 {
        let (ethertype, l3) = wire::ethernet(frame).unwrap();
        assert_eq!(ethertype, ETHERTYPE_IPV4);
        Ipv4::parse(frame, l3).unwrap()
    }

    fn ip6_of(frame: &[u8]) -> Ipv6 {
        let (ethertype, l3) = wire::ethernet(frame).unwrap();
        assert_eq!(ethertype, ETHERTYPE_IPV6);
        Ipv6::parse(frame, l3).unwrap()
    }

    fn to_v4(frame: &[u8], src: [u8; 4], dst: [u8; 4]) -> (Result<(), DropReason>, Vec<u8>, usize) {
        let ip = ip6_of(frame);
        run(frame, Frame::HEADROOM, |f| {
            let ip4 = v6_to_v4(f, &ip, src, dst)?;
            // The summary returned is the header as parsed.
            let (_, l3) = wire::ethernet(f.bytes()).unwrap();
            let parsed = Ipv4::parse(f.bytes(), l3).unwrap();
            let fields = |h: &Ipv4| (h.off, h.hlen, h.total, h.proto, h.src, h.dst);
            assert_eq!(fields(&ip4), fields(&parsed));
            assert!(!parsed.fragment && parsed.checksum_ok && !ip4.fragment && ip4.checksum_ok);
            Ok(())
        })
    }

    fn to_v6(
        frame: &[u8],
        src: [u8; 16],
        dst: [u8; 16],
    ) -> (Result<(), DropReason>, Vec<u8>, usize) {
        let ip = ip4_of(frame);
        run(frame, Frame::HEADROOM, |f| v4_to_v6(f, &ip, src, dst))
    }

    /// An Ethernet + IPv4 frame as etherparse reads it, its header
    /// checksum and lengths checked; the header and the IP payload.
    fn check_v4(frame: &[u8]) -> (Ipv4Header, &[u8]) {
        assert_eq!(&frame[12..14], &[0x08, 0x00]);
        let (h, rest) = Ipv4Header::from_slice(&frame[14..]).unwrap();
        assert_eq!(
            h.header_checksum,
            h.calc_header_checksum(),
            "IPv4 header checksum"
        );
        assert_eq!(folded(&[&frame[14..34]]), 0xffff);
        assert_eq!(usize::from(h.total_len), frame.len() - 14, "total length");
        assert!(!h.more_fragments && h.fragment_offset.value() == 0);
        (h, rest)
    }

    /// [`check_v4`] for a translated packet: DF per RFC 7915 §5.1.
    fn check_xlat4(frame: &[u8]) -> (Ipv4Header, &[u8]) {
        let (h, rest) = check_v4(frame);
        assert_eq!(h.dont_fragment, h.total_len > 1260, "DF per RFC 7915 §5.1");
        (h, rest)
    }

    fn check_v6(frame: &[u8]) -> (Ipv6Header, &[u8]) {
        assert_eq!(&frame[12..14], &[0x86, 0xdd]);
        let (h, rest) = Ipv6Header::from_slice(&frame[14..]).unwrap();
        assert_eq!(usize::from(h.payload_length), rest.len(), "payload length");
        (h, rest)
    }

    /// [`super::icmp4_to_6`] on the header of type `kind`, `code` and
    /// Rest of Header `rest`: the new type, code and Rest of Header.
    fn icmp4_to_6(
        kind: u8,
        code: u8,
        rest: [u8; 4],
        returned_total: usize,
        cap: u32,
    ) -> Result<(u8, u8, [u8; 4]), DropReason> {
        let mut h = [0u8; 8];
        icmpv4::Repr {
            msg_type: kind,
            msg_code: code,
            rest,
        }
        .emit(&mut icmpv4::Packet::new_unchecked(&mut h[..]));
        let icmp = icmpv4::Packet::new_checked(&h[..]).unwrap();
        super::icmp4_to_6(&icmp, returned_total, cap).map(|r| (r.msg_type, r.msg_code, r.rest))
    }

    /// [`super::icmp6_to_4`], as [`icmp4_to_6`].
    fn icmp6_to_4(
        kind: u8,
        code: u8,
        rest: [u8; 4],
        header_diff: usize,
        cap: u32,
    ) -> Result<(u8, u8, [u8; 4]), DropReason> {
        let mut h = [0u8; 8];
        icmpv6::Repr {
            msg_type: kind,
            msg_code: code,
            rest,
        }
        .emit(&mut icmpv6::Packet::new_unchecked(&mut h[..]), 0);
        let icmp = icmpv6::Packet::new_checked(&h[..]).unwrap();
        super::icmp6_to_4(&icmp, header_diff, cap).map(|r| (r.msg_type, r.msg_code, r.rest))
    }

    // ----- packets -------------------------------------------------------

    #[test]
    fn tcp_six_to_four_and_back() {
        let orig = tcp6(Default::default(), PAYLOAD);
        let (r, v4, start) = to_v4(&orig, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        // The payload did not move: the frame starts 20 bytes later.
        assert_eq!(start, Frame::HEADROOM + 20);
        assert_eq!(v4.len(), orig.len() - 20);
        assert_eq!(&v4[..12], &orig[..12], "MAC addresses kept");
        let (h, seg) = check_xlat4(&v4);
        assert_eq!((h.source, h.destination), (LIP4, RIP4));
        assert_eq!(h.protocol, IpNumber::TCP);
        assert_eq!(
            (h.dscp.value() << 2) | h.ecn.value(),
            0xb9,
            "TOS = traffic class"
        );
        assert_eq!(h.time_to_live, 57, "TTL = hop limit, not decremented");
        assert_eq!(&seg[..16], &orig[54..70], "ports, numbers, flags, window");
        assert_eq!(&seg[18..], &orig[72..], "urgent pointer, payload");
        let (tcp, payload) = TcpHeader::from_slice(seg).unwrap();
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&h, payload).unwrap());
        assert_eq!(folded(&[&pseudo4(LIP4, RIP4, 6, seg.len()), seg]), 0xffff);

        // Back: the original but for the flow label (RFC 7915 §4.1: 0).
        let (r, back, start) = to_v6(&v4, CIP6, VIP6);
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM - 20);
        let mut expect = orig.clone();
        expect[15] &= 0xf0;
        expect[16] = 0;
        expect[17] = 0;
        assert_eq!(back, expect);
    }

    #[test]
    fn tcp_four_to_six() {
        let orig = tcp4(PAYLOAD);
        let (r, v6, start) = to_v6(&orig, VIP6, CIP6);
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM - 20);
        let (h, seg) = check_v6(&v6);
        assert_eq!((h.source, h.destination), (VIP6, CIP6));
        assert_eq!(h.traffic_class, 0xb9);
        assert_eq!(h.flow_label.value(), 0);
        assert_eq!(h.hop_limit, 61);
        assert_eq!(h.next_header, IpNumber::TCP);
        assert_eq!(&seg[..16], &orig[34..50]);
        let (tcp, payload) = TcpHeader::from_slice(seg).unwrap();
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv6(&h, payload).unwrap());
        assert_eq!(
            folded(&[&pseudo6_bytes(VIP6, CIP6, 6, seg.len()), seg]),
            0xffff
        );
    }

    #[test]
    fn udp_both_ways() {
        let orig = udp6(b"a DNS query, or so");
        let (r, v4, _) = to_v4(&orig, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        let (h, seg) = check_xlat4(&v4);
        assert_eq!(h.protocol, IpNumber::UDP);
        let (udp, payload) = UdpHeader::from_slice(seg).unwrap();
        assert_ne!(udp.checksum, 0, "a translated datagram keeps a checksum");
        assert_eq!(udp.checksum, udp.calc_checksum_ipv4(&h, payload).unwrap());
        let (r, back, _) = to_v6(&v4, CIP6, VIP6);
        assert_eq!(r, Ok(()));
        let mut expect = orig.clone();
        expect[15] &= 0xf0;
        expect[16] = 0;
        expect[17] = 0;
        assert_eq!(back, expect);

        // IPv4 without a checksum: one is computed for IPv6.
        let mut none = udp4(b"no checksum here!");
        none[40] = 0;
        none[41] = 0;
        let (r, v6, _) = to_v6(&none, VIP6, CIP6);
        assert_eq!(r, Ok(()));
        let (h, seg) = check_v6(&v6);
        let (udp, payload) = UdpHeader::from_slice(seg).unwrap();
        assert_ne!(udp.checksum, 0);
        assert_eq!(udp.checksum, udp.calc_checksum_ipv6(&h, payload).unwrap());

        // IPv6 without one is invalid (RFC 8200 §8.1): refused, unchanged.
        let mut bad = orig.clone();
        bad[60] = 0;
        bad[61] = 0;
        let (r, out, start) = to_v4(&bad, LIP4, RIP4);
        assert_eq!(r, Err(DropReason::BadL4Header));
        assert_eq!((out, start), (bad, Frame::HEADROOM));
    }

    #[test]
    fn udp_checksum_that_sums_to_zero_is_sent_as_ffff() {
        // Find a payload whose translated checksum computes to 0.
        for n in 0u16..=u16::MAX {
            let orig = udp6(&n.to_be_bytes());
            let (r, v4, _) = to_v4(&orig, LIP4, RIP4);
            assert_eq!(r, Ok(()));
            let seg = &v4[34..];
            if seg[6..8] == [0xff, 0xff] {
                // 0xffff and 0 are the same sum: the datagram verifies.
                assert_eq!(folded(&[&pseudo4(LIP4, RIP4, 17, seg.len()), seg]), 0xffff);
                return;
            }
        }
        panic!("no payload gives a zero checksum");
    }

    #[test]
    fn icmp_echo_both_ways() {
        let mut orig = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv6(v6_header(CIP6, VIP6), Default::default()))
            .icmpv6_echo_request(0x1234, 7)
            .write(&mut orig, b"ping payload")
            .unwrap();
        let (r, v4, _) = to_v4(&orig, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        let (h, msg) = check_xlat4(&v4);
        assert_eq!(h.protocol, IpNumber::ICMP);
        assert_eq!(&msg[..2], &[8, 0], "echo request");
        assert_eq!(folded(&[msg]), 0xffff, "ICMP checksum, no pseudo-header");
        assert_eq!(&msg[4..], &orig[58..], "identifier, sequence, data");
        let (r, back, _) = to_v6(&v4, CIP6, VIP6);
        assert_eq!(r, Ok(()));
        let mut expect = orig.clone();
        expect[15] &= 0xf0;
        expect[16] = 0;
        expect[17] = 0;
        assert_eq!(back, expect);

        // An echo reply from IPv4 becomes type 129 with the pseudo-header.
        let mut reply = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(v4_header(RIP4, LIP4), Default::default()))
            .icmpv4_echo_reply(0x1234, 7)
            .write(&mut reply, b"pong")
            .unwrap();
        let (r, v6, _) = to_v6(&reply, VIP6, CIP6);
        assert_eq!(r, Ok(()));
        let (h, msg) = check_v6(&v6);
        assert_eq!(h.next_header, IpNumber::IPV6_ICMP);
        assert_eq!(&msg[..2], &[129, 0]);
        let slice = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
        assert!(slice.is_checksum_valid(VIP6, CIP6));

        // Other ICMP is not translated here.
        let mut ns = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(CIP6, VIP6, 255)
            .icmpv6_raw(135, 0, [0; 4])
            .write(&mut ns, &[0; 16])
            .unwrap();
        assert_eq!(to_v4(&ns, LIP4, RIP4).0, Err(DropReason::IcmpUnsupported));
        let mut ts = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(RIP4, LIP4, 64)
            .icmpv4_raw(13, 0, [0; 4])
            .write(&mut ts, &[0; 12])
            .unwrap();
        assert_eq!(to_v6(&ts, VIP6, CIP6).0, Err(DropReason::IcmpUnsupported));
    }

    #[test]
    fn extension_headers_do_not_survive_translation() {
        let exts = Ipv6Extensions {
            hop_by_hop_options: Some(
                Ipv6RawExtHeader::new_raw(IpNumber(0), &[5, 2, 0, 0, 1, 0]).unwrap(),
            ),
            destination_options: Some(
                Ipv6RawExtHeader::new_raw(
                    IpNumber(0),
                    &[1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                )
                .unwrap(),
            ),
            ..Default::default()
        };
        let orig = tcp6(exts, PAYLOAD);
        let ip = ip6_of(&orig);
        assert_eq!(ip.header_len(), 40 + 8 + 16);
        let (r, v4, start) = to_v4(&orig, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM + 44);
        let (h, seg) = check_xlat4(&v4);
        assert_eq!(h.protocol, IpNumber::TCP);
        assert_eq!(seg.len(), 20 + PAYLOAD.len());
        let (tcp, payload) = TcpHeader::from_slice(seg).unwrap();
        assert_eq!(tcp.checksum, tcp.calc_checksum_ipv4(&h, payload).unwrap());
    }

    #[test]
    fn df_and_identification() {
        let small = tcp6(Default::default(), PAYLOAD);
        let (_, a, _) = to_v4(&small, LIP4, RIP4);
        assert!(!check_xlat4(&a).0.dont_fragment);
        // 20 + 20 + 1220 = 1260: still DF clear; one more byte sets it.
        for (len, df) in [(1220, false), (1221, true), (1400, true)] {
            let p = alloc::vec![7u8; len];
            let (r, v4, _) = to_v4(&tcp6(Default::default(), &p), LIP4, RIP4);
            assert_eq!(r, Ok(()));
            assert_eq!(check_xlat4(&v4).0.dont_fragment, df, "{len}");
        }
        // A different segment gets a different Identification; the same
        // segment the same one.
        let other = tcp6(Default::default(), b"GET /other HTTP/1.1\r\n\r\n");
        let (_, b, _) = to_v4(&other, LIP4, RIP4);
        let (_, c, _) = to_v4(&small, LIP4, RIP4);
        let id = |f: &[u8]| check_xlat4(f).0.identification;
        assert_ne!(id(&a), id(&b));
        assert_eq!(id(&a), id(&c));
    }

    #[test]
    fn refusals_leave_the_frame_unchanged() {
        let unchanged = |frame: &[u8], got: (Result<(), DropReason>, Vec<u8>, usize), e| {
            assert_eq!(got.0, Err(e));
            assert_eq!(got.1, frame);
            assert_eq!(got.2, Frame::HEADROOM);
        };
        // An IPv6 fragment.
        let exts = Ipv6Extensions {
            fragment: Some(etherparse::Ipv6FragmentHeader::new(
                IpNumber::TCP,
                etherparse::IpFragOffset::ZERO,
                true,
                99,
            )),
            ..Default::default()
        };
        let frag = tcp6(exts, PAYLOAD);
        assert!(ip6_of(&frag).fragment);
        unchanged(&frag, to_v4(&frag, LIP4, RIP4), DropReason::Fragment);
        // An IPv4 fragment (more fragments set).
        let mut frag4 = tcp4(PAYLOAD);
        frag4[20] |= 0x20;
        let c = checksum::of(&[&frag4[14..24], &[0, 0], &frag4[26..34]].concat());
        frag4[24..26].copy_from_slice(&c.to_be_bytes());
        unchanged(&frag4, to_v6(&frag4, VIP6, CIP6), DropReason::Fragment);
        // IPv4 options.
        let mut opts = Vec::new();
        let mut h = v4_header(RIP4, LIP4);
        h.options = [1, 1, 1, 1][..].try_into().unwrap();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ip(IpHeaders::Ipv4(h, Default::default()))
            .udp(1, 2)
            .write(&mut opts, b"x")
            .unwrap();
        unchanged(&opts, to_v6(&opts, VIP6, CIP6), DropReason::IpOptions);
        // Too little headroom to grow.
        let v4 = tcp4(PAYLOAD);
        let ip = ip4_of(&v4);
        let got = run(&v4, 19, |f| v4_to_v6(f, &ip, VIP6, CIP6));
        assert_eq!(
            (got.0, &got.1[..], got.2),
            (Err(DropReason::Truncated), &v4[..], 19)
        );
        assert_eq!(run(&v4, 20, |f| v4_to_v6(f, &ip, VIP6, CIP6)).0, Ok(()));
        // A TCP header cut short by the IP length.
        let mut short = tcp6(Default::default(), b"");
        short.truncate(14 + 40 + 12);
        short[18..20].copy_from_slice(&12u16.to_be_bytes());
        unchanged(&short, to_v4(&short, LIP4, RIP4), DropReason::Truncated);
        // A protocol number IPv6 would read as an extension header.
        let mut hop = udp4(b"x");
        hop[23] = 0;
        unchanged(
            &hop,
            to_v6(&hop, VIP6, CIP6),
            DropReason::UnsupportedProtocol,
        );
    }

    #[test]
    fn other_protocols_are_translated_as_is() {
        let mut gre = udp6(b"pretend GRE");
        gre[20] = 47;
        let (r, v4, _) = to_v4(&gre, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        let (h, seg) = check_xlat4(&v4);
        assert_eq!(h.protocol, IpNumber(47));
        assert_eq!(seg, &gre[54..]);
    }

    #[test]
    fn vlan_tagged_frames_keep_their_tag() {
        let mut tagged = tcp6(Default::default(), PAYLOAD);
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
        let (r, v4, _) = to_v4(&tagged, LIP4, RIP4);
        assert_eq!(r, Ok(()));
        assert_eq!(&v4[..16], &tagged[..16], "MACs and the tag");
        assert_eq!(&v4[16..18], &[0x08, 0x00]);
        let (h, _) = Ipv4Header::from_slice(&v4[18..]).unwrap();
        assert_eq!(h.header_checksum, h.calc_header_checksum());
        let (r, back, _) = to_v6(&v4, CIP6, VIP6);
        assert_eq!(r, Ok(()));
        assert_eq!(&back[16..18], &[0x86, 0xdd]);
        assert_eq!(back.len(), tagged.len());
    }

    // ----- ICMP errors ---------------------------------------------------

    /// The RS side's view of the session: LIP:lport -> RIP:rport.
    fn to_client6() -> ErrorRewrite<[u8; 16]> {
        ErrorRewrite {
            src: VIP6,
            dst: CIP6,
            inner_src: (CIP6, CPORT),
            inner_dst: (VIP6, VPORT),
        }
    }

    fn to_server4() -> ErrorRewrite<[u8; 4]> {
        ErrorRewrite {
            src: LIP4,
            dst: RIP4,
            inner_src: (RIP4, RPORT),
            inner_dst: (LIP4, LPORT),
        }
    }

    fn error4_to_v6(frame: &[u8], cap: u32) -> (Result<(), DropReason>, Vec<u8>, usize) {
        let ip = ip4_of(frame);
        let err = parse_icmp4_error(frame, &ip).unwrap();
        run(frame, Frame::HEADROOM, |f| {
            icmp4_error_to_v6(f, &ip, &err, &to_client6(), cap)
        })
    }

    fn error6_to_v4(frame: &[u8], cap: u32) -> (Result<(), DropReason>, Vec<u8>, usize) {
        let ip = ip6_of(frame);
        let err = parse_icmp6_error(frame, &ip).unwrap();
        run(frame, Frame::HEADROOM, |f| {
            icmp6_error_to_v4(f, &ip, &err, &to_server4(), cap)
        })
    }

    #[test]
    fn frag_needed_becomes_packet_too_big() {
        let quoted = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        let frame = icmp4_error(R4, LIP4, (3, 4, [0, 0, 0x05, 0x78]), &quoted);
        let ip = ip4_of(&frame);
        let err = parse_icmp4_error(&frame, &ip).unwrap();
        assert_eq!((err.kind, err.code), (3, 4));
        assert_eq!(
            err.flow,
            Flow {
                proto: PROTO_TCP,
                src: LIP4,
                sport: LPORT,
                dst: RIP4,
                dport: RPORT
            }
        );
        let (r, v6, start) = error4_to_v6(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        // Outer and quoted headers both grew into the headroom.
        assert_eq!(start, Frame::HEADROOM - 40);
        assert_eq!(v6.len(), frame.len() + 40);
        let (h, msg) = check_v6(&v6);
        assert_eq!((h.source, h.destination), (VIP6, CIP6));
        assert_eq!(h.next_header, IpNumber::IPV6_ICMP);
        assert_eq!(h.hop_limit, 50);
        let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
        assert_eq!((icmp.type_u8(), icmp.code_u8()), (2, 0));
        assert_eq!(u32::from_be_bytes(icmp.bytes5to8()), 1400 + 20, "MTU + 20");
        assert!(icmp.is_checksum_valid(VIP6, CIP6));
        // The quoted packet, now IPv6 from the client to the VIP.
        let (inner, rest) = Ipv6Header::from_slice(icmp.payload()).unwrap();
        assert_eq!((inner.source, inner.destination), (CIP6, VIP6));
        assert_eq!(inner.next_header, IpNumber::TCP);
        assert_eq!(
            inner.hop_limit, 64,
            "quoted hop limit = TTL, not decremented"
        );
        assert_eq!(usize::from(inner.payload_length), quoted.len() - 20);
        let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
        assert_eq!((tcp.source_port, tcp.destination_port), (CPORT, VPORT));
        assert_eq!(
            (tcp.sequence_number, tcp.acknowledgment_number),
            (0x1111_2222, 0x3333_4444)
        );
        // Quoted whole, so its checksum can be checked: it was updated.
        assert_eq!(
            tcp.checksum,
            tcp.calc_checksum_ipv6(&inner, payload).unwrap()
        );
        assert_eq!(payload, PAYLOAD);
    }

    #[test]
    fn packet_too_big_becomes_frag_needed() {
        let quoted = inner6_udp(
            (VIP6, VPORT),
            (CIP6, CPORT),
            b"a reply too big for the path",
        );
        let frame = icmp6_error(R6, VIP6, (2, 0, 1500u32.to_be_bytes()), &quoted);
        let ip = ip6_of(&frame);
        let err = parse_icmp6_error(&frame, &ip).unwrap();
        assert_eq!(
            err.flow,
            Flow {
                proto: PROTO_UDP,
                src: VIP6,
                sport: VPORT,
                dst: CIP6,
                dport: CPORT
            }
        );
        let (r, v4, start) = error6_to_v4(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM + 40);
        let (h, msg) = check_xlat4(&v4);
        assert_eq!((h.source, h.destination), (LIP4, RIP4));
        assert_eq!(h.protocol, IpNumber::ICMP);
        assert_eq!(h.time_to_live, 60);
        assert_eq!(&msg[..2], &[3, 4], "fragmentation needed");
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), 1480, "MTU - 20");
        assert_eq!(&msg[4..6], &[0, 0]);
        assert_eq!(folded(&[msg]), 0xffff, "ICMP checksum");
        let (inner, rest) = Ipv4Header::from_slice(&msg[8..]).unwrap();
        assert_eq!(inner.header_checksum, inner.calc_header_checksum());
        assert_eq!((inner.source, inner.destination), (RIP4, LIP4));
        assert_eq!(inner.protocol, IpNumber::UDP);
        assert_eq!(inner.time_to_live, 55);
        assert_eq!(usize::from(inner.total_len), quoted.len() - 20);
        let (udp, payload) = UdpHeader::from_slice(rest).unwrap();
        assert_eq!((udp.source_port, udp.destination_port), (RPORT, LPORT));
        assert_eq!(
            udp.checksum,
            udp.calc_checksum_ipv4(&inner, payload).unwrap()
        );
    }

    #[test]
    fn translated_error_round_trip() {
        // RS side: frag needed about LIP -> RIP; to the client and back.
        let quoted = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        let frame = icmp4_error(R4, LIP4, (3, 4, [0, 0, 0x05, 0x78]), &quoted);
        let (_, v6, _) = error4_to_v6(&frame, NO_MTU_CAP);
        // The client's PTB quotes CIP -> VIP; back to the RS side.
        let ip = ip6_of(&v6);
        let err = parse_icmp6_error(&v6, &ip).unwrap();
        let back_to = ErrorRewrite {
            src: R4,
            dst: LIP4,
            inner_src: (LIP4, LPORT),
            inner_dst: (RIP4, RPORT),
        };
        let (r, v4, start) = run(&v6, Frame::HEADROOM, |f| {
            icmp6_error_to_v4(f, &ip, &err, &back_to, NO_MTU_CAP)
        });
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM + 40);
        assert_eq!(v4.len(), frame.len());
        let (h, msg) = check_xlat4(&v4);
        assert_eq!((h.source, h.destination), (R4, LIP4));
        assert_eq!(
            &msg[..8],
            &[3, 4, msg[2], msg[3], 0, 0, 0x05, 0x78],
            "MTU 1400 again"
        );
        assert_eq!(folded(&[msg]), 0xffff);
        // Lost on the way: the quoted Identification, flags, checksum.
        let (inner, _) = Ipv4Header::from_slice(&msg[8..]).unwrap();
        assert_eq!(inner.header_checksum, inner.calc_header_checksum());
        assert_eq!(&msg[8..12], &quoted[..4]);
        assert_eq!(&msg[16..18], &quoted[8..10], "TTL, protocol");
        assert_eq!(&msg[20..28], &quoted[12..20], "addresses");
        assert_eq!(
            &msg[28..],
            &quoted[20..],
            "quoted TCP and payload byte for byte"
        );
    }

    #[test]
    fn mtu_rules() {
        // §4.2: advertised + 20, capped, and §6: at least 1280.
        assert_eq!(mtu4_to_6(1400, 1500, NO_MTU_CAP), 1420);
        assert_eq!(mtu4_to_6(1400, 1500, 1410), 1410);
        assert_eq!(mtu4_to_6(576, 1500, NO_MTU_CAP), 1280);
        assert_eq!(mtu4_to_6(1400, 1500, 1000), 1280);
        assert_eq!(mtu4_to_6(65535, 1500, NO_MTU_CAP), 65555);
        // MTU 0: the greatest RFC 1191 plateau below the quoted length.
        assert_eq!(mtu4_to_6(0, 1500, NO_MTU_CAP), 1492 + 20);
        assert_eq!(mtu4_to_6(0, 4352, NO_MTU_CAP), 2002 + 20);
        assert_eq!(mtu4_to_6(0, 1000, NO_MTU_CAP), 1280);
        assert_eq!(mtu4_to_6(0, 20, NO_MTU_CAP), 1280);
        // §5.2: advertised - 20 (- 8 with a fragment header), capped, 16 bits.
        let ptb = |mtu: u32, diff, cap| icmp6_to_4(2, 0, mtu.to_be_bytes(), diff, cap).unwrap();
        assert_eq!(ptb(1500, 20, NO_MTU_CAP), (3, 4, [0, 0, 0x05, 0xc8]));
        assert_eq!(ptb(1500, 28, NO_MTU_CAP).2, [0, 0, 0x05, 0xc0]);
        assert_eq!(ptb(1500, 20, 1400).2, [0, 0, 0x05, 0x78]);
        assert_eq!(ptb(100_000, 20, NO_MTU_CAP).2, [0, 0, 0xff, 0xff]);
        assert_eq!(ptb(10, 20, NO_MTU_CAP).2, [0, 0, 0, 0]);
    }

    #[test]
    fn icmp_type_and_code_tables() {
        // ICMPv4 destination unreachable, codes 0..=16 (§4.2).
        let expect = |code: u8| -> Option<(u8, u8)> {
            Some(match code {
                0 | 1 | 5 | 6 | 7 | 8 | 11 | 12 => (1, 0),
                9 | 10 | 13 | 15 => (1, 1),
                3 => (1, 4),
                2 => (4, 1),
                4 => (2, 0),
                _ => return None,
            })
        };
        for code in 0..=16 {
            let got = icmp4_to_6(3, code, [0, 0, 0x05, 0xdc], 1500, NO_MTU_CAP);
            assert_eq!(
                got.ok().map(|(t, c, _)| (t, c)),
                expect(code),
                "code {code}"
            );
        }
        assert_eq!(
            icmp4_to_6(3, 2, [0; 4], 0, NO_MTU_CAP).unwrap().2,
            [0, 0, 0, 6]
        );
        assert_eq!(icmp4_to_6(11, 1, [0; 4], 0, NO_MTU_CAP), Ok((3, 1, [0; 4])));
        assert_eq!(
            icmp4_to_6(12, 0, [9, 0, 0, 0], 0, NO_MTU_CAP),
            Ok((4, 0, [0, 0, 0, 6]))
        );
        assert_eq!(
            icmp4_to_6(12, 2, [16, 0, 0, 0], 0, NO_MTU_CAP),
            Ok((4, 0, [0, 0, 0, 24]))
        );
        for (pointer, to) in [
            (0, 0),
            (1, 1),
            (2, 4),
            (3, 4),
            (8, 7),
            (9, 6),
            (12, 8),
            (19, 24),
        ] {
            assert_eq!(pointer4_to_6(pointer), Some(to));
        }
        for pointer in [4, 5, 6, 7, 10, 11, 20, 255] {
            assert_eq!(pointer4_to_6(pointer), None);
            assert!(icmp4_to_6(12, 0, [pointer, 0, 0, 0], 0, NO_MTU_CAP).is_err());
        }
        assert!(icmp4_to_6(12, 1, [0; 4], 0, NO_MTU_CAP).is_err());
        for kind in [0, 4, 5, 8, 13] {
            assert_eq!(
                icmp4_to_6(kind, 0, [0; 4], 0, NO_MTU_CAP),
                Err(DropReason::IcmpUnsupported)
            );
        }
        // ICMPv6 to ICMPv4 (§5.2).
        for (code, to) in [
            (0, Some(1)),
            (1, Some(10)),
            (2, Some(1)),
            (3, Some(1)),
            (4, Some(3)),
        ] {
            let got = icmp6_to_4(1, code, [0; 4], 20, NO_MTU_CAP).ok();
            assert_eq!(got.map(|(t, c, _)| (t, c)), to.map(|c| (3, c)));
        }
        for code in [5, 6, 7] {
            assert!(icmp6_to_4(1, code, [0; 4], 20, NO_MTU_CAP).is_err());
        }
        assert_eq!(
            icmp6_to_4(3, 1, [0; 4], 20, NO_MTU_CAP),
            Ok((11, 1, [0; 4]))
        );
        assert_eq!(icmp6_to_4(4, 1, [0; 4], 20, NO_MTU_CAP), Ok((3, 2, [0; 4])));
        assert!(icmp6_to_4(4, 2, [0; 4], 20, NO_MTU_CAP).is_err());
        for (pointer, to) in [
            (0, 0),
            (1, 1),
            (4, 2),
            (5, 2),
            (6, 9),
            (7, 8),
            (8, 12),
            (23, 12),
            (24, 16),
            (39, 16),
        ] {
            assert_eq!(
                icmp6_to_4(4, 0, u32::to_be_bytes(pointer), 20, NO_MTU_CAP),
                Ok((12, 0, [to, 0, 0, 0]))
            );
        }
        for pointer in [2u32, 3, 40, 1000] {
            assert!(icmp6_to_4(4, 0, pointer.to_be_bytes(), 20, NO_MTU_CAP).is_err());
        }
        for kind in [5, 128, 129, 133, 135] {
            assert!(icmp6_to_4(kind, 0, [0; 4], 20, NO_MTU_CAP).is_err());
        }
    }

    #[test]
    fn translated_errors_of_every_kind_verify() {
        let quoted4 = inner4_udp((LIP4, LPORT), (RIP4, RPORT), b"0123456789");
        for (t, c, rest) in [
            (3, 3, [0; 4]),
            (3, 2, [0; 4]),
            (11, 0, [0; 4]),
            (12, 0, [9, 0, 0, 0]),
        ] {
            let frame = icmp4_error(R4, LIP4, (t, c, rest), &quoted4);
            let (r, v6, _) = error4_to_v6(&frame, NO_MTU_CAP);
            assert_eq!(r, Ok(()), "{t}/{c}");
            let (_, msg) = check_v6(&v6);
            let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
            assert!(icmp.is_checksum_valid(VIP6, CIP6), "{t}/{c}");
            let (inner, rest) = Ipv6Header::from_slice(icmp.payload()).unwrap();
            let (udp, payload) = UdpHeader::from_slice(rest).unwrap();
            assert_eq!(
                udp.checksum,
                udp.calc_checksum_ipv6(&inner, payload).unwrap()
            );
        }
        let quoted6 = inner6_tcp((VIP6, VPORT), (CIP6, CPORT), PAYLOAD);
        for (t, c, rest) in [
            (1, 4, [0; 4]),
            (3, 0, [0; 4]),
            (4, 0, [0, 0, 0, 7]),
            (4, 1, [0; 4]),
        ] {
            let frame = icmp6_error(R6, VIP6, (t, c, rest), &quoted6);
            let (r, v4, _) = error6_to_v4(&frame, NO_MTU_CAP);
            assert_eq!(r, Ok(()), "{t}/{c}");
            let (_, msg) = check_xlat4(&v4);
            assert_eq!(folded(&[msg]), 0xffff, "{t}/{c}");
            let (inner, rest) = Ipv4Header::from_slice(&msg[8..]).unwrap();
            assert_eq!(inner.header_checksum, inner.calc_header_checksum());
            let (tcp, payload) = TcpHeader::from_slice(rest).unwrap();
            assert_eq!(
                tcp.checksum,
                tcp.calc_checksum_ipv4(&inner, payload).unwrap()
            );
        }
        // Parameter problem pointing at the hop limit: pointer 7 -> 8.
        let frame = icmp6_error(R6, VIP6, (4, 0, [0, 0, 0, 7]), &quoted6);
        let (_, v4, _) = error6_to_v4(&frame, NO_MTU_CAP);
        assert_eq!(&v4[34..35], &[12]);
        assert_eq!(v4[34 + 4], 8);
    }

    #[test]
    fn quoted_packets_with_extension_headers() {
        // The quoted IPv6 packet has a destination options header: the
        // IPv4 quote loses it, and the MTU accounts for it.
        let mut quoted = Vec::new();
        let exts = Ipv6Extensions {
            destination_options: Some(
                Ipv6RawExtHeader::new_raw(IpNumber(0), &[1, 4, 0, 0, 0, 0]).unwrap(),
            ),
            ..Default::default()
        };
        let mut h = v6_header(VIP6, CIP6);
        h.hop_limit = 55;
        PacketBuilder::ip(IpHeaders::Ipv6(h, exts))
            .udp(VPORT, CPORT)
            .write(&mut quoted, b"data")
            .unwrap();
        let frame = icmp6_error(R6, VIP6, (2, 0, 1500u32.to_be_bytes()), &quoted);
        let (r, v4, start) = error6_to_v4(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        assert_eq!(start, Frame::HEADROOM + 48);
        let (_, msg) = check_xlat4(&v4);
        assert_eq!(u16::from_be_bytes([msg[6], msg[7]]), 1500 - 28);
        assert_eq!(folded(&[msg]), 0xffff);
        let (inner, rest) = Ipv4Header::from_slice(&msg[8..]).unwrap();
        assert_eq!(usize::from(inner.total_len), 20 + 8 + 4);
        let (udp, payload) = UdpHeader::from_slice(rest).unwrap();
        assert_eq!(
            udp.checksum,
            udp.calc_checksum_ipv4(&inner, payload).unwrap()
        );
    }

    #[test]
    fn big_errors_are_cut_to_the_ipv6_minimum_mtu() {
        let big = alloc::vec![0x5a; 1400];
        let quoted = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), &big);
        let frame = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &quoted);
        let (r, v6, _) = error4_to_v6(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        assert_eq!(v6.len(), 14 + 1280);
        let (h, msg) = check_v6(&v6);
        let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
        assert!(icmp.is_checksum_valid(h.source, h.destination));
        let (inner, rest) = Ipv6Header::from_slice(icmp.payload()).unwrap();
        assert_eq!(
            usize::from(inner.payload_length),
            quoted.len() - 20,
            "its own length"
        );
        assert_eq!(rest.len(), 1280 - 40 - 8 - 40);
        // Odd lengths too.
        for extra in [1, 3] {
            let quoted = inner4_udp((LIP4, LPORT), (RIP4, RPORT), &big[..1300 + extra]);
            let frame = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &quoted);
            let (r, v6, _) = error4_to_v6(&frame, NO_MTU_CAP);
            assert_eq!(r, Ok(()));
            let (h, msg) = check_v6(&v6);
            assert_eq!(v6.len(), 14 + 1280);
            let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
            assert!(icmp.is_checksum_valid(h.source, h.destination));
        }
    }

    #[test]
    fn rfc4884_extensions_are_removed() {
        // Time exceeded with an original datagram of 128 bytes (32 words)
        // and a 12-byte extension structure after it.
        let mut quote = inner4_udp((LIP4, LPORT), (RIP4, RPORT), &[0x42; 200]);
        quote.truncate(128);
        quote.extend_from_slice(&[0x20, 0, 0x12, 0x34, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef]);
        let frame = icmp4_error(R4, LIP4, (11, 0, [0, 32, 0, 0]), &quote);
        let (r, v6, _) = error4_to_v6(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        let (h, msg) = check_v6(&v6);
        assert_eq!(msg.len(), 8 + 40 + 108, "the extension is gone");
        assert_eq!(
            &msg[..8],
            &[3, 0, msg[2], msg[3], 0, 0, 0, 0],
            "length attribute zeroed"
        );
        let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
        assert!(icmp.is_checksum_valid(h.source, h.destination));

        // ICMPv6 destination unreachable: 64-bit words at byte 4.
        let mut quote = inner6_udp((VIP6, VPORT), (CIP6, CPORT), &[0x42; 200]);
        quote.truncate(128);
        quote.extend_from_slice(&[0x20, 0, 0x12, 0x34, 0, 8, 1, 1, 0xde, 0xad, 0xbe, 0xef]);
        let frame = icmp6_error(R6, VIP6, (1, 4, [16, 0, 0, 0]), &quote);
        let (r, v4, _) = error6_to_v4(&frame, NO_MTU_CAP);
        assert_eq!(r, Ok(()));
        let (_, msg) = check_xlat4(&v4);
        assert_eq!(msg.len(), 8 + 20 + 88);
        assert_eq!(&msg[4..8], &[0; 4]);
        assert_eq!(folded(&[msg]), 0xffff);
    }

    #[test]
    fn same_family_rewrite_v4() {
        // A router on the RS side says "fragmentation needed" about
        // LIP:lport -> RIP:rport; the client must see it about
        // CIP:cport -> VIP:vport, from the VIP.
        let to = ErrorRewrite {
            src: VIP4,
            dst: CIP4,
            inner_src: (CIP4, CPORT),
            inner_dst: (VIP4, VPORT),
        };
        let udp = inner4_udp((LIP4, LPORT), (RIP4, RPORT), b"datagram");
        let tcp = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        for (quoted, cut) in [
            (udp.clone(), udp.len()),
            (tcp.clone(), tcp.len()),
            (tcp.clone(), 28),
            (tcp.clone(), 38),
            (udp, 28),
        ] {
            let frame = icmp4_error(RIP4, LIP4, (3, 4, [0, 0, 0x05, 0xdc]), &quoted[..cut]);
            let ip = ip4_of(&frame);
            let err = parse_icmp4_error(&frame, &ip).unwrap();
            let (r, out, start) = run(&frame, Frame::HEADROOM, |f| {
                icmp4_error_rewrite(f, &ip, &err, &to)
            });
            assert_eq!(r, Ok(()));
            assert_eq!((start, out.len()), (Frame::HEADROOM, frame.len()));
            let (h, msg) = check_v4(&out);
            assert_eq!((h.source, h.destination), (VIP4, CIP4));
            assert_eq!(folded(&[msg]), 0xffff, "ICMP checksum, quote of {cut}");
            assert_eq!(&msg[..2], &frame[34..36], "type and code kept");
            assert_eq!(&msg[4..8], &frame[38..42], "MTU kept");
            let (inner, rest) = Ipv4Header::from_slice(&msg[8..]).unwrap();
            assert_eq!(inner.header_checksum, inner.calc_header_checksum());
            assert_eq!((inner.source, inner.destination), (CIP4, VIP4));
            assert_eq!(
                &rest[..4],
                &[CPORT.to_be_bytes(), VPORT.to_be_bytes()].concat()[..]
            );
            if cut == quoted.len() {
                let proto = inner.protocol.0;
                assert_eq!(
                    folded(&[&pseudo4(CIP4, VIP4, proto, rest.len()), rest]),
                    0xffff,
                    "quoted checksum"
                );
            }
        }
    }

    #[test]
    fn same_family_rewrite_v6() {
        let to = ErrorRewrite {
            src: VIP6,
            dst: CIP6,
            inner_src: (CIP6, CPORT),
            inner_dst: (VIP6, VPORT),
        };
        let tcp = inner6_tcp((LIP6, LPORT), (RIP6, RPORT), PAYLOAD);
        let udp = inner6_udp((LIP6, LPORT), (RIP6, RPORT), b"datagram");
        for (quoted, cut, t) in [
            (tcp.clone(), tcp.len(), 3),
            (udp.clone(), udp.len(), 1),
            (tcp.clone(), 48, 2),
            (udp, 48, 4),
        ] {
            let frame = icmp6_error(RIP6, LIP6, (t, 0, [0, 0, 0x05, 0xdc]), &quoted[..cut]);
            let ip = ip6_of(&frame);
            let err = parse_icmp6_error(&frame, &ip).unwrap();
            let (r, out, _) = run(&frame, Frame::HEADROOM, |f| {
                icmp6_error_rewrite(f, &ip, &err, &to)
            });
            assert_eq!(r, Ok(()));
            assert_eq!(out.len(), frame.len());
            let (h, msg) = check_v6(&out);
            assert_eq!((h.source, h.destination), (VIP6, CIP6));
            let icmp = etherparse::Icmpv6Slice::from_slice(msg).unwrap();
            assert!(
                icmp.is_checksum_valid(VIP6, CIP6),
                "type {t}, quote of {cut}"
            );
            assert_eq!(icmp.bytes5to8(), [0, 0, 0x05, 0xdc]);
            let (inner, rest) = Ipv6Header::from_slice(icmp.payload()).unwrap();
            assert_eq!((inner.source, inner.destination), (CIP6, VIP6));
            assert_eq!(
                &rest[..4],
                &[CPORT.to_be_bytes(), VPORT.to_be_bytes()].concat()[..]
            );
            if cut == quoted.len() {
                let proto = inner.next_header.0;
                assert_eq!(
                    folded(&[&pseudo6_bytes(CIP6, VIP6, proto, rest.len()), rest]),
                    0xffff
                );
            }
        }
    }

    #[test]
    fn parse_errors() {
        let quoted = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        let parse4 = |frame: &[u8]| parse_icmp4_error(frame, &ip4_of(frame));
        // Not an error this module forwards.
        let echo = icmp4_error(R4, LIP4, (8, 0, [0; 4]), &quoted);
        assert_eq!(parse4(&echo), Err(DropReason::IcmpUnsupported));
        let redirect = icmp4_error(R4, LIP4, (5, 1, [0; 4]), &quoted);
        assert_eq!(parse4(&redirect), Err(DropReason::IcmpUnsupported));
        assert_eq!(parse4(&tcp4(b"")), Err(DropReason::IcmpUnsupported));
        // Quotes too short: the header and 7 bytes, or less.
        for n in [0, 10, 20, 27] {
            let frame = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &quoted[..n]);
            assert_eq!(parse4(&frame), Err(DropReason::IcmpNoSession), "{n}");
        }
        assert!(parse4(&icmp4_error(R4, LIP4, (3, 3, [0; 4]), &quoted[..28])).is_ok());
        // Not TCP or UDP, not IPv4, a later fragment.
        let mut other = quoted.clone();
        other[9] = 1;
        let frame = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &other);
        assert_eq!(parse4(&frame), Err(DropReason::IcmpNoSession));
        let mut v6 = quoted.clone();
        v6[0] = 0x65;
        assert_eq!(
            parse4(&icmp4_error(R4, LIP4, (3, 3, [0; 4]), &v6)),
            Err(DropReason::IcmpNoSession)
        );
        let mut later = quoted.clone();
        later[7] = 1;
        assert_eq!(
            parse4(&icmp4_error(R4, LIP4, (3, 3, [0; 4]), &later)),
            Err(DropReason::IcmpNoSession)
        );
        // An ICMP header cut short.
        let mut cut = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &[]);
        cut.truncate(14 + 20 + 4);
        cut[16..18].copy_from_slice(&24u16.to_be_bytes());
        assert_eq!(parse4(&cut), Err(DropReason::Truncated));

        let quoted6 = inner6_tcp((VIP6, VPORT), (CIP6, CPORT), PAYLOAD);
        let parse6 = |frame: &[u8]| parse_icmp6_error(frame, &ip6_of(frame));
        assert!(parse6(&icmp6_error(R6, VIP6, (1, 4, [0; 4]), &quoted6[..48])).is_ok());
        assert_eq!(
            parse6(&icmp6_error(R6, VIP6, (1, 4, [0; 4]), &quoted6[..47])),
            Err(DropReason::IcmpNoSession)
        );
        assert_eq!(
            parse6(&icmp6_error(R6, VIP6, (128, 0, [0; 4]), &quoted6)),
            Err(DropReason::IcmpUnsupported)
        );
        assert_eq!(parse6(&udp6(b"x")), Err(DropReason::IcmpUnsupported));
        // A quoted fragment.
        let mut frag = Vec::new();
        let exts = Ipv6Extensions {
            fragment: Some(etherparse::Ipv6FragmentHeader::new(
                IpNumber::UDP,
                etherparse::IpFragOffset::ZERO,
                true,
                1,
            )),
            ..Default::default()
        };
        PacketBuilder::ip(IpHeaders::Ipv6(v6_header(VIP6, CIP6), exts))
            .udp(VPORT, CPORT)
            .write(&mut frag, b"0123")
            .unwrap();
        assert_eq!(
            parse6(&icmp6_error(R6, VIP6, (2, 0, [0, 0, 5, 0]), &frag)),
            Err(DropReason::IcmpNoSession)
        );
    }

    #[test]
    fn unsupported_errors_and_no_headroom_leave_the_frame_unchanged() {
        let quoted = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        let frame = icmp4_error(R4, LIP4, (3, 14, [0; 4]), &quoted);
        let (r, out, start) = error4_to_v6(&frame, NO_MTU_CAP);
        assert_eq!(
            (r, &out[..], start),
            (
                Err(DropReason::IcmpUnsupported),
                &frame[..],
                Frame::HEADROOM
            )
        );
        // 39 bytes of headroom are not enough; 40 are.
        let frame = icmp4_error(R4, LIP4, (3, 3, [0; 4]), &quoted);
        let ip = ip4_of(&frame);
        let err = parse_icmp4_error(&frame, &ip).unwrap();
        let (r, out, start) = run(&frame, 39, |f| {
            icmp4_error_to_v6(f, &ip, &err, &to_client6(), NO_MTU_CAP)
        });
        assert_eq!(
            (r, &out[..], start),
            (Err(DropReason::Truncated), &frame[..], 39)
        );
        let (r, _, start) = run(&frame, 40, |f| {
            icmp4_error_to_v6(f, &ip, &err, &to_client6(), NO_MTU_CAP)
        });
        assert_eq!((r, start), (Ok(()), 0));
        let quoted6 = inner6_tcp((VIP6, VPORT), (CIP6, CPORT), PAYLOAD);
        let frame = icmp6_error(R6, VIP6, (4, 2, [0; 4]), &quoted6);
        let (r, out, _) = error6_to_v4(&frame, NO_MTU_CAP);
        assert_eq!((r, out), (Err(DropReason::IcmpUnsupported), frame));
    }

    // ----- never panic ---------------------------------------------------

    /// Every entry point on `frame`; whatever succeeds must leave a frame
    /// whose IP lengths match it, whatever fails must leave the frame as
    /// it was. Counts the successes of each entry point.
    fn everything(frame: &[u8], headroom: usize, ok: &mut [usize; 6]) {
        let Ok((ethertype, l3)) = wire::ethernet(frame) else {
            return;
        };
        let mut check = |i: usize, frame: &[u8], got: (Result<(), DropReason>, Vec<u8>, usize)| {
            let (r, out, start) = got;
            if r.is_err() {
                assert_eq!(
                    (&out[..], start),
                    (frame, headroom),
                    "{r:?} changed the frame"
                );
                return;
            }
            ok[i] += 1;
            let (ethertype, l3) = wire::ethernet(&out).unwrap();
            match ethertype {
                ETHERTYPE_IPV4 => assert_eq!(Ipv4::parse(&out, l3).unwrap().total, out.len() - l3),
                ETHERTYPE_IPV6 => assert_eq!(Ipv6::parse(&out, l3).unwrap().end(), out.len()),
                other => panic!("ethertype {other:#x}"),
            }
        };
        if ethertype == ETHERTYPE_IPV4 {
            let Ok(ip) = Ipv4::parse(frame, l3) else {
                return;
            };
            let frame = &frame[..l3 + ip.total];
            check(
                0,
                frame,
                run(frame, headroom, |f| v4_to_v6(f, &ip, CIP6, VIP6)),
            );
            if let Ok(err) = parse_icmp4_error(frame, &ip) {
                let to = ErrorRewrite {
                    src: VIP4,
                    dst: CIP4,
                    inner_src: (CIP4, 1),
                    inner_dst: (VIP4, 2),
                };
                check(
                    1,
                    frame,
                    run(frame, headroom, |f| {
                        icmp4_error_to_v6(f, &ip, &err, &to_client6(), 1500)
                    }),
                );
                check(
                    2,
                    frame,
                    run(frame, headroom, |f| icmp4_error_rewrite(f, &ip, &err, &to)),
                );
            }
        } else if ethertype == ETHERTYPE_IPV6 {
            let Ok(ip) = Ipv6::parse(frame, l3) else {
                return;
            };
            let frame = &frame[..ip.end()];
            check(
                3,
                frame,
                run(frame, headroom, |f| {
                    v6_to_v4(f, &ip, LIP4, RIP4).map(|_| ())
                }),
            );
            if let Ok(err) = parse_icmp6_error(frame, &ip) {
                check(
                    4,
                    frame,
                    run(frame, headroom, |f| {
                        icmp6_error_to_v4(f, &ip, &err, &to_server4(), 1500)
                    }),
                );
                check(
                    5,
                    frame,
                    run(frame, headroom, |f| {
                        icmp6_error_rewrite(f, &ip, &err, &to_client6())
                    }),
                );
            }
        }
    }

    fn samples() -> Vec<Vec<u8>> {
        let q4 = inner4_tcp((LIP4, LPORT), (RIP4, RPORT), PAYLOAD);
        let q6 = inner6_udp((VIP6, VPORT), (CIP6, CPORT), PAYLOAD);
        let mut s = alloc::vec![
            tcp6(Default::default(), PAYLOAD),
            tcp4(PAYLOAD),
            udp6(b"q"),
            udp4(b"r"),
            icmp4_error(R4, LIP4, (3, 4, [0, 0, 5, 0]), &q4),
            icmp4_error(R4, LIP4, (11, 0, [0, 8, 0, 0]), &q4),
            icmp6_error(R6, VIP6, (2, 0, [0, 0, 5, 0]), &q6),
            icmp6_error(R6, VIP6, (1, 0, [4, 0, 0, 0]), &q6),
            icmp6_error(R6, VIP6, (4, 0, [0, 0, 0, 9]), &q6),
        ];
        // Quotes of every length.
        for n in 0..=q4.len() {
            s.push(icmp4_error(R4, LIP4, (3, 3, [0; 4]), &q4[..n]));
        }
        for n in 0..=q6.len() {
            s.push(icmp6_error(R6, VIP6, (3, 0, [0; 4]), &q6[..n]));
        }
        s
    }

    #[test]
    fn truncated_inputs_never_panic() {
        let mut ok = [0; 6];
        for sample in samples() {
            for len in 0..=sample.len() {
                let mut cut = sample[..len].to_vec();
                everything(&cut, 64, &mut ok);
                // With the IP lengths made to agree with the cut.
                if len > 20 {
                    let ip_len = (len - 14) as u16;
                    if cut[12..14] == [0x08, 0x00] {
                        cut[16..18].copy_from_slice(&ip_len.to_be_bytes());
                    } else if len >= 54 {
                        cut[18..20].copy_from_slice(&(ip_len - 40).to_be_bytes());
                    }
                    everything(&cut, 64, &mut ok);
                    everything(&cut, 0, &mut ok);
                }
            }
        }
        assert!(ok.iter().all(|&n| n > 20), "every path reached: {ok:?}");
    }

    #[test]
    fn random_inputs_never_panic() {
        let mut ok = [0; 6];
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let samples = samples();
        for round in 0..30_000 {
            let mut frame = if round % 4 == 0 {
                let len = (rng.next() % 200) as usize;
                let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if f.len() > 14 {
                    f[12..14].copy_from_slice(if round % 8 == 0 {
                        &[0x08, 0x00]
                    } else {
                        &[0x86, 0xdd]
                    });
                    f[14] = if round % 8 == 0 { 0x45 } else { 0x60 };
                }
                f
            } else {
                samples[(rng.next() % samples.len() as u64) as usize].clone()
            };
            // Flip a few bytes, anywhere (lengths, types, offsets...).
            for _ in 0..(rng.next() % 4) {
                if !frame.is_empty() {
                    let i = (rng.next() % frame.len() as u64) as usize;
                    frame[i] = rng.next() as u8;
                }
            }
            let headroom = [0, 19, 20, 39, 40, 64][(rng.next() % 6) as usize];
            everything(&frame, headroom, &mut ok);
        }
        assert!(ok.iter().all(|&n| n > 100), "every path reached: {ok:?}");
    }
}
