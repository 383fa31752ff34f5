//! 6to4 listeners (the product FAQ's "6T04" scenario): an IPv6 client
//! reaches an IPv6 VIP; the engine translates to IPv4 (RFC 7915) toward an
//! IPv4 server from an IPv4 local address, writes the client's IPv6
//! address in the TTM option (20 bytes), and translates the replies back.
//!
//! Each output is parsed by etherparse and checked field by field, with
//! every checksum recomputed by etherparse; the translated IPv4 header's
//! identification is a hash (RFC 7915 §6), so outputs are not compared
//! byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice};
use lb_engine::{
    BackendConfig, DropReason, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool,
    Protocol, Verdict,
};
use lb_testkit::frame::{Link, MAC_A, MAC_B, Tcp, options as opts, tcp_on};
use lb_testkit::sim::send_at;

const CIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];
const VIP6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];
const RIP: [u8; 4] = [10, 0, 0, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const LPORT: u16 = 50010;

fn engine() -> Engine {
    let mut e = Engine::new(EngineConfig {
        capacity: 64,
        ..EngineConfig::default()
    })
    .unwrap();
    for (port, protocol, rport) in [(80, Protocol::Tcp, 8080), (53, Protocol::Udp, 5353)] {
        let mut local = LocalPool::new(vec![IpAddr::V4(LIP.into())]);
        local.ports = LPORT..=LPORT;
        let mut l = ListenerConfig::new(IpAddr::V6(VIP6.into()), port, protocol, local);
        l.backends
            .push(BackendConfig::new(IpAddr::V4(RIP.into()), rport));
        e.add_listener(l).unwrap();
    }
    e
}

fn run(e: &mut Engine, input: &[u8]) -> (Verdict, Vec<u8>) {
    send_at(e, Instant::from_secs(1), input)
}

fn tcp6(
    flags: (bool, Option<u32>),
    seq: u32,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let t = Tcp {
        syn: flags.0,
        ack: flags.1,
        seq,
        ..Tcp::NONE
    };
    let link = Link::DEFAULT.ttl(57);
    tcp_on(
        link,
        (CIP6, 40000),
        (VIP6, 80),
        t.window(64000),
        &opts(options),
        payload,
    )
}

fn tcp4_from_server(
    syn: bool,
    seq: u32,
    ack: u32,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let t = Tcp {
        syn,
        ack: Some(ack),
        seq,
        ..Tcp::NONE
    };
    let link = Link::DEFAULT.macs(MAC_B, MAC_A).ttl(61);
    tcp_on(
        link,
        (RIP, 8080),
        (LIP, LPORT),
        t.window(29200),
        &opts(options),
        payload,
    )
}

/// The IPv4 packet the server gets: addresses, ports, hop limit kept as
/// TTL, checksums (recomputed by etherparse), payload.
fn check_to_server(out: &[u8], payload: &[u8]) -> etherparse::TcpHeader {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let Some(NetSlice::Ipv4(ip)) = &p.net else {
        panic!("not IPv4: {:?}", p.net);
    };
    let h = ip.header().to_header();
    assert_eq!((h.source, h.destination), (LIP, RIP));
    assert_eq!(h.time_to_live, 57, "TTL is the hop limit");
    assert_eq!(h.header_checksum, h.calc_header_checksum());
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP");
    };
    assert_eq!((tcp.source_port(), tcp.destination_port()), (LPORT, 8080));
    assert_eq!(tcp.payload(), payload);
    let header = tcp.to_header();
    assert_eq!(
        header.checksum,
        header.calc_checksum_ipv4(&h, tcp.payload()).unwrap(),
        "TCP checksum"
    );
    header
}

fn ttm_of(header: &etherparse::TcpHeader) -> Option<ttm_core::TtmOption> {
    ttm_core::find(header.options.as_slice(), &ttm_core::KindSet::DEFAULT).unwrap()
}

