//! Golden-packet fixtures: {description, input frame, expected output
//! frame, expected verdict}, one table per rule. Every frame is built with
//! etherparse, so every expected checksum is computed independently of the
//! engine's own code; outputs are compared byte for byte.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr};

use etherparse::PacketBuilder;
use lb_engine::{
    BackendConfig, DropReason, Engine, EngineConfig, ListenerConfig, LocalPool, Protocol, Verdict,
};
use lb_testkit::frame::{MAC_A, MAC_B, Tcp, echo, fix_ipv4_header_checksum, tcp, tcp_opts, udp};
use lb_testkit::golden::{Fixture, run};

const CIP: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [198, 51, 100, 1];
const RIP: [u8; 4] = [10, 0, 0, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const OTHER: [u8; 4] = [10, 9, 9, 9];
/// The one local port of the TCP listener's pool: outputs are exact.
const LPORT_TCP: u16 = 50000;
const LPORT_UDP: u16 = 50001;

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn engine() -> Engine {
    let mut engine = Engine::new(EngineConfig {
        capacity: 64,
        ..EngineConfig::default()
    })
    .unwrap();
    for (port, protocol, rport, lport) in [
        (80, Protocol::Tcp, 8080, LPORT_TCP),
        (53, Protocol::Udp, 5353, LPORT_UDP),
    ] {
        let mut local = LocalPool::new(vec![ip(LIP)]);
        local.ports = lport..=lport;
        let mut l = ListenerConfig::new(ip(VIP), port, protocol, local);
        l.backends.push(BackendConfig::new(ip(RIP), rport));
        engine.add_listener(l).unwrap();
    }
    engine
}

/// The TTM option for a client, as ttm-core writes it.
fn ttm(client: ([u8; 4], u16)) -> Vec<u8> {
    let option = ttm_core::TtmOption::new(254, std::net::SocketAddr::from(client));
    let mut buf = [0u8; 20];
    let rest = option.emit(&mut buf).unwrap().len();
    buf[..20 - rest].to_vec()
}

fn echo_frame(src: [u8; 4], dst: [u8; 4], reply: bool, ttl: u8) -> Vec<u8> {
    echo(src, dst, reply, ttl, b"ping payload")
}

fn to_server() -> Verdict {
    Verdict::ToServer { next_hop: ip(RIP) }
}

fn to_client() -> Verdict {
    Verdict::ToClient { next_hop: ip(CIP) }
}

#[test]
fn fullnat_tcp_handshake_data_and_close() {
    let c = (CIP, 40000);
    let v = (VIP, 80);
    let r = (RIP, 8080);
    let l = (LIP, LPORT_TCP);
    let syn = Tcp {
        syn: true,
        seq: 1000,
        ..Tcp::default()
    };
    let synack = Tcp {
        syn: true,
        ack: Some(1001),
        seq: 5000,
        ..Tcp::default()
    };
    let ack = Tcp {
        ack: Some(5001),
        seq: 1001,
        ..Tcp::default()
    };
    let data_back = Tcp {
        ack: Some(1006),
        seq: 5001,
        ..Tcp::default()
    };
    let fin = Tcp {
        fin: true,
        ack: Some(5004),
        seq: 1006,
        ..Tcp::default()
    };
    let fixtures = [
        Fixture {
            what: "SYN to the VIP starts a session: cip:cport->VIP:vport becomes lip:lport->rip:rport",
            input: tcp(c, v, syn, b""),
            verdict: to_server(),
            output: Some(tcp(l, r, syn, b"")),
        },
        Fixture {
            what: "SYN-ACK from the server to lip:lport becomes VIP:vport->cip:cport",
            input: tcp(r, l, synack, b""),
            verdict: to_client(),
            output: Some(tcp(v, c, synack, b"")),
        },
        Fixture {
            what: "the third ACK, with data, gets the TTM option with the client's address",
            input: tcp(c, v, ack, b"hello"),
            verdict: to_server(),
            output: Some(tcp_opts(l, r, ack, &ttm(c), b"hello")),
        },
        Fixture {
            what: "data from the server",
            input: tcp(r, l, data_back, b"hi!"),
            verdict: to_client(),
            output: Some(tcp(v, c, data_back, b"hi!")),
        },
        Fixture {
            what: "FIN from the client",
            input: tcp(c, v, fin, b""),
            verdict: to_server(),
            output: Some(tcp(l, r, fin, b"")),
        },
        Fixture {
            what: "a segment from another client port without SYN matches no session",
            input: tcp((CIP, 40001), v, ack, b""),
            verdict: Verdict::Drop(DropReason::NoSession),
            output: None,
        },
        Fixture {
            what: "a reply to the local address from another server port matches no session",
            input: tcp((RIP, 8081), l, data_back, b""),
            verdict: Verdict::Drop(DropReason::NoSession),
            output: None,
        },
        Fixture {
            what: "a reply to another local port matches no session",
            input: tcp(r, (LIP, 50002), data_back, b""),
            verdict: Verdict::Drop(DropReason::NoSession),
            output: None,
        },
    ];
    let mut e = engine();
    run(&mut e, &fixtures);
    assert_eq!(e.session_count(), 1);
    let t = e.listener_traffic(0).unwrap();
    assert_eq!(
        (
            t.packets_in,
            t.packets_out,
            t.new_sessions,
            t.active_sessions
        ),
        (3, 2, 1, 1)
    );
    let b = e.backend_traffic(0, 0).unwrap();
    assert_eq!((b.packets_in, b.packets_out), (3, 2));
    assert_eq!(e.counters().dropped(DropReason::NoSession), 3);
}

#[test]
fn fullnat_udp_and_checksum_zero() {
    let c = (CIP, 5000);
    let v = (VIP, 53);
    let r = (RIP, 5353);
    let l = (LIP, LPORT_UDP);
    let mut no_sum = udp(c, v, b"query");
    no_sum[40] = 0;
    no_sum[41] = 0;
    let mut no_sum_out = udp(l, r, b"query");
    no_sum_out[40] = 0;
    no_sum_out[41] = 0;
    let fixtures = [
        Fixture {
            what: "a datagram to the VIP starts a session",
            input: udp(c, v, b"query"),
            verdict: to_server(),
            output: Some(udp(l, r, b"query")),
        },
        Fixture {
            what: "the reply goes back to the client",
            input: udp(r, l, b"answer"),
            verdict: to_client(),
            output: Some(udp(v, c, b"answer")),
        },
        Fixture {
            what: "UDP checksum 0 (none, RFC 768) stays 0",
            input: no_sum,
            verdict: to_server(),
            output: Some(no_sum_out),
        },
    ];
    let mut e = engine();
    run(&mut e, &fixtures);
    assert_eq!(e.session_count(), 1);
}

#[test]
fn ping_the_vip() {
    let mut disabled = engine();
    let mut local = LocalPool::new(vec![ip(LIP)]);
    local.ports = 40000..=40010;
    let mut l = ListenerConfig::new(ip([198, 51, 100, 2]), 80, Protocol::Tcp, local.clone());
    l.ping = false;
    l.backends.push(BackendConfig::new(ip(RIP), 80));
    disabled.add_listener(l).unwrap();
    let mut dead = ListenerConfig::new(ip([198, 51, 100, 3]), 80, Protocol::Tcp, local);
    dead.backends.push(BackendConfig {
        up: false,
        ..BackendConfig::new(ip(RIP), 80)
    });
    disabled.add_listener(dead).unwrap();

    run(
        &mut disabled,
        &[
            Fixture {
                what: "an echo request to a VIP with a live backend is answered",
                input: echo_frame(CIP, VIP, false, 57),
                verdict: Verdict::Reply { next_hop: ip(CIP) },
                output: Some(echo_frame(VIP, CIP, true, 64)),
            },
            Fixture {
                what: "ping switched off for the VIP",
                input: echo_frame(CIP, [198, 51, 100, 2], false, 64),
                verdict: Verdict::Drop(DropReason::PingDisabled),
                output: None,
            },
            Fixture {
                what: "a VIP whose listeners have no live backend does not answer",
                input: echo_frame(CIP, [198, 51, 100, 3], false, 64),
                verdict: Verdict::Drop(DropReason::PingNoBackend),
                output: None,
            },
            Fixture {
                what: "an echo reply to a VIP is not ours to handle",
                input: echo_frame(CIP, VIP, true, 64),
                verdict: Verdict::Drop(DropReason::IcmpUnsupported),
                output: None,
            },
        ],
    );
    assert_eq!(disabled.counters().echo_replies, 1);
}

#[test]
fn traffic_that_is_not_ours_passes_unchanged() {
    let other = tcp(
        (CIP, 1),
        (OTHER, 22),
        Tcp {
            syn: true,
            ..Tcp::default()
        },
        b"",
    );
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let mut v6 = Vec::new();
    PacketBuilder::ethernet2(MAC_A, MAC_B)
        .ipv6([0x20; 16], [0x21; 16], 64)
        .udp(1, 2)
        .write(&mut v6, b"x")
        .unwrap();
    let fixtures = [
        Fixture {
            what: "TCP to another address",
            input: other.clone(),
            verdict: Verdict::Pass,
            output: Some(other),
        },
        Fixture {
            what: "ARP",
            input: arp.clone(),
            verdict: Verdict::Pass,
            output: Some(arp),
        },
        Fixture {
            what: "IPv6 to no VIP",
            input: v6.clone(),
            verdict: Verdict::Pass,
            output: Some(v6),
        },
    ];
    let mut e = engine();
    run(&mut e, &fixtures);
    assert_eq!(e.counters().passed, 3);
}

#[test]
fn vlan_tagged_and_padded_frames() {
    // A SYN behind an 802.1Q tag: the tag stays, IP and TCP are rewritten.
    let syn = Tcp {
        syn: true,
        seq: 1,
        ..Tcp::default()
    };
    let build = |src: ([u8; 4], u16), dst: ([u8; 4], u16)| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(etherparse::VlanId::try_new(7).unwrap())
            .ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, 1, 64240)
            .syn()
            .write(&mut out, b"")
            .unwrap();
        out
    };
    let _ = syn;
    // A minimum-size Ethernet frame: a 1-byte UDP payload padded to 60.
    let mut padded = udp((CIP, 6000), (VIP, 53), b"q");
    let unpadded_out = udp((LIP, LPORT_UDP), (RIP, 5353), b"q");
    padded.resize(60, 0);
    let fixtures = [
        Fixture {
            what: "802.1Q-tagged SYN",
            input: build((CIP, 41000), (VIP, 80)),
            verdict: to_server(),
            output: Some(build((LIP, LPORT_TCP), (RIP, 8080))),
        },
        Fixture {
            what: "Ethernet padding after the IP packet is cut off",
            input: padded,
            verdict: to_server(),
            output: Some(unpadded_out),
        },
    ];
    let mut e = engine();
    run(&mut e, &fixtures);
}

