//! Group `engine`: the packet path and expiry of `lb-engine`.
//!
//! - `forward_established/{1k,1m}`: a data packet (client to VIP, 64 bytes
//!   of payload) of an established session (handshake done, past the TTM
//!   option, as `scripts/instructions` counts it) drawn at random from
//!   1,000 or 1,000,000, through `handle_batch` in batches of 32;
//! - `forward_single/{1k,1m}`: the same through `handle_packet`, one call
//!   per packet;
//! - `new_session/{1k,1m}`: a SYN from a new client (scheduler, local port
//!   allocator, table insert) into a table already holding that many;
//! - `new_session_quarantined/1k`: the same into 1,000 sessions while the
//!   quarantine holds the tuples of 60,000 sessions that ended before;
//! - `ttm_insert_v4` / `forward_with_options_v4`: a segment that gets the
//!   TTM option, and the same segment once it no longer does;
//! - `ttm_insert_v6` / `forward_6to4`: the same through a 6to4 listener
//!   (IPv6 client, translated to IPv4, 20-byte option);
//! - `expire`: per session, sweeping out 10,000 sessions past their
//!   deadline;
//! - `snapshot_export/1m` / `snapshot_import/1m`: `export_state` of
//!   1,000,000 sessions, and `import_state` of that snapshot into a fresh
//!   engine of the same configuration (37 bytes a session);
//! - `checksums_{new,all}/{64,1400}`: `forward_established/1k` with the
//!   listener's `verify_checksums` at `New` (the default: data packets are
//!   not verified) and at `All` (every packet's TCP checksum summed), for
//!   segments of 64 and 1400 bytes of payload: the pair's difference is
//!   what verifying costs per packet. `examples/checksum_cost.rs` counts
//!   the same in instructions under callgrind.
//!
//! Every figure is per iteration as criterion prints it; the throughput
//! line gives packets (or sessions) per second. Frames are restored from
//! templates between timed windows, outside the timing; each timed window
//! covers 32 packets, so the clock's own cost (~40 ns) adds ~1 ns a packet.

use std::array;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant as WallClock};

use benches::{
    Rng, SLOT, client, client_frame, data_frame, engine_with_established_sessions,
    engine_with_policy, engine_with_quarantine, engine_with_sessions,
    engine_with_synacked_sessions, third_ack_frame,
};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use lb_engine::{
    BackendConfig, ChecksumPolicy, Engine, Frame, Instant, ListenerConfig, LocalPool, Protocol,
    Verdict,
};

const BATCH: usize = 32;
const TEMPLATES: usize = 8192;

fn sizes() -> [(u32, &'static str); 2] {
    [(1_000, "1k"), (1_000_000, "1m")]
}

/// Data frames of sessions drawn at random from `0..sessions`.
fn data_templates(sessions: u32) -> Vec<Vec<u8>> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(sessions));
    (0..TEMPLATES)
        .map(|_| {
            client_frame(
                client((rng.next_u64() % u64::from(sessions)) as u32),
                80,
                false,
            )
        })
        .collect()
}

/// Copy the next 32 templates into `buf`'s slots; returns the frame length.
fn restore(buf: &mut [u8], templates: &[Vec<u8>], next: &mut usize) -> usize {
    let mut len = 0;
    for chunk in buf.chunks_exact_mut(SLOT) {
        let t = &templates[*next % templates.len()];
        chunk[Frame::HEADROOM..Frame::HEADROOM + t.len()].copy_from_slice(t);
        len = t.len();
        *next += 1;
    }
    len
}

fn frames(buf: &mut [u8], len: usize) -> [Frame<'_>; BATCH] {
    let mut slots = buf.chunks_exact_mut(SLOT);
    array::from_fn(|_| {
        let slot = slots.next().expect("32 slots");
        Frame::new(slot, Frame::HEADROOM, Frame::HEADROOM + len).expect("frame fits")
    })
}

