//! Expiry: TCP states and their timeouts, the sweep period, SYN on a
//! TIME_WAIT/CLOSE session, silent UDP expiry; `poll_timeout` and
//! `poll_transmit`.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 7. TCP states, timeouts, the sweep ----------------------------------------

const SWEEP_PERIOD: Duration = Duration::from_secs(2);

const FILLERS: u32 = 100;

/// An engine with a TCP and a UDP listener with [`state_timeouts`], and
/// long-lived UDP sessions on a third so that the sweep has work to share.
fn state_sim(start: Instant) -> Sim {
    let config = EngineConfig {
        sweep_period: SWEEP_PERIOD,
        sweep_tick: ms(250),
        ..cfg()
    };
    let mut s = Sim::new(config, start);
    for (port, protocol, rport) in [(80, Protocol::Tcp, 8080), (53, Protocol::Udp, 5353)] {
        let mut l = listener(VIP, port, protocol, &[(RIP1, rport)], &[LIP], 1024..=65535);
        l.timeouts = state_timeouts();
        s.e.add_listener(l).unwrap();
    }
    let mut fill = listener(VIP2, 53, Protocol::Udp, &[(RIP2, 53)], &[LIP], 1024..=65535);
    fill.timeouts.udp = secs(3600);
    s.e.add_listener(fill).unwrap();
    for i in 0..FILLERS {
        let f = udp_frame((CIP3, 10000 + i as u16), (VIP2, 53), b"f");
        assert_eq!(s.verdict(&f), to_server(RIP2));
    }
    s
}

type Drive = fn(&mut Sim);

