//! The behavioural rules, asserted through the public API with
//! etherparse-built frames on a simulated clock, for what `golden.rs`
//! (byte-exact rewrites, bad input) and `smoltcp_e2e.rs` (real stacks,
//! established idle RSTs) do not already cover:
//!
//! 1. configuration errors, each typed, and a rejected change leaves the
//!    engine exactly as it was (a twin engine that never saw the change
//!    answers every later frame the same way);
//! 2. backends added, removed, re-weighted, marked down and reset while
//!    sessions exist;
//! 3. schedulers through the engine: weighted round robin, least
//!    connections, Maglev by source address, source affinity;
//! 4. a segment that matches no session and cannot start one;
//! 5. local ports: unique tuples, exhaustion, the quarantine of closed
//!    tuples (also after a reset), a backend without a local address of its
//!    family;
//! 6. the bounded session table;
//! 7. TCP states and their timeouts, the sweep period, SYN on a
//!    TIME_WAIT/CLOSE session, silent UDP expiry;
//! 8. counters that add up;
//! 9. `handle_batch` equals `handle_packet` frame by frame;
//! 10. `poll_timeout` and `poll_transmit`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::time::Duration;

use etherparse::{SlicedPacket, TransportSlice};
use lb_engine::{
    Affinity, BackendConfig, ConfigError, DropReason, Engine, EngineConfig, Frame, Instant,
    ListenerConfig, LocalPool, LportError, MaglevKey, Protocol, SchedError, SchedulerKind,
    Timeouts, Verdict,
};
use lb_testkit::Ep;
use lb_testkit::frame::{
    C_ISN, S_ISN, Tcp, arp, echo, fix_ipv4_header_checksum, tcp as tcp_frame, tcp_vlan,
    udp as udp_frame,
};
use lb_testkit::parse::endpoints;
use lb_testkit::rng::Rng;
use lb_testkit::sim::{Conn, Sim, to_client, to_server};

const CIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
const CIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
const CIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12));
const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const VIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
/// A VIP that no accepted configuration ever has.
const VIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 3));
const RIP1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
const RIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
const RIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4));
const RIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
const LIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
/// A local address that no accepted configuration has (until said).
const LIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));

/// An address from its octets (or itself).
fn ip(a: impl Into<IpAddr>) -> IpAddr {
    a.into()
}

fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Small tables, so that every engine is cheap to make.
fn cfg() -> EngineConfig {
    EngineConfig {
        capacity: 1024,
        affinity_capacity: 1024,
        quarantine_capacity: 4096,
        ..EngineConfig::default()
    }
}

fn listener(
    vip: IpAddr,
    port: u16,
    protocol: Protocol,
    backends: &[(IpAddr, u16)],
    lips: &[IpAddr],
    ports: RangeInclusive<u16>,
) -> ListenerConfig {
    let mut local = LocalPool::new(lips.iter().map(|&a| ip(a)).collect());
    local.ports = ports;
    let mut l = ListenerConfig::new(ip(vip), port, protocol, local);
    for &(a, p) in backends {
        l.backends.push(BackendConfig::new(ip(a), p));
    }
    l
}

// ----- frames ------------------------------------------------------------

fn syn(seq: u32) -> Tcp {
    Tcp::syn(seq)
}

fn synack(seq: u32, ack: u32) -> Tcp {
    Tcp::synack(seq, ack)
}

fn ack(seq: u32, ack: u32) -> Tcp {
    Tcp::ack(seq, ack)
}

fn fin(seq: u32, ack: u32) -> Tcp {
    Tcp::fin(seq, ack)
}

fn rst(seq: u32) -> Tcp {
    Tcp::rst(seq)
}

fn echo_frame(src: IpAddr, dst: IpAddr, reply: bool) -> Vec<u8> {
    echo(src, dst, reply, 64, b"ping")
}

/// The IP bytes of an unpadded Ethernet frame.
fn ip_len(frame: &[u8]) -> u64 {
    (frame.len() - 14) as u64
}

// ----- the simulated world -------------------------------------------------

