//! Instructions per forwarded packet with `verify_checksums` at `new` and
//! at `all`, counted by callgrind rather than timed:
//!
//! ```sh
//! cargo build --release -p benches --example checksum_cost
//! for policy in new all; do for n in 0 100000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/checksum_cost $policy 64 $n 2>&1 | grep 'refs:'
//! done; done
//! ```
//!
//! Arguments: the policy (`new` or `all`), the payload of each TCP
//! segment in bytes, and the number of packets. The program builds an
//! engine with 1,000 sessions and 8,192 frame templates (the same for any
//! number of packets), then forwards that many packets of those sessions
//! through `handle_batch` in batches of 32, each copied from a template
//! first. A run with 0 packets counts the set-up alone, so the cost per
//! packet (copy included) is the instructions at N less those at 0,
//! divided by N; the difference between `all` and `new` is what verifying
//! costs.

use std::hint::black_box;

use benches::{Rng, client, data_frame, engine_with_policy};
use lb_engine::{ChecksumPolicy, Frame, Instant, Verdict};

const SESSIONS: u32 = 1_000;
const TEMPLATES: usize = 8192;
const BATCH: usize = 32;
const SLOT: usize = 2048;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: checksum_cost new|all PAYLOAD PACKETS";
    let policy = match args.get(1).map(String::as_str) {
        Some("new") => ChecksumPolicy::New,
        Some("all") => ChecksumPolicy::All,
        _ => panic!("{usage}"),
    };
    let number = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{usage}"))
    };
    let (payload, packets) = (number(2), number(3));
    assert!(
        payload + 64 + Frame::HEADROOM <= SLOT,
        "{payload} bytes do not fit"
    );
    let mut engine = engine_with_policy(SESSIONS, SESSIONS + 1024, policy);
    let mut rng = Rng(0xc5c5);
    let templates: Vec<Vec<u8>> = (0..TEMPLATES)
        .map(|_| {
            let i = (rng.next_u64() % u64::from(SESSIONS)) as u32;
            data_frame(client(i), 80, payload)
        })
        .collect();
    let mut buf = vec![0u8; BATCH * SLOT];
    let mut verdicts = [Verdict::Pass; BATCH];
    let now = Instant::from_secs(2);
    let mut done = 0;
    while done < packets {
        let n = BATCH.min(packets - done);
        let mut frames: Vec<Frame<'_>> = buf
            .chunks_exact_mut(SLOT)
            .take(n)
            .enumerate()
            .map(|(k, slot)| {
                let t = &templates[(done + k) % TEMPLATES];
                slot[Frame::HEADROOM..Frame::HEADROOM + t.len()].copy_from_slice(t);
                Frame::new(slot, Frame::HEADROOM, Frame::HEADROOM + t.len()).expect("fits")
            })
            .collect();
        engine.handle_batch(now, &mut frames, &mut verdicts[..n]);
        done += n;
    }
    black_box(&verdicts);
    let c = engine.counters();
    assert_eq!(c.dropped_total(), 0, "every packet forwarded");
    println!(
        "policy {} payload {payload} packets {packets} forwarded {}",
        args[1],
        engine.listener_traffic(0).map_or(0, |t| t.packets_in) - u64::from(SESSIONS),
    );
}
