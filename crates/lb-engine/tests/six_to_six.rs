//! 6to6 listeners: IPv6 clients, VIP, local addresses and servers. The
//! addresses and ports are rewritten in place (FULLNAT) with the
//! transport checksum updated, the TTM option (20 bytes) carries the IPv6
//! client, ICMPv6 errors reach the session's other side, and an idle
//! session's RSTs are IPv6 both ways. Outputs are parsed by etherparse,
//! every checksum recomputed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use etherparse::{
    Icmpv6Type, NetSlice, PacketBuilder, SlicedPacket, TcpOptionElement, TransportSlice,
};
use lb_engine::{
    BackendConfig, Engine, EngineConfig, Instant, ListenerConfig, LocalPool, Protocol, Timeouts,
    Transmit, Verdict,
};
use lb_testkit::frame::{Link, Tcp, options as opts, tcp_on};
use lb_testkit::sim::send_at;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const fn a6(last: u8) -> [u8; 16] {
    [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last]
}
const CIP: [u8; 16] = a6(0x10);
const VIP: [u8; 16] = a6(0x01);
const LIP: [u8; 16] = a6(0x64);
const RIP: [u8; 16] = a6(0x02);
const LPORT: u16 = 50030;

fn engine() -> Engine {
    let mut e = Engine::new(EngineConfig {
        capacity: 16,
        ..EngineConfig::default()
    })
    .unwrap();
    let mut local = LocalPool::new(vec![IpAddr::V6(LIP.into())]);
    local.ports = LPORT..=LPORT;
    let mut l = ListenerConfig::new(IpAddr::V6(VIP.into()), 80, Protocol::Tcp, local);
    l.backends
        .push(BackendConfig::new(IpAddr::V6(RIP.into()), 8080));
    l.timeouts = Timeouts {
        tcp_established: std::time::Duration::from_secs(60),
        ..Timeouts::default()
    };
    e.add_listener(l).unwrap();
    e
}

fn run(e: &mut Engine, at: u64, input: &[u8]) -> (Verdict, Vec<u8>) {
    send_at(e, Instant::from_secs(at), input)
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src: ([u8; 16], u16),
    dst: ([u8; 16], u16),
    syn: bool,
    ack: Option<u32>,
    seq: u32,
    options: &[TcpOptionElement],
    payload: &[u8],
) -> Vec<u8> {
    let t = Tcp {
        syn,
        ack,
        seq,
        ..Tcp::NONE
    };
    let link = Link::DEFAULT.macs(MAC, MAC).ttl(60);
    tcp_on(link, src, dst, t.window(64000), &opts(options), payload)
}

/// The IPv6 TCP segment in a frame: addresses, header, payload, with the
/// checksum verified.
fn parse(out: &[u8]) -> ([u8; 16], [u8; 16], etherparse::TcpHeader, Vec<u8>) {
    let p = SlicedPacket::from_ethernet(out).unwrap();
    let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Tcp(t))) = (&p.net, &p.transport) else {
        panic!("not IPv6 TCP");
    };
    let h = ip.header().to_header();
    let header = t.to_header();
    assert_eq!(
        header.checksum,
        header.calc_checksum_ipv6(&h, t.payload()).unwrap(),
        "TCP checksum"
    );
    (h.source, h.destination, header, t.payload().to_vec())
}