/// Everything two engines expose is the same.
fn same_everywhere(a: &Engine, b: &Engine, what: &str) {
    assert_eq!(a.counters(), b.counters(), "{what}: counters");
    assert_eq!(a.session_count(), b.session_count(), "{what}: sessions");
    assert_eq!(a.quarantined(), b.quarantined(), "{what}: quarantine");
    assert_eq!(a.poll_timeout(), b.poll_timeout(), "{what}: poll_timeout");
    for l in 0..4 {
        assert_eq!(
            a.listener_traffic(l),
            b.listener_traffic(l),
            "{what}: listener {l}"
        );
        for bk in 0..5 {
            assert_eq!(
                a.backend_traffic(l, bk),
                b.backend_traffic(l, bk),
                "{what}: listener {l} backend {bk}"
            );
        }
    }
}

// ----- 1. configuration ----------------------------------------------------

#[test]
fn engine_config_errors() {
    let base = cfg();
    let cases = [
        (
            "zero session capacity",
            EngineConfig {
                capacity: 0,
                ..base
            },
            ConfigError::ZeroCapacity,
        ),
        (
            "zero affinity capacity",
            EngineConfig {
                affinity_capacity: 0,
                ..base
            },
            ConfigError::ZeroCapacity,
        ),
        (
            "zero quarantine capacity with a quarantine",
            EngineConfig {
                quarantine_capacity: 0,
                ..base
            },
            ConfigError::ZeroCapacity,
        ),
        (
            "capacity beyond the table",
            EngineConfig {
                capacity: u32::MAX,
                ..base
            },
            ConfigError::CapacityTooLarge(u32::MAX),
        ),
        (
            "capacity 2^28",
            EngineConfig {
                capacity: 1 << 28,
                ..base
            },
            ConfigError::CapacityTooLarge(1 << 28),
        ),
        (
            "quarantine over an hour",
            EngineConfig {
                quarantine: secs(3601),
                ..base
            },
            ConfigError::QuarantineTooLong(secs(3601)),
        ),
        (
            "zero sweep tick",
            EngineConfig {
                sweep_tick: Duration::ZERO,
                ..base
            },
            ConfigError::BadSweep,
        ),
        (
            "sweep tick over the period",
            EngineConfig {
                sweep_tick: ms(1001),
                sweep_period: secs(1),
                ..base
            },
            ConfigError::BadSweep,
        ),
    ];
    for (what, config, want) in cases {
        assert_eq!(Engine::new(config).err(), Some(want), "{what}");
    }
    // The boundaries are accepted.
    for (what, config) in [
        (
            "no quarantine and no quarantine capacity",
            EngineConfig {
                quarantine: Duration::ZERO,
                quarantine_capacity: 0,
                ..base
            },
        ),
        (
            "a quarantine of exactly one hour",
            EngineConfig {
                quarantine: secs(3600),
                ..base
            },
        ),
        (
            "tick equal to the period",
            EngineConfig {
                sweep_tick: secs(1),
                sweep_period: secs(1),
                ..base
            },
        ),
        (
            "capacity 1",
            EngineConfig {
                capacity: 1,
                affinity_capacity: 1,
                ..base
            },
        ),
    ] {
        let e = Engine::new(config);
        assert!(e.is_ok(), "{what}: {:?}", e.err());
    }
}

type Change = Box<dyn Fn(&mut Engine) -> Result<(), ConfigError>>;

/// A listener that would be accepted: VIP3, port 80, from LIP2.
fn fresh_listener() -> ListenerConfig {
    listener(
        VIP3,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080)],
        &[LIP2],
        40000..=40100,
    )
}

fn add(f: impl Fn(&mut ListenerConfig) + 'static) -> Change {
    Box::new(move |e: &mut Engine| {
        let mut l = fresh_listener();
        f(&mut l);
        e.add_listener(l).map(|_| ())
    })
}

fn timeouts_with(field: usize, d: Duration) -> Timeouts {
    let mut t = Timeouts::default();
    let slot = match field {
        0 => &mut t.tcp_established,
        1 => &mut t.syn_recv,
        2 => &mut t.fin_wait,
        3 => &mut t.close_wait,
        4 => &mut t.last_ack,
        5 => &mut t.time_wait,
        6 => &mut t.close,
        _ => &mut t.udp,
    };
    *slot = d;
    t
}