fn state_cases() -> Vec<(&'static str, Duration, usize, Drive)> {
    let t = state_timeouts();
    let cases: [(&'static str, Duration, usize, Drive); 12] = [
        ("SYN only: syn_recv", t.syn_recv, 0, |s: &mut Sim| {
            s.open((CIP, 40000), (VIP, 80));
        }),
        ("SYN and SYN-ACK: syn_recv", t.syn_recv, 0, |s: &mut Sim| {
            let conn = s.open((CIP, 40000), (VIP, 80));
            assert_eq!(
                s.server(&conn, synack(S_ISN, C_ISN + 1), b""),
                to_client(CIP)
            );
        }),
        (
            "established: tcp_established",
            t.tcp_established,
            2,
            |s: &mut Sim| {
                s.establish((CIP, 40000), (VIP, 80));
            },
        ),
        ("client FIN: fin_wait", t.fin_wait, 0, |s: &mut Sim| {
            let conn = s.establish((CIP, 40000), (VIP, 80));
            assert_eq!(
                s.client(&conn, fin(C_ISN + 1, S_ISN + 1), b""),
                to_server(RIP1)
            );
        }),
        (
            "client FIN acknowledged: fin_wait",
            t.fin_wait,
            0,
            |s: &mut Sim| {
                let conn = s.establish((CIP, 40000), (VIP, 80));
                s.client(&conn, fin(C_ISN + 1, S_ISN + 1), b"");
                assert_eq!(
                    s.server(&conn, ack(S_ISN + 1, C_ISN + 2), b""),
                    to_client(CIP)
                );
            },
        ),
        ("server FIN: close_wait", t.close_wait, 0, |s: &mut Sim| {
            let conn = s.establish((CIP, 40000), (VIP, 80));
            assert_eq!(
                s.server(&conn, fin(S_ISN + 1, C_ISN + 1), b""),
                to_client(CIP)
            );
        }),
        ("both FINs: last_ack", t.last_ack, 0, |s: &mut Sim| {
            let conn = s.establish((CIP, 40000), (VIP, 80));
            s.client(&conn, fin(C_ISN + 1, S_ISN + 1), b"");
            assert_eq!(
                s.server(&conn, fin(S_ISN + 1, C_ISN + 2), b""),
                to_client(CIP)
            );
        }),
        (
            "both FINs acknowledged: time_wait",
            t.time_wait,
            0,
            |s: &mut Sim| {
                let conn = s.establish((CIP, 40000), (VIP, 80));
                s.client(&conn, fin(C_ISN + 1, S_ISN + 1), b"");
                s.server(&conn, fin(S_ISN + 1, C_ISN + 2), b"");
                assert_eq!(
                    s.client(&conn, ack(C_ISN + 2, S_ISN + 2), b""),
                    to_server(RIP1)
                );
            },
        ),
        (
            "server closes first, both acknowledged: time_wait",
            t.time_wait,
            0,
            |s: &mut Sim| {
                let conn = s.establish((CIP, 40000), (VIP, 80));
                s.server(&conn, fin(S_ISN + 1, C_ISN + 1), b"");
                s.client(&conn, fin(C_ISN + 1, S_ISN + 2), b"");
                assert_eq!(
                    s.server(&conn, ack(S_ISN + 2, C_ISN + 2), b""),
                    to_client(CIP)
                );
            },
        ),
        ("client RST: close", t.close, 0, |s: &mut Sim| {
            let conn = s.establish((CIP, 40000), (VIP, 80));
            assert_eq!(s.client(&conn, rst(C_ISN + 1), b""), to_server(RIP1));
        }),
        ("server RST: close", t.close, 0, |s: &mut Sim| {
            let conn = s.establish((CIP, 40000), (VIP, 80));
            assert_eq!(s.server(&conn, rst(S_ISN + 1), b""), to_client(CIP));
        }),
        ("UDP: udp", t.udp, 0, |s: &mut Sim| {
            let f = udp_frame((CIP, 40000), (VIP, 53), b"q");
            assert_eq!(s.verdict(&f), to_server(RIP1));
            let back = udp_frame((RIP1, 5353), endpoints(&s.send(&f).1).0, b"a");
            assert_eq!(s.verdict(&back), to_client(CIP));
        }),
    ];
    cases.into()
}

fn check_state_timeout(start: Instant, what: &str, timeout: Duration, rsts: usize, drive: Drive) {
    let mut s = state_sim(start);
    drive(&mut s);
    let last_packet = s.now;
    assert_eq!(s.e.session_count(), FILLERS + 1, "{what}");
    s.advance_to(last_packet + (timeout - ms(1)));
    assert_eq!(
        s.e.session_count(),
        FILLERS + 1,
        "{what}: still there just before its timeout"
    );
    assert!(s.take_transmits().is_empty(), "{what}");
    s.advance_to(last_packet + timeout + SWEEP_PERIOD);
    assert_eq!(
        s.e.session_count(),
        FILLERS,
        "{what}: gone within a sweep period of its timeout"
    );
    assert_eq!(s.e.counters().sessions_expired, 1, "{what}");
    let sent = s.take_transmits();
    assert_eq!(sent.len(), rsts, "{what}: RSTs");
    if what.starts_with("UDP") {
        assert_eq!(s.e.poll_transmit(&mut [0u8; 128]), None);
    }
}

#[test]
fn each_tcp_state_has_its_own_timeout_and_expiry_is_within_a_sweep_period() {
    for (what, timeout, rsts, drive) in state_cases() {
        check_state_timeout(Instant::from_secs(100), what, timeout, rsts, drive);
    }
}

#[test]
fn timeouts_hold_across_the_wrap_of_the_engines_millisecond_ticks() {
    // 3 s before 2^32 ms: every deadline lies after the wrap.
    let start = Instant::from_millis((1u64 << 32) - 3000);
    for (what, timeout, rsts, drive) in state_cases().into_iter().take(3) {
        check_state_timeout(start, what, timeout, rsts, drive);
    }
}

#[test]
fn a_new_syn_replaces_a_time_wait_or_close_session() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        40000..=40007,
    );
    s.e.add_listener(l).unwrap();
    let (c, v) = ((CIP, 50000), (VIP, 80));
    let first = s.establish(c, v);
    s.client(&first, fin(C_ISN + 1, S_ISN + 1), b"");
    s.server(&first, fin(S_ISN + 1, C_ISN + 2), b"");
    s.client(&first, ack(C_ISN + 2, S_ISN + 2), b"");
    s.advance(secs(1));
    // TIME_WAIT: a new SYN from the same client port is a new session.
    let second = s.establish(c, v);
    assert_ne!(
        second.tuple(),
        first.tuple(),
        "the closed tuple is quarantined"
    );
    assert_eq!(s.e.session_count(), 1);
    assert_eq!(s.e.counters().sessions_created, 2);
    assert_eq!(s.e.counters().sessions_replaced, 1);
    let t = s.e.listener_traffic(0).unwrap();
    assert_eq!((t.new_sessions, t.active_sessions), (2, 1));
    assert_eq!(s.e.quarantined(), 1);
    assert_eq!(
        s.server(&first, ack(S_ISN + 2, C_ISN + 2), b""),
        Verdict::Drop(DropReason::NoSession),
        "the old tuple is gone"
    );
    s.still_flows(&second, "the new session");
    // CLOSE (after an RST): the same.
    s.client(&second, rst(C_ISN + 1), b"");
    let third = s.establish(c, v);
    assert!(third.tuple() != first.tuple() && third.tuple() != second.tuple());
    assert_eq!(s.e.session_count(), 1);
    assert_eq!(s.e.counters().sessions_created, 3);
    assert_eq!(s.e.counters().sessions_replaced, 2);
    assert_eq!(s.e.listener_traffic(0).unwrap().new_sessions, 3);
    assert_eq!(s.e.backend_traffic(0, 0).unwrap().active_sessions, 1);
    // An established session is not replaced by a SYN (a retransmission
    // or a stray): it goes to the same session.
    assert_eq!(s.client(&third, syn(C_ISN), b""), to_server(RIP1));
    assert_eq!(s.e.counters().sessions_created, 3);
    s.still_flows(&third, "after a stray SYN");
}

