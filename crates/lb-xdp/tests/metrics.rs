//! The metrics endpoint: the text format, and the HTTP server over real
//! sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lb_engine::{Counters, DropReason, Protocol, Traffic};
use lb_xdp::ledger::{Dropped, Ledger, Loss, Origin};
use lb_xdp::metrics::{
    BackendStats, HealthState, ListenerAddr, ListenerStats, NeighStats, RingStats, Snapshot,
    render, serve,
};
use lb_xdp::xdp::XdpStats;

fn snapshot() -> Snapshot {
    let mut counters = Counters::default();
    counters.drops[DropReason::NoSession.index()] = 7;
    counters.drops[DropReason::TableFull.index()] = 2;
    counters.passed = 11;
    counters.sessions_created = 40;
    counters.rst_sent = 4;
    counters.ttm_inserted = 39;
    let web = Traffic {
        packets_in: 100,
        bytes_in: 6400,
        packets_out: 90,
        bytes_out: 120_000,
        new_sessions: 40,
        active_sessions: 3,
    };
    Snapshot {
        counters,
        engines: 2,
        sessions: 3,
        quarantined: 12,
        listeners: vec![ListenerStats {
            // A name that needs every escape.
            name: "web \"main\"\\a\nb".into(),
            addr: Some(ListenerAddr {
                vip: "198.51.100.1".parse().unwrap(),
                port: 80,
                protocol: Protocol::Tcp,
            }),
            traffic: web,
        }],
        backends: vec![
            BackendStats {
                listener: "web".into(),
                addr: "10.0.0.2:8080".parse().unwrap(),
                weight: 3,
                up: true,
                traffic: Traffic {
                    packets_in: 75,
                    ..Traffic::default()
                },
            },
            BackendStats {
                listener: "web".into(),
                addr: "[2001:db8::3]:8080".parse().unwrap(),
                weight: 1,
                up: false,
                traffic: Traffic::default(),
            },
        ],
        rings: vec![
            RingStats {
                queue: 0,
                rx_packets: 1000,
                tx_ring_full: 5,
                ..RingStats::default()
            },
            RingStats {
                queue: 1,
                rx_packets: 2000,
                poll_sleeps: 9,
                ..RingStats::default()
            },
        ],
        neigh: NeighStats {
            resolved: 2,
            queued: 3,
            queue_dropped: 1,
            unresolved_dropped: 0,
            unreachable: 6,
            netlink_errors: 4,
        },
        config_reloads_ok: 5,
        config_reloads_failed: 1,
        sessions_not_restored: 7,
        steering: "hand-off",
        queue_sessions: vec![(0, 1), (1, 2)],
        health: vec![HealthState {
            listener: "web".into(),
            addr: "10.0.0.2:8080".parse().unwrap(),
            up: true,
            checks_ok: 20,
            checks_failed: 2,
        }],
        l7: "# HELP lbd_l7_requests_total Requests.\n# TYPE lbd_l7_requests_total counter\nlbd_l7_requests_total{listener=\"site\"} 9\n".into(),
    }
}

/// The family a sample belongs to, from its name.
fn sample_name(line: &str) -> &str {
    let end = line.find(['{', ' ']).unwrap();
    &line[..end]
}

