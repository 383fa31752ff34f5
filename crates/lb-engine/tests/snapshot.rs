//! Sessions across a restart: `Engine::export_state` in engine A,
//! `Engine::import_state` into a fresh engine B, and B goes on exactly as A
//! would have.
//!
//! The world: 4to4 TCP and UDP listeners, a 6to4 TCP listener and 6to6 TCP
//! and UDP listeners. Connections are driven through A with
//! etherparse-built frames on a simulated clock and left at every stage
//! (after the SYN, after the SYN-ACK, after the third ACK, with data both
//! ways); after the import each next frame goes to A and to B and must come
//! out of both byte for byte the same, the TTM option included, and idle
//! sessions end in both with the same RSTs. Then what a changed
//! configuration does (capacity, backends, listeners, local addresses,
//! timeouts, seed), the uniqueness of tuples against new SYNs, and every
//! kind of malformed snapshot, each refused with its error and leaving the
//! engine as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use lb_engine::{
    BackendConfig, DropReason, Engine, EngineConfig, Instant, ListenerConfig, LocalPool, Protocol,
    SNAPSHOT_VERSION, Section, SnapshotError, Timeouts, Transmit, Verdict, snapshot_hash_seed,
};
use lb_testkit::Ep;
use lb_testkit::frame::{Tcp, tcp, udp};
use lb_testkit::parse::endpoints;
use lb_testkit::sim::{advance, send_at as send};

const SEED: u64 = 0x5eed_0000_1234_abcd;
/// Client and server initial sequence numbers.
const C_ISN: u32 = 0xffff_fff0; // wraps during the test
const S_ISN: u32 = 5000;

fn v4(s: &str) -> IpAddr {
    IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ----- the configuration ---------------------------------------------------

/// How an engine's configuration differs from A's.
#[derive(Clone)]
struct Setup {
    capacity: u32,
    seed: u64,
    /// Local ports of every pool.
    ports: RangeInclusive<u16>,
    /// The 4to4 TCP listener has its second backend (10.0.0.3).
    second_backend: bool,
    /// The 4to4 UDP listener exists.
    udp4: bool,
    /// The 4to4 TCP listener's pool has its second address (10.0.0.101).
    second_lip: bool,
    established: Duration,
    quarantine: Duration,
}

impl Default for Setup {
    fn default() -> Setup {
        Setup {
            capacity: 1024,
            seed: SEED,
            ports: 1024..=65535,
            second_backend: true,
            udp4: true,
            second_lip: true,
            established: secs(60),
            quarantine: secs(120),
        }
    }
}

fn vip4() -> IpAddr {
    v4("198.51.100.1")
}
fn vip64() -> IpAddr {
    v6("2001:db8::1")
}
fn vip66() -> IpAddr {
    v6("2001:db8::2")
}

impl Setup {
    fn engine(&self) -> Engine {
        let mut e = Engine::new(EngineConfig {
            capacity: self.capacity,
            affinity_capacity: 1024,
            quarantine_capacity: 4096,
            quarantine: self.quarantine,
            hash_seed: self.seed,
            ..EngineConfig::default()
        })
        .unwrap();
        let pool = |addresses: Vec<IpAddr>| {
            let mut p = LocalPool::new(addresses);
            p.ports = self.ports.clone();
            p
        };
        let timeouts = Timeouts {
            tcp_established: self.established,
            udp: secs(120),
            ..Timeouts::default()
        };
        let listener = |vip, port, protocol, lips: Vec<IpAddr>, backends: &[(IpAddr, u16)]| {
            let mut l = ListenerConfig::new(vip, port, protocol, pool(lips));
            l.timeouts = timeouts;
            for &(a, p) in backends {
                l.backends.push(BackendConfig::new(a, p));
            }
            l
        };
        let (r1, r2, r6) = (v4("10.0.0.2"), v4("10.0.0.3"), v6("2001:db8::a"));
        let (lip1, lip2, lip6) = (v4("10.0.0.100"), v4("10.0.0.101"), v6("2001:db8::64"));
        let mut tcp4_backends = vec![(r1, 8080)];
        if self.second_backend {
            tcp4_backends.push((r2, 8080));
        }
        let tcp4_lips = if self.second_lip {
            vec![lip1, lip2]
        } else {
            vec![lip1]
        };
        e.add_listener(listener(
            vip4(),
            80,
            Protocol::Tcp,
            tcp4_lips,
            &tcp4_backends,
        ))
        .unwrap();
        if self.udp4 {
            e.add_listener(listener(
                vip4(),
                53,
                Protocol::Udp,
                vec![lip1],
                &[(r1, 5353)],
            ))
            .unwrap();
        }
        e.add_listener(listener(
            vip64(),
            80,
            Protocol::Tcp,
            vec![lip1],
            &[(r1, 8080)],
        ))
        .unwrap();
        e.add_listener(listener(
            vip66(),
            80,
            Protocol::Tcp,
            vec![lip6],
            &[(r6, 8080)],
        ))
        .unwrap();
        e.add_listener(listener(
            vip66(),
            53,
            Protocol::Udp,
            vec![lip6],
            &[(r6, 5353)],
        ))
        .unwrap();
        e
    }
}

// ----- frames --------------------------------------------------------------

/// TCP flags of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flags {
    Syn,
    SynAck,
    Ack,
    RstAck,
}

