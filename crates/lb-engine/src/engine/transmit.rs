//! What the engine sends itself: the RSTs queued by expiry
//! ([`PendingRst`]), written out by [`Engine::poll_transmit`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Engine, client4_of};
use crate::verdict::Transmit;
use crate::wire::checksum;
use crate::wire::{self, ethernet, ipv4, ipv6, tcp, tcp_flags};

/// An RST to send because an established session idled out.
#[derive(Debug, Clone, Copy)]
pub(super) struct PendingRst {
    pub(super) to_client: bool,
    /// IPv6 (to a 6to4 listener's client); else IPv4 in the first 4 bytes.
    pub(super) v6: bool,
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) sport: u16,
    pub(super) dport: u16,
    pub(super) seq: u32,
    pub(super) ack: u32,
}

impl Engine {
    /// Bytes [`Engine::poll_transmit`] needs in its buffer: the longest
    /// packet it writes (an RST over IPv6) in an Ethernet frame.
    pub const TRANSMIT_LEN: usize = wire::ETH_HLEN + ipv6::HLEN + tcp::HEADER_LEN;

    /// Write the next packet the engine itself sends (the RSTs of idle
    /// expiry) as an Ethernet frame at the start of `buf`, with zero MAC
    /// addresses for the caller to fill. Returns its length and where it
    /// goes ([`Transmit`]); `None` when nothing is waiting or `buf` is
    /// shorter than [`Engine::TRANSMIT_LEN`] (the packet then stays
    /// queued).
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<(usize, Transmit)> {
        let rst = *self.pending.front()?;
        let out = buf.get_mut(..Self::TRANSMIT_LEN)?;
        let (len, next_hop) = if rst.v6 {
            (write_rst6(out, &rst), IpAddr::V6(Ipv6Addr::from(rst.dst)))
        } else {
            (
                write_rst4(out, &rst),
                IpAddr::V4(Ipv4Addr::from(client4_of(rst.dst))),
            )
        };
        self.pending.pop_front();
        self.counters.rst_sent += 1;
        let to = if rst.to_client {
            Transmit::ToClient { next_hop }
        } else {
            Transmit::ToServer { next_hop }
        };
        Some((len, to))
    }
}

impl PendingRst {
    /// The RST|ACK segment, without options, window 0.
    fn segment(&self) -> tcp::Repr {
        tcp::Repr {
            src_port: self.sport,
            dst_port: self.dport,
            seq_number: self.seq,
            ack_number: self.ack,
            flags: tcp_flags::RST | tcp_flags::ACK,
            window_len: 0,
        }
    }
}

/// Write the Ethernet header of a frame the engine sends: zero MAC
/// addresses, `ethertype`; returns the view, for the packet in it.
fn ethernet_frame(out: &mut [u8], ethertype: u16) -> ethernet::Packet<&mut [u8]> {
    let mut eth = ethernet::Packet::new_unchecked(out);
    eth.set_dst_addr([0; 6]);
    eth.set_src_addr([0; 6]);
    eth.set_ethertype(ethertype);
    eth
}

/// Write an RST|ACK segment in an IPv4 packet (DF, TTL 64) in an Ethernet
/// frame with zero MAC addresses; returns its length (54).
fn write_rst4(out: &mut [u8], rst: &PendingRst) -> usize {
    let seg = rst.segment();
    let ip = ipv4::Repr {
        src_addr: client4_of(rst.src),
        dst_addr: client4_of(rst.dst),
        protocol: wire::PROTO_TCP,
        ttl: 64,
        tos: 0,
        ident: 0,
        dont_frag: true,
        payload_len: seg.buffer_len(),
    };
    let mut eth = ethernet_frame(out, wire::ETHERTYPE_IPV4);
    let mut packet = ipv4::Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    let pseudo = checksum::pseudo4(ip.src_addr, ip.dst_addr, ip.protocol, seg.buffer_len());
    seg.emit(
        &mut tcp::Packet::new_unchecked(packet.payload_mut()),
        pseudo,
    );
    wire::ETH_HLEN + ip.buffer_len() + seg.buffer_len()
}