fn rejected_changes() -> Vec<(String, Change, ConfigError)> {
    let no_listener = ConfigError::NoSuchListener(7);
    let no_backend = |listener, backend| ConfigError::NoSuchBackend { listener, backend };
    let mut cases: Vec<(String, Change, ConfigError)> = vec![
        (
            "duplicate TCP listener (with a new local address)".into(),
            add(|l| l.vip = ip(VIP)),
            ConfigError::DuplicateListener {
                vip: ip(VIP),
                port: 80,
                protocol: Protocol::Tcp,
            },
        ),
        (
            "duplicate UDP listener".into(),
            add(|l| {
                l.vip = ip(VIP);
                l.port = 53;
                l.protocol = Protocol::Udp;
            }),
            ConfigError::DuplicateListener {
                vip: ip(VIP),
                port: 53,
                protocol: Protocol::Udp,
            },
        ),
        (
            "local address equal to its own VIP".into(),
            add(|l| l.local.addresses.push(ip(VIP3))),
            ConfigError::LocalIsVip(ip(VIP3)),
        ),
        (
            "local address equal to another listener's VIP".into(),
            add(|l| l.local.addresses = vec![ip(VIP)]),
            ConfigError::LocalIsVip(ip(VIP)),
        ),
        (
            "VIP equal to another listener's local address".into(),
            add(|l| l.vip = ip(LIP)),
            ConfigError::LocalIsVip(ip(LIP)),
        ),
        (
            "empty port range".into(),
            add(|l| l.local.ports = RangeInclusive::new(40010, 40000)),
            ConfigError::LocalPool(LportError::EmptyPortRange {
                start: 40010,
                end: 40000,
            }),
        ),
        (
            "port range from 0".into(),
            add(|l| l.local.ports = 0..=100),
            ConfigError::LocalPool(LportError::EmptyPortRange { start: 0, end: 100 }),
        ),
        (
            "no local address (and no backend)".into(),
            add(|l| {
                l.local.addresses.clear();
                l.backends.clear();
            }),
            ConfigError::LocalPool(LportError::NoAddresses),
        ),
        (
            "no local address for the backends".into(),
            add(|l| l.local.addresses.clear()),
            ConfigError::NoLocalAddressFor(ip(RIP1)),
        ),
        (
            "a local address twice".into(),
            add(|l| l.local.addresses.push(ip(LIP2))),
            ConfigError::LocalPool(LportError::DuplicateAddress(ip(LIP2))),
        ),
        (
            "unspecified local address".into(),
            add(|l| l.local.addresses = vec![ip([0, 0, 0, 0])]),
            ConfigError::LocalPool(LportError::UnusableAddress(ip([0, 0, 0, 0]))),
        ),
        (
            "multicast local address".into(),
            add(|l| l.local.addresses = vec![ip([224, 0, 0, 1])]),
            ConfigError::LocalPool(LportError::UnusableAddress(ip([224, 0, 0, 1]))),
        ),
        (
            "broadcast local address".into(),
            add(|l| l.local.addresses = vec![ip([255; 4])]),
            ConfigError::LocalPool(LportError::UnusableAddress(ip([255; 4]))),
        ),
        (
            "duplicate backend in the listener".into(),
            add(|l| l.backends.push(BackendConfig::new(ip(RIP1), 8080))),
            ConfigError::DuplicateBackend {
                addr: ip(RIP1),
                port: 8080,
            },
        ),
        (
            "IPv6 backend with only IPv4 local addresses".into(),
            add(|l| l.backends.push(BackendConfig::new(v6("2001:db8::2"), 80))),
            ConfigError::NoLocalAddressFor(v6("2001:db8::2")),
        ),
        (
            "IPv6 backend behind an IPv4 VIP (4to6)".into(),
            add(|l| {
                l.local.addresses.push(v6("2001:db8::64"));
                l.backends.push(BackendConfig::new(v6("2001:db8::2"), 80));
            }),
            ConfigError::Ipv6Unsupported(v6("2001:db8::2")),
        ),
        (
            "zero affinity timeout".into(),
            add(|l| {
                l.affinity = Some(Affinity {
                    timeout: Duration::ZERO,
                });
            }),
            ConfigError::BadTimeout,
        ),
        (
            "affinity timeout over 24 days".into(),
            add(|l| {
                l.affinity = Some(Affinity {
                    timeout: Timeouts::MAX + secs(1),
                });
            }),
            ConfigError::BadTimeout,
        ),
        (
            "Maglev table size not prime".into(),
            add(|l| {
                l.scheduler = SchedulerKind::Maglev {
                    table_size: 1000,
                    key: MaglevKey::FiveTuple,
                };
            }),
            ConfigError::Scheduler(SchedError::TableSizeNotPrime { size: 1000 }),
        ),
        (
            "Maglev table size out of range".into(),
            add(|l| {
                l.scheduler = SchedulerKind::Maglev {
                    table_size: 2,
                    key: MaglevKey::SourceAddress,
                };
            }),
            ConfigError::Scheduler(SchedError::TableSizeOutOfRange {
                size: 2,
                min: 3,
                max: 1 << 24,
            }),
        ),
        (
            "add_backend to an unknown listener".into(),
            Box::new(|e: &mut Engine| {
                e.add_backend(7, BackendConfig::new(ip(RIP4), 80))
                    .map(|_| ())
            }),
            no_listener.clone(),
        ),
        (
            "add_backend that is in the pool".into(),
            Box::new(|e: &mut Engine| {
                e.add_backend(0, BackendConfig::new(ip(RIP1), 8080).weight(5))
                    .map(|_| ())
            }),
            ConfigError::DuplicateBackend {
                addr: ip(RIP1),
                port: 8080,
            },
        ),
        (
            "add_backend without a local address of its family".into(),
            Box::new(|e: &mut Engine| {
                e.add_backend(0, BackendConfig::new(v6("2001:db8::3"), 80))
                    .map(|_| ())
            }),
            ConfigError::NoLocalAddressFor(v6("2001:db8::3")),
        ),
        (
            "remove_listener of an unknown listener".into(),
            Box::new(|e: &mut Engine| e.remove_listener(7)),
            no_listener.clone(),
        ),
    ];
    for field in 0..8 {
        for (what, d) in [
            ("zero", Duration::ZERO),
            ("too long", Timeouts::MAX + ms(1)),
        ] {
            cases.push((
                format!("timeout {field} {what}"),
                add(move |l| l.timeouts = timeouts_with(field, d)),
                ConfigError::BadTimeout,
            ));
        }
    }
    // Every backend operation, on an unknown listener, an unknown backend,
    // a removed backend (slot 2 of listener 0) and listener 1's pool.
    for (listener, backend, want) in [
        (7, 0, no_listener.clone()),
        (0, 9, no_backend(0, 9)),
        (0, 2, no_backend(0, 2)),
        (1, 1, no_backend(1, 1)),
    ] {
        let ops: [(&str, Change); 6] = [
            (
                "set_weight",
                Box::new(move |e: &mut Engine| e.set_weight(listener, backend, 3)),
            ),
            (
                "set_up(false)",
                Box::new(move |e: &mut Engine| e.set_up(listener, backend, false)),
            ),
            (
                "set_up(true)",
                Box::new(move |e: &mut Engine| e.set_up(listener, backend, true)),
            ),
            (
                "remove_backend(reset)",
                Box::new(move |e: &mut Engine| e.remove_backend(listener, backend, true)),
            ),
            (
                "remove_backend",
                Box::new(move |e: &mut Engine| e.remove_backend(listener, backend, false)),
            ),
            (
                "reset_backend",
                Box::new(move |e: &mut Engine| e.reset_backend(listener, backend)),
            ),
        ];
        for (op, change) in ops {
            cases.push((
                format!("{op} on listener {listener} backend {backend}"),
                change,
                want.clone(),
            ));
        }
    }
    cases
}