fn forward(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    for (sessions, label) in sizes() {
        let mut engine = engine_with_established_sessions(sessions, sessions + 65_536);
        let templates = data_templates(sessions);
        let mut buf = vec![0u8; BATCH * SLOT];
        let mut verdicts = [Verdict::Pass; BATCH];
        let now = Instant::from_secs(2);
        let mut next = 0;
        group.bench_function(BenchmarkId::new("forward_established", label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let len = restore(&mut buf, &templates, &mut next);
                    let mut batch = frames(&mut buf, len);
                    let t = WallClock::now();
                    engine.handle_batch(now, &mut batch, &mut verdicts);
                    total += t.elapsed();
                    assert!(matches!(verdicts[BATCH - 1], Verdict::ToServer { .. }));
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("forward_single", label), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let len = restore(&mut buf, &templates, &mut next);
                    let mut batch = frames(&mut buf, len);
                    let t = WallClock::now();
                    for frame in batch.iter_mut() {
                        black_box(engine.handle_packet(now, frame));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// `ttm_insert_v4`: a client segment (NOP, NOP, timestamps, 64 bytes of
/// data) that gets the TTM option, in sessions drawn from 1,000; and
/// `forward_with_options_v4`, the same segment where the server has
/// already sent data, so no option is added: the pair's difference is
/// the cost of the insertion.
fn ttm_insert(c: &mut Criterion) {
    const SESSIONS: u32 = 1_000;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = Rng(0x5eed);
    let picks: Vec<u32> = (0..TEMPLATES)
        .map(|_| (rng.next_u64() % u64::from(SESSIONS)) as u32)
        .collect();
    let templates: Vec<Vec<u8>> = picks.iter().map(|&i| third_ack_frame(client(i))).collect();
    for (name, server_sent) in [("ttm_insert_v4", false), ("forward_with_options_v4", true)] {
        let mut engine = engine_with_synacked_sessions(SESSIONS, SESSIONS + 1024);
        if server_sent {
            // The server's first byte in every session: no option after it.
            let mut buf = vec![0u8; SLOT];
            for i in 0..SESSIONS {
                let ack = third_ack_frame(client(i));
                let start = Frame::HEADROOM;
                buf[start..start + ack.len()].copy_from_slice(&ack);
                let mut f = Frame::new(&mut buf, start, start + ack.len()).expect("fits");
                engine.handle_packet(Instant::from_secs(1), &mut f);
                let data = benches::server_data_for(f.bytes());
                benches::handle(&mut engine, &mut buf, &data);
            }
        }
        let mut buf = vec![0u8; BATCH * SLOT];
        let now = Instant::from_secs(2);
        let mut next = 0;
        check_insertion(&mut engine, &templates, !server_sent, name);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let len = restore(&mut buf, &templates, &mut next);
                    let mut batch = frames(&mut buf, len);
                    let t = WallClock::now();
                    for frame in batch.iter_mut() {
                        black_box(engine.handle_packet(now, frame));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// Check, before timing, that a segment of `templates` gets the option
/// exactly when it should (and is forwarded).
fn check_insertion(engine: &mut Engine, templates: &[Vec<u8>], want: bool, name: &str) {
    let mut buf = vec![0u8; SLOT];
    let before = engine.counters().ttm_inserted;
    let verdict = benches::handle(engine, &mut buf, &templates[0]);
    assert!(
        matches!(verdict, Verdict::ToServer { .. }),
        "{name}: {verdict:?}"
    );
    let inserted = engine.counters().ttm_inserted - before;
    assert_eq!(inserted == 1, want, "{name}: {inserted} insertions");
}

/// `ttm_insert_v6`: an IPv6 client's segment through a 6to4 listener
/// that gets the 20-byte option; `forward_6to4`: the same segment after
/// the server's first byte (translated, no option). Sessions drawn from
/// 1,000.
fn six_to_four(c: &mut Criterion) {
    const SESSIONS: u32 = 1_000;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut rng = Rng(0x6704);
    let templates: Vec<Vec<u8>> = (0..TEMPLATES)
        .map(|_| {
            let i = (rng.next_u64() % u64::from(SESSIONS)) as u32;
            benches::client6_frame(benches::client6(i), false)
        })
        .collect();
    for (name, server_sent) in [("ttm_insert_v6", false), ("forward_6to4", true)] {
        let mut engine = benches::engine_6to4(SESSIONS, server_sent);
        let mut buf = vec![0u8; BATCH * SLOT];
        let now = Instant::from_secs(2);
        let mut next = 0;
        check_insertion(&mut engine, &templates, !server_sent, name);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let len = restore(&mut buf, &templates, &mut next);
                    let mut batch = frames(&mut buf, len);
                    let t = WallClock::now();
                    for frame in batch.iter_mut() {
                        black_box(engine.handle_packet(now, frame));
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    }
    group.finish();
}

/// A second listener (port 81) that takes the benchmark's new sessions,
/// removed and added again to clear them out, outside the timing.
fn churn_listener() -> ListenerConfig {
    let locals = (0..8u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 2, 100 + i)))
        .collect();
    let mut l = ListenerConfig::new(
        IpAddr::V4(Ipv4Addr::from(benches::VIP)),
        81,
        Protocol::Tcp,
        LocalPool::new(locals),
    );
    for i in 0..4u8 {
        l.backends.push(BackendConfig::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 + i)),
            8081,
        ));
    }
    l
}

fn new_session(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(NEW_SESSION_WINDOW as u64));
    for (sessions, label) in sizes() {
        let engine = engine_with_sessions(sessions, sessions + 65_536);
        new_sessions(
            &mut group,
            ("new_session", label),
            engine,
            sessions,
            Instant::from_secs(2),
        );
    }
    // A busy balancer's quarantine: the tuples of 60,000 ended sessions.
    let (engine, now) = engine_with_quarantine(60_000, 1_000, 1_000 + 65_536);
    new_sessions(
        &mut group,
        ("new_session_quarantined", "1k"),
        engine,
        61_000,
        now,
    );
    group.finish();
}

/// SYNs per timed window of [`new_sessions`].
const NEW_SESSION_WINDOW: usize = 64;

/// Benchmark `(name, label)`: SYNs from new clients (from [`client`] `first_client`
/// on) at `now`, into a churn listener that is cleared out of `engine`
/// every 60,000 sessions, outside the timing.
fn new_sessions(
    group: &mut BenchmarkGroup<'_, WallTime>,
    (name, label): (&str, &str),
    mut engine: Engine,
    first_client: u32,
    now: Instant,
) {
    const WINDOW: usize = NEW_SESSION_WINDOW;
    const CLEAR_AFTER: u32 = 60_000;
    let mut churn = engine
        .add_listener(churn_listener())
        .expect("churn listener");
    let mut buf = vec![0u8; WINDOW * SLOT];
    let mut created = 0u32;
    let mut next_client = first_client;
    group.bench_function(BenchmarkId::new(name, label), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if created + WINDOW as u32 > CLEAR_AFTER {
                    engine.remove_listener(churn).expect("remove");
                    churn = engine.add_listener(churn_listener()).expect("re-add");
                    created = 0;
                }
                let mut len = 0;
                for chunk in buf.chunks_exact_mut(SLOT) {
                    let f = client_frame(client(next_client), 81, true);
                    next_client += 1;
                    chunk[Frame::HEADROOM..Frame::HEADROOM + f.len()].copy_from_slice(&f);
                    len = f.len();
                }
                let mut slots = buf.chunks_exact_mut(SLOT);
                let mut window: [Frame<'_>; WINDOW] = array::from_fn(|_| {
                    let slot = slots.next().expect("slot");
                    Frame::new(slot, Frame::HEADROOM, Frame::HEADROOM + len).expect("fits")
                });
                let t = WallClock::now();
                for frame in window.iter_mut() {
                    black_box(engine.handle_packet(now, frame));
                }
                total += t.elapsed();
                created += WINDOW as u32;
            }
            total
        })
    });
    assert_eq!(
        engine.counters().dropped_total(),
        0,
        "{name}/{label}: every SYN made a session"
    );
}

