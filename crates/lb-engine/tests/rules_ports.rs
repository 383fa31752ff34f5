//! Local ports: unique tuples, exhaustion, the quarantine of closed
//! tuples (also after a reset), a backend without a local address of its
//! family.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 5. local ports ---------------------------------------------------------

#[test]
fn local_tuples_are_unique_exhaustion_drops_the_syn_and_closed_tuples_wait_out_the_quarantine() {
    let mut s = Sim::new(cfg(), Instant::from_secs(100));
    let mut l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        40000..=40003,
    );
    l.timeouts.syn_recv = secs(5);
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let mut conns: Vec<Conn> = (0..3).map(|i| s.establish((CIP, 1000 + i), v)).collect();
    conns.push(s.open((CIP, 1003), v));
    let tuples: HashSet<_> = conns.iter().map(Conn::tuple).collect();
    assert_eq!(tuples.len(), 4, "unique among live sessions");
    for c in &conns {
        assert!((40000..=40003).contains(&c.l.1) && c.l.0 == LIP && c.r == (RIP1, 8080));
    }
    // The fifth concurrent SYN to the same backend.
    let exhausted = |s: &mut Sim, port: u16| s.verdict(&tcp_frame((CIP2, port), v, syn(1), b""));
    assert_eq!(
        exhausted(&mut s, 1),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    assert_eq!(s.e.counters().dropped(DropReason::PortsExhausted), 1);
    assert_eq!(s.e.session_count(), 4);
    assert_eq!(s.e.quarantined(), 0);

    // The half-open one idles out (syn_recv 5 s): its tuple is quarantined.
    let closed_at = loop {
        let t = s.e.poll_timeout().unwrap();
        s.advance_to(t.max(s.now));
        if s.e.session_count() == 3 {
            break s.now;
        }
        assert!(s.now < Instant::from_secs(107), "not expired in time");
    };
    assert!(closed_at >= Instant::from_secs(105));
    assert_eq!(s.e.quarantined(), 1);
    assert_eq!(s.e.counters().sessions_expired, 1);
    assert_eq!(
        exhausted(&mut s, 2),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    s.advance_to(closed_at + secs(60));
    assert_eq!(
        exhausted(&mut s, 3),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    s.advance_to(closed_at + ms(119_900));
    assert_eq!(
        exhausted(&mut s, 4),
        Verdict::Drop(DropReason::PortsExhausted),
        "still quarantined just before 120 s"
    );
    assert_eq!(s.e.counters().dropped(DropReason::PortsExhausted), 4);
    s.advance_to(closed_at + secs(121));
    let reused = s.open((CIP2, 5), v);
    assert_eq!(
        reused.tuple(),
        conns[3].tuple(),
        "the tuple is handed out again after the quarantine"
    );
    assert_eq!(s.e.session_count(), 4);
    for c in &conns[..3] {
        s.still_flows(c, "long-lived sessions meanwhile");
    }
}

#[test]
fn a_tuple_is_unique_across_listeners_sharing_a_local_address() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    for vip in [VIP, VIP2] {
        let l = listener(
            vip,
            80,
            Protocol::Tcp,
            &[(RIP1, 8080)],
            &[LIP],
            40000..=40000,
        );
        s.e.add_listener(l).unwrap();
    }
    let first = s.open((CIP, 1), (VIP, 80));
    assert_eq!(first.l, (LIP, 40000));
    assert_eq!(
        s.verdict(&tcp_frame((CIP, 1), (VIP2, 80), syn(1), b"")),
        Verdict::Drop(DropReason::PortsExhausted)
    );
    // Another server port is another tuple.
    let l = listener(
        VIP2,
        81,
        Protocol::Tcp,
        &[(RIP1, 8081)],
        &[LIP],
        40000..=40000,
    );
    s.e.add_listener(l).unwrap();
    assert_eq!(s.open((CIP, 1), (VIP2, 81)).l, (LIP, 40000));
}

#[test]
fn with_the_quarantine_off_a_closed_tuple_is_reused_at_once() {
    let config = EngineConfig {
        quarantine: Duration::ZERO,
        quarantine_capacity: 0,
        ..cfg()
    };
    let mut s = Sim::new(config, Instant::from_secs(10));
    let mut l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        40000..=40000,
    );
    l.timeouts.syn_recv = secs(1);
    s.e.add_listener(l).unwrap();
    let first = s.open((CIP, 1), (VIP, 80));
    s.advance(secs(3));
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.quarantined(), 0);
    assert_eq!(s.open((CIP2, 1), (VIP, 80)).tuple(), first.tuple());
}