/// A segment with these flags, PSH set when it carries data.
fn tcp_frame(src: Ep, dst: Ep, flags: Flags, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let t = match flags {
        Flags::Syn => Tcp::syn(seq),
        Flags::SynAck => Tcp::synack(seq, ack),
        Flags::Ack => Tcp::ack(seq, ack),
        Flags::RstAck => Tcp::rst_ack(seq, ack),
    };
    let t = if payload.is_empty() { t } else { t.psh() };
    tcp(src, dst, t, payload)
}

// ----- connections ---------------------------------------------------------

/// A connection's next frame: who sends it, and how.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// From the client: flags, sequence and acknowledgment offsets from the
    /// initial numbers, payload.
    Client(Flags, u32, u32, &'static [u8]),
    /// From the server.
    Server(Flags, u32, u32, &'static [u8]),
}

/// A TCP connection's life: the handshake, data both ways, more data.
const TCP_STEPS: [Step; 7] = [
    Step::Client(Flags::Syn, 0, 0, b""),
    Step::Server(Flags::SynAck, 0, 1, b""),
    Step::Client(Flags::Ack, 1, 1, b""),
    Step::Client(Flags::Ack, 1, 1, b"hello"),
    Step::Server(Flags::Ack, 1, 6, b"world!"),
    Step::Client(Flags::Ack, 6, 7, b"more"),
    Step::Server(Flags::Ack, 7, 10, b"back"),
];

/// A UDP flow: datagrams both ways (flags and numbers unused).
const UDP_STEPS: [Step; 4] = [
    Step::Client(Flags::Ack, 0, 0, b"query"),
    Step::Server(Flags::Ack, 0, 0, b"answer"),
    Step::Client(Flags::Ack, 0, 0, b"again"),
    Step::Server(Flags::Ack, 0, 0, b"reply"),
];

#[derive(Debug, Clone, Copy)]
struct Conn {
    udp: bool,
    c: Ep,
    v: Ep,
    /// The local and server ends, learnt from the first forwarded frame.
    l: Ep,
    r: Ep,
    /// Steps done.
    done: usize,
}

impl Conn {
    fn steps(&self) -> &'static [Step] {
        if self.udp { &UDP_STEPS } else { &TCP_STEPS }
    }

    fn frame(&self, step: Step) -> Vec<u8> {
        let (src, dst, flags, seq, ack, payload) = match step {
            Step::Client(f, s, a, p) => (self.c, self.v, f, C_ISN.wrapping_add(s), S_ISN + a, p),
            Step::Server(f, s, a, p) => (self.r, self.l, f, S_ISN + s, C_ISN.wrapping_add(a), p),
        };
        if self.udp {
            udp(src, dst, payload)
        } else {
            tcp_frame(src, dst, flags, seq, ack, payload)
        }
    }

    /// The tuple the server sees.
    fn tuple(&self) -> (Ep, Ep) {
        (self.l, self.r)
    }
}

/// Open a connection in `e` (its first step) and take `done` steps.
fn open(e: &mut Engine, now: Instant, udp: bool, c: Ep, v: Ep, done: usize) -> Conn {
    let mut conn = Conn {
        udp,
        c,
        v,
        l: c,
        r: v,
        done: 0,
    };
    let (verdict, out) = send(e, now, &conn.frame(conn.steps()[0]));
    assert!(
        matches!(verdict, Verdict::ToServer { .. }),
        "{c:?} -> {v:?}: {verdict:?}"
    );
    (conn.l, conn.r) = endpoints(&out);
    conn.done = 1;
    while conn.done < done {
        let step = conn.steps()[conn.done];
        let (verdict, _) = send(e, now, &conn.frame(step));
        assert!(
            matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }),
            "{conn:?} step {}: {verdict:?}",
            conn.done
        );
        conn.done += 1;
    }
    conn
}

fn client4(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
}

fn client6(i: u8) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, u16::from(i)))
}

