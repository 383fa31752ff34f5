//! Backends added, removed, re-weighted, marked down and reset while
//! sessions exist.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 2. backends changing while sessions exist ---------------------------

#[test]
fn drained_and_down_backends_keep_their_sessions_and_get_no_new_ones() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let c0 = s.establish((CIP, 40000), v);
    let c1 = s.establish((CIP, 40001), v);
    assert_eq!((c0.r.0, c1.r.0), (RIP1, RIP2));
    let mut port = 41000;
    let mut next = |s: &mut Sim| {
        port += 1;
        s.open((CIP2, port), v).r.0
    };

    // Weight 0 drains backend 0.
    s.e.set_weight(0, 0, 0).unwrap();
    s.still_flows(&c0, "drained backend");
    for _ in 0..10 {
        assert_eq!(next(&mut s), RIP2, "a drained backend gets no new session");
    }
    s.e.set_weight(0, 0, 1).unwrap();
    let back: Vec<_> = (0..4).map(|_| next(&mut s)).collect();
    assert_eq!(back.iter().filter(|&&r| r == RIP1).count(), 2, "{back:?}");

    // Down: the same.
    s.e.set_up(0, 1, false).unwrap();
    s.still_flows(&c1, "down backend");
    for _ in 0..10 {
        assert_eq!(next(&mut s), RIP1, "a down backend gets no new session");
    }
    // Nothing eligible: the SYN is dropped with its counter, sessions stay.
    s.e.set_weight(0, 0, 0).unwrap();
    let count = s.e.session_count();
    assert_eq!(
        s.verdict(&tcp_frame((CIP3, 1), v, syn(1), b"")),
        Verdict::Drop(DropReason::NoBackend)
    );
    assert_eq!(s.e.counters().dropped(DropReason::NoBackend), 1);
    assert_eq!(s.e.session_count(), count);
    s.still_flows(&c0, "drained, nothing eligible");
    s.still_flows(&c1, "down, nothing eligible");
    s.e.set_up(0, 1, true).unwrap();
    assert_eq!(next(&mut s), RIP2);
    assert_eq!(s.e.counters().sessions_reset, 0);
    assert_eq!(s.e.backend_traffic(0, 0).unwrap().new_sessions, 1 + 2 + 10);
    assert_eq!(
        s.e.backend_traffic(0, 1).unwrap().new_sessions,
        1 + 10 + 2 + 1
    );
}

