//! Group `handoff`: one frame handed from one queue's loop to another's
//! (`lb_xdp::handoff`), on one thread, so that only the ring's own work is
//! timed (between two cores the cache line's transfer adds to it).
//!
//! - `push_pop`: `Links::push` of one frame address to a peer and that
//!   peer's `Links::pop` of it, as the loops do;
//! - `push_pop_rtrb`: the same through a bare `rtrb` ring: what the ring
//!   itself costs, without the peer bookkeeping around it.
//!
//! Here rather than in `benches/`: `Links` is `lbd`'s, and the benchmark
//! crate does not build `lbd` (its XDP program, AF_XDP and netlink).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_xdp::handoff::mesh;
use lb_xdp::ledger::Origin;
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
