//! Group `handoff`: one frame handed from one queue's loop to another's
//! (`lb_xdp::handoff`), on one thread, so that only the ring's own work is
//! timed (between two cores the cache line's transfer adds to it).
//!
//! - `push_pop`: `Links::push` of one frame address to a peer and that
//!   peer's `Links::pop` of it, as the loops do;
//! - `push_pop_rtrb`: the same through a bare `rtrb` ring: what the ring
//!   itself costs, without the peer bookkeeping around it;
//! - `owner_hand_off` / `owner_rss`: `Owners::of` of a server's reply
//!   (IPv4 TCP, 4 queues) in hand-off mode (the local port's share) and in
//!   RSS-aware mode (the NIC's Toeplitz hash and table): what each queue's
//!   loop spends per received frame to learn that it owns it, the cost of
//!   the design when nothing is handed off.
//!
//! Here rather than in `benches/`: `Links` is `lbd`'s, and the benchmark
//! crate does not build `lbd` (its XDP program, AF_XDP and netlink).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_engine::rss::{FlowFields, RssConfig};
use lb_testkit::frame::{Tcp, tcp};
use lb_xdp::handoff::mesh;
use lb_xdp::ledger::Origin;
use lb_xdp::owner::Owners;
use lb_xdp::xsk::Held;

fn bench(c: &mut Criterion) {
    let mut links = mesh(2).unwrap_or_else(|e| panic!("eventfd: {e}"));
    let (Some(mut to), Some(mut from)) = (links.pop(), links.pop()) else {
        panic!("two queues' links")
    };
    let mut out = Vec::with_capacity(64);
    let mut chunk = 0u64;
    c.bench_function("handoff/push_pop", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(4096);
            let held = Held {
                chunk,
                start: 256,
                end: 320,
                origin: Origin::Received,
            };
            if from.push(1, black_box(held)).is_err() {
                panic!("ring full");
            }
            out.clear();
            to.pop(1, &mut out);
            black_box(out.first().copied())
        });
    });
    let (mut p, mut q) = rtrb::RingBuffer::<Held>::new(1024);
    c.bench_function("handoff/push_pop_rtrb", |b| {
        b.iter(|| {
            chunk = chunk.wrapping_add(4096);
            let held = Held {
                chunk,
                start: 256,
                end: 320,
                origin: Origin::Received,
            };
            if p.push(black_box(held)).is_err() {
                panic!("ring full");
            }
            black_box(q.pop().ok())
        });
    });
}

fn owners(c: &mut Criterion) {
    let ip = |s: &str| -> std::net::IpAddr { s.parse().unwrap_or([0, 0, 0, 0].into()) };
    let (rip, lip) = (ip("10.77.0.11"), ip("10.77.0.200"));
    let frames: Vec<Vec<u8>> = (0..256u16)
        .map(|i| tcp((rip, 8080), (lip, 20_000 + i * 7), Tcp::ack(1, 1), &[0; 64]))
        .collect();
    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(29) ^ 0x6d).collect();
    let table: Vec<u16> = (0..128).map(|i| i % 4).collect();
    let nic =
        RssConfig::new(&key, &table, FlowFields::ALL_PORTS, 4).unwrap_or_else(|e| panic!("{e}"));
    let nic: &'static RssConfig = Box::leak(Box::new(nic));
    for (name, o) in [
        ("handoff/owner_hand_off", Owners::new(4, 7, [lip])),
        (
            "handoff/owner_rss",
            Owners::new(4, 7, [lip]).with_rss(Some(nic)),
        ),
    ] {
        let mut i = 0usize;
        c.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) & 255;
                black_box(frames.get(i).and_then(|f| o.of(black_box(f))))
            });
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench, owners
}
criterion_main!(benches);
