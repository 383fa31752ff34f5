//! Import arbitrary and mutated session snapshots: never a panic, a
//! refused input changes nothing, and an accepted one leaves an engine
//! whose counts hold together and whose own snapshot imports whole.
//!
//! Input: `[mode][rest...]`.
//!
//! - Mode bit 0 clear: `rest` is the snapshot. Set: `rest` edits a real
//!   snapshot, exported once (per process) from an engine that served
//!   connections of every kind (4to4 TCP and UDP, 6to4 TCP, 6to6 TCP and
//!   UDP, each left at several stages of its life) and holds quarantined
//!   tuples. The edits are `[op][lo][hi][value]`, at offset `lo | hi << 8`
//!   (modulo the length plus one): `op % 4` 0 writes `value`, 1 flips bit
//!   `value % 8`, 2 truncates there, 3 inserts `value`. Bit 1 then writes
//!   the checksum again, so that the edits reach the checks of the fields.
//! - Bits 2-3 choose the importing engine's configuration: 0 the exporting
//!   engine's; 1 a table of 8 sessions; 2 without the 4to4 UDP listener
//!   nor one of the 4to4 TCP backends and local addresses, and another
//!   hash seed; 3 the quarantine off.
//! - Bit 4: the engine first imports the real snapshot, unedited, so that
//!   the edited one meets live sessions (duplicates).
//!
//! Checked: on an error, the engine shows exactly what it showed before
//! (sessions, quarantine, counters, next timeout, its own snapshot). On
//! success, the report adds up (restored + skipped = sessions in the
//! input; restored quarantine records + skipped ones = those in the
//! input), the engine holds what it held plus what was restored, each
//! listener's and backend's active sessions add up to it, no two of its
//! sessions share a client or an outbound tuple; its own snapshot
//! imports whole into a fresh engine of the same configuration, giving the
//! same snapshot back (the quarantine's records in any order); and once
//! every timeout has passed (all are short here), every session has ended
//! and every active count is zero.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;

use lb_engine::{
    BackendConfig, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool, Protocol,
    Timeouts, Verdict,
};
use libfuzzer_sys::fuzz_target;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const SEED: u64 = 0x5eed_f00d;
/// The exporting engine's clock, and the importing one's (a new process).
const T_A: Instant = Instant::from_secs(1000);
const T_B: Instant = Instant::from_secs(3);
/// Listeners in every configuration but the third, and backends each.
const LISTENERS: u16 = 5;

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last))
}

/// An importing engine's configuration (mode bits 2-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Same,
    Small,
    Fewer,
    NoQuarantine,
}

fn engine(setup: Setup) -> Engine {
    let mut e = Engine::new(EngineConfig {
        capacity: if setup == Setup::Small { 8 } else { 64 },
        affinity_capacity: 64,
        quarantine_capacity: 64,
        quarantine: if setup == Setup::NoQuarantine {
            Duration::ZERO
        } else {
            Duration::from_secs(20)
        },
        hash_seed: if setup == Setup::Fewer { 99 } else { SEED },
        ..EngineConfig::default()
    })
    .unwrap();
    let s = Duration::from_secs;
    let timeouts = Timeouts {
        tcp_established: s(5),
        syn_recv: s(3),
        fin_wait: s(2),
        close_wait: s(2),
        last_ack: s(2),
        time_wait: s(1),
        close: s(1),
        udp: s(4),
    };
    let fewer = setup == Setup::Fewer;
    let (r1, r2, r6) = (v4([10, 0, 0, 2]), v4([10, 0, 0, 3]), v6(0xa));
    let (lip1, lip2, lip6) = (v4([10, 0, 0, 100]), v4([10, 0, 0, 101]), v6(0x64));
    // VIP, port, protocol, local addresses, backends, whether it is there.
    type Listener = (IpAddr, u16, Protocol, Vec<IpAddr>, Vec<IpAddr>, bool);
    let listeners: [Listener; 5] = [
        (
            v4([198, 51, 100, 1]),
            80,
            Protocol::Tcp,
            if fewer { vec![lip1] } else { vec![lip1, lip2] },
            if fewer { vec![r1] } else { vec![r1, r2] },
            true,
        ),
        (
            v4([198, 51, 100, 1]),
            53,
            Protocol::Udp,
            vec![lip1],
            vec![r1],
            !fewer,
        ),
        (v6(1), 80, Protocol::Tcp, vec![lip1], vec![r1], true),
        (v6(2), 80, Protocol::Tcp, vec![lip6], vec![r6], true),
        (v6(2), 53, Protocol::Udp, vec![lip6], vec![r6], true),
    ];
    for (vip, port, protocol, lips, backends, present) in listeners {
        if !present {
            continue;
        }
        let mut pool = LocalPool::new(lips);
        pool.ports = 40000..=40031;
        let mut l = ListenerConfig::new(vip, port, protocol, pool);
        l.timeouts = timeouts;
        for b in backends {
            l.backends.push(BackendConfig::new(b, 8080));
        }
        e.add_listener(l).unwrap();
    }
    e
}