/// The engine both twins start from: a TCP listener with three backends,
/// the third removed, and a UDP listener; an established TCP session and a
/// UDP session.
fn config_twin() -> (Sim, Conn) {
    let mut s = Sim::new(cfg(), Instant::from_secs(10));
    let tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080), (RIP3, 8080)],
        &[LIP],
        1024..=65535,
    );
    assert_eq!(s.e.add_listener(tcp), Ok(0));
    let udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP1, 5353)],
        &[LIP],
        1024..=65535,
    );
    assert_eq!(s.e.add_listener(udp), Ok(1));
    s.e.remove_backend(0, 2, false).unwrap();
    let conn = s.establish((CIP, 40000), (VIP, 80));
    assert_eq!(
        s.verdict(&udp_frame((CIP, 5000), (VIP, 53), b"q")),
        to_server(RIP1)
    );
    (s, conn)
}

/// The same frames to both engines: the same verdicts and output frames.
fn config_round(a: &mut Sim, b: &mut Sim, conn: &Conn, k: u16, what: &str) {
    let seq = C_ISN + 1 + u32::from(k) * 10;
    let frames = [
        conn.client(ack(seq, S_ISN + 1), &[k as u8; 10]),
        conn.server(ack(S_ISN + 1 + u32::from(k), seq + 10), b"x"),
        tcp_frame((CIP2, 30000 + k), (VIP, 80), syn(7), b""),
        udp_frame((CIP, 5000), (VIP, 53), b"again"),
        udp_frame((CIP2, 20000 + k), (VIP, 53), b"new"),
        tcp_frame((CIP, 1), (VIP3, 80), syn(1), b""),
        tcp_frame((RIP1, 8080), (LIP2, 40000), ack(1, 1), b""),
        echo_frame(CIP, VIP3, false),
        tcp_frame((CIP, 2), (LIP, 40000), syn(1), b""),
    ];
    let mut verdicts = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        let (va, oa) = a.send(f);
        let (vb, ob) = b.send(f);
        assert_eq!(va, vb, "{what}: frame {i}: verdict");
        assert_eq!(oa, ob, "{what}: frame {i}: output");
        verdicts.push(va);
    }
    assert_eq!(
        verdicts[0],
        to_server(conn.r.0),
        "{what}: the session keeps forwarding"
    );
    assert_eq!(verdicts[1], to_client(CIP), "{what}: and back");
    assert!(
        matches!(verdicts[2], Verdict::ToServer { .. }),
        "{what}: new SYN"
    );
    assert_eq!(verdicts[3], to_server(RIP1), "{what}: UDP session");
    assert_eq!(
        verdicts[5],
        Verdict::Pass,
        "{what}: a rejected VIP is not ours"
    );
    assert_eq!(
        verdicts[6],
        Verdict::Pass,
        "{what}: a rejected local address is not ours"
    );
    a.advance(ms(100));
    b.advance(ms(100));
    same_everywhere(&a.e, &b.e, what);
}

