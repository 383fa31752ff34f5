//! ICMP errors about a session go to its other side, rewritten as that side
//! sent the quoted packet (4to4), or translated between ICMP and ICMPv6
//! (6to4, RFC 7915), so that path MTU discovery works through the
//! balancer. Errors quoting no session, and other ICMP, are dropped with
//! their reasons. Outputs are parsed by etherparse and every checksum
//! (outer IP, ICMP, quoted IP header) is recomputed independently.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use etherparse::{
    Icmpv4Type, Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TransportSlice,
    icmpv4::DestUnreachableHeader,
};
use lb_engine::{
    BackendConfig, DropReason, Engine, EngineConfig, Instant, ListenerConfig, LocalPool, Protocol,
    Verdict,
};
use lb_testkit::frame::{Link, Tcp, tcp_on};
use lb_testkit::sim::send_at;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CIP: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [198, 51, 100, 1];
const RIP: [u8; 4] = [10, 0, 0, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const ROUTER4: [u8; 4] = [10, 0, 0, 254];
const CIP6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];
const VIP6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const ROUTER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xfe];
const LPORT: u16 = 50020;

fn run(e: &mut Engine, input: &[u8]) -> (Verdict, Vec<u8>) {
    send_at(e, Instant::from_secs(1), input)
}

/// An engine with one TCP listener on `vip` (IPv4 or IPv6) to RIP:8080,
/// one local port, and a session of the client `cip:40000` opened by a
/// SYN; returns the engine and the SYN as forwarded to the server.
fn with_session(vip: IpAddr, client_syn: Vec<u8>) -> (Engine, Vec<u8>) {
    let mut e = Engine::new(EngineConfig {
        capacity: 16,
        ..EngineConfig::default()
    })
    .unwrap();
    let mut local = LocalPool::new(vec![IpAddr::V4(LIP.into())]);
    local.ports = LPORT..=LPORT;
    let mut l = ListenerConfig::new(vip, 80, Protocol::Tcp, local);
    l.backends
        .push(BackendConfig::new(IpAddr::V4(RIP.into()), 8080));
    e.add_listener(l).unwrap();
    let (v, forwarded) = run(&mut e, &client_syn);
    assert!(matches!(v, Verdict::ToServer { .. }), "{v:?}");
    (e, forwarded)
}

fn syn4() -> Vec<u8> {
    let link = Link::DEFAULT.macs(MAC, MAC);
    tcp_on(
        link,
        (CIP, 40000),
        (VIP, 80),
        Tcp::syn(1000).window(64000),
        &[],
        b"",
    )
}

fn syn6() -> Vec<u8> {
    let link = Link::DEFAULT.macs(MAC, MAC);
    tcp_on(
        link,
        (CIP6, 40000),
        (VIP6, 80),
        Tcp::syn(1000).window(64000),
        &[],
        b"",
    )
}

/// "Fragmentation needed" (MTU `mtu`) from a router, quoting the first
/// 28 bytes of an IPv4 packet (an Ethernet frame's IP part).
fn frag_needed(from: [u8; 4], to: [u8; 4], quoted_frame: &[u8], mtu: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(from, to, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
        ))
        .write(&mut out, &quoted_frame[14..14 + 28])
        .unwrap();
    out
}

/// The quoted IPv4 packet's addresses and ports, with its header checksum
/// verified.
fn quoted4(quote: &[u8]) -> ([u8; 4], u16, [u8; 4], u16) {
    let h = etherparse::Ipv4HeaderSlice::from_slice(quote)
        .unwrap()
        .to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "quoted IPv4 header checksum"
    );
    let l4 = &quote[h.header_len()..];
    (
        h.source,
        u16::from_be_bytes([l4[0], l4[1]]),
        h.destination,
        u16::from_be_bytes([l4[2], l4[3]]),
    )
}

fn outer_icmp4(out: &[u8]) -> (etherparse::Ipv4Header, Icmpv4Type, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Icmpv4(icmp))) = (&p.net, &p.transport)
    else {
        panic!("not ICMPv4: {:?}", p.net);
    };
    let h = ip.header().to_header();
    assert_eq!(
        h.header_checksum,
        h.calc_header_checksum(),
        "outer IPv4 checksum"
    );
    let header = icmp.header();
    assert_eq!(
        header.checksum,
        header.icmp_type.calc_checksum(icmp.payload()),
        "ICMP checksum"
    );
    (h, header.icmp_type, icmp.payload().to_vec())
}

#[test]
fn frag_needed_from_the_server_side_reaches_the_client() {
    let (mut e, forwarded) = with_session(IpAddr::V4(VIP.into()), syn4());
    // A router between the balancer and the server: the SYN we sent is
    // too big for its next hop.
    let (v, out) = run(&mut e, &frag_needed(ROUTER4, LIP, &forwarded, 1400));
    assert_eq!(
        v,
        Verdict::ToClient {
            next_hop: IpAddr::V4(CIP.into())
        }
    );
    let (h, kind, quote) = outer_icmp4(&out);
    assert_eq!((h.source, h.destination), (VIP, CIP));
    assert_eq!(
        kind,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1400
        })
    );
    // The quote is the packet as the client sent it.
    assert_eq!(quoted4(&quote), (CIP, 40000, VIP, 80));
    assert_eq!(e.counters().icmp_errors_forwarded, 1);
}