/// Checks that a sample line is `name{k="v",...} value` and returns the name.
fn check_sample(line: &str) -> String {
    let name = sample_name(line);
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad metric name in {line:?}"
    );
    let mut rest = &line[name.len()..];
    if let Some(labels) = rest.strip_prefix('{') {
        // Walk the labels by hand, honouring escapes.
        let mut chars = labels.char_indices().peekable();
        loop {
            // label name
            let start = chars.peek().unwrap().0;
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
                assert!(
                    c.is_ascii_alphanumeric() || c == '_',
                    "label name in {line:?}"
                );
            }
            let eq = eq.expect("label without =");
            assert!(eq > start, "empty label name in {line:?}");
            assert_eq!(
                chars.next().map(|x| x.1),
                Some('"'),
                "unquoted value in {line:?}"
            );
            // value
            loop {
                match chars.next().expect("unterminated value").1 {
                    '\\' => {
                        let e = chars.next().expect("dangling escape").1;
                        assert!(matches!(e, '\\' | '"' | 'n'), "bad escape in {line:?}");
                    }
                    '"' => break,
                    '\n' => panic!("raw newline in {line:?}"),
                    _ => {}
                }
            }
            match chars.next().expect("unterminated labels") {
                (_, ',') => continue,
                (i, '}') => {
                    rest = &labels[i + 1..];
                    break;
                }
                (_, c) => panic!("unexpected {c:?} in {line:?}"),
            }
        }
    }
    let value = rest.strip_prefix(' ').expect("no space before the value");
    value
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("bad value in {line:?}"));
    name.to_owned()
}

/// Every line is a HELP, a TYPE or a sample; HELP and TYPE come once per
/// family, before its samples; counters end in _total.
fn check_exposition(text: &str) -> HashMap<String, String> {
    assert!(text.ends_with('\n'));
    let mut help = HashMap::new();
    let mut types: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("# HELP ") {
            let name = h.split(' ').next().unwrap().to_owned();
            assert!(
                help.insert(name.clone(), ()).is_none(),
                "HELP twice: {name}"
            );
        } else if let Some(t) = line.strip_prefix("# TYPE ") {
            let mut parts = t.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            assert!(parts.next().is_none());
            assert!(matches!(kind.as_str(), "counter" | "gauge"), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {name}");
            }
            assert!(help.contains_key(&name), "TYPE before HELP: {name}");
            assert!(
                types.insert(name.clone(), kind).is_none(),
                "TYPE twice: {name}"
            );
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let name = check_sample(line);
            assert!(types.contains_key(&name), "sample before TYPE: {line}");
        }
    }
    types
}