/// Write an RST|ACK segment in an IPv6 packet (hop limit 64, no traffic
/// class or flow label) in an Ethernet frame with zero MAC addresses;
/// returns its length (74).
fn write_rst6(out: &mut [u8], rst: &PendingRst) -> usize {
    let seg = rst.segment();
    let ip = ipv6::Repr {
        src_addr: rst.src,
        dst_addr: rst.dst,
        next_header: wire::PROTO_TCP,
        hop_limit: 64,
        traffic_class: 0,
        flow_label: 0,
        payload_len: seg.buffer_len() as u16,
    };
    let mut eth = ethernet_frame(out, wire::ETHERTYPE_IPV6);
    let mut packet = ipv6::Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut packet);
    let pseudo = checksum::pseudo6(&ip.src_addr, &ip.dst_addr, seg.buffer_len(), ip.next_header);
    seg.emit(
        &mut tcp::Packet::new_unchecked(packet.payload_mut()),
        pseudo,
    );
    wire::ETH_HLEN + ip.buffer_len() + seg.buffer_len()
}

#[cfg(test)]
mod test {
    use super::*;

    /// An RST 80 -> 43210, sequence 0x01020304, acknowledgment 0xfffefdfc.
    fn rst(v6: bool, src: [u8; 16], dst: [u8; 16]) -> PendingRst {
        PendingRst {
            to_client: true,
            v6,
            src,
            dst,
            sport: 80,
            dport: 43210,
            seq: 0x0102_0304,
            ack: 0xfffe_fdfc,
        }
    }

    /// 192.0.2.1 -> 198.51.100.2.
    static RST4: [u8; 54] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, // total 40, DF
        0x40, 0x06, 0x4e, 0x99, // TTL 64, TCP, checksum
        192, 0, 2, 1, 198, 51, 100, 2, // addresses
        0x00, 0x50, 0xa8, 0xca, // ports
        0x01, 0x02, 0x03, 0x04, 0xff, 0xfe, 0xfd, 0xfc, // sequence, ack
        0x50, 0x14, 0x00, 0x00, // data offset 5, RST|ACK, window 0
        0x18, 0x7d, 0x00, 0x00, // checksum, urgent
    ];

    /// 2001:db8::1 -> 2001:db8::abcd.
    static RST6: [u8; 74] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x86, 0xdd, // Ethernet
        0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40, // payload 20, TCP, hop 64
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, // source
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd, // destination
        0x00, 0x50, 0xa8, 0xca, // ports
        0x01, 0x02, 0x03, 0x04, 0xff, 0xfe, 0xfd, 0xfc, // sequence, ack
        0x50, 0x14, 0x00, 0x00, // data offset 5, RST|ACK, window 0
        0xfd, 0x73, 0x00, 0x00, // checksum, urgent
    ];

    #[test]
    fn rst4_bytes() {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src[..4].copy_from_slice(&[192, 0, 2, 1]);
        dst[..4].copy_from_slice(&[198, 51, 100, 2]);
        let mut out = [0xeeu8; Engine::TRANSMIT_LEN];
        assert_eq!(write_rst4(&mut out, &rst(false, src, dst)), RST4.len());
        assert_eq!(out[..RST4.len()], RST4);
        assert!(out[RST4.len()..].iter().all(|&b| b == 0xee));
    }

    #[test]
    fn rst6_bytes() {
        let src = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        ];
        let dst = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xab, 0xcd,
        ];
        let mut out = [0xeeu8; Engine::TRANSMIT_LEN];
        assert_eq!(write_rst6(&mut out, &rst(true, src, dst)), RST6.len());
        assert_eq!(out, RST6);
    }
}
