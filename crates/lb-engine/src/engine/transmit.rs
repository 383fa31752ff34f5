//! What the engine sends itself: the RSTs queued by expiry
//! ([`PendingRst`]), written out by [`Engine::poll_transmit`].

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Engine, client4_of};
use crate::verdict::Transmit;
use crate::wire::checksum;
use crate::wire::{self, tcp_flags};

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
    pub const TRANSMIT_LEN: usize = wire::ETH_HLEN + 40 + 20;

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

/// The RST|ACK segment of a pending RST, with its checksum over
/// `pseudo` (the pseudo-header's sum).
fn rst_segment(rst: &PendingRst, pseudo: u32) -> [u8; 20] {
    let mut seg = [0u8; 20];
    let [s0, s1] = rst.sport.to_be_bytes();
    let [d0, d1] = rst.dport.to_be_bytes();
    let [q0, q1, q2, q3] = rst.seq.to_be_bytes();
    let [a0, a1, a2, a3] = rst.ack.to_be_bytes();
    let flags = tcp_flags::RST | tcp_flags::ACK;
    seg[..14].copy_from_slice(&[
        s0,
        s1,
        d0,
        d1,
        q0,
        q1,
        q2,
        q3,
        a0,
        a1,
        a2,
        a3,
        5 << 4,
        flags,
    ]);
    let sum = checksum::finish(checksum::sum(pseudo, &seg));
    [seg[16], seg[17]] = sum.to_be_bytes();
    seg
}

/// Write an RST|ACK segment in an IPv4 packet in an Ethernet frame with
/// zero MAC addresses; returns its length (54).
fn write_rst4(out: &mut [u8], rst: &PendingRst) -> usize {
    let (src, dst) = (client4_of(rst.src), client4_of(rst.dst));
    let mut frame = [0u8; wire::ETH_HLEN + 40];
    [frame[12], frame[13]] = wire::ETHERTYPE_IPV4.to_be_bytes();
    let mut ip = [0u8; 20];
    ip[..10].copy_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, wire::PROTO_TCP]);
    ip[12..16].copy_from_slice(&src);
    ip[16..20].copy_from_slice(&dst);
    [ip[10], ip[11]] = checksum::of(&ip).to_be_bytes();
    frame[14..34].copy_from_slice(&ip);
    let pseudo = checksum::sum(
        checksum::sum(checksum::sum(0, &src), &dst),
        &[0, wire::PROTO_TCP, 0, 20],
    );
    frame[34..54].copy_from_slice(&rst_segment(rst, pseudo));
    out.iter_mut().zip(frame).for_each(|(o, b)| *o = b);
    frame.len()
}

/// Write an RST|ACK segment in an IPv6 packet in an Ethernet frame with
/// zero MAC addresses; returns its length (74).
fn write_rst6(out: &mut [u8], rst: &PendingRst) -> usize {
    let mut frame = [0u8; wire::ETH_HLEN + 60];
    [frame[12], frame[13]] = wire::ETHERTYPE_IPV6.to_be_bytes();
    // Version 6, no traffic class or flow label, payload 20, TCP, hop 64.
    frame[14..22].copy_from_slice(&[0x60, 0, 0, 0, 0, 20, wire::PROTO_TCP, 64]);
    frame[22..38].copy_from_slice(&rst.src);
    frame[38..54].copy_from_slice(&rst.dst);
    let pseudo = checksum::sum(
        checksum::sum(checksum::sum(0, &rst.src), &rst.dst),
        &[0, 0, 0, 20, 0, 0, 0, wire::PROTO_TCP],
    );
    frame[54..74].copy_from_slice(&rst_segment(rst, pseudo));
    out.iter_mut().zip(frame).for_each(|(o, b)| *o = b);
    frame.len()
}