#[test]
fn render_known_figures() {
    let text = render(&snapshot());
    let types = check_exposition(&text);
    let lines: Vec<&str> = text.lines().collect();
    let has = |l: &str| assert!(lines.contains(&l), "missing line {l:?} in\n{text}");

    // Drops: every reason, by its label.
    assert_eq!(types["lbd_drops_total"], "counter");
    for reason in DropReason::ALL {
        let n = match reason {
            DropReason::NoSession => 7,
            DropReason::TableFull => 2,
            _ => 0,
        };
        has(&format!(
            "lbd_drops_total{{reason=\"{}\"}} {n}",
            reason.label()
        ));
    }
    has("# HELP lbd_drops_total Frames dropped by the engine, by reason.");
    has("# TYPE lbd_drops_total counter");
    has("lbd_passed_total 11");
    has("lbd_sessions_created_total 40");
    has("lbd_rst_sent_total 4");
    has("lbd_ttm_inserted_total 39");
    has("lbd_quarantine_overflow_total 0");
    has("lbd_sessions 3");
    assert_eq!(types["lbd_sessions"], "gauge");
    has("lbd_quarantined 12");
    has("lbd_engines 2");

    // Per listener, with the name escaped; what it listens on in an info
    // metric.
    let l = r#"listener="web \"main\"\\a\nb""#;
    has(&format!(
        "lbd_listener_info{{{l},vip=\"198.51.100.1\",port=\"80\",protocol=\"tcp\"}} 1"
    ));
    assert_eq!(types["lbd_listener_info"], "gauge");
    has(&format!("lbd_listener_packets_in_total{{{l}}} 100"));
    has(&format!("lbd_listener_bytes_in_total{{{l}}} 6400"));
    has(&format!("lbd_listener_packets_out_total{{{l}}} 90"));
    has(&format!("lbd_listener_bytes_out_total{{{l}}} 120000"));
    has(&format!("lbd_listener_new_sessions_total{{{l}}} 40"));
    has(&format!("lbd_listener_active_sessions{{{l}}} 3"));
    assert_eq!(types["lbd_listener_active_sessions"], "gauge");

    // Per backend.
    has(r#"lbd_backend_packets_in_total{listener="web",address="10.0.0.2",port="8080"} 75"#);
    has(r#"lbd_backend_up{listener="web",address="10.0.0.2",port="8080"} 1"#);
    has(r#"lbd_backend_up{listener="web",address="2001:db8::3",port="8080"} 0"#);
    has(r#"lbd_backend_weight{listener="web",address="10.0.0.2",port="8080"} 3"#);
    assert_eq!(types["lbd_backend_up"], "gauge");

    // Rings.
    has(r#"lbd_ring_rx_packets_total{queue="0"} 1000"#);
    has(r#"lbd_ring_rx_packets_total{queue="1"} 2000"#);
    has(r#"lbd_ring_tx_ring_full_total{queue="0"} 5"#);
    has(r#"lbd_ring_poll_sleeps_total{queue="1"} 9"#);
    has(r#"lbd_ring_kernel_rx_dropped_total{queue="1"} 0"#);

    // Neighbours, reloads, health.
    has("lbd_neigh_resolved_total 2");
    has("lbd_neigh_queue_dropped_total 1");
    has("lbd_neigh_unreachable_total 6");
    has("lbd_neigh_netlink_errors_total 4");
    has(r#"lbd_config_reloads_total{result="ok"} 5"#);
    has(r#"lbd_config_reloads_total{result="failed"} 1"#);
    has(r#"lbd_health_up{listener="web",address="10.0.0.2",port="8080"} 1"#);
    has(
        r#"lbd_health_checks_total{listener="web",address="10.0.0.2",port="8080",result="failed"} 2"#,
    );
    // The L7 families, as lb_l7 rendered them, at the end.
    assert!(text.ends_with(&snapshot().l7), "{text}");
    assert_eq!(types["lbd_l7_requests_total"], "counter");
}

/// A queue's ledger: 20 frames received (9 sent, 3 engine drops, 5 of
/// lbd's, 3 held) and 4 made (2 sent, 1 dropped, 1 held).
fn ledger() -> Ledger {
    let mut l = Ledger {
        received: 20,
        own: 4,
        ..Ledger::default()
    };
    l.sent(Origin::Received, 9);
    for why in [
        Dropped::Engine(DropReason::NoSession),
        Dropped::Engine(DropReason::NoSession),
        Dropped::Engine(DropReason::Fragment),
        Dropped::Lbd(Loss::ForHost),
        Dropped::Lbd(Loss::NoRoute),
        Dropped::Lbd(Loss::NoNeighbour),
        Dropped::Lbd(Loss::NoNeighbour),
        Dropped::Lbd(Loss::TxFull),
    ] {
        l.dropped(Origin::Received, why);
    }
    l.set_held(Origin::Received, 3);
    l.sent(Origin::Own, 2);
    l.dropped(Origin::Own, Dropped::Lbd(Loss::NeighbourQueueFull));
    l.set_held(Origin::Own, 1);
    l
}

/// The samples of `family` whose labels include every one of `labels`:
/// (labels, value).
fn samples<'a>(text: &'a str, family: &str, labels: &[&str]) -> Vec<(&'a str, u64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && sample_name(l) == family)
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let inner = head.strip_prefix(family)?;
            labels
                .iter()
                .all(|x| inner.contains(x))
                .then(|| (inner, value.parse().unwrap()))
        })
        .collect()
}

#[test]
fn render_frame_accounting() {
    let mut snap = Snapshot::default();
    for queue in [0, 3] {
        snap.rings.push(RingStats {
            queue,
            frames: ledger(),
            xdp: XdpStats {
                redirected: 21,
                passed: 7,
                no_socket: u64::from(queue),
            },
            kernel_rx_dropped: 1,
            ..RingStats::default()
        });
    }
    let text = render(&snap);
    let types = check_exposition(&text);
    for (family, kind) in [
        ("lbd_frames_received_total", "counter"),
        ("lbd_frames_own_total", "counter"),
        ("lbd_frames_sent_total", "counter"),
        ("lbd_frames_dropped_total", "counter"),
        ("lbd_frames_held", "gauge"),
        ("lbd_xdp_packets_total", "counter"),
    ] {
        assert_eq!(types[family], kind, "{family}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let has = |l: &str| assert!(lines.contains(&l), "missing line {l:?} in\n{text}");
    has(r#"lbd_frames_received_total{queue="3"} 20"#);
    has(r#"lbd_frames_own_total{queue="3"} 4"#);
    has(r#"lbd_frames_sent_total{queue="0",origin="received"} 9"#);
    has(r#"lbd_frames_sent_total{queue="0",origin="own"} 2"#);
    has(r#"lbd_frames_dropped_total{queue="0",origin="received",reason="no_session"} 2"#);
    has(r#"lbd_frames_dropped_total{queue="0",origin="received",reason="no_neighbour"} 2"#);
    has(r#"lbd_frames_dropped_total{queue="0",origin="received",reason="tx_full"} 1"#);
    has(r#"lbd_frames_dropped_total{queue="3",origin="own",reason="neighbour_queue_full"} 1"#);
    has(r#"lbd_frames_held{queue="0",origin="received"} 3"#);
    has(r#"lbd_xdp_packets_total{queue="3",outcome="redirected"} 21"#);
    has(r#"lbd_xdp_packets_total{queue="3",outcome="no_socket"} 3"#);
    has(r#"lbd_ring_kernel_rx_dropped_total{queue="0"} 1"#);

    // Every reason is shown for received frames, zeros included; own
    // frames show lbd's reasons only (the engine never drops them).
    for queue in ["0", "3"] {
        let q = format!("queue=\"{queue}\"");
        let received = samples(
            &text,
            "lbd_frames_dropped_total",
            &[&q, "origin=\"received\""],
        );
        assert_eq!(received.len(), DropReason::COUNT + Loss::COUNT);
        for reason in DropReason::ALL
            .iter()
            .map(|r| r.label())
            .chain(Loss::ALL.iter().map(|l| l.label()))
        {
            let r = format!("reason=\"{reason}\"");
            assert_eq!(
                received.iter().filter(|(ls, _)| ls.contains(&r)).count(),
                1,
                "{reason}"
            );
        }
        let own = samples(&text, "lbd_frames_dropped_total", &[&q, "origin=\"own\""]);
        assert_eq!(own.len(), Loss::COUNT);

        // The identity, from the text alone: what came is what was sent,
        // dropped and held.
        for (origin, came) in [
            ("received", "lbd_frames_received_total"),
            ("own", "lbd_frames_own_total"),
        ] {
            let o = format!("origin=\"{origin}\"");
            let total = |family: &str, labels: &[&str]| -> u64 {
                samples(&text, family, labels).iter().map(|(_, v)| v).sum()
            };
            let came = total(came, &[&q]);
            let accounted = total("lbd_frames_sent_total", &[&q, &o])
                + total("lbd_frames_dropped_total", &[&q, &o])
                + total("lbd_frames_held", &[&q, &o]);
            assert_eq!(came, accounted, "queue {queue}, {origin}");
            assert!(came > 0);
        }
    }
}

#[test]
fn render_hand_off_and_queue_sessions() {
    let mut snap = snapshot();
    // Queue 0 handed 5 of its 20 received frames to queue 1, which sent
    // them.
    let mut l0 = ledger();
    l0.handed_out(Origin::Received);
    l0.handed_out(Origin::Received);
    l0.handed_out(Origin::Received);
    l0.handed_out(Origin::Received);
    l0.handed_out(Origin::Received);
    l0.sent(Origin::Received, 0);
    l0.received += 5;
    let mut l1 = ledger();
    l1.handed_in = 5;
    l1.sent(Origin::Received, 4);
    l1.dropped(Origin::Received, Dropped::Lbd(Loss::HandoffFull));
    snap.rings[0].frames = l0;
    snap.rings[1].frames = l1;
    let text = render(&snap);
    let types = check_exposition(&text);
    assert_eq!(types["lbd_frames_handed_out_total"], "counter");
    assert_eq!(types["lbd_frames_handed_in_total"], "counter");
    assert_eq!(types["lbd_queue_sessions"], "gauge");
    let lines: Vec<&str> = text.lines().collect();
    let has = |l: &str| assert!(lines.contains(&l), "missing line {l:?} in\n{text}");
    has(r#"lbd_frames_handed_out_total{queue="0"} 5"#);
    has(r#"lbd_frames_handed_in_total{queue="1"} 5"#);
    has(r#"lbd_frames_handed_out_total{queue="1"} 0"#);
    has(r#"lbd_frames_dropped_total{queue="1",origin="received",reason="handoff_full"} 1"#);
    has(r#"lbd_queue_sessions{queue="1"} 2"#);
    has("lbd_sessions_not_restored_total 7");
    has(r#"lbd_steering_info{mode="hand-off"} 1"#);
    for q in ["0", "1"] {
        let q = format!("queue=\"{q}\"");
        let o = "origin=\"received\"";
        let total = |family: &str, labels: &[&str]| -> u64 {
            samples(&text, family, labels).iter().map(|(_, v)| v).sum()
        };
        let came =
            total("lbd_frames_received_total", &[&q]) + total("lbd_frames_handed_in_total", &[&q]);
        let accounted = total("lbd_frames_sent_total", &[&q, o])
            + total("lbd_frames_dropped_total", &[&q, o])
            + total("lbd_frames_held", &[&q, o])
            + total("lbd_frames_handed_out_total", &[&q]);
        assert_eq!(came, accounted, "{q}");
    }
}

#[test]
fn render_empty_snapshot() {
    let text = render(&Snapshot::default());
    let types = check_exposition(&text);
    // Families are described even with no samples.
    assert!(types.contains_key("lbd_listener_packets_in_total"));
    assert!(types.contains_key("lbd_frames_dropped_total"));
    assert!(text.contains("lbd_drops_total{reason=\"truncated\"} 0\n"));
}

/// One request over a fresh connection; the raw response.
fn request(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn split_response(resp: &str) -> (&str, HashMap<String, String>, &str) {
    let (head, body) = resp.split_once("\r\n\r\n").expect("no end of head");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(": ").unwrap();
            (k.to_ascii_lowercase(), v.to_owned())
        })
        .collect();
    (status, headers, body)
}

#[test]
fn serve_metrics_and_404() {
    let shared = Arc::new(Mutex::new(snapshot()));
    let server = serve("127.0.0.1:0".parse().unwrap(), Arc::clone(&shared)).unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    let resp = request(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, headers, body) = split_response(&resp);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(headers["connection"], "close");
    assert_eq!(headers["content-length"], body.len().to_string());
    assert!(headers["content-type"].starts_with("text/plain; version=0.0.4"));
    assert_eq!(body, render(&snapshot()));

    // The latest snapshot is served.
    shared.lock().unwrap().counters.passed = 12345;
    let resp = request(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(resp.contains("\nlbd_passed_total 12345\n"));

    let resp = request(addr, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
    let (status, headers, body) = split_response(&resp);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(headers["content-length"], body.len().to_string());

    let resp = request(addr, b"POST /metrics HTTP/1.1\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 405 "));
}

#[test]
fn bad_clients_do_not_kill_the_server() {
    let shared = Arc::new(Mutex::new(snapshot()));
    let server = serve("127.0.0.1:0".parse().unwrap(), shared).unwrap();
    let addr = server.local_addr();

    // Garbage.
    let resp = request(addr, b"\x00\xff\xfe garbage\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400 "), "{resp}");

    // Oversized: a header that never ends. The server stops reading at
    // its bound and answers; the client may see a reset for the rest.
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut big = b"GET /metrics HTTP/1.1\r\nX-Long: ".to_vec();
        big.resize(64 * 1024, b'a');
        let _ = s.write_all(&big);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if !out.is_empty() {
            assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 431 "));
        }
    }

    // A client that connects and says nothing, and one that hangs up
    // half way through.
    let silent = TcpStream::connect(addr).unwrap();
    {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metr").unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    }

    // A later request still works (after the silent client's deadline).
    let resp = request(addr, b"GET /metrics HTTP/1.1\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    drop(silent);
}

#[test]
fn dropping_the_server_stops_it() {
    let shared = Arc::new(Mutex::new(Snapshot::default()));
    let server = serve("127.0.0.1:0".parse().unwrap(), shared).unwrap();
    let addr = server.local_addr();
    drop(server);
    // The port is closed once the handle is gone.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

/// A SYN from 192.0.2.10:`cport` to the VIP of `replay/web.toml`.
fn syn(cport: u16) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 10], [198, 51, 100, 1], 64)
        .tcp(cport, 80, 1000, 64240)
        .syn()
        .write(&mut out, b"")
        .unwrap();
    out
}

#[test]
fn engines_are_summed_by_listener_and_backend() {
    use lb_engine::{Engine, Frame, Instant, Verdict};
    use lb_xdp::config::Config;
    use lb_xdp::install::Installed;

    let mut config = Config::parse(include_str!("replay/web.toml")).unwrap();
    config.engine.capacity = 1024;
    config.engine.quarantine_capacity = 1024;
    // More than the fixture's one local port.
    config.listeners[0].engine.local.ports = 1024..=65535;
    let mut snap = Snapshot::default();
    for (queue, cports) in [(0u16, &[40000u16, 40001][..]), (1, &[40002][..])] {
        let mut engine = Engine::new(config.engine).unwrap();
        let installed = Installed::install(&mut engine, &config).unwrap();
        for &cport in cports {
            let mut buf = syn(cport);
            let end = buf.len();
            let mut frame = Frame::new(&mut buf, 64, end).unwrap();
            let verdict = engine.handle_packet(Instant::from_secs(u64::from(queue)), &mut frame);
            assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
        }
        // Not for us, and to the VIP on a port with no listener.
        let mut other = syn(40003);
        other[64 + 36..64 + 38].copy_from_slice(&81u16.to_be_bytes());
        let end = other.len();
        let mut frame = Frame::new(&mut other, 64, end).unwrap();
        let _ = engine.handle_packet(Instant::from_secs(1), &mut frame);
        snap.add_engine(&engine, &installed);
    }
    snap.describe_listeners(&config);

    assert_eq!(snap.engines, 2);
    assert_eq!(snap.sessions, 3);
    assert_eq!(snap.counters.sessions_created, 3);
    assert_eq!(snap.listeners.len(), 1);
    let l = &snap.listeners[0];
    assert_eq!(l.name, "web");
    assert_eq!(
        l.addr,
        Some(ListenerAddr {
            vip: "198.51.100.1".parse().unwrap(),
            port: 80,
            protocol: Protocol::Tcp,
        })
    );
    assert_eq!(
        (
            l.traffic.packets_in,
            l.traffic.new_sessions,
            l.traffic.active_sessions
        ),
        (3, 3, 3)
    );
    assert_eq!(snap.backends.len(), 1);
    let b = &snap.backends[0];
    assert_eq!(b.addr, "10.0.0.2:8080".parse().unwrap());
    assert_eq!((b.weight, b.up), (1, true));
    assert_eq!((b.traffic.packets_in, b.traffic.new_sessions), (3, 3));

    let text = render(&snap);
    check_exposition(&text);
    assert!(text.contains("\nlbd_listener_new_sessions_total{listener=\"web\"} 3\n"));
    assert!(
        text.contains("\nlbd_drops_total{reason=\"no_listener\"} 2\n"),
        "{text}"
    );
}