#[test]
fn a_tcp_connection_both_ways() {
    let mut e = engine();
    let client = SocketAddr::new(IpAddr::V6(Ipv6Addr::from(CIP6)), 40000);

    // SYN: translated, no option on a SYN.
    let (v, out) = run(
        &mut e,
        &tcp6(
            (true, None),
            1000,
            &[TcpOptionElement::MaximumSegmentSize(1440)],
            b"",
        ),
    );
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(RIP.into())
        }
    );
    let syn = check_to_server(&out, b"");
    assert!(syn.syn && ttm_of(&syn).is_none());
    assert_eq!(syn.sequence_number, 1000);

    // SYN-ACK: translated to IPv6 toward the client, MSS lowered by the
    // option (20).
    let (v, out) = run(
        &mut e,
        &tcp4_from_server(
            true,
            5000,
            1001,
            &[TcpOptionElement::MaximumSegmentSize(1460)],
            b"",
        ),
    );
    assert_eq!(
        v,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP6.into())
        }
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(NetSlice::Ipv6(ip6)) = &p.net else {
        panic!("not IPv6");
    };
    let h6 = ip6.header().to_header();
    assert_eq!((h6.source, h6.destination, h6.hop_limit), (VIP6, CIP6, 61));
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP");
    };
    let synack = tcp.to_header();
    assert_eq!((synack.source_port, synack.destination_port), (80, 40000));
    assert_eq!(
        synack.checksum,
        synack.calc_checksum_ipv6(&h6, tcp.payload()).unwrap()
    );
    let mss = synack.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(mss, Some(1460 - 20));
    assert_eq!(e.counters().mss_lowered, 1);

    // The third ACK with data: translated, and the option carries the
    // client's IPv6 address and port (20 bytes).
    let (v, out) = run(
        &mut e,
        &tcp6((false, Some(5001)), 1001, &[], b"GET / HTTP/1.0\r\n\r\n"),
    );
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(RIP.into())
        }
    );
    let ack = check_to_server(&out, b"GET / HTTP/1.0\r\n\r\n");
    let option = ttm_of(&ack).expect("the TTM option");
    assert_eq!((option.client(), option.buffer_len()), (client, 20));
    assert_eq!(e.counters().ttm_inserted, 1);

    // Data back: translated to IPv6.
    let (v, out) = run(
        &mut e,
        &tcp4_from_server(false, 5001, 1019, &[], b"HTTP/1.0 200 OK\r\n"),
    );
    assert_eq!(
        v,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP6.into())
        }
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
        panic!("not TCP");
    };
    assert_eq!(tcp.payload(), b"HTTP/1.0 200 OK\r\n");

    // After the server's first byte, no option.
    let (_, out) = run(&mut e, &tcp6((false, Some(5018)), 1019, &[], b"more"));
    assert!(ttm_of(&check_to_server(&out, b"more")).is_none());
    assert_eq!(e.session_count(), 1);
    let t = e.listener_traffic(0).unwrap();
    assert_eq!((t.packets_in, t.packets_out, t.new_sessions), (3, 2, 1));
}

#[test]
fn udp_both_ways_and_echo() {
    let mut e = engine();
    let mut q = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CIP6, VIP6, 64)
        .udp(5000, 53)
        .write(&mut q, b"query")
        .unwrap();
    let (v, out) = run(&mut e, &q);
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(RIP.into())
        }
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Udp(udp))) = (&p.net, &p.transport) else {
        panic!("not IPv4 UDP");
    };
    let h = ip.header().to_header();
    assert_eq!((h.source, h.destination), (LIP, RIP));
    assert_eq!(
        (udp.source_port(), udp.destination_port(), udp.payload()),
        (LPORT, 5353, &b"query"[..])
    );
    assert_eq!(
        udp.checksum(),
        udp.to_header()
            .calc_checksum_ipv4(&h, udp.payload())
            .unwrap()
    );

    let mut a = Vec::new();
    PacketBuilder::ethernet2(MAC_B, MAC_A)
        .ipv4(RIP, LIP, 64)
        .udp(5353, LPORT)
        .write(&mut a, b"answer")
        .unwrap();
    let (v, out) = run(&mut e, &a);
    assert_eq!(
        v,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP6.into())
        }
    );
    let p = SlicedPacket::from_ethernet(&out).unwrap();
    let (Some(NetSlice::Ipv6(ip6)), Some(TransportSlice::Udp(udp))) = (&p.net, &p.transport) else {
        panic!("not IPv6 UDP");
    };
    let h6 = ip6.header().to_header();
    assert_eq!((h6.source, h6.destination), (VIP6, CIP6));
    assert_eq!(
        (udp.source_port(), udp.destination_port(), udp.payload()),
        (53, 5000, &b"answer"[..])
    );
    assert_eq!(
        udp.checksum(),
        udp.to_header()
            .calc_checksum_ipv6(&h6, udp.payload())
            .unwrap()
    );

    // ICMPv6 echo to the VIP is answered.
    let mut ping = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(CIP6, VIP6, 40)
        .icmpv6_echo_request(7, 1)
        .write(&mut ping, b"ping")
        .unwrap();
    let (v, out) = run(&mut e, &ping);
    assert_eq!(
        v,
        Verdict::Reply {
            next_hop: IpAddr::V6(CIP6.into())
        }
    );
    let mut want = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(VIP6, CIP6, 64)
        .icmpv6_echo_reply(7, 1)
        .write(&mut want, b"ping")
        .unwrap();
    assert_eq!(out, want, "echo reply, byte for byte");
}