// ----- frames, to make the real snapshot ------------------------------------

fn ones_sum(data: &[u8]) -> u32 {
    data.chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn octets(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An Ethernet frame: TCP (with `flags`, `seq`, `ack`) or UDP from `src`
/// to `dst`, every checksum right.
fn frame(
    proto: u8,
    src: (IpAddr, u16),
    dst: (IpAddr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.1.to_be_bytes());
    l4.extend_from_slice(&dst.1.to_be_bytes());
    if proto == PROTO_TCP {
        l4.extend_from_slice(&seq.to_be_bytes());
        l4.extend_from_slice(&ack.to_be_bytes());
        l4.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
    } else {
        l4.extend_from_slice(&[0, 12, 0, 0]);
    }
    l4.extend_from_slice(b"data");
    if proto == PROTO_UDP {
        let len = l4.len() as u16;
        l4[4..6].copy_from_slice(&len.to_be_bytes());
    }
    let (s, d) = (octets(src.0), octets(dst.0));
    let sum = ones_sum(&s) + ones_sum(&d) + u32::from(proto) + l4.len() as u32 + ones_sum(&l4);
    let at = if proto == PROTO_TCP { 16 } else { 6 };
    l4[at..at + 2].copy_from_slice(&(!fold(sum)).to_be_bytes());
    let mut out = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if src.0.is_ipv4() {
        out.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&(20 + l4.len() as u16).to_be_bytes());
        ip.extend_from_slice(&s);
        ip.extend_from_slice(&d);
        let sum = !fold(ones_sum(&ip));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        out.extend_from_slice(&ip);
    } else {
        out.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        out.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        out.extend_from_slice(&[proto, 64]);
        out.extend_from_slice(&s);
        out.extend_from_slice(&d);
    }
    out.extend_from_slice(&l4);
    out
}

/// Hand a frame to an engine: its verdict, and the frame as it left.
fn send(e: &mut Engine, now: Instant, input: &[u8]) -> (Verdict, Vec<u8>) {
    let start = Frame::HEADROOM;
    let mut buf = vec![0u8; start + input.len() + 64];
    buf[start..start + input.len()].copy_from_slice(input);
    let mut f = Frame::new(&mut buf, start, start + input.len()).unwrap();
    let verdict = e.handle_packet(now, &mut f);
    (verdict, f.bytes().to_vec())
}

/// The source and destination of a forwarded frame (as `frame` builds
/// them, or as the engine rewrote them).
fn ends(b: &[u8]) -> ((IpAddr, u16), (IpAddr, u16)) {
    let (src, dst, l4) = if b[12] == 0x08 {
        (
            v4(b[26..30].try_into().unwrap()),
            v4(b[30..34].try_into().unwrap()),
            34,
        )
    } else {
        let a = |at: usize| {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&b[at..at + 16]).unwrap(),
            ))
        };
        (a(22), a(38), 54)
    };
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    ((src, port(l4)), (dst, port(l4 + 2)))
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const RST: u8 = 0x04;
const FIN: u8 = 0x01;

