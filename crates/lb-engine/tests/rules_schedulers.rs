//! Schedulers through the engine: weighted round robin, least
//! connections, Maglev by source address, source affinity.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

// ----- 3. schedulers through the engine --------------------------------------

#[test]
fn round_robin_1_to_3_splits_400_sessions_exactly() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let mut l = listener(VIP, 80, Protocol::Tcp, &[], &[LIP], 1024..=65535);
    l.backends
        .push(BackendConfig::new(ip(RIP1), 8080).weight(1));
    l.backends
        .push(BackendConfig::new(ip(RIP2), 8080).weight(3));
    s.e.add_listener(l).unwrap();
    let picks: Vec<IpAddr> = (0..400)
        .map(|i| s.open((CIP, 10000 + i), (VIP, 80)).r.0)
        .collect();
    assert_eq!(picks.iter().filter(|&&r| r == RIP1).count(), 100);
    assert_eq!(picks.iter().filter(|&&r| r == RIP2).count(), 300);
    // Smooth: every 4 consecutive sessions hold exactly one for weight 1.
    for (i, w) in picks.chunks(4).enumerate() {
        assert_eq!(w.iter().filter(|&&r| r == RIP1).count(), 1, "window {i}");
    }
    assert_eq!(s.e.backend_traffic(0, 0).unwrap().new_sessions, 100);
    assert_eq!(s.e.backend_traffic(0, 1).unwrap().new_sessions, 300);
    assert_eq!(s.e.listener_traffic(0).unwrap().new_sessions, 400);
}

#[test]
fn least_connections_prefers_fewer_active_sessions_per_weight() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let mut l = listener(VIP, 80, Protocol::Tcp, &[], &[LIP], 1024..=65535);
    l.scheduler = SchedulerKind::LeastConnections;
    l.timeouts.close = secs(2);
    l.backends
        .push(BackendConfig::new(ip(RIP1), 8080).weight(1));
    l.backends
        .push(BackendConfig::new(ip(RIP2), 8080).weight(2));
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let conns: Vec<Conn> = (0..6).map(|i| s.open((CIP, 40000 + i), v)).collect();
    let rips: Vec<_> = conns.iter().map(|c| c.r.0).collect();
    // active/weight: (0,0) tie -> 1; (1,0) -> 2; (1,1/2) -> 2; (1,1) tie
    // -> 1; (2,1) -> 2; (2,3/2) -> 2.
    assert_eq!(rips, [RIP1, RIP2, RIP2, RIP1, RIP2, RIP2]);
    // Three of backend 2's four sessions end (RST, then the close timeout).
    for c in conns.iter().filter(|c| c.r.0 == RIP2).take(3) {
        assert_eq!(s.client(c, rst(C_ISN + 1), b""), to_server(RIP2));
    }
    s.advance(secs(4));
    assert_eq!(s.e.session_count(), 3);
    assert_eq!(s.e.backend_traffic(0, 0).unwrap().active_sessions, 2);
    assert_eq!(s.e.backend_traffic(0, 1).unwrap().active_sessions, 1);
    // (2, 1/2) -> 2; (2, 2/2) -> 2; (2, 3/2) -> 2; (2, 4/2) tie -> 1.
    let next: Vec<_> = (0..4).map(|i| s.open((CIP2, 40000 + i), v).r.0).collect();
    assert_eq!(next, [RIP2, RIP2, RIP2, RIP1]);
}

#[test]
fn maglev_by_source_address_keeps_every_connection_of_a_client_on_one_backend() {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let backends = [(RIP1, 8080), (RIP2, 8080), (RIP3, 8080), (RIP4, 8080)];
    let mut by_source = listener(VIP, 80, Protocol::Tcp, &backends, &[LIP], 1024..=65535);
    by_source.scheduler = SchedulerKind::Maglev {
        table_size: 65537,
        key: MaglevKey::SourceAddress,
    };
    let mut by_flow = listener(VIP2, 80, Protocol::Tcp, &backends, &[LIP], 1024..=65535);
    by_flow.scheduler = SchedulerKind::maglev();
    s.e.add_listener(by_source).unwrap();
    s.e.add_listener(by_flow).unwrap();
    let mut used = HashSet::new();
    for client in 1..=16u8 {
        let cip = ip([192, 0, 2, client]);
        let first = s.open((cip, 30000), (VIP, 80)).r.0;
        for port in 1..10 {
            assert_eq!(
                s.open((cip, 30000 + port), (VIP, 80)).r.0,
                first,
                "client {client} port {port}"
            );
        }
        used.insert(first);
    }
    assert!(used.len() >= 2, "clients spread over backends: {used:?}");
    // By 5-tuple (the control): one client's connections spread.
    let spread: HashSet<_> = (0..32)
        .map(|port| s.open((CIP, 50000 + port), (VIP2, 80)).r.0)
        .collect();
    assert!(spread.len() >= 2, "{spread:?}");
}

#[test]
fn affinity_keeps_a_client_within_its_timeout_and_may_move_it_after() {
    let mut s = Sim::new(cfg(), Instant::from_secs(100));
    let mut l = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        1024..=65535,
    );
    l.affinity = Some(Affinity { timeout: secs(10) });
    s.e.add_listener(l).unwrap();
    let v = (VIP, 80);
    let at = |s: &mut Sim, t_ms: u64, c: Ep| {
        s.advance_to(Instant::from_millis(t_ms));
        s.open(c, v).r.0
    };
    // Round robin alone would alternate RIP1, RIP2, ...
    assert_eq!(at(&mut s, 100_000, (CIP, 1)), RIP1);
    assert_eq!(at(&mut s, 101_000, (CIP, 2)), RIP1, "sticky, not RR's RIP2");
    assert_eq!(at(&mut s, 102_000, (CIP2, 1)), RIP2);
    assert_eq!(at(&mut s, 103_000, (CIP3, 1)), RIP1);
    // RR's next pick is RIP2 from here on.
    assert_eq!(at(&mut s, 109_000, (CIP, 3)), RIP1, "within the timeout");
    // More than 10 s after the first sessions, but a new session at 109 s
    // refreshed the entry.
    let c4 = s.open((CIP, 4), v);
    assert_eq!(c4.r.0, RIP1);
    assert_eq!(
        at(&mut s, 118_000, (CIP, 5)),
        RIP1,
        "refreshed by a new session"
    );
    // Traffic on an existing session does not refresh it.
    s.advance_to(Instant::from_secs(125));
    assert_eq!(s.client(&c4, ack(C_ISN + 1, 1), b"data"), to_server(RIP1));
    assert_eq!(
        at(&mut s, 128_001, (CIP, 6)),
        RIP2,
        "after the timeout the scheduler chooses again"
    );
    assert_eq!(at(&mut s, 129_000, (CIP, 7)), RIP2, "and it sticks");
    // A backend that goes down loses its clients at once.
    s.e.set_up(0, 1, false).unwrap();
    assert_eq!(at(&mut s, 130_000, (CIP, 8)), RIP1);
    s.e.set_up(0, 1, true).unwrap();
    assert_eq!(at(&mut s, 131_000, (CIP, 9)), RIP1, "sticks to the new one");
}
