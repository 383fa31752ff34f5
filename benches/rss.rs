//! Group `rss`: RSS-aware mode's local-port choice (`lb_engine::rss`).
//!
//! - `port_choice`: what the port allocator does for one new session in
//!   RSS-aware mode with one LIP: the NIC's hash of the reply without its
//!   port (`RssConfig::reply_key`, one Toeplitz hash of 12 bytes) and the
//!   first candidate port that steers the reply to the engine's queue
//!   (`reply_ports(..).pick`), for a random server port and cursor each
//!   iteration; 4 queues, a 128-entry table, Microsoft's key, ports
//!   1024..=65535. The session-table and quarantine lookups of the tuple,
//!   which the allocator makes in either mode, are not included.
//! - `port_choice_v6`: the same for an IPv6 reply (36 bytes hashed).
//! - `reply_queue`: the queue of one reply from its key and port: what
//!   checking a port costs once the key is known.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use lb_engine::rss::{FlowFields, RssConfig};
use lb_testkit::rng::Rng;

const KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];
const TCP: u8 = 6;

fn nic() -> RssConfig {
    let table: Vec<u16> = (0..128).map(|i| i % 4).collect();
    RssConfig::new(&KEY, &table, FlowFields::ALL_PORTS, 4).unwrap_or_else(|e| panic!("{e}"))
}

fn choice(c: &mut Criterion, name: &str, rip: IpAddr, lip: IpAddr) {
    let nic = nic();
    let mut rng = Rng::new(15);
    c.bench_function(name, |b| {
        b.iter(|| {
            let r = rng.next_u64();
            let rport = r as u16;
            let key = nic.reply_key(TCP, black_box(rip), rport, black_box(lip));
            let port = key.and_then(|k| {
                nic.reply_ports(&k, 2, 1024..=65535)
                    .pick((r >> 16) as u32, 64)
            });
            black_box(port)
        });
    });
}

fn bench(c: &mut Criterion) {
    let v4: (IpAddr, IpAddr) = ([10, 0, 0, 11].into(), [10, 0, 0, 200].into());
    let v6: (IpAddr, IpAddr) = (
        "2001:db8::11".parse().unwrap_or(v4.0),
        "2001:db8::200".parse().unwrap_or(v4.1),
    );
    choice(c, "rss/port_choice", v4.0, v4.1);
    choice(c, "rss/port_choice_v6", v6.0, v6.1);
    let nic = nic();
    let key = nic.reply_key(TCP, v4.0, 8080, v4.1);
    let mut port = 1024u16;
    c.bench_function("rss/reply_queue", |b| {
        b.iter(|| {
            port = port.wrapping_add(1);
            black_box(key.map(|k| nic.reply_queue(&k, black_box(port))))
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