/// Connections of every kind at every stage, opened in `e` at `now`:
/// TCP left after 1, 2, 3 and 5 steps (the SYN; the SYN-ACK, so that the
/// next client segment carries the option; the third ACK, idem; data both
/// ways), UDP after 1 and 2.
fn open_all(e: &mut Engine, now: Instant) -> Vec<Conn> {
    let mut conns = Vec::new();
    let mut port = 40000;
    for (udp, client, vip, stages) in [
        (
            false,
            client4 as fn(u8) -> IpAddr,
            (vip4(), 80),
            &[1, 2, 3, 5][..],
        ),
        (true, client4, (vip4(), 53), &[1, 2][..]),
        (false, client6, (vip64(), 80), &[1, 2, 3, 5][..]),
        (false, client6, (vip66(), 80), &[1, 2, 3, 5][..]),
        (true, client6, (vip66(), 53), &[1, 2][..]),
    ] {
        for &done in stages {
            // Two of each: the 4to4 ones alternate backends and local
            // addresses.
            for i in 1..=2 {
                port += 1;
                conns.push(open(e, now, udp, (client(i), port), vip, done));
            }
        }
    }
    conns
}

/// Everything two engines publish agrees.
fn same_state(a: &Engine, b: &Engine, what: &str) {
    assert_eq!(a.session_count(), b.session_count(), "{what}: sessions");
    for l in 0..5 {
        let (ta, tb) = (a.listener_traffic(l), b.listener_traffic(l));
        assert_eq!(
            ta.map(|t| t.active_sessions),
            tb.map(|t| t.active_sessions),
            "{what}: listener {l}"
        );
        for bk in 0..2 {
            assert_eq!(
                a.backend_traffic(l, bk).map(|t| t.active_sessions),
                b.backend_traffic(l, bk).map(|t| t.active_sessions),
                "{what}: listener {l} backend {bk}"
            );
        }
    }
}

fn export(e: &Engine, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    e.export_state(now, &mut out);
    out
}

/// RSTs in a canonical order.
fn sorted(mut rsts: Vec<(Transmit, Vec<u8>)>) -> Vec<(Transmit, Vec<u8>)> {
    rsts.sort_by(|a, b| a.1.cmp(&b.1));
    rsts
}

// ----- the round trip ------------------------------------------------------

/// A's clock; B's runs from another epoch (a new process).
const T_A: Instant = Instant::from_secs(10_000);
const T_B: Instant = Instant::from_secs(7);

#[test]
fn a_restored_engine_forwards_every_session_as_the_old_one_would() {
    let setup = Setup::default();
    let mut a = setup.engine();
    let conns = open_all(&mut a, T_A);
    assert_eq!(a.session_count(), conns.len() as u32);

    // Five seconds later, A is stopped and B started.
    let export_at = T_A + secs(5);
    let snapshot = export(&a, export_at);
    assert_eq!(snapshot_hash_seed(&snapshot), Ok(SEED));
    let mut b = setup.engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!(report.sessions, conns.len() as u32);
    assert_eq!(report.restored, conns.len() as u32);
    assert_eq!((report.skipped(), report.overdue), (0, 0));
    same_state(&a, &b, "after the import");
    assert_eq!(b.counters().sessions_created, 0, "restored, not created");

    // B's own snapshot is A's: the same tables and sessions, each with as
    // much life left.
    assert!(export(&b, T_B) == snapshot, "B's snapshot differs from A's");

    // Every connection goes on: each next frame comes out of A and B the
    // same, byte for byte. Half the connections go on, the others idle.
    let (mut ta, mut tb) = (export_at + secs(1), T_B + secs(1));
    let (ttm_a, ttm_b) = (a.counters().ttm_inserted, b.counters().ttm_inserted);
    let mut forwarded = 0;
    for conn in conns.iter().step_by(2) {
        for &step in &conn.steps()[conn.done..] {
            let frame = conn.frame(step);
            let (va, out_a) = send(&mut a, ta, &frame);
            let (vb, out_b) = send(&mut b, tb, &frame);
            assert_eq!((vb, &out_b), (va, &out_a), "{conn:?} {step:?}");
            assert!(
                matches!(va, Verdict::ToServer { .. } | Verdict::ToClient { .. }),
                "{conn:?} {step:?}: {va:?}"
            );
            let expected = match step {
                Step::Client(..) => (conn.l, conn.r),
                Step::Server(..) => (conn.v, conn.c),
            };
            assert_eq!(endpoints(&out_b), expected);
            forwarded += 1;
        }
        ta = ta + Duration::from_millis(10);
        tb = tb + Duration::from_millis(10);
    }
    assert!(forwarded > 20, "{forwarded}");
    // The option went where A put it: into the third ACK of each TCP
    // connection left after its SYN or SYN-ACK, and into the first data of
    // one left after its third ACK.
    let ttm = a.counters().ttm_inserted - ttm_a;
    assert_eq!(b.counters().ttm_inserted - ttm_b, ttm);
    assert!(ttm >= 6, "{ttm} options");
    same_state(&a, &b, "after the traffic");

    // A new connection in B takes none of the restored tuples.
    let fresh = open(&mut b, tb, false, (client4(9), 999), (vip4(), 80), 1);
    assert!(conns.iter().all(|c| c.tuple() != fresh.tuple()));

    // Idle, every session ends in both with the same RSTs: the idle
    // established ones from what was left of their lifetime, the others
    // from their last packet.
    let rsts_a = sorted(advance(&mut a, ta, ta + secs(300)));
    let rsts_b = sorted(advance(&mut b, tb, tb + secs(300)));
    // Established: every TCP connection that went on (3 kinds, 4 stages),
    // and the idle ones left after the third ACK or with data (3 kinds, 2
    // stages); an RST to each side of each. The fresh one is half-open.
    assert_eq!(rsts_a.len(), 2 * (3 * 4 + 3 * 2));
    assert_eq!(rsts_b, rsts_a);
    assert_eq!((a.session_count(), b.session_count()), (0, 0));
}

