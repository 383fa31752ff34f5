//! The XDP program's verdicts, run by the kernel over frames made here
//! (`BPF_PROG_TEST_RUN`: the program attached nowhere, no network touched).
//! Needs root (CAP_BPF and CAP_NET_ADMIN to load an XDP program), as
//! `scripts/test` runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use etherparse::PacketBuilder;
use lb_xdp::xdp::XdpProgram;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const ETH: usize = 14;

fn v4(dst: Ipv4Addr, tcp: bool, port: u16) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(
        [10, 77, 0, 1],
        dst.octets(),
        64,
    );
    let mut out = Vec::new();
    if tcp {
        b.tcp(40000, port, 1, 1024).write(&mut out, b"x").unwrap();
    } else {
        b.udp(40000, port).write(&mut out, b"x").unwrap();
    }
    out
}

fn v6(dst: Ipv6Addr, port: u16) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(
            "fd77::1".parse::<Ipv6Addr>().unwrap().octets(),
            dst.octets(),
            64,
        )
        .tcp(40000, port, 1, 1024)
        .write(&mut out, b"x")
        .unwrap();
    out
}

/// `frame` (IPv4) with 8 bytes of options (NOPs) in its IP header.
fn with_options(mut frame: Vec<u8>) -> Vec<u8> {
    let at = ETH + 20;
    frame.splice(at..at, [1u8; 8]);
    frame[ETH] = 0x40 | 7; // version 4, 28 bytes
    let total = u16::from_be_bytes([frame[ETH + 2], frame[ETH + 3]]) + 8;
    frame[ETH + 2..ETH + 4].copy_from_slice(&total.to_be_bytes());
    frame
}

/// `frame` (IPv6 TCP) with a hop-by-hop options header before TCP.
fn with_extension(mut frame: Vec<u8>) -> Vec<u8> {
    let at = ETH + 40;
    // Next header TCP (6), length 0 (8 bytes), PadN of 4 bytes... 6 in all.
    frame.splice(at..at, [6u8, 0, 1, 4, 0, 0, 0, 0]);
    frame[ETH + 6] = 0; // hop-by-hop
    let len = u16::from_be_bytes([frame[ETH + 4], frame[ETH + 5]]) + 8;
    frame[ETH + 4..ETH + 6].copy_from_slice(&len.to_be_bytes());
    frame
}

#[test]
fn tcp_for_an_l7_listener_goes_to_the_host() {
    let mut p = XdpProgram::load().expect("loading the XDP program (run as root)");
    let vip4: Ipv4Addr = "10.77.0.10".parse().unwrap();
    let vip6: Ipv6Addr = "fd77::10".parse().unwrap();
    p.set_addresses(&[IpAddr::V4(vip4), IpAddr::V6(vip6)])
        .unwrap();
    p.set_l7(&[
        SocketAddr::new(vip4.into(), 443),
        SocketAddr::new(vip6.into(), 443),
    ])
    .unwrap();
    let cases: [(&str, Vec<u8>, u32); 10] = [
        ("v4 tcp 443", v4(vip4, true, 443), XDP_PASS),
        ("v4 tcp 80", v4(vip4, true, 80), XDP_DROP),
        ("v4 udp 443", v4(vip4, false, 443), XDP_DROP),
        (
            "v4 tcp 443 with options",
            with_options(v4(vip4, true, 443)),
            XDP_PASS,
        ),
        (
            "v4 tcp 80 with options",
            with_options(v4(vip4, true, 80)),
            XDP_DROP,
        ),
        (
            "v4 other address",
            v4("10.77.0.11".parse().unwrap(), true, 80),
            XDP_PASS,
        ),
        ("v6 tcp 443", v6(vip6, 443), XDP_PASS),
        ("v6 tcp 80", v6(vip6, 80), XDP_DROP),
        // Not looked into: lbd's, as before.
        (
            "v6 tcp 443 after an extension header",
            with_extension(v6(vip6, 443)),
            XDP_DROP,
        ),
        (
            "v4 tcp 443, a later fragment",
            {
                let mut f = v4(vip4, true, 443);
                f[ETH + 6..ETH + 8].copy_from_slice(&100u16.to_be_bytes());
                f
            },
            XDP_DROP,
        ),
    ];
    for (what, frame, verdict) in &cases {
        assert_eq!(p.test_run(frame).unwrap(), *verdict, "{what}");
    }
    // The queue had no socket: what was lbd's is counted as such.
    let stats = p.stats(0).unwrap();
    assert_eq!((stats.passed, stats.no_socket), (4, 6), "{stats:?}");
    // Rewritten (a reload): 443 over IPv4 is lbd's again, IPv6 still not.
    p.set_l7(&[SocketAddr::new(vip6.into(), 443)]).unwrap();
    assert_eq!(p.test_run(&v4(vip4, true, 443)).unwrap(), XDP_DROP);
    assert_eq!(p.test_run(&v6(vip6, 443)).unwrap(), XDP_PASS);
    p.set_l7(&[]).unwrap();
    assert_eq!(p.test_run(&v6(vip6, 443)).unwrap(), XDP_DROP);
    // An L7 VIP that no TCP or UDP listener has is not in the address
    // set: the host's.
    p.set_addresses(&[]).unwrap();
    assert_eq!(p.test_run(&v4(vip4, true, 80)).unwrap(), XDP_PASS);
}
