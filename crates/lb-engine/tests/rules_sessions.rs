//! Sessions: a segment that matches no session and cannot start one; the
//! bounded session table; counters that add up over a mixed sequence.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 4. no session, cannot start one ------------------------------------------

#[test]
fn a_segment_without_syn_and_without_session_is_dropped_with_its_counter() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let mut tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    tcp.timeouts.close = secs(2);
    s.e.add_listener(tcp).unwrap();
    let udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP1, 5353)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(udp).unwrap();
    let v = (VIP, 80);
    let c = (CIP, 40000);
    let segments = [
        ("ACK", ack(1, 1)),
        (
            "FIN|ACK",
            Tcp {
                fin: true,
                ack: Some(1),
                ..Tcp::default()
            },
        ),
        ("RST", rst(1)),
        (
            "RST|ACK",
            Tcp {
                rst: true,
                ack: Some(1),
                ..Tcp::default()
            },
        ),
        ("SYN|ACK", synack(1, 1)),
    ];
    for (i, (what, t)) in segments.iter().enumerate() {
        for payload in [&b""[..], &b"data"[..]] {
            assert_eq!(
                s.verdict(&tcp_frame(c, v, *t, payload)),
                Verdict::Drop(DropReason::NoSession),
                "{what} {payload:?}"
            );
        }
        assert_eq!(
            s.e.counters().dropped(DropReason::NoSession),
            2 * (i as u64 + 1)
        );
    }
    assert_eq!(s.e.counters().dropped_total(), 10);
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.poll_timeout(), None);
    assert_eq!(*s.e.listener_traffic(0).unwrap(), Default::default());
    // A UDP datagram and a SYN can start a session.
    assert_eq!(s.verdict(&udp_frame(c, (VIP, 53), b"q")), to_server(RIP1));
    let conn = s.establish(c, v);
    // Once a session is gone, its late segments cannot start one either.
    assert_eq!(s.client(&conn, rst(C_ISN + 1), b""), to_server(RIP1));
    s.advance(secs(4));
    assert_eq!(s.e.session_count(), 1, "the UDP session");
    assert_eq!(
        s.client(&conn, ack(C_ISN + 1, S_ISN + 1), b"late"),
        Verdict::Drop(DropReason::NoSession)
    );
    assert_eq!(s.e.counters().dropped(DropReason::NoSession), 11);
    assert_eq!(s.e.session_count(), 1);
}

// ----- 6. the bounded table ----------------------------------------------------

#[test]
fn a_full_table_refuses_new_sessions_and_keeps_the_old_ones() {
    let config = EngineConfig {
        capacity: 4,
        ..cfg()
    };
    let mut s = Sim::new(config, Instant::from_secs(10));
    let mut tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        1024..=65535,
    );
    tcp.timeouts.close = secs(2);
    s.e.add_listener(tcp).unwrap();
    let udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP1, 5353)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(udp).unwrap();
    let v = (VIP, 80);
    let conns: Vec<Conn> = (0..4).map(|i| s.establish((CIP, 40000 + i), v)).collect();
    assert_eq!(s.e.session_count(), 4);
    assert_eq!(
        s.verdict(&tcp_frame((CIP2, 1), v, syn(1), b"")),
        Verdict::Drop(DropReason::TableFull)
    );
    assert_eq!(
        s.verdict(&udp_frame((CIP2, 2), (VIP, 53), b"q")),
        Verdict::Drop(DropReason::TableFull)
    );
    assert_eq!(s.e.counters().dropped(DropReason::TableFull), 2);
    assert_eq!(s.e.session_count(), 4);
    assert_eq!(s.e.listener_traffic(0).unwrap().new_sessions, 4);
    assert_eq!(s.e.listener_traffic(1).unwrap().new_sessions, 0);
    for c in &conns {
        s.still_flows(c, "a full table");
    }
    // One ends; a new session fits again.
    assert_eq!(s.client(&conns[0], rst(C_ISN + 1), b""), to_server(RIP1));
    s.advance(secs(4));
    assert_eq!(s.e.session_count(), 3);
    s.open((CIP2, 1), v);
    assert_eq!(s.e.counters().dropped(DropReason::TableFull), 2);
    for c in &conns[1..] {
        s.still_flows(c, "after a session left");
    }
}