// ----- tuples --------------------------------------------------------------

/// Only four local ports, one local address and one backend for the 4to4
/// and 6to4 TCP listeners: four tuples toward 10.0.0.2:8080 in all.
fn small_pool() -> Setup {
    Setup {
        ports: 50000..=50003,
        second_backend: false,
        second_lip: false,
        ..Setup::default()
    }
}

#[test]
fn new_syns_never_take_a_restored_or_quarantined_tuple() {
    let setup = small_pool();
    let mut a = setup.engine();
    // Two live connections (one of them 6to4, sharing the tuples), and one
    // reset whose tuple the sweep quarantines.
    let live = [
        open(&mut a, T_A, false, (client4(1), 1001), (vip4(), 80), 5),
        open(&mut a, T_A, false, (client6(2), 1002), (vip64(), 80), 5),
    ];
    let closed = open(&mut a, T_A, false, (client4(3), 1003), (vip4(), 80), 5);
    let rst = tcp_frame(closed.c, closed.v, Flags::RstAck, C_ISN + 1, S_ISN + 1, b"");
    assert!(matches!(
        send(&mut a, T_A, &rst).0,
        Verdict::ToServer { .. }
    ));
    let t = T_A + secs(12);
    advance(&mut a, T_A, t); // CLOSE lasts 10 s
    assert_eq!((a.session_count(), a.quarantined()), (2, 1));
    let snapshot = export(&a, t);

    let mut b = setup.engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!((report.restored, report.skipped()), (2, 0));
    assert_eq!(
        (report.quarantine_restored, report.quarantine_skipped),
        (1, 0)
    );
    assert_eq!(b.quarantined(), 1);

    // One tuple is left: A and B both give it to the next SYN, and refuse
    // the one after.
    let taken: Vec<_> = live.iter().chain([&closed]).map(Conn::tuple).collect();
    let fresh_b = open(&mut b, T_B, false, (client4(4), 1004), (vip4(), 80), 1);
    let fresh_a = open(&mut a, t, false, (client4(4), 1004), (vip4(), 80), 1);
    assert_eq!(fresh_b.tuple(), fresh_a.tuple());
    assert!(!taken.contains(&fresh_b.tuple()), "{fresh_b:?}");
    let next = tcp_frame((client4(5), 1005), (vip4(), 80), Flags::Syn, C_ISN, 0, b"");
    for e in [&mut a, &mut b] {
        assert_eq!(
            send(e, T_B, &next).0,
            Verdict::Drop(DropReason::PortsExhausted)
        );
    }

    // Without the quarantine (off in C), the closed tuple is free at once:
    // it is the restored quarantine that kept it from B's SYNs.
    let mut c = Setup {
        quarantine: Duration::ZERO,
        ..small_pool()
    }
    .engine();
    let report = c.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!(
        (report.quarantine_restored, report.quarantine_skipped),
        (0, 1)
    );
    let got: Vec<_> = (4..6)
        .map(|i| {
            open(
                &mut c,
                T_B,
                false,
                (client4(i), 1000 + u16::from(i)),
                (vip4(), 80),
                1,
            )
            .tuple()
        })
        .collect();
    assert!(got.contains(&closed.tuple()), "{got:?}");
    assert!(got.iter().all(|t| !live.iter().any(|l| l.tuple() == *t)));
}

// ----- a changed configuration ---------------------------------------------

/// Send each connection's next client frame to A and B: those B forwards
/// come out as A's; returns how many B forwarded.
fn next_client_frames(a: &mut Engine, b: &mut Engine, conns: &[Conn]) -> usize {
    let mut forwarded = 0;
    for conn in conns {
        let step = conn.steps()[conn.done..]
            .iter()
            .copied()
            .find(|s| matches!(s, Step::Client(..)))
            .unwrap();
        let frame = conn.frame(step);
        let (va, out_a) = send(a, T_A + secs(6), &frame);
        let (vb, out_b) = send(b, T_B + secs(1), &frame);
        if matches!(vb, Verdict::ToServer { .. }) {
            assert_eq!((vb, out_b), (va, out_a), "{conn:?}");
            forwarded += 1;
        }
    }
    forwarded
}

