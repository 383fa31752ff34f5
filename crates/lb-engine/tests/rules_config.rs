//! Configuration errors, each typed, and a rejected change leaves the
//! engine exactly as it was (a twin engine that never saw the change
//! answers every later frame the same way).
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use rules_common::*;

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
