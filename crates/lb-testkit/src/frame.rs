//! Ethernet frames built by etherparse (its checksums, its lengths), and
//! the deliberate faults a test puts in them.

use std::net::IpAddr;

use etherparse::{
    IpHeaders, PacketBuilder, PacketBuilderStep, SlicedPacket, TcpHeader, TcpOptionElement,
    TransportSlice, VlanId,
};

/// The source MAC of every frame built here.
pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The destination MAC of every frame built here.
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
/// The client's initial sequence number in the tests' handshakes.
pub const C_ISN: u32 = 1000;
/// The server's initial sequence number.
pub const S_ISN: u32 = 5000;
/// The window of every segment built here.
pub const WINDOW: u16 = 64240;
/// The TTL or hop limit of every packet built here.
pub const TTL: u8 = 64;

/// What a TCP segment says besides its ends, options and payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    /// Sequence number.
    pub seq: u32,
    /// The window ([`WINDOW`] unless said).
    pub window: u16,
    /// The ACK flag and its number.
    pub ack: Option<u32>,
    /// SYN.
    pub syn: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
}

impl Tcp {
    /// No flag, sequence number 0, window [`WINDOW`].
    pub const NONE: Tcp = Tcp {
        seq: 0,
        window: WINDOW,
        ack: None,
        syn: false,
        fin: false,
        rst: false,
        psh: false,
    };

    /// A SYN.
    pub const fn syn(seq: u32) -> Tcp {
        Tcp {
            syn: true,
            seq,
            ..Tcp::NONE
        }
    }

    /// A SYN-ACK.
    pub const fn synack(seq: u32, ack: u32) -> Tcp {
        Tcp {
            syn: true,
            ack: Some(ack),
            seq,
            ..Tcp::NONE
        }
    }

    /// A plain ACK (data or not).
    pub const fn ack(seq: u32, ack: u32) -> Tcp {
        Tcp {
            ack: Some(ack),
            seq,
            ..Tcp::NONE
        }
    }

    /// A FIN-ACK.
    pub const fn fin(seq: u32, ack: u32) -> Tcp {
        Tcp {
            fin: true,
            ack: Some(ack),
            seq,
            ..Tcp::NONE
        }
    }

    /// A RST without ACK.
    pub const fn rst(seq: u32) -> Tcp {
        Tcp {
            rst: true,
            seq,
            ..Tcp::NONE
        }
    }

    /// A RST-ACK.
    pub const fn rst_ack(seq: u32, ack: u32) -> Tcp {
        Tcp {
            rst: true,
            ack: Some(ack),
            seq,
            ..Tcp::NONE
        }
    }

    /// The same with another window.
    pub const fn window(self, window: u16) -> Tcp {
        Tcp { window, ..self }
    }

    /// The same with PSH set.
    pub const fn psh(self) -> Tcp {
        Tcp { psh: true, ..self }
    }
}

impl Default for Tcp {
    fn default() -> Tcp {
        Tcp::NONE
    }
}

/// What the Ethernet and IP headers of a frame say besides its addresses
/// and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// An 802.1Q tag with this VLAN id.
    pub vlan: Option<u16>,
    /// TTL or hop limit.
    pub ttl: u8,
}

impl Link {
    /// [`MAC_A`] to [`MAC_B`], untagged, TTL [`TTL`].
    pub const DEFAULT: Link = Link {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        ttl: TTL,
    };

    /// The same with another TTL or hop limit.
    pub const fn ttl(self, ttl: u8) -> Link {
        Link { ttl, ..self }
    }

    /// The same with these MACs.
    pub const fn macs(self, src_mac: [u8; 6], dst_mac: [u8; 6]) -> Link {
        Link {
            src_mac,
            dst_mac,
            ..self
        }
    }

    /// The same behind an 802.1Q tag.
    pub const fn vlan(self, id: u16) -> Link {
        Link {
            vlan: Some(id),
            ..self
        }
    }
}

impl Default for Link {
    fn default() -> Link {
        Link::DEFAULT
    }
}

/// The options area etherparse writes for `elements` (padded with zeros
/// to a multiple of 4 bytes).
///
/// # Panics
///
/// If they do not fit in 40 bytes.
pub fn options(elements: &[TcpOptionElement]) -> Vec<u8> {
    let mut header = TcpHeader::default();
    header
        .set_options(elements)
        .unwrap_or_else(|e| panic!("TCP options: {e}"));
    header.options.as_slice().to_vec()
}

/// Ethernet and the IP header of `src`'s family, from `src` to `dst`, as
/// `link` says.
///
/// # Panics
///
/// If the two addresses are of different families, or the VLAN id is
/// above 4095.
pub fn ip_builder(link: Link, src: IpAddr, dst: IpAddr) -> PacketBuilderStep<IpHeaders> {
    let eth = PacketBuilder::ethernet2(link.src_mac, link.dst_mac);
    let tag = |id: u16| VlanId::try_new(id).unwrap_or_else(|e| panic!("{e}"));
    match (link.vlan, src, dst) {
        (None, IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), link.ttl),
        (None, IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), link.ttl),
        (Some(id), IpAddr::V4(s), IpAddr::V4(d)) => {
            eth.single_vlan(tag(id))
                .ipv4(s.octets(), d.octets(), link.ttl)
        }
        (Some(id), IpAddr::V6(s), IpAddr::V6(d)) => {
            eth.single_vlan(tag(id))
                .ipv6(s.octets(), d.octets(), link.ttl)
        }
        _ => panic!("{src} to {dst}: one family per packet"),
    }
}

/// An endpoint of either family: `([u8; 4], port)`, `(Ipv6Addr, port)`,
/// `(IpAddr, port)`...
fn ep<A: Into<IpAddr>>(e: (A, u16)) -> (IpAddr, u16) {
    (e.0.into(), e.1)
}