#[test]
fn a_backend_needs_a_local_address_of_its_family() {
    let mut e = Engine::new(cfg()).unwrap();
    let mut l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    l.backends.push(BackendConfig::new(v6("2001:db8::2"), 80));
    assert_eq!(
        e.add_listener(l),
        Err(ConfigError::NoLocalAddressFor(v6("2001:db8::2")))
    );
    let l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    assert_eq!(e.add_listener(l), Ok(0));
    assert_eq!(
        e.add_backend(0, BackendConfig::new(v6("2001:db8::2"), 80)),
        Err(ConfigError::NoLocalAddressFor(v6("2001:db8::2")))
    );
    // An IPv4 backend for an IPv6-only pool.
    let mut l = listener(VIP2, 80, Protocol::Tcp, &[(RIP1, 8080)], &[], 1024..=65535);
    l.local.addresses = vec![v6("2001:db8::100")];
    assert_eq!(
        e.add_listener(l),
        Err(ConfigError::NoLocalAddressFor(ip(RIP1)))
    );
}

/// One local port, one backend: a session at `t`, which then ends by
/// configuration (`end`); a SYN from another client right after must not
/// get the just-closed tuple.
fn reset_then_syn(end: impl FnOnce(&mut Engine)) -> (Verdict, Option<(Ep, Ep)>, Sim, Conn) {
    let mut s = Sim::new(cfg(), Instant::from_secs(1000));
    for (vip, port) in [(VIP, 80), (VIP2, 80)] {
        let l = listener(
            vip,
            port,
            Protocol::Tcp,
            &[(RIP1, 8080)],
            &[LIP],
            40000..=40000,
        );
        s.e.add_listener(l).unwrap();
    }
    let conn = s.establish((CIP, 40000), (VIP, 80));
    end(&mut s.e);
    assert_eq!(s.e.session_count(), 0);
    assert_eq!(s.e.counters().sessions_reset, 1);
    assert_eq!(s.e.quarantined(), 1, "the reset session's tuple is held");
    s.advance(secs(1));
    let (verdict, out) = s.send(&tcp_frame((CIP2, 1), (VIP2, 80), syn(1), b""));
    let tuple = matches!(verdict, Verdict::ToServer { .. }).then(|| endpoints(&out));
    (verdict, tuple, s, conn)
}

fn assert_held_after_reset(what: &str, end: impl FnOnce(&mut Engine)) {
    let (verdict, tuple, mut s, conn) = reset_then_syn(end);
    assert_eq!(
        verdict,
        Verdict::Drop(DropReason::PortsExhausted),
        "{what}: the tuple {:?} closed by a reset 1 s ago was handed out again as {tuple:?}",
        conn.tuple()
    );
    // And it is free after the quarantine period.
    s.advance(secs(121));
    assert_eq!(s.open((CIP2, 2), (VIP2, 80)).tuple(), conn.tuple());
}

#[test]
fn reset_backend_quarantines_the_tuples_it_closes() {
    assert_held_after_reset("reset_backend", |e| e.reset_backend(0, 0).unwrap());
}

#[test]
fn remove_backend_with_reset_quarantines_the_tuples_it_closes() {
    assert_held_after_reset("remove_backend(reset=true)", |e| {
        e.remove_backend(0, 0, true).unwrap();
        e.add_backend(0, BackendConfig::new(ip(RIP1), 8080))
            .unwrap();
    });
}

#[test]
fn remove_listener_quarantines_the_tuples_it_closes() {
    assert_held_after_reset("remove_listener", |e| e.remove_listener(0).unwrap());
}