/// Drive connections of every kind through an engine: each TCP one left
/// after its SYN, its SYN-ACK, its third ACK, data, its client's FIN or an
/// RST (the last two end, with the sweep, in the quarantine); each UDP
/// flow after one or two datagrams.
fn serve(e: &mut Engine) {
    let vips = [
        (v4([198, 51, 100, 1]), 80, PROTO_TCP),
        (v4([198, 51, 100, 1]), 53, PROTO_UDP),
        (v6(1), 80, PROTO_TCP),
        (v6(2), 80, PROTO_TCP),
        (v6(2), 53, PROTO_UDP),
    ];
    let mut port = 1000;
    for (vip, vport, proto) in vips {
        for stage in 0..6u16 {
            port += 1;
            let client = match vip {
                IpAddr::V4(_) => v4([192, 0, 2, stage as u8 + 1]),
                IpAddr::V6(_) => v6(0x100 + stage),
            };
            let c = (client, port);
            let v = (vip, vport);
            let (verdict, out) = send(e, T_A, &frame(proto, c, v, SYN, 100, 0));
            assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
            let (l, r) = ends(&out);
            let steps: &[(bool, u8, u32, u32)] = if proto == PROTO_UDP {
                &[(true, 0, 0, 0)]
            } else {
                &[
                    (false, SYN | ACK, 500, 101),
                    (true, ACK, 101, 501),
                    (false, ACK, 501, 105),
                    (true, FIN | ACK, 105, 505),
                ]
            };
            let take = match (proto, stage) {
                (PROTO_UDP, s) => usize::from(s % 2),
                (_, 5) => 2,
                (_, s) => usize::from(s).min(4),
            };
            for &(server, flags, seq, ack) in &steps[..take] {
                let f = if server {
                    frame(proto, r, l, flags, seq, ack)
                } else {
                    frame(proto, c, v, flags, seq, ack)
                };
                send(e, T_A, &f);
            }
            if proto == PROTO_TCP && stage == 5 {
                send(e, T_A, &frame(proto, c, v, RST | ACK, 101, 501));
            }
        }
    }
}

/// The real snapshot: an engine served, then a moment later (the reset
/// sessions have ended and their tuples are quarantined) exported.
fn real() -> &'static [u8] {
    static REAL: OnceLock<Vec<u8>> = OnceLock::new();
    REAL.get_or_init(|| {
        let mut e = engine(Setup::Same);
        serve(&mut e);
        let later = T_A + Duration::from_millis(2500);
        for tick in 0..=25 {
            e.handle_timeout(T_A + Duration::from_millis(100 * tick));
        }
        let mut out = Vec::new();
        e.export_state(later, &mut out);
        assert!(e.quarantined() > 0 && e.session_count() > 20);
        out
    })
}

// ----- the checks ------------------------------------------------------------

fn export(e: &Engine, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    e.export_state(now, &mut out);
    out
}

/// What an engine shows.
fn observe(e: &Engine) -> (u32, u32, lb_engine::Counters, Option<Instant>, Vec<u8>) {
    (
        e.session_count(),
        e.quarantined(),
        *e.counters(),
        e.poll_timeout(),
        export(e, T_B),
    )
}

fn active(e: &Engine) -> (u64, u64) {
    let (mut listeners, mut backends) = (0, 0);
    for l in 0..LISTENERS {
        listeners += e.listener_traffic(l).map_or(0, |t| t.active_sessions);
        for b in 0..2 {
            backends += e.backend_traffic(l, b).map_or(0, |t| t.active_sessions);
        }
    }
    (listeners, backends)
}

fn count(bytes: &[u8], i: usize) -> usize {
    u32::from_le_bytes(bytes[16 + 4 * i..20 + 4 * i].try_into().unwrap()) as usize
}

/// A snapshot's bytes before its quarantine records, and those records
/// sorted (their order follows the quarantine's layout).
fn canonical(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let q = count(bytes, 5);
    let end = bytes.len() - 4;
    let start = end - 12 * q;
    let mut records: Vec<Vec<u8>> = bytes[start..end].chunks(12).map(<[u8]>::to_vec).collect();
    records.sort();
    (bytes[..start].to_vec(), records)
}

/// A session's listener record, client address and client port.
type InKey = (usize, Vec<u8>, u16);
/// A session's protocol, local address record, local port, and server
/// address record and port.
type OutKey = (u8, Vec<u8>, u16, Vec<u8>, u16);

/// The inbound key (listener record, client, client port) and the
/// outbound tuple (protocol, local address, local port, server address,
/// server port) of every session of a valid snapshot, read from the format
/// as documented.
fn keys(b: &[u8]) -> Vec<(InKey, OutKey)> {
    let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
    let (listeners, backends, locals) = (
        40,
        40 + 20 * count(b, 0),
        40 + 20 * count(b, 0) + 23 * count(b, 1),
    );
    let mut at = locals + 17 * count(b, 2);
    let mut out = Vec::new();
    for (n, client_len) in [(count(b, 3), 4), (count(b, 4), 16)] {
        for _ in 0..n {
            let backend = backends + 23 * u32_at(at);
            let listener = u32_at(backend);
            let proto = b[listeners + 20 * listener + 17];
            let lip = locals + 17 * u32_at(at + 4);
            out.push((
                (
                    listener,
                    b[at + 33..at + 33 + client_len].to_vec(),
                    u16_at(at + 8),
                ),
                (
                    proto,
                    b[lip..lip + 17].to_vec(),
                    u16_at(at + 10),
                    b[backend + 4..backend + 21].to_vec(),
                    u16_at(backend + 21),
                ),
            ));
            at += 33 + client_len;
        }
    }
    out
}