#[test]
fn a_smaller_table_takes_what_fits() {
    let mut a = Setup::default().engine();
    let conns = open_all(&mut a, T_A);
    let snapshot = export(&a, T_A + secs(5));
    let mut b = Setup {
        capacity: 20,
        ..Setup::default()
    }
    .engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!(report.sessions, conns.len() as u32);
    assert_eq!(
        (report.restored, report.table_full),
        (20, conns.len() as u32 - 20)
    );
    assert_eq!(report.skipped(), report.table_full);
    assert_eq!(b.session_count(), 20);
    let active: u64 = (0..5)
        .filter_map(|l| b.listener_traffic(l))
        .map(|t| t.active_sessions)
        .sum();
    assert_eq!(active, 20);
    assert_eq!(next_client_frames(&mut a, &mut b, &conns), 20);
}

/// Restored sessions are counted, and a restored half-open session can
/// be evicted for a new SYN in a full table, as if made there.
#[test]
fn restored_half_open_sessions_are_counted_and_evictable() {
    let mut a = Setup::default().engine();
    let half = open(&mut a, T_A, false, (client4(1), 1001), (vip4(), 80), 1);
    let done = open(&mut a, T_A, false, (client4(2), 1002), (vip4(), 80), 5);
    let snapshot = export(&a, T_A + secs(1));
    let mut b = Setup {
        capacity: 2,
        ..Setup::default()
    }
    .engine();
    assert_eq!(
        b.import_state(T_B, Duration::ZERO, &snapshot)
            .unwrap()
            .restored,
        2
    );
    let c = *b.counters();
    assert_eq!((c.sessions_restored, c.sessions_created), (2, 0));
    // The table is full: a new SYN takes the half-open one's place.
    open(&mut b, T_B, false, (client4(3), 1003), (vip4(), 80), 1);
    assert_eq!(b.counters().sessions_evicted, 1);
    assert_eq!(b.session_count(), 2);
    let (verdict, _) = send(&mut b, T_B, &half.frame(half.steps()[1]));
    assert_eq!(
        verdict,
        Verdict::Drop(DropReason::NoSession),
        "the half-open one is gone"
    );
    let (verdict, _) = send(&mut b, T_B, &done.frame(done.steps()[4]));
    assert!(
        matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }),
        "{verdict:?}"
    );
}

#[test]
fn sessions_whose_backend_listener_or_local_address_is_gone_are_skipped() {
    let mut a = Setup::default().engine();
    let conns = open_all(&mut a, T_A);
    let snapshot = export(&a, T_A + secs(5));
    let mut b = Setup {
        second_backend: false,
        udp4: false,
        second_lip: false,
        ..Setup::default()
    }
    .engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();

    let (r2, lip2) = (v4("10.0.0.3"), v4("10.0.0.101"));
    let udp4 = conns.iter().filter(|c| c.udp && c.c.0.is_ipv4()).count();
    let on_r2 = conns.iter().filter(|c| c.r.0 == r2).count();
    let on_lip2 = conns
        .iter()
        .filter(|c| c.r.0 != r2 && c.l.0 == lip2)
        .count();
    assert!(
        udp4 > 0 && on_r2 > 0 && on_lip2 > 0,
        "{udp4} {on_r2} {on_lip2}"
    );
    assert_eq!(report.no_listener as usize, udp4);
    assert_eq!(report.no_backend as usize, on_r2);
    assert_eq!(report.no_local_address as usize, on_lip2);
    let kept = conns.len() - udp4 - on_r2 - on_lip2;
    assert_eq!(report.restored as usize, kept);
    assert_eq!(b.session_count() as usize, kept);
    let tcp_gone = conns
        .iter()
        .filter(|c| !c.udp && (c.r.0 == r2 || c.l.0 == lip2))
        .count();
    // The others go on; a gone UDP flow starts afresh (on another
    // listener: none here, so it is dropped), a gone TCP one is dropped.
    assert_eq!(next_client_frames(&mut a, &mut b, &conns), kept);
    assert_eq!(
        b.counters().dropped(DropReason::NoSession) as usize,
        tcp_gone
    );
}