/// A TCP segment from `src` to `dst`, checksummed by etherparse.
pub fn tcp<A: Into<IpAddr>>(src: (A, u16), dst: (A, u16), t: Tcp, payload: &[u8]) -> Vec<u8> {
    tcp_vlan(None, src, dst, t, &[], payload)
}

/// A TCP segment whose options area is `options`, a multiple of 4 bytes
/// (so that etherparse adds no padding of its own), checksummed by
/// etherparse. The options may be deliberately wrong.
pub fn tcp_opts<A: Into<IpAddr>>(
    src: (A, u16),
    dst: (A, u16),
    t: Tcp,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    tcp_vlan(None, src, dst, t, options, payload)
}

/// [`tcp_opts`], behind an 802.1Q tag when `vlan` is given.
pub fn tcp_vlan<A: Into<IpAddr>>(
    vlan: Option<u16>,
    src: (A, u16),
    dst: (A, u16),
    t: Tcp,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let link = Link {
        vlan,
        ..Link::DEFAULT
    };
    tcp_on(link, src, dst, t, options, payload)
}

/// [`tcp_opts`] with the Ethernet and IP headers `link` says.
///
/// # Panics
///
/// If the options area is not a multiple of 4 bytes or longer than 40.
pub fn tcp_on<A: Into<IpAddr>>(
    link: Link,
    src: (A, u16),
    dst: (A, u16),
    t: Tcp,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (ep(src), ep(dst));
    assert_eq!(options.len() % 4, 0, "options area {options:?}");
    let mut header = TcpHeader::new(src.1, dst.1, t.seq, t.window);
    header.syn = t.syn;
    header.fin = t.fin;
    header.rst = t.rst;
    header.psh = t.psh;
    if let Some(n) = t.ack {
        header.ack = true;
        header.acknowledgment_number = n;
    }
    header
        .set_options_raw(options)
        .unwrap_or_else(|e| panic!("TCP options: {e}"));
    let mut out = Vec::new();
    ip_builder(link, src.0, dst.0)
        .tcp_header(header)
        .write(&mut out, payload)
        .unwrap_or_else(|e| panic!("TCP frame: {e}"));
    out
}

/// A UDP datagram from `src` to `dst`, checksummed by etherparse.
pub fn udp<A: Into<IpAddr>>(src: (A, u16), dst: (A, u16), payload: &[u8]) -> Vec<u8> {
    udp_on(Link::DEFAULT, src, dst, payload)
}

/// [`udp`] with the Ethernet and IP headers `link` says.
pub fn udp_on<A: Into<IpAddr>>(
    link: Link,
    src: (A, u16),
    dst: (A, u16),
    payload: &[u8],
) -> Vec<u8> {
    let (src, dst) = (ep(src), ep(dst));
    let mut out = Vec::new();
    ip_builder(link, src.0, dst.0)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .unwrap_or_else(|e| panic!("UDP frame: {e}"));
    out
}

/// An ICMP (IPv4) or ICMPv6 echo request or reply, id 0x1234, sequence 7.
pub fn echo<A: Into<IpAddr>>(src: A, dst: A, reply: bool, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let (src, dst) = (src.into(), dst.into());
    let b = ip_builder(Link::DEFAULT.ttl(ttl), src, dst);
    let mut out = Vec::new();
    let written = match (src.is_ipv4(), reply) {
        (true, true) => b.icmpv4_echo_reply(0x1234, 7).write(&mut out, payload),
        (true, false) => b.icmpv4_echo_request(0x1234, 7).write(&mut out, payload),
        (false, true) => b.icmpv6_echo_reply(0x1234, 7).write(&mut out, payload),
        (false, false) => b.icmpv6_echo_request(0x1234, 7).write(&mut out, payload),
    };
    written.unwrap_or_else(|e| panic!("echo frame: {e}"));
    out
}

/// A broadcast ARP frame (all zero after the EtherType).
pub fn arp() -> Vec<u8> {
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    arp
}

/// Where the transport header of a frame built here starts (no IPv4
/// options, no IPv6 extension headers).
///
/// # Panics
///
/// If the EtherType is neither IPv4 nor IPv6.
pub fn l4_offset(frame: &[u8]) -> usize {
    match frame.get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]])) {
        Some(0x0800) => 14 + 20,
        Some(0x86dd) => 14 + 40,
        other => panic!("ethertype {other:x?}"),
    }
}

/// The frame with one transport byte changed and its checksum left as it
/// was: wrong, by one word (the TCP window, or a UDP payload's last byte).
pub fn corrupt(mut frame: Vec<u8>) -> Vec<u8> {
    let at = l4_offset(&frame);
    let is_tcp = frame.len() >= at + 20 && frame[at + 12] >> 4 >= 5 && {
        let p = SlicedPacket::from_ethernet(&frame).unwrap_or_else(|e| panic!("{e}"));
        matches!(p.transport, Some(TransportSlice::Tcp(_)))
    };
    let byte = if is_tcp { at + 15 } else { frame.len() - 1 };
    frame[byte] ^= 0x01;
    frame
}

/// A UDP datagram with checksum 0: "none" over IPv4, invalid over IPv6.
pub fn udp_without_checksum<A: Into<IpAddr>>(
    src: (A, u16),
    dst: (A, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = udp(src, dst, payload);
    let at = l4_offset(&frame) + 6;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    frame
}

/// Recompute the IPv4 header checksum of an untagged frame after an edit
/// of its header, options included (the transport checksum is left as it
/// is).
pub fn fix_ipv4_header_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    frame[24] = 0;
    frame[25] = 0;
    let sum = !crate::checksum::fold(crate::checksum::ones_sum(&frame[14..14 + ihl]));
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
}