#[test]
fn a_rejected_change_leaves_the_previous_configuration_whole() {
    let (mut a, conn) = config_twin();
    let (mut b, conn_b) = config_twin();
    assert_eq!(conn.tuple(), conn_b.tuple());
    config_round(&mut a, &mut b, &conn, 0, "before any change");
    for (k, (what, change, want)) in rejected_changes().into_iter().enumerate() {
        assert_eq!(change(&mut a.e), Err(want), "{what}");
        config_round(&mut a, &mut b, &conn, k as u16 + 1, &what);
    }
    // A change that is accepted after all that gets the same listener id.
    assert_eq!(a.e.add_listener(fresh_listener()), Ok(2));
    assert_eq!(b.e.add_listener(fresh_listener()), Ok(2));
    for e in [&mut a, &mut b] {
        assert_eq!(
            e.verdict(&tcp_frame((CIP, 1), (VIP3, 80), syn(1), b"")),
            to_server(RIP1)
        );
    }
    same_everywhere(&a.e, &b.e, "after an accepted listener");
}

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

// ----- 7. TCP states, timeouts, the sweep ----------------------------------------

const SWEEP_PERIOD: Duration = Duration::from_secs(2);

/// Distinct timeouts, more than a sweep period apart.
fn state_timeouts() -> Timeouts {
    Timeouts {
        syn_recv: secs(5),
        close: secs(11),
        fin_wait: secs(17),
        close_wait: secs(23),
        last_ack: secs(29),
        time_wait: secs(35),
        tcp_established: secs(41),
        udp: secs(47),
    }
}

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

// ----- 9. handle_batch ---------------------------------------------------------------

/// Above this many sessions `handle_batch` loads the table ahead of the
/// work (`CACHED_SESSIONS` in engine.rs); below it, it is a loop over
/// `handle_packet`. Both regimes are compared.
const PREFETCH_ABOVE: u32 = 8192;

fn batch_sim() -> Sim {
    let config = EngineConfig {
        capacity: 16384,
        ..cfg()
    };
    let mut s = Sim::new(config, Instant::from_secs(50));
    let mut tcp = listener(
        VIP,
        80,
        Protocol::Tcp,
        &[(RIP1, 8080), (RIP2, 8080)],
        &[LIP],
        1024..=65535,
    );
    tcp.backends[1].weight = 2;
    s.e.add_listener(tcp).unwrap();
    let udp = listener(
        VIP,
        53,
        Protocol::Udp,
        &[(RIP3, 5353)],
        &[LIP],
        1024..=65535,
    );
    s.e.add_listener(udp).unwrap();
    let fill = listener(VIP2, 53, Protocol::Udp, &[(RIP4, 53)], &[LIP], 1024..=65535);
    s.e.add_listener(fill).unwrap();
    s
}