#[test]
fn ipv6_that_is_not_ours_or_is_refused() {
    let mut e = engine();
    // To another IPv6 address: passed to the host.
    let mut other = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6(
            CIP6,
            [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99],
            64,
        )
        .tcp(1, 80, 0, 100)
        .syn()
        .write(&mut other, b"")
        .unwrap();
    assert_eq!(run(&mut e, &other).0, Verdict::Pass);
    // A port with no listener, and a segment with no session.
    let mut no_listener = tcp6((true, None), 1, &[], b"");
    no_listener[14 + 40 + 3] = 81;
    assert_eq!(
        run(&mut e, &no_listener).0,
        Verdict::Drop(DropReason::NoListener)
    );
    assert_eq!(
        run(&mut e, &tcp6((false, Some(9)), 1, &[], b"")).0,
        Verdict::Drop(DropReason::NoSession)
    );
    // A fragment.
    let mut frag = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ip(etherparse::IpHeaders::Ipv6(
            etherparse::Ipv6Header {
                source: CIP6,
                destination: VIP6,
                hop_limit: 64,
                ..Default::default()
            },
            etherparse::Ipv6Extensions {
                fragment: Some(etherparse::Ipv6FragmentHeader::new(
                    etherparse::IpNumber::TCP,
                    etherparse::IpFragOffset::ZERO,
                    true,
                    7,
                )),
                ..Default::default()
            },
        ))
        .tcp(40000, 80, 1, 100)
        .syn()
        .write(&mut frag, b"")
        .unwrap();
    assert_eq!(run(&mut e, &frag).0, Verdict::Drop(DropReason::Fragment));
    assert_eq!(e.session_count(), 0);
}

/// A SYN-ACK toward a 6to4 client grows by 20 bytes into IPv6: in a frame
/// without that headroom it is dropped, as truncated, and the MSS it had
/// lowered on the way is not counted (found by the `engine_packet` fuzz
/// target). The server's retransmission, with room, goes through.
#[test]
fn syn_ack_without_headroom_is_dropped_and_not_counted() {
    let mut e = engine();
    let syn = tcp6(
        (true, None),
        1000,
        &[TcpOptionElement::MaximumSegmentSize(1440)],
        b"",
    );
    assert!(matches!(run(&mut e, &syn).0, Verdict::ToServer { .. }));
    let synack = tcp4_from_server(
        true,
        5000,
        1001,
        &[TcpOptionElement::MaximumSegmentSize(1460)],
        b"",
    );
    let mut buf = vec![0u8; 4 + synack.len()];
    buf[4..].copy_from_slice(&synack);
    let mut frame = Frame::new(&mut buf, 4, 4 + synack.len()).unwrap();
    assert_eq!(
        e.handle_packet(Instant::from_secs(1), &mut frame),
        Verdict::Drop(DropReason::Truncated)
    );
    assert_eq!(e.counters().mss_lowered, 0);
    assert_eq!(e.counters().drops[DropReason::Truncated.index()], 1);
    assert_eq!(e.listener_traffic(0).unwrap().packets_out, 0);

    assert!(matches!(run(&mut e, &synack).0, Verdict::ToClient { .. }));
    assert_eq!(e.counters().mss_lowered, 1);
}
