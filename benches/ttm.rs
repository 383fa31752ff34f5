//! Group `ttm`: the option codec and the options walk, per call.
//!
//! `cargo bench -p benches --bench ttm`. Inputs go through `black_box` so
//! that nothing is folded at compile time.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use benches::THIRD_ACK_OPTIONS;
use criterion::{Criterion, criterion_group, criterion_main};
use ttm_core::{KindSet, TtmOption, find};

fn ttm(c: &mut Criterion) {
    let mut group = c.benchmark_group("ttm");
    let v4 = TtmOption::new(
        254,
        SocketAddr::new(Ipv4Addr::new(203, 0, 113, 9).into(), 51234),
    );
    let v6_ip = Ipv6Addr::new(0x2001, 0xdb8, 0x85a3, 0, 0, 0x8a2e, 0x370, 0x7334);
    let v6 = TtmOption::new(254, SocketAddr::new(v6_ip.into(), 51234));
    let mut v4_bytes = [0u8; 8];
    let mut v6_bytes = [0u8; 20];
    v4.emit(&mut v4_bytes).unwrap();
    v6.emit(&mut v6_bytes).unwrap();
    let accept = KindSet::DEFAULT;

    group.bench_function("encode_v4", |b| {
        let mut buf = [0u8; 40];
        b.iter(|| {
            let rest = black_box(&v4).emit(black_box(&mut buf)).unwrap().len();
            black_box(rest)
        })
    });
    group.bench_function("decode_v4", |b| {
        b.iter(|| TtmOption::decode(black_box(&v4_bytes), black_box(&accept)))
    });
    group.bench_function("decode_v6", |b| {
        b.iter(|| TtmOption::decode(black_box(&v6_bytes), black_box(&accept)))
    });
    group.bench_function("find_in_options", |b| {
        b.iter(|| find(black_box(&THIRD_ACK_OPTIONS), black_box(&accept)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = ttm
}
criterion_main!(benches);