fn edit(base: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for e in edits.chunks_exact(4) {
        let at = usize::from(u16::from_le_bytes([e[1], e[2]])) % (b.len() + 1);
        match e[0] % 4 {
            0 if at < b.len() => b[at] = e[3],
            1 if at < b.len() => b[at] ^= 1 << (e[3] % 8),
            2 => b.truncate(at),
            3 => b.insert(at, e[3]),
            _ => {}
        }
    }
    b
}

fn reseal(b: &mut [u8]) {
    if b.len() >= 4 {
        let n = b.len() - 4;
        let crc = crc32fast::hash(&b[..n]);
        b[n..].copy_from_slice(&crc.to_le_bytes());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        let mut b = edit(real(), rest);
        if mode & 2 != 0 {
            reseal(&mut b);
        }
        b
    };
    let setup =
        [Setup::Same, Setup::Small, Setup::Fewer, Setup::NoQuarantine][usize::from(mode >> 2 & 3)];
    let mut b = engine(setup);
    if mode & 16 != 0 {
        b.import_state(T_B, Duration::ZERO, real()).unwrap();
    }
    let before = observe(&b);
    let report = match b.import_state(T_B, Duration::ZERO, &input) {
        Err(err) => {
            assert!(!err.to_string().is_empty());
            assert!(observe(&b) == before, "{err}: the engine changed");
            return;
        }
        Ok(report) => report,
    };
    // The input is whole and valid: its counts can be read.
    let sessions = count(&input, 3) + count(&input, 4);
    assert_eq!(report.sessions as usize, sessions);
    assert_eq!(
        report.restored + report.skipped(),
        report.sessions,
        "{report:?}"
    );
    assert!(report.overdue <= report.restored);
    assert_eq!(
        (report.quarantine_restored + report.quarantine_skipped) as usize,
        count(&input, 5)
    );
    assert_eq!(b.session_count(), before.0 + report.restored, "{report:?}");
    let n = u64::from(b.session_count());
    assert_eq!(active(&b), (n, n), "active sessions");

    // No two sessions share a client or an outbound tuple.
    let again = export(&b, T_B);
    let keys = keys(&again);
    assert_eq!(keys.len(), b.session_count() as usize);
    let clients: std::collections::HashSet<_> = keys.iter().map(|k| &k.0).collect();
    let tuples: std::collections::HashSet<_> = keys.iter().map(|k| &k.1).collect();
    assert_eq!(
        (clients.len(), tuples.len()),
        (keys.len(), keys.len()),
        "duplicate keys"
    );

    // Its own snapshot imports whole, and gives the same snapshot back.
    let mut c = engine(setup);
    let report_c = c.import_state(T_B, Duration::ZERO, &again).unwrap();
    assert_eq!(report_c.restored, b.session_count(), "{report_c:?}");
    assert_eq!(report_c.skipped(), 0);
    assert_eq!(
        (report_c.quarantine_restored + report_c.quarantine_skipped) as usize,
        count(&again, 5)
    );
    // The same snapshot back: the same sessions, and the quarantine's
    // records, all of them unless one found no room (the cuckoo table's
    // rare refusal).
    let (sessions_b, held_b) = canonical(&again);
    let (sessions_c, held_c) = canonical(&export(&c, T_B));
    let counts = |b: &[u8]| (0..5).map(|i| count(b, i)).collect::<Vec<_>>();
    assert_eq!(counts(&sessions_b), counts(&sessions_c));
    assert!(
        sessions_b[..16] == sessions_c[..16] && sessions_b[40..] == sessions_c[40..],
        "not the same sessions back"
    );
    assert!(held_c.iter().all(|r| held_b.binary_search(r).is_ok()));
    assert_eq!(held_c.len() as u32, report_c.quarantine_restored);

    // Every timeout is at most 5 s, so is what a restored session keeps.
    let mut now = T_B;
    let end = T_B + Duration::from_secs(8);
    let mut rst = [0u8; Engine::TRANSMIT_LEN];
    while let Some(t) = b.poll_timeout() {
        if t > end {
            break;
        }
        now = t.max(now);
        b.handle_timeout(now);
        while b.poll_transmit(&mut rst).is_some() {}
    }
    assert_eq!(b.session_count(), 0);
    assert_eq!(active(&b), (0, 0));
});