fn filler_client(i: u32) -> Ep {
    (ip([172, 16, (i >> 8) as u8, i as u8]), 7000)
}

fn run_batch(
    e: &mut Engine,
    now: Instant,
    inputs: &[Vec<u8>],
    verdicts: &mut [Verdict],
) -> Vec<Vec<u8>> {
    let start = Frame::HEADROOM;
    let mut bufs: Vec<Vec<u8>> = inputs
        .iter()
        .map(|f| {
            let mut buf = vec![0u8; start + f.len() + 64];
            buf[start..start + f.len()].copy_from_slice(f);
            buf
        })
        .collect();
    let mut frames: Vec<Frame<'_>> = bufs
        .iter_mut()
        .zip(inputs)
        .map(|(buf, f)| Frame::new(buf, start, start + f.len()).unwrap())
        .collect();
    e.handle_batch(now, &mut frames, verdicts);
    frames.iter().map(|f| f.bytes().to_vec()).collect()
}

fn vlan_syn(src: Ep, dst: Ep) -> Vec<u8> {
    tcp_vlan(Some(7), src, dst, syn(C_ISN), &[], b"")
}

/// Two identical engines with `fillers` long-lived UDP sessions each; one
/// takes a mixed batch of 100 frames through `handle_batch`, the other
/// the same frames one by one through `handle_packet`.
fn batch_equals_frame_by_frame(fillers: u32) {
    let mut a = batch_sim();
    let mut b = batch_sim();
    let v = (VIP, 80);
    for i in 0..fillers {
        let f = udp_frame(filler_client(i), (VIP2, 53), b"f");
        assert_eq!(a.verdict(&f), to_server(RIP4));
        assert_eq!(b.verdict(&f), to_server(RIP4));
    }
    // Sessions from before the batch, on both.
    let mut conns = Vec::new();
    for i in 0..6 {
        let ca = a.establish((CIP, 40000 + i), v);
        let cb = b.establish((CIP, 40000 + i), v);
        assert_eq!(ca.tuple(), cb.tuple());
        conns.push(ca);
    }
    same_everywhere(&a.e, &b.e, "after the warm-up");
    let now = Instant::from_secs(51);
    b.now = now;

    // The batch is chosen frame by frame from what `b` answers, so that
    // it also holds server replies to sessions the batch itself starts.
    let mut rng = Rng::new(7);
    let mut inputs = Vec::new();
    let mut want = Vec::new();
    let mut udp_sessions: HashMap<Ep, (Ep, Ep)> = HashMap::new();
    let mut next_port = 20000u16;
    for _ in 0..100 {
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        next_port += 1;
        let f = match rng.below(15) {
            0 | 1 => tcp_frame((CIP2, next_port), v, syn(C_ISN), b""),
            2 | 3 => {
                let c = conns[pick(&mut rng, conns.len())];
                c.client(ack(C_ISN + 1, S_ISN + 1), b"data")
            }
            4 | 5 => {
                let c = conns[pick(&mut rng, conns.len())];
                c.server(ack(S_ISN + 1, C_ISN + 1), b"reply")
            }
            6 => udp_frame((CIP3, 5000 + rng.below(4) as u16), (VIP, 53), b"u"),
            7 if !udp_sessions.is_empty() => {
                let mut keys: Vec<_> = udp_sessions.keys().copied().collect();
                keys.sort_unstable();
                let (l, r) = udp_sessions[&keys[pick(&mut rng, keys.len())]];
                udp_frame(r, l, b"ua")
            }
            8 => tcp_frame((CIP3, 9), v, ack(1, 1), b""),
            9 => match rng.below(4) {
                0 => tcp_frame((CIP, 1), (OTHER, 22), syn(1), b""),
                1 => arp(),
                2 => echo_frame(CIP, VIP, false),
                _ => tcp_frame((CIP, 1), v, syn(1), b"")[..30].to_vec(),
            },
            10 => tcp_frame(
                (CIP3, 10),
                v,
                Tcp {
                    syn: true,
                    fin: true,
                    ..Tcp::default()
                },
                b"",
            ),
            11 => {
                // A minimum-size Ethernet frame: padding after the datagram.
                let mut f = udp_frame((CIP3, next_port), (VIP, 53), b"p");
                f.resize(60, 0);
                f
            }
            12 => vlan_syn((CIP3, next_port), v),
            13 if fillers > 0 => {
                let client = filler_client(rng.below(u64::from(fillers)) as u32);
                udp_frame(client, (VIP2, 53), b"again")
            }
            _ => {
                let c = conns[pick(&mut rng, conns.len())];
                if rng.below(2) == 0 {
                    c.client(fin(C_ISN + 1, S_ISN + 1), b"")
                } else {
                    c.client(rst(C_ISN + 1), b"")
                }
            }
        };
        let (verdict, out) = b.send(&f);
        if let Verdict::ToServer { .. } = verdict {
            let ((src, sport), dst) = endpoints(&f);
            let (l, r) = endpoints(&out);
            if dst == v && src == CIP2 {
                conns.push(Conn {
                    c: (src, sport),
                    v,
                    l,
                    r,
                });
            } else if dst.1 == 53 {
                udp_sessions.insert((src, sport), (l, r));
            }
        }
        inputs.push(f);
        want.push((verdict, out));
    }
    let kinds: HashSet<_> = want
        .iter()
        .map(|(v, _)| std::mem::discriminant(v))
        .collect();
    assert_eq!(kinds.len(), 5, "every kind of verdict is in the batch");
    assert_eq!(
        a.e.session_count() > PREFETCH_ABOVE,
        fillers > PREFETCH_ABOVE,
        "the regime asked for"
    );

    let sentinel = Verdict::Drop(DropReason::BadTcpFlags);
    let mut verdicts = vec![sentinel; 101];
    let outputs = run_batch(&mut a.e, now, &inputs, &mut verdicts);
    for (i, ((verdict, out), (got_v, got_out))) in
        want.iter().zip(verdicts.iter().zip(&outputs)).enumerate()
    {
        assert_eq!(got_v, verdict, "frame {i}: verdict");
        assert_eq!(got_out, out, "frame {i}: output");
    }
    assert_eq!(verdicts[100], sentinel, "an extra verdict is left alone");
    same_everywhere(&a.e, &b.e, "after the batch");

    // Fewer verdicts than frames: the extra frames are left alone.
    let more = vec![
        tcp_frame((CIP2, 60000), v, syn(1), b""),
        tcp_frame((CIP2, 60001), v, syn(1), b""),
        tcp_frame((CIP2, 60002), v, syn(1), b""),
    ];
    let mut two = [sentinel; 2];
    let outputs = run_batch(&mut a.e, now, &more, &mut two);
    for (i, f) in more.iter().take(2).enumerate() {
        let (verdict, out) = b.send(f);
        assert_eq!((two[i], &outputs[i]), (verdict, &out));
    }
    assert_eq!(outputs[2], more[2], "not processed");
    same_everywhere(&a.e, &b.e, "after a short batch");

    // The deadlines the batch set are the same: both engines expire the
    // same sessions at the same times, with the same RSTs.
    a.now = now;
    for (i, t) in [11, 31, 61, 121, 901].into_iter().enumerate() {
        a.advance_to(now + secs(t));
        b.advance_to(now + secs(t));
        same_everywhere(&a.e, &b.e, &format!("expiry step {i}"));
        assert_eq!(
            a.take_transmits(),
            b.take_transmits(),
            "expiry step {i}: RSTs"
        );
    }
    assert_eq!(a.e.session_count(), 0);
}

#[test]
fn handle_batch_gives_what_handle_packet_gives_on_a_small_table() {
    batch_equals_frame_by_frame(0);
}

#[test]
fn handle_batch_gives_what_handle_packet_gives_on_a_large_table() {
    batch_equals_frame_by_frame(PREFETCH_ABOVE + 500);
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
    while let Some((len, verdict)) = s.e.poll_transmit(&mut buf) {
        // An IPv4 RST: Ethernet, IPv4, TCP (TRANSMIT_LEN leaves room for
        // an IPv6 one).
        assert_eq!(len, 14 + 20 + 20);
        let p = SlicedPacket::from_ethernet(&buf[..len]).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
            panic!("not TCP");
        };
        assert!(tcp.rst());
        seen.push((verdict, endpoints(&buf[..len])));
    }
    seen.sort_by_key(|(v, _)| matches!(v, Verdict::ToServer { .. }));
    assert_eq!(
        seen,
        [
            (to_client(CIP), (conn.v, conn.c)),
            (to_server(RIP1), (conn.l, conn.r)),
        ]
    );
    assert_eq!(s.e.counters().rst_sent, 2);
    assert_eq!(s.e.poll_transmit(&mut buf), None);
}