fn expire(c: &mut Criterion) {
    const SESSIONS: u32 = 10_000;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(u64::from(SESSIONS)));
    group.sample_size(20);
    group.bench_function("expire", |b| {
        b.iter_batched_ref(
            || engine_with_sessions(SESSIONS, SESSIONS),
            |engine: &mut Engine| {
                // Past every deadline (SYN_RECV: 30 s); one sweep period
                // of calls checks every session once.
                let mut now = Instant::from_secs(100);
                while engine.session_count() > 0 {
                    engine.handle_timeout(now);
                    now = now + Duration::from_millis(100);
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn snapshot(c: &mut Criterion) {
    const SESSIONS: u32 = 1_000_000;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(u64::from(SESSIONS)));
    group.sample_size(10);
    let engine = engine_with_sessions(SESSIONS, SESSIONS);
    let now = Instant::from_secs(1);
    let mut bytes = Vec::new();
    engine.export_state(now, &mut bytes);
    // The header, one listener, 4 backends, 8 local addresses, the
    // checksum, and 37 bytes a session.
    assert_eq!(
        bytes.len(),
        40 + 20 + 4 * 23 + 8 * 17 + 4 + 37 * SESSIONS as usize
    );
    group.bench_function("snapshot_export/1m", |b| {
        let mut out = Vec::with_capacity(bytes.len());
        b.iter(|| {
            out.clear();
            engine.export_state(now, &mut out);
            black_box(out.len())
        })
    });
    group.bench_function("snapshot_import/1m", |b| {
        b.iter_batched_ref(
            || engine_with_sessions(0, SESSIONS),
            |fresh: &mut Engine| {
                let report = fresh.import_state(now, Duration::ZERO, &bytes);
                assert_eq!(report.map(|r| r.restored), Ok(SESSIONS));
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// `checksums_{new,all}/{64,1400}`: established forwarding in batches of
/// 32, sessions drawn from 1,000, with each checksum policy in the same
/// run, on the same frames. Room for a 1400-byte payload per slot.
fn checksums(c: &mut Criterion) {
    const SESSIONS: u32 = 1_000;
    const BIG_SLOT: usize = 2048;
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(BATCH as u64));
    for payload in [64usize, 1400] {
        let mut rng = Rng(0xc5c5 ^ payload as u64);
        let templates: Vec<Vec<u8>> = (0..TEMPLATES)
            .map(|_| {
                let i = (rng.next_u64() % u64::from(SESSIONS)) as u32;
                data_frame(client(i), 80, payload)
            })
            .collect();
        for (name, policy) in [
            ("checksums_new", ChecksumPolicy::New),
            ("checksums_all", ChecksumPolicy::All),
        ] {
            let mut engine = engine_with_policy(SESSIONS, SESSIONS + 1024, policy);
            let mut buf = vec![0u8; BATCH * BIG_SLOT];
            let mut verdicts = [Verdict::Pass; BATCH];
            let now = Instant::from_secs(2);
            let mut next = 0;
            group.bench_function(BenchmarkId::new(name, payload), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let mut len = 0;
                        for chunk in buf.chunks_exact_mut(BIG_SLOT) {
                            let t = &templates[next % templates.len()];
                            chunk[Frame::HEADROOM..Frame::HEADROOM + t.len()].copy_from_slice(t);
                            len = t.len();
                            next += 1;
                        }
                        let mut slots = buf.chunks_exact_mut(BIG_SLOT);
                        let mut batch: [Frame<'_>; BATCH] = array::from_fn(|_| {
                            let slot = slots.next().expect("32 slots");
                            Frame::new(slot, Frame::HEADROOM, Frame::HEADROOM + len)
                                .expect("frame fits")
                        });
                        let t = WallClock::now();
                        engine.handle_batch(now, &mut batch, &mut verdicts);
                        total += t.elapsed();
                        assert!(
                            verdicts
                                .iter()
                                .all(|v| matches!(v, Verdict::ToServer { .. }))
                        );
                    }
                    total
                })
            });
            assert_eq!(engine.counters().dropped_total(), 0, "{name}/{payload}");
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = forward, ttm_insert, six_to_four, new_session, expire, snapshot, checksums
}
criterion_main!(benches);