#[test]
fn changed_timeouts_take_effect_and_idle_rsts_are_the_old_engines() {
    let mut a = Setup::default().engine(); // established: 60 s
    let conn = open(&mut a, T_A, false, (client4(1), 1001), (vip4(), 80), 5);
    let snapshot = export(&a, T_A + secs(5)); // 55 s left
    let rsts_a = advance(&mut a, T_A, T_A + secs(62));
    assert_eq!(rsts_a.len(), 2);

    // Shorter in B: 10 s from the import.
    let mut b = Setup {
        established: secs(10),
        ..Setup::default()
    }
    .engine();
    b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert!(advance(&mut b, T_B, T_B + Duration::from_millis(9900)).is_empty());
    assert_eq!(b.session_count(), 1);
    let rsts_b = advance(
        &mut b,
        T_B + Duration::from_millis(9900),
        T_B + Duration::from_millis(11_100),
    );
    assert_eq!(b.session_count(), 0);
    assert_eq!(
        rsts_b, rsts_a,
        "the RSTs carry the restored sequence numbers"
    );
    assert_eq!(endpoints(&rsts_b[0].1), (conn.v, conn.c));

    // Longer in B: what was left (55 s) still holds.
    let mut b = Setup {
        established: secs(600),
        ..Setup::default()
    }
    .engine();
    b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert!(advance(&mut b, T_B, T_B + Duration::from_millis(54_900)).is_empty());
    assert_eq!(b.session_count(), 1);
    let rsts_b = advance(
        &mut b,
        T_B + Duration::from_millis(54_900),
        T_B + Duration::from_millis(56_100),
    );
    assert_eq!((b.session_count(), rsts_b), (0, rsts_a.clone()));

    // Past its deadline at the export (A's sweep had not run): restored,
    // and B's first sweep ends it as A's would.
    let mut a = Setup::default().engine();
    open(&mut a, T_A, false, (client4(1), 1001), (vip4(), 80), 5);
    let snapshot = export(&a, T_A + secs(61));
    let mut b = Setup::default().engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!((report.restored, report.overdue), (1, 1));
    let rsts_b = advance(&mut b, T_B, T_B + secs(1));
    assert_eq!(b.session_count(), 0);
    assert_eq!(rsts_b, advance(&mut a, T_A, T_A + secs(62)));
    assert_eq!(b.quarantined(), 1, "its tuple is quarantined");

    // The time the snapshot waited (lbd down) is taken off: exported with
    // 55 s left, imported 50 s later, it ends 5 s after the import.
    let mut a = Setup::default().engine();
    let conn = open(&mut a, T_A, false, (client4(1), 1001), (vip4(), 80), 5);
    let snapshot = export(&a, T_A + secs(5));
    let mut b = Setup::default().engine();
    let report = b.import_state(T_B, secs(50), &snapshot).unwrap();
    assert_eq!((report.restored, report.overdue), (1, 0));
    assert!(advance(&mut b, T_B, T_B + Duration::from_millis(4_900)).is_empty());
    let rsts = advance(
        &mut b,
        T_B + Duration::from_millis(4_900),
        T_B + Duration::from_millis(6_100),
    );
    assert_eq!((b.session_count(), rsts.len()), (0, 2));
    assert_eq!(endpoints(&rsts[0].1), (conn.v, conn.c));
    // Waited longer than was left: overdue, ended by the first sweep.
    let mut b = Setup::default().engine();
    let report = b.import_state(T_B, secs(56), &snapshot).unwrap();
    assert_eq!((report.restored, report.overdue), (1, 1));
    assert_eq!(advance(&mut b, T_B, T_B + secs(1)).len(), 2);
    assert_eq!(b.session_count(), 0);
}

/// A clock that went back between the last packet and the export: what is
/// left of each session and quarantined tuple looks longer than anything
/// the format carries, and is written as the longest it does.
#[test]
fn an_export_at_an_earlier_clock_still_imports() {
    let late = Instant::from_secs(2_100_000); // 24.3 days
    let mut a = Setup::default().engine();
    let conn = open(&mut a, late, false, (client4(1), 1001), (vip4(), 80), 5);
    let closed = open(&mut a, late, false, (client4(2), 1002), (vip4(), 80), 5);
    let rst = tcp_frame(closed.c, closed.v, Flags::RstAck, C_ISN + 1, S_ISN + 1, b"");
    assert!(matches!(
        send(&mut a, late, &rst).0,
        Verdict::ToServer { .. }
    ));
    advance(&mut a, late, late + secs(12));
    assert_eq!((a.session_count(), a.quarantined()), (1, 1));

    let snapshot = export(&a, Instant::from_secs(1));
    let mut b = Setup::default().engine();
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!((report.restored, report.quarantine_restored), (1, 1));
    // Both cut to this engine's timeout and period.
    assert!(advance(&mut b, T_B, T_B + secs(59)).is_empty());
    let rsts = advance(&mut b, T_B + secs(59), T_B + secs(62));
    assert_eq!(rsts.len(), 2);
    assert_eq!(endpoints(&rsts[0].1), (conn.v, conn.c));
}

#[test]
fn another_seed_restores_the_same_sessions() {
    let mut a = Setup::default().engine();
    let conns = open_all(&mut a, T_A);
    let snapshot = export(&a, T_A + secs(5));
    let mut b = Setup {
        seed: 77,
        ..Setup::default()
    }
    .engine();
    assert_eq!(
        b.import_state(T_B, Duration::ZERO, &snapshot)
            .unwrap()
            .restored,
        conns.len() as u32
    );
    // The same snapshot but for the seed (and so the checksum).
    let again = export(&b, T_B);
    assert_eq!(again.len(), snapshot.len());
    assert!(again[16..again.len() - 4] == snapshot[16..snapshot.len() - 4]);
    assert_eq!(snapshot_hash_seed(&again), Ok(77));
    assert_eq!(next_client_frames(&mut a, &mut b, &conns), conns.len());
}