#[test]
fn removed_and_reset_backends() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080), (RIP3, 8080)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let mut conns: Vec<Conn> = (0..6).map(|i| s.establish((CIP, 40000 + i), v)).collect();
    let rips: Vec<_> = conns.iter().map(|c| c.r.0).collect();
    assert_eq!(rips, [RIP1, RIP2, RIP3, RIP1, RIP2, RIP3]);
    let on = |conns: &[Conn], rip| conns.iter().filter(|c| c.r.0 == rip).count() as u64;
    let check_counts = |s: &Sim, conns: &[Conn], what: &str| {
        assert_eq!(u64::from(s.e.session_count()), conns.len() as u64, "{what}");
        let lt = s.e.listener_traffic(0).unwrap();
        assert_eq!(lt.active_sessions, conns.len() as u64, "{what}");
        for (b, rip) in [RIP1, RIP2, RIP3].into_iter().enumerate() {
            assert_eq!(
                s.e.backend_traffic(0, b as u32).unwrap().active_sessions,
                on(conns, rip),
                "{what}: backend {b}"
            );
        }
    };

    // Removed without reset: its sessions continue, it gets no new one.
    s.e.remove_backend(0, 0, false).unwrap();
    assert_eq!(s.e.counters().sessions_reset, 0);
    check_counts(&s, &conns, "after remove_backend(reset=false)");
    s.still_flows(&conns[0], "removed backend");
    s.still_flows(&conns[3], "removed backend");
    for i in 0..6 {
        let c = s.establish((CIP2, 41000 + i), v);
        assert_ne!(c.r.0, RIP1, "a removed backend gets no new session");
        conns.push(c);
    }
    check_counts(&s, &conns, "new sessions after remove_backend");

    // Removed with reset: its sessions end now.
    let gone: Vec<Conn> = conns.iter().copied().filter(|c| c.r.0 == RIP2).collect();
    assert_eq!(gone.len(), 5);
    s.e.remove_backend(0, 1, true).unwrap();
    conns.retain(|c| c.r.0 != RIP2);
    assert_eq!(s.e.counters().sessions_reset, 5);
    check_counts(&s, &conns, "after remove_backend(reset=true)");
    for c in &gone {
        assert_eq!(
            s.client(c, ack(C_ISN + 1, S_ISN + 1), b"late"),
            Verdict::Drop(DropReason::NoSession),
            "a reset session's client segment without SYN"
        );
        assert_eq!(
            s.server(c, ack(S_ISN + 1, C_ISN + 1), b"late"),
            Verdict::Drop(DropReason::NoSession),
            "a reset session's server segment"
        );
    }
    assert_eq!(s.e.counters().dropped(DropReason::NoSession), 10);
    // The client may come back with a SYN on the same port.
    let again = s.establish(gone[0].c, v);
    assert_eq!(again.r.0, RIP3);
    conns.push(again);
    for c in conns.clone() {
        s.still_flows(&c, "the other backends' sessions");
    }

    // reset_backend: its sessions end, it stays in the pool.
    let gone: Vec<Conn> = conns.iter().copied().filter(|c| c.r.0 == RIP3).collect();
    let reset_before = s.e.counters().sessions_reset;
    s.e.reset_backend(0, 2).unwrap();
    conns.retain(|c| c.r.0 != RIP3);
    assert_eq!(
        s.e.counters().sessions_reset,
        reset_before + gone.len() as u64
    );
    check_counts(&s, &conns, "after reset_backend");
    for c in &gone {
        assert_eq!(
            s.client(c, ack(C_ISN + 1, S_ISN + 1), b"late"),
            Verdict::Drop(DropReason::NoSession)
        );
    }
    assert_eq!(s.establish((CIP3, 1), v).r.0, RIP3, "still in the pool");
    s.still_flows(&conns[0], "the removed backend's session still");
    assert_eq!(s.e.counters().sessions_expired, 0);
}

#[test]
fn added_backends_take_new_sessions_and_old_sessions_stay() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let old: Vec<Conn> = (0..3).map(|i| s.establish((CIP, 40000 + i), v)).collect();
    assert_eq!(
        s.e.add_backend(0, BackendConfig::new(ip(RIP2), 8080).weight(3)),
        Ok(1)
    );
    let mut to_new = 0;
    for i in 0..8 {
        if s.open((CIP2, 40000 + i), v).r.0 == RIP2 {
            to_new += 1;
        }
    }
    assert_eq!(to_new, 6, "weight 3 of 4");
    for c in &old {
        s.still_flows(c, "a session from before the backend was added");
    }
    // The same host on another port is another backend (FAQ Q11).
    assert_eq!(
        s.e.add_backend(0, BackendConfig::new(ip(RIP2), 8081)),
        Ok(2)
    );
    // Removing a backend whose sessions continue keeps its slot until
    // they end.
    s.e.remove_backend(0, 0, false).unwrap();
    assert_eq!(
        s.e.add_backend(0, BackendConfig::new(ip(RIP1), 8080)),
        Ok(3)
    );
    for c in &old {
        s.still_flows(c, "after its backend was removed and re-added");
    }
}

#[test]
fn removing_a_listener_ends_its_sessions_only() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let a = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP],
        1024..=65535,
    );
    let b = listener(
        VIP2,
        80,
        Protocol::Tcp,
        &[(RIP2, 8080)],
        &[LIP2],
        1024..=65535,
    );
    s.e.add_listener(a).unwrap();
    s.e.add_listener(b).unwrap();
    let keep = s.establish((CIP, 40000), (VIP, 80));
    let gone = s.establish((CIP, 40001), (VIP2, 80));
    s.e.remove_listener(1).unwrap();
    assert_eq!(s.e.counters().sessions_reset, 1);
    assert_eq!(s.e.session_count(), 1);
    s.still_flows(&keep, "the other listener");
    // Its VIP and local address are no longer the engine's.
    assert_eq!(
        s.client(&gone, ack(C_ISN + 1, S_ISN + 1), b""),
        Verdict::Pass
    );
    assert_eq!(
        s.server(&gone, ack(S_ISN + 1, C_ISN + 1), b""),
        Verdict::Pass
    );
    assert_eq!(s.e.remove_listener(1), Err(ConfigError::NoSuchListener(1)));
}