#[test]
fn bad_input_is_dropped_with_its_reason() {
    let c = (CIP, 40000);
    let v = (VIP, 80);
    let syn = Tcp {
        syn: true,
        seq: 1,
        ..Tcp::default()
    };
    let good = tcp(c, v, syn, b"");

    let mut options = good.clone();
    // IHL 6 with a NOP/EOL option word inserted after the fixed header.
    options.splice(34..34, [1, 1, 1, 0]);
    options[14] = 0x46;
    let total = u16::from_be_bytes([options[16], options[17]]) + 4;
    options[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ipv4_header_checksum(&mut options);

    let mut fragment = good.clone();
    fragment[20] |= 0x20; // more fragments
    fix_ipv4_header_checksum(&mut fragment);
    let mut later_fragment = good.clone();
    later_fragment[20] = 0;
    later_fragment[21] = 8; // offset 64 bytes
    fix_ipv4_header_checksum(&mut later_fragment);

    let mut bad_sum = good.clone();
    bad_sum[24] ^= 0xff;

    let mut long_total = good.clone();
    long_total[16..18].copy_from_slice(&100u16.to_be_bytes());
    fix_ipv4_header_checksum(&mut long_total);
    let mut short_total = good.clone();
    short_total[16..18].copy_from_slice(&19u16.to_be_bytes());
    fix_ipv4_header_checksum(&mut short_total);

    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x44;
    let mut bad_version = good.clone();
    bad_version[14] = 0x65;

    let mut short_tcp = good.clone();
    short_tcp.truncate(14 + 20 + 10);
    short_tcp[16..18].copy_from_slice(&30u16.to_be_bytes());
    fix_ipv4_header_checksum(&mut short_tcp);

    let mut bad_doff = good.clone();
    bad_doff[14 + 20 + 12] = 0x40; // data offset 4
    let mut long_doff = good.clone();
    long_doff[14 + 20 + 12] = 0xf0; // 60 bytes, more than the segment

    let synfin = tcp(
        c,
        v,
        Tcp {
            syn: true,
            fin: true,
            ..Tcp::default()
        },
        b"",
    );
    let synrst = tcp(
        c,
        v,
        Tcp {
            syn: true,
            rst: true,
            ..Tcp::default()
        },
        b"",
    );
    let no_flags = tcp(c, v, Tcp::default(), b"");

    let mut udp_len_lies = udp((CIP, 5000), (VIP, 53), b"query");
    udp_len_lies[38..40].copy_from_slice(&9u16.to_be_bytes());

    let mut gre = good.clone();
    gre[23] = 47;
    fix_ipv4_header_checksum(&mut gre);

    let cases: Vec<(&str, Vec<u8>, DropReason)> = vec![
        ("runt frame", good[..10].to_vec(), DropReason::Truncated),
        (
            "IPv4 header cut short",
            good[..14 + 12].to_vec(),
            DropReason::Truncated,
        ),
        ("IPv4 options", options, DropReason::IpOptions),
        ("first fragment", fragment, DropReason::Fragment),
        ("later fragment", later_fragment, DropReason::Fragment),
        ("bad header checksum", bad_sum, DropReason::BadIpChecksum),
        (
            "total length past the frame",
            long_total,
            DropReason::BadIpLength,
        ),
        (
            "total length below the header",
            short_total,
            DropReason::BadIpLength,
        ),
        ("IHL 4", bad_ihl, DropReason::BadIpHeader),
        (
            "version 6 in an IPv4 frame",
            bad_version,
            DropReason::BadIpHeader,
        ),
        ("TCP header cut short", short_tcp, DropReason::Truncated),
        ("TCP data offset 4", bad_doff, DropReason::BadL4Header),
        (
            "TCP data offset past the segment",
            long_doff,
            DropReason::BadL4Header,
        ),
        ("SYN with FIN", synfin, DropReason::BadTcpFlags),
        ("SYN with RST", synrst, DropReason::BadTcpFlags),
        ("no SYN, ACK or RST", no_flags, DropReason::BadTcpFlags),
        ("UDP length lies", udp_len_lies, DropReason::BadL4Header),
        ("GRE to the VIP", gre, DropReason::UnsupportedProtocol),
        (
            "a VIP port with no listener",
            tcp(c, (VIP, 81), syn, b""),
            DropReason::NoListener,
        ),
        (
            "UDP to the TCP listener's port",
            udp(c, v, b"x"),
            DropReason::NoListener,
        ),
    ];
    let fixtures: Vec<Fixture> = cases
        .into_iter()
        .map(|(what, input, reason)| Fixture {
            what,
            input,
            verdict: Verdict::Drop(reason),
            output: None,
        })
        .collect();
    let mut e = engine();
    run(&mut e, &fixtures);
    assert_eq!(e.session_count(), 0, "no bad input creates a session");
    assert_eq!(e.counters().dropped_total(), fixtures.len() as u64);
}