#[test]
fn a_second_import_restores_nothing_twice() {
    let mut a = Setup::default().engine();
    let conns = open_all(&mut a, T_A);
    let snapshot = export(&a, T_A + secs(5));
    let mut b = Setup::default().engine();
    b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    let before = export(&b, T_B);
    let report = b.import_state(T_B, Duration::ZERO, &snapshot).unwrap();
    assert_eq!((report.restored, report.duplicate), (0, conns.len() as u32));
    assert!(export(&b, T_B) == before);
    same_state(&a, &b, "after two imports");
}

// ----- malformed snapshots ---------------------------------------------------

/// Where the records of a snapshot are, from its header's counts.
struct Layout {
    counts: [usize; 6],
}

impl Layout {
    const SIZES: [usize; 6] = [20, 23, 17, 37, 49, 12];

    fn of(snapshot: &[u8]) -> Layout {
        let mut counts = [0; 6];
        for (i, c) in counts.iter_mut().enumerate() {
            let at = 16 + 4 * i;
            *c = u32::from_le_bytes(snapshot[at..at + 4].try_into().unwrap()) as usize;
        }
        Layout { counts }
    }

    /// The offset of record `index` of section `section` (0 listeners, 1
    /// backends, 2 local addresses, 3 IPv4 sessions, 4 IPv6 sessions, 5
    /// quarantine).
    fn at(&self, section: usize, index: usize) -> usize {
        assert!(index < self.counts[section]);
        40 + (0..section)
            .map(|s| self.counts[s] * Self::SIZES[s])
            .sum::<usize>()
            + index * Self::SIZES[section]
    }
}

/// Write a snapshot's checksum again after an edit.
fn reseal(snapshot: &mut [u8]) {
    let n = snapshot.len();
    let crc = crc32fast::hash(&snapshot[..n - 4]);
    snapshot[n - 4..].copy_from_slice(&crc.to_le_bytes());
}

/// What an engine shows, to see that it did not change.
fn observe(e: &Engine) -> (u32, u32, lb_engine::Counters, Option<Instant>, Vec<u8>) {
    (
        e.session_count(),
        e.quarantined(),
        *e.counters(),
        e.poll_timeout(),
        export(e, T_B + secs(3)),
    )
}