#[test]
fn udp_sessions_idle_out_silently() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let mut l = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP1, 5353)],
        &[LIP],
        1024..=65535,
    );
    l.timeouts.udp = secs(7);
    s.e.add_listener(l).unwrap();
    let (c, v) = ((CIP, 5000), (VIP, 53));
    let (verdict, out) = s.send(&udp_frame(c, v, b"q"));
    assert_eq!(verdict, to_server(RIP1));
    let (lip, rip) = endpoints(&out);
    s.advance(secs(2));
    // A reply refreshes the session too.
    assert_eq!(s.verdict(&udp_frame(rip, lip, b"a")), to_client(CIP));
    let last = s.now;
    s.advance_to(last + (secs(7) - ms(1)));
    assert_eq!(s.e.session_count(), 1);
    s.advance_to(last + secs(8));
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.counters().sessions_expired, 1);
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    assert_eq!(s.e.poll_transmit(&mut buf), None, "no RST for UDP");
    assert_eq!(s.e.counters().rst_sent, 0);
    assert_eq!(
        s.verdict(&udp_frame(rip, lip, b"late")),
        Verdict::Drop(DropReason::NoSession)
    );
    assert_eq!(s.verdict(&udp_frame(c, v, b"again")), to_server(RIP1));
    assert_eq!(s.e.listener_traffic(0).unwrap().new_sessions, 2);
}

// ----- 10. poll_timeout and poll_transmit -----------------------------------------

#[test]
fn poll_timeout_and_poll_transmit() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    assert_eq!(s.e.poll_timeout(), None, "a new engine");
    let mut l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    l.timeouts.tcp_established = secs(5);
    s.e.add_listener(l).unwrap();
    assert_eq!(s.e.poll_timeout(), None, "a listener but no session");
    let conn = s.establish((CIP, 40000), (VIP, 80));
    let t = s.e.poll_timeout();
    assert!(t.is_some_and(|t| t <= s.now + secs(1)), "{t:?}");
    s.advance(secs(7));
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.poll_timeout(), None, "no session left");

    // Two RSTs wait; a buffer one byte short takes none of them.
    let mut short = [0u8; Engine::TRANSMIT_LEN - 1];
    assert_eq!(s.e.poll_transmit(&mut short), None);
    assert_eq!(s.e.poll_transmit(&mut []), None);
    assert_eq!(s.e.counters().rst_sent, 0);
    let mut buf = [0u8; Engine::TRANSMIT_LEN + 10];
    let mut seen = Vec::new();
    while let Some((len, to)) = s.e.poll_transmit(&mut buf) {
        // An IPv4 RST: Ethernet, IPv4, TCP (TRANSMIT_LEN leaves room for
        // an IPv6 one).
        assert_eq!(len, 14 + 20 + 20);
        let p = SlicedPacket::from_ethernet(&buf[..len]).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not TCP");
        };
        assert!(tcp.rst());
        seen.push((to, endpoints(&buf[..len])));
    }
    seen.sort_by_key(|(to, _)| matches!(to, Transmit::ToServer { .. }));
    assert_eq!(
        seen,
        [
            (sent_to_client(CIP), (conn.v, conn.c)),
            (sent_to_server(RIP1), (conn.l, conn.r)),
        ]
    );
    assert_eq!(s.e.counters().rst_sent, 2);
    assert_eq!(s.e.poll_transmit(&mut buf), None);
}