#[test]
fn time_exceeded_from_the_client_side_reaches_the_server() {
    let (mut e, forwarded) = with_session(IpAddr::V4(VIP.into()), syn4());
    // The server's SYN-ACK, forwarded to the client.
    let mut synack = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(RIP, LIP, 64)
        .tcp(8080, LPORT, 5000, 64000)
        .syn()
        .ack(1001)
        .write(&mut synack, b"")
        .unwrap();
    let (_, to_client) = run(&mut e, &synack);
    let _ = forwarded;
    // A router on the client's side: the SYN-ACK's TTL ran out.
    let mut te = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4([192, 0, 2, 1], VIP, 64)
        .icmpv4(Icmpv4Type::TimeExceeded(
            etherparse::icmpv4::TimeExceededCode::TtlExceededInTransit,
        ))
        .write(&mut te, &to_client[14..14 + 28])
        .unwrap();
    let (v, out) = run(&mut e, &te);
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(RIP.into())
        }
    );
    let (h, _, quote) = outer_icmp4(&out);
    assert_eq!((h.source, h.destination), (LIP, RIP));
    // The quote is the SYN-ACK as the server sent it.
    assert_eq!(quoted4(&quote), (RIP, 8080, LIP, LPORT));
}

#[test]
fn six_to_four_frag_needed_becomes_packet_too_big_and_back() {
    let (mut e, forwarded) = with_session(IpAddr::V6(VIP6.into()), syn6());
    // Server side: fragmentation needed, MTU 1400 -> packet too big to
    // the IPv6 client, MTU 1420 (RFC 7915 §4.2: the IPv6 header is 20
    // bytes longer).
    let (v, out) = run(&mut e, &frag_needed(ROUTER4, LIP, &forwarded, 1400));
    assert_eq!(
        v,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP6.into())
        }
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Icmpv6(icmp))) = (&p.net, &p.transport)
    else {
        panic!("not ICMPv6");
    };
    let h6 = ip6.header().to_header();
    assert_eq!((h6.source, h6.destination), (VIP6, CIP6));
    let header = icmp.header();
    assert_eq!(header.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1420 });
    assert_eq!(
        header.checksum,
        header
            .icmp_type
            .calc_checksum(h6.source, h6.destination, icmp.payload())
            .unwrap(),
        "ICMPv6 checksum"
    );
    let inner = etherparse::Ipv6HeaderSlice::from_slice(icmp.payload()).unwrap();
    assert_eq!(
        (inner.source(), inner.destination()),
        (CIP6, VIP6),
        "the quote as the client sent it"
    );

    // Client side: packet too big from a router, quoting what we sent the
    // client -> fragmentation needed to the server, MTU 1380.
    let mut synack = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(RIP, LIP, 64)
        .tcp(8080, LPORT, 5000, 64000)
        .syn()
        .ack(1001)
        .write(&mut synack, b"")
        .unwrap();
    let (_, to_client) = run(&mut e, &synack);
    let mut ptb = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv6(ROUTER6, VIP6, 64)
        .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
        .write(&mut ptb, &to_client[14..14 + 48])
        .unwrap();
    let (v, out) = run(&mut e, &ptb);
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(RIP.into())
        }
    );
    let (h, kind, quote) = outer_icmp4(&out);
    assert_eq!((h.source, h.destination), (LIP, RIP));
    assert_eq!(
        kind,
        Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
            next_hop_mtu: 1380
        })
    );
    assert_eq!(quoted4(&quote), (RIP, 8080, LIP, LPORT));
    assert_eq!(e.counters().icmp_errors_forwarded, 2);
}

#[test]
fn errors_about_no_session_and_other_icmp_are_dropped() {
    let (mut e, forwarded) = with_session(IpAddr::V4(VIP.into()), syn4());
    // Quoting another local port: no session.
    let mut other = forwarded.clone();
    other[14 + 20..14 + 22].copy_from_slice(&(LPORT + 1).to_be_bytes());
    let (v, _) = run(&mut e, &frag_needed(ROUTER4, LIP, &other, 1400));
    assert_eq!(v, Verdict::Drop(DropReason::IcmpNoSession));
    // Too little quoted.
    let mut short = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(ROUTER4, LIP, 64)
        .icmpv4(Icmpv4Type::DestinationUnreachable(
            DestUnreachableHeader::Host,
        ))
        .write(&mut short, &forwarded[14..14 + 20])
        .unwrap();
    assert_eq!(
        run(&mut e, &short).0,
        Verdict::Drop(DropReason::IcmpNoSession)
    );
    // A parameter problem is not forwarded.
    let mut pp = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(ROUTER4, LIP, 64)
        .icmpv4(Icmpv4Type::ParameterProblem(
            etherparse::icmpv4::ParameterProblemHeader::PointerIndicatesError(0),
        ))
        .write(&mut pp, &forwarded[14..14 + 28])
        .unwrap();
    assert_eq!(
        run(&mut e, &pp).0,
        Verdict::Drop(DropReason::IcmpUnsupported)
    );
    // An echo request to a local address is the host's too.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(MAC, MAC)
        .ipv4(CIP, LIP, 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut ping, b"x")
        .unwrap();
    assert_eq!(run(&mut e, &ping).0, Verdict::Pass);
    assert_eq!(e.counters().icmp_errors_forwarded, 0);
    assert_eq!(e.counters().dropped(DropReason::IcmpNoSession), 2);
}