#[test]
fn a_connection_with_the_option_then_idle_rsts() {
    let mut e = engine();
    let c = (CIP, 40000);
    let v = (VIP, 80);
    let r = (RIP, 8080);
    let l = (LIP, LPORT);
    let ts = TcpOptionElement::Timestamp(7, 0);

    let (verdict, out) = run(
        &mut e,
        1,
        &tcp(c, v, true, None, 1000, std::slice::from_ref(&ts), b""),
    );
    assert_eq!(
        verdict,
        Verdict::ToServer {
            next_hop: IpAddr::V6(RIP.into())
        }
    );
    let (src, dst, h, _) = parse(&out);
    assert_eq!(
        (src, h.source_port, dst, h.destination_port),
        (LIP, LPORT, RIP, 8080)
    );
    assert!(
        ttm_core::find(h.options.as_slice(), &ttm_core::KindSet::DEFAULT)
            .unwrap()
            .is_none()
    );

    let mss = TcpOptionElement::MaximumSegmentSize(1440);
    let (verdict, out) = run(&mut e, 1, &tcp(r, l, true, Some(1001), 5000, &[mss], b""));
    assert_eq!(
        verdict,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP.into())
        }
    );
    let (src, dst, h, _) = parse(&out);
    assert_eq!(
        (src, h.source_port, dst, h.destination_port),
        (VIP, 80, CIP, 40000)
    );
    let lowered = h.options_iterator().find_map(|o| match o {
        Ok(TcpOptionElement::MaximumSegmentSize(m)) => Some(m),
        _ => None,
    });
    assert_eq!(lowered, Some(1440 - 20), "room for the 20-byte option");

    let (_, out) = run(
        &mut e,
        1,
        &tcp(
            c,
            v,
            false,
            Some(5001),
            1001,
            std::slice::from_ref(&ts),
            b"hello",
        ),
    );
    let (src, dst, h, payload) = parse(&out);
    assert_eq!((src, dst, payload.as_slice()), (LIP, RIP, &b"hello"[..]));
    let option = ttm_core::find(h.options.as_slice(), &ttm_core::KindSet::DEFAULT)
        .unwrap()
        .expect("the option");
    assert_eq!(
        option.client(),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::from(CIP)), 40000)
    );

    let (_, out) = run(&mut e, 1, &tcp(r, l, false, Some(1006), 5001, &[], b"hi"));
    let (src, dst, _, payload) = parse(&out);
    assert_eq!((src, dst, payload.as_slice()), (VIP, CIP, &b"hi"[..]));
    let (_, out) = run(&mut e, 1, &tcp(c, v, false, Some(5003), 1006, &[], b""));
    let (_, _, h, _) = parse(&out);
    assert!(
        ttm_core::find(h.options.as_slice(), &ttm_core::KindSet::DEFAULT)
            .unwrap()
            .is_none()
    );

    // Idle past the 60 s timeout: an IPv6 RST to each side.
    let mut now = Instant::from_secs(62);
    while e.session_count() > 0 {
        e.handle_timeout(now);
        now = now + std::time::Duration::from_millis(100);
    }
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    let mut rsts = Vec::new();
    while let Some((len, to)) = e.poll_transmit(&mut buf) {
        assert_eq!(len, 74);
        let (src, dst, h, _) = parse(&buf[..len]);
        assert!(h.rst && h.ack);
        rsts.push((to, src, dst, h.sequence_number));
    }
    assert_eq!(
        rsts,
        vec![
            (
                Transmit::ToClient {
                    next_hop: IpAddr::V6(CIP.into())
                },
                VIP,
                CIP,
                5003
            ),
            (
                Transmit::ToServer {
                    next_hop: IpAddr::V6(RIP.into())
                },
                LIP,
                RIP,
                1006
            ),
        ]
    );
}

#[test]
fn packet_too_big_both_ways() {
    let mut e = engine();
    let (_, to_server) = run(
        &mut e,
        1,
        &tcp((CIP, 40000), (VIP, 80), true, None, 1, &[], b""),
    );
    let (_, to_client) = run(
        &mut e,
        1,
        &tcp((RIP, 8080), (LIP, LPORT), true, Some(2), 9, &[], b""),
    );
    let ptb = |from: [u8; 16], to: [u8; 16], quoted: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv6(from, to, 64)
            .icmpv6(Icmpv6Type::PacketTooBig { mtu: 1400 })
            .write(&mut out, &quoted[14..14 + 60])
            .unwrap();
        out
    };
    let check = |out: &[u8], src: [u8; 16], dst: [u8; 16], inner: ([u8; 16], [u8; 16])| {
        let p = SlicedPacket::from_ethernet(out).unwrap();
        let (Some(NetSlice::Ipv6(ip)), Some(TransportSlice::Icmpv6(icmp))) = (&p.net, &p.transport)
        else {
            panic!("not ICMPv6");
        };
        let h = ip.header().to_header();
        assert_eq!((h.source, h.destination), (src, dst));
        let header = icmp.header();
        assert_eq!(header.icmp_type, Icmpv6Type::PacketTooBig { mtu: 1400 });
        assert_eq!(
            header.checksum,
            header
                .icmp_type
                .calc_checksum(h.source, h.destination, icmp.payload())
                .unwrap()
        );
        let q = etherparse::Ipv6HeaderSlice::from_slice(icmp.payload()).unwrap();
        assert_eq!((q.source(), q.destination()), inner);
    };
    // From a router on the server's side, about what we sent the server.
    let router = a6(0xfe);
    let (verdict, out) = run(&mut e, 1, &ptb(router, LIP, &to_server));
    assert_eq!(
        verdict,
        Verdict::ToClient {
            next_hop: IpAddr::V6(CIP.into())
        }
    );
    check(&out, VIP, CIP, (CIP, VIP));
    // From a router on the client's side, about what we sent the client.
    let (verdict, out) = run(&mut e, 1, &ptb(router, VIP, &to_client));
    assert_eq!(
        verdict,
        Verdict::ToServer {
            next_hop: IpAddr::V6(RIP.into())
        }
    );
    check(&out, LIP, RIP, (RIP, LIP));
    assert_eq!(e.counters().icmp_errors_forwarded, 2);
}