#[test]
fn every_malformed_snapshot_is_refused_and_changes_nothing() {
    // A snapshot of every kind of session, and quarantined tuples: the
    // sessions of A's first connections were reset and have ended.
    let mut a = Setup::default().engine();
    let conns = open_all(&mut a, T_A);
    for conn in conns.iter().filter(|c| !c.udp).take(2) {
        let rst = conn.frame(Step::Client(Flags::RstAck, 1, 1, b""));
        assert!(matches!(
            send(&mut a, T_A, &rst).0,
            Verdict::ToServer { .. }
        ));
    }
    advance(&mut a, T_A, T_A + secs(12));
    assert_eq!(a.quarantined(), 2);
    let good = export(&a, T_A + secs(12));
    let layout = Layout::of(&good);
    assert_eq!(layout.counts, [5, 6, 3, 10, 20, 2]);

    // B serves connections of its own, and must go on doing so.
    let mut b = Setup::default().engine();
    let own = open(&mut b, T_B, false, (client4(200), 2000), (vip4(), 80), 3);
    let before = observe(&b);
    let mut refused = 0;
    let mut refuse = |bytes: &[u8], expected: SnapshotError| {
        assert_eq!(
            b.import_state(T_B + secs(1), Duration::ZERO, bytes),
            Err(expected.clone())
        );
        assert!(observe(&b) == before, "{expected:?} changed the engine");
        // A message that says what is wrong.
        assert!(!expected.to_string().is_empty());
        refused += 1;
    };

    // Every truncation.
    for n in 0..good.len() {
        let expected = if n < 44 { 44 } else { good.len() as u64 };
        refuse(&good[..n], SnapshotError::Truncated { len: n, expected });
    }
    // Trailing bytes.
    let mut long = good.clone();
    long.push(0);
    refuse(
        &long,
        SnapshotError::TrailingBytes {
            len: good.len() + 1,
            expected: good.len() as u64,
        },
    );
    // Counts that disagree with the length.
    for (section, delta, longer) in [(3, 1u32, true), (4, u32::MAX, false), (5, 1, true)] {
        let mut bad = good.clone();
        let at = 16 + 4 * section;
        let count = u32::from_le_bytes(bad[at..at + 4].try_into().unwrap()).wrapping_add(delta);
        bad[at..at + 4].copy_from_slice(&count.to_le_bytes());
        let expected =
            (good.len() as i64 + i64::from(delta as i32) * Layout::SIZES[section] as i64) as u64;
        let err = if longer {
            SnapshotError::Truncated {
                len: good.len(),
                expected,
            }
        } else {
            SnapshotError::TrailingBytes {
                len: good.len(),
                expected,
            }
        };
        refuse(&bad, err);
    }
    // A wrong magic, a wrong version.
    let mut bad = good.clone();
    bad[0] = b'X';
    refuse(&bad, SnapshotError::BadMagic);
    refuse(b"LBSX", SnapshotError::BadMagic);
    refuse(b"{\"sessions\": []}", SnapshotError::BadMagic);
    let mut bad = good.clone();
    bad[4] = 2;
    refuse(
        &bad,
        SnapshotError::UnsupportedVersion {
            found: 2,
            supported: SNAPSHOT_VERSION,
        },
    );
    // Damage: a sequence number changed, the checksum not.
    let mut bad = good.clone();
    bad[layout.at(3, 0) + 20] ^= 1;
    let stored = u32::from_le_bytes(good[good.len() - 4..].try_into().unwrap());
    let computed = crc32fast::hash(&bad[..bad.len() - 4]);
    refuse(&bad, SnapshotError::BadChecksum { stored, computed });

    // Fields, each with a right checksum: (section, record, byte in the
    // record, bytes written there, the field named).
    let udp4 = (0..10).find(|&i| good[layout.at(3, i)] == 2).unwrap(); // backend 2: UDP
    let (listener, backend, local, s4, s6, q) = (0, 1, 2, 3, 4, 5);
    let fields: Vec<(usize, usize, usize, &[u8], &str)> = vec![
        (listener, 1, 17, &[1], "protocol"),
        (listener, 1, 17, &[0], "protocol"),
        (listener, 2, 0, &[5], "address family"),
        (listener, 0, 16, &[1], "IPv4 address (bytes 4..16 not zero)"),
        (backend, 3, 0, &[5], "listener index"),
        (
            backend,
            0,
            4,
            &[6],
            "address family (an IPv6 backend behind an IPv4 VIP)",
        ),
        (local, 1, 0, &[0], "address family"),
        (s4, 0, 0, &[6], "backend index"),
        (s4, 0, 3, &[1], "backend index"),
        (
            s4,
            1,
            0,
            &[4],
            "backend index (a listener of the other client family)",
        ),
        (
            s6,
            0,
            0,
            &[0],
            "backend index (a listener of the other client family)",
        ),
        (s4, 0, 4, &[3], "local address index"),
        (
            s4,
            0,
            4,
            &[2],
            "local address index (not of the backend's family)",
        ),
        (
            s6,
            10,
            4,
            &[0],
            "local address index (not of the backend's family)",
        ),
        (s4, 2, 10, &[0, 0], "local port"),
        (s4, 0, 12, &[0b0000_0100], "flags"),
        (s4, 0, 12, &[0b0010_0000], "flags"),
        (s6, 19, 12, &[0b0100_0000], "flags (UDP)"),
        (s4, udp4, 12, &[1], "flags (UDP)"),
        (s4, udp4, 17, &[1], "sequence numbers (UDP)"),
        (s4, 3, 16, &[0x80], "lifetime"),
        (q, 1, 8, &[0, 0, 0, 0], "time held"),
        (q, 0, 10, &[0x37], "time held"),
    ];
    let sections = [
        Section::Listener,
        Section::Backend,
        Section::LocalAddress,
        Section::Session4,
        Section::Session6,
        Section::Quarantine,
    ];
    let mut header = good.clone();
    header[6] = 1;
    reseal(&mut header);
    let mut cases = vec![(header, Section::Header, 0, 6, "reserved bytes 6..8")];
    for (section, index, byte, bytes, field) in fields {
        let mut bad = good.clone();
        let at = layout.at(section, index);
        bad[at + byte..at + byte + bytes.len()].copy_from_slice(bytes);
        assert_ne!(bad, good, "{field}: no change");
        reseal(&mut bad);
        cases.push((bad, sections[section], index as u32, at, field));
    }
    for (bad, section, index, offset, field) in cases {
        let err = b
            .import_state(T_B + secs(1), Duration::ZERO, &bad)
            .unwrap_err();
        assert_eq!(
            err,
            SnapshotError::BadField {
                section,
                index,
                field,
                offset
            },
            "{err}"
        );
        assert!(observe(&b) == before, "{err} changed the engine");
        refused += 1;
    }
    assert!(refused > good.len() + 30);

    // Still serving its own connection, and the good snapshot imports.
    let (v, out) = send(&mut b, T_B + secs(1), &own.frame(TCP_STEPS[3]));
    assert_eq!(v, Verdict::ToServer { next_hop: own.r.0 });
    assert_eq!(endpoints(&out), own.tuple());
    let report = b
        .import_state(T_B + secs(1), Duration::ZERO, &good)
        .unwrap();
    assert_eq!((report.restored, report.quarantine_restored), (30, 2));
}