// ----- 8. counters -----------------------------------------------------------------

#[test]
fn counters_add_up_over_a_mixed_sequence() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let mut tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        40000..=40010,
    );
    tcp.timeouts = state_timeouts();
    s.e.add_listener(tcp).unwrap();
    let mut udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP3, 5353)],
        &[LIP],
        40000..=40010,
    );
    udp.timeouts = state_timeouts();
    s.e.add_listener(udp).unwrap();

    // The local ports the engine will choose are learnt from its output.
    let v = (VIP, 80);
    let c1 = (CIP, 1111);
    let c2 = (CIP2, 2222);
    let u1 = (CIP3, 3333);

    /// Where a frame must go: (listener, backend, inbound) or a verdict.
    enum Want {
        In(u16, u32),
        Out(u16, u32),
        Other(Verdict),
    }
    let mut traffic: HashMap<(u16, u32), [u64; 4]> = HashMap::new();
    let mut frames = 0u64;
    let mut run = |s: &mut Sim, f: Vec<u8>, want: Want| -> Vec<u8> {
        frames += 1;
        let (verdict, out) = s.send(&f);
        match want {
            Want::In(l, b) => {
                assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
                let t = traffic.entry((l, b)).or_default();
                t[0] += 1;
                t[1] += ip_len(&f);
            }
            Want::Out(l, b) => {
                assert!(matches!(verdict, Verdict::ToClient { .. }), "{verdict:?}");
                let t = traffic.entry((l, b)).or_default();
                t[2] += 1;
                t[3] += ip_len(&f);
            }
            Want::Other(v) => assert_eq!(verdict, v),
        }
        out
    };
    let out = run(&mut s, tcp_frame(c1, v, syn(C_ISN), b""), Want::In(0, 0));
    let (l1, r1) = endpoints(&out);
    assert_eq!(r1, (RIP1, 8080));
    run(
        &mut s,
        tcp_frame(r1, l1, synack(S_ISN, C_ISN + 1), b""),
        Want::Out(0, 0),
    );
    run(
        &mut s,
        tcp_frame(c1, v, ack(C_ISN + 1, S_ISN + 1), b"hello"),
        Want::In(0, 0),
    );
    let out = run(&mut s, tcp_frame(c2, v, syn(C_ISN), b""), Want::In(0, 1));
    let (l2, r2) = endpoints(&out);
    assert_eq!(r2, (RIP2, 8080));
    run(
        &mut s,
        tcp_frame(r2, l2, synack(S_ISN, C_ISN + 1), b""),
        Want::Out(0, 1),
    );
    run(
        &mut s,
        tcp_frame(c2, v, ack(C_ISN + 1, S_ISN + 1), &[7; 100]),
        Want::In(0, 1),
    );
    run(
        &mut s,
        tcp_frame(r2, l2, ack(S_ISN + 1, C_ISN + 101), &[9; 300]),
        Want::Out(0, 1),
    );
    let out = run(&mut s, udp_frame(u1, (VIP, 53), b"query"), Want::In(1, 0));
    let (lu, ru) = endpoints(&out);
    run(&mut s, udp_frame(ru, lu, b"answer!"), Want::Out(1, 0));
    run(&mut s, udp_frame(u1, (VIP, 53), b"q2"), Want::In(1, 0));
    let dropped = |r| Want::Other(Verdict::Drop(r));
    run(
        &mut s,
        tcp_frame((CIP, 9), v, ack(1, 1), b""),
        dropped(DropReason::NoSession),
    );
    run(
        &mut s,
        tcp_frame(c1, (VIP, 81), syn(1), b""),
        dropped(DropReason::NoListener),
    );
    let mut bad_sum = tcp_frame((CIP, 10), v, syn(1), b"");
    bad_sum[24] ^= 0xff;
    run(&mut s, bad_sum, dropped(DropReason::BadIpChecksum));
    run(
        &mut s,
        tcp_frame(
            (CIP, 11),
            v,
            Tcp {
                syn: true,
                fin: true,
                ..Tcp::default()
            },
            b"",
        ),
        dropped(DropReason::BadTcpFlags),
    );
    run(
        &mut s,
        echo_frame(CIP, VIP, false),
        Want::Other(Verdict::Reply { next_hop: ip(CIP) }),
    );
    run(
        &mut s,
        echo_frame(CIP, VIP, true),
        dropped(DropReason::IcmpUnsupported),
    );
    run(
        &mut s,
        tcp_frame(c1, (OTHER, 22), syn(1), b""),
        Want::Other(Verdict::Pass),
    );
    run(&mut s, arp(), Want::Other(Verdict::Pass));
    run(
        &mut s,
        tcp_frame((RIP1, 9999), l1, ack(1, 1), b""),
        dropped(DropReason::NoSession),
    );
    let mut gre = tcp_frame((CIP, 12), v, syn(1), b"");
    gre[23] = 47;
    fix_ipv4_header_checksum(&mut gre);
    run(&mut s, gre, dropped(DropReason::UnsupportedProtocol));
    run(
        &mut s,
        tcp_frame(c1, v, fin(C_ISN + 6, S_ISN + 1), b""),
        Want::In(0, 0),
    );
    run(
        &mut s,
        tcp_frame(r1, l1, fin(S_ISN + 1, C_ISN + 7), b""),
        Want::Out(0, 0),
    );

    let check = |s: &Sim, active: [u64; 3], what: &str| {
        let c = s.e.counters();
        let mut forwarded = 0;
        for (l, backends) in [(0u16, 2u32), (1, 1)] {
            let lt = *s.e.listener_traffic(l).unwrap();
            let mut sum = [0u64; 6];
            for b in 0..backends {
                let bt = *s.e.backend_traffic(l, b).unwrap();
                let want = traffic.get(&(l, b)).copied().unwrap_or_default();
                assert_eq!(
                    [bt.packets_in, bt.bytes_in, bt.packets_out, bt.bytes_out],
                    want,
                    "{what}: listener {l} backend {b}"
                );
                assert_eq!(bt.new_sessions, 1, "{what}: listener {l} backend {b}");
                let i = if l == 0 { b as usize } else { 2 };
                assert_eq!(bt.active_sessions, active[i], "{what}");
                for (acc, x) in sum.iter_mut().zip([
                    bt.packets_in,
                    bt.bytes_in,
                    bt.packets_out,
                    bt.bytes_out,
                    bt.new_sessions,
                    bt.active_sessions,
                ]) {
                    *acc += x;
                }
            }
            assert_eq!(
                sum,
                [
                    lt.packets_in,
                    lt.bytes_in,
                    lt.packets_out,
                    lt.bytes_out,
                    lt.new_sessions,
                    lt.active_sessions
                ],
                "{what}: listener {l} is the sum of its backends"
            );
            forwarded += lt.packets_in + lt.packets_out;
        }
        assert_eq!(
            forwarded + c.dropped_total() + c.passed + c.echo_replies,
            frames,
            "{what}: every frame counted once"
        );
        let by_reason = [
            (DropReason::NoSession, 2),
            (DropReason::NoListener, 1),
            (DropReason::BadIpChecksum, 1),
            (DropReason::BadTcpFlags, 1),
            (DropReason::IcmpUnsupported, 1),
            (DropReason::UnsupportedProtocol, 1),
        ];
        for (reason, n) in by_reason {
            assert_eq!(c.dropped(reason), n, "{what}: {reason:?}");
        }
        assert_eq!(c.dropped_total(), 7, "{what}");
        assert_eq!((c.passed, c.echo_replies), (2, 1), "{what}");
        assert_eq!(c.sessions_created, 3, "{what}");
    };
    check(&s, [1, 1, 1], "after the sequence");
    assert_eq!(s.e.session_count(), 3);
    // Sessions idle out: active counts fall, everything else stays.
    s.advance(secs(60));
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.counters().sessions_expired, 3);
    assert_eq!(s.take_transmits().len(), 2, "only the established session");
    assert_eq!(s.e.counters().rst_sent, 2);
    check(&s, [0, 0, 0], "after expiry");
}
