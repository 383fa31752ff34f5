//! Push established TCP data segments through `Engine::handle_batch`, for
//! counting the instructions one costs under callgrind.
//!
//! `fast_path_cost SESSIONS DIRECTION PACKETS`: an engine holding
//! `SESSIONS` established sessions (handshake done, TTM option sent, the
//! server has sent data), then `PACKETS` data segments (64 bytes of
//! payload, no options) of sessions drawn at random, in batches of 32,
//! client to server (`c2s`) or server to client (`s2c`). Only
//! `forward_batch` does the engine's work: count it with
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=1 cargo build --release -p lb-engine --example fast_path_cost
//! valgrind --tool=callgrind --toggle-collect='*forward_batch*' \
//!     target/release/examples/fast_path_cost 1000 c2s 100000
//! ```
//!
//! and divide the instructions by `PACKETS`; or run it for N and 2N
//! packets without `--toggle-collect` and divide the difference by N.
//! The frames are copied into the batch outside `forward_batch`.

#![allow(
    clippy::indexing_slicing,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic
)] // a measuring program, not the data path

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use lb_engine::{
    BackendConfig, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool, Protocol,
    Verdict,
};

const VIP: [u8; 4] = [198, 51, 100, 1];
const BATCH: usize = 32;
const SLOT: usize = 256;
const TEMPLATES: usize = 8192;

fn client(i: u32) -> ([u8; 4], u16) {
    let host = i / 60_000;
    let port = 1024 + (i % 60_000) as u16;
    (
        [10, 64 + (host >> 16) as u8, (host >> 8) as u8, host as u8],
        port,
    )
}

fn from_client(c: ([u8; 4], u16), seq: u32, ack: Option<u32>, payload: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload + 64);
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(c.0, VIP, 64)
        .tcp(c.1, 80, seq, 64240);
    match ack {
        Some(ack) => b.ack(ack).write(&mut out, &vec![0x5a; payload]),
        None => b.syn().write(&mut out, &[]),
    }
    .expect("frame");
    out
}

/// The server's segment answering the client segment `forwarded` (as the
/// engine sent it toward the server).
fn from_server(forwarded: &[u8], seq: u32, syn: bool, payload: usize) -> Vec<u8> {
    let p = SlicedPacket::from_ethernet(forwarded).expect("forwarded");
    let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) =
        (&p.net, &p.transport)
    else {
        panic!("not IPv4 TCP");
    };
    let ack = tcp
        .sequence_number()
        .wrapping_add(u32::from(syn))
        .wrapping_add(tcp.payload().len() as u32);
    let mut out = Vec::with_capacity(payload + 64);
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4(ip.header().destination(), ip.header().source(), 64)
        .tcp(tcp.destination_port(), tcp.source_port(), seq, 64240);
    let b = if syn { b.syn() } else { b };
    b.ack(ack)
        .write(&mut out, &vec![0x33; payload])
        .expect("frame");
    out
}

/// Run `frame` through the engine; the frame as it leaves.
fn handle(engine: &mut Engine, frame: &[u8]) -> (Verdict, Vec<u8>) {
    let mut buf = vec![0u8; SLOT];
    let start = Frame::HEADROOM;
    buf[start..start + frame.len()].copy_from_slice(frame);
    let mut f = Frame::new(&mut buf, start, start + frame.len()).expect("frame");
    let verdict = engine.handle_packet(Instant::from_secs(1), &mut f);
    (verdict, f.bytes().to_vec())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: u32 = args.next().map_or(1000, |a| a.parse().expect("SESSIONS"));
    let dir = args.next().unwrap_or_else(|| "c2s".into());
    let packets: usize = args.next().map_or(100_000, |a| a.parse().expect("PACKETS"));

    let mut engine = Engine::new(EngineConfig {
        capacity: sessions + 65_536,
        quarantine_capacity: 1 << 16,
        ..EngineConfig::default()
    })
    .expect("engine");
    let locals = (0..8u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100 + i)))
        .collect();
    let mut listener = ListenerConfig::new(
        IpAddr::V4(Ipv4Addr::from(VIP)),
        80,
        Protocol::Tcp,
        LocalPool::new(locals),
    );
    for i in 0..4u8 {
        let rs = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 + i));
        listener.backends.push(BackendConfig::new(rs, 8080));
    }
    engine.add_listener(listener).expect("listener");

    // Handshake, the third ACK (which gets the option), the server's first
    // data: the session is established and wants no option any more.
    let mut c2s = Vec::with_capacity(sessions as usize);
    let mut s2c = Vec::with_capacity(sessions as usize);
    for i in 0..sessions {
        let c = client(i);
        let (v, syn) = handle(&mut engine, &from_client(c, 1000, None, 0));
        assert!(matches!(v, Verdict::ToServer { .. }), "{v:?}");
        let (v, _) = handle(&mut engine, &from_server(&syn, 5000, true, 0));
        assert!(matches!(v, Verdict::ToClient { .. }), "{v:?}");
        let (v, third) = handle(&mut engine, &from_client(c, 1001, Some(5001), 0));
        assert!(matches!(v, Verdict::ToServer { .. }), "{v:?}");
        let (v, _) = handle(&mut engine, &from_server(&third, 5001, false, 10));
        assert!(matches!(v, Verdict::ToClient { .. }), "{v:?}");
        let data = from_client(c, 1001, Some(5011), 64);
        let (v, forwarded) = handle(&mut engine, &data);
        assert!(matches!(v, Verdict::ToServer { .. }), "{v:?}");
        c2s.push(data);
        s2c.push(from_server(&forwarded, 5011, false, 64));
    }
    let pool = match dir.as_str() {
        "c2s" => c2s,
        "s2c" => s2c,
        other => panic!("direction {other}: c2s or s2c"),
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(sessions);
    let templates: Vec<&[u8]> = (0..TEMPLATES)
        .map(|_| {
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            let i = rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % u64::from(sessions);
            pool[i as usize].as_slice()
        })
        .collect();

    let mut buf = vec![0u8; BATCH * SLOT];
    let mut verdicts = [Verdict::Pass; BATCH];
    let mut next = 0;
    let mut forwarded = 0usize;
    let mut sent = 0;
    while sent < packets {
        let n = BATCH.min(packets - sent);
        let mut lens = [0usize; BATCH];
        for (slot, len) in buf.chunks_exact_mut(SLOT).zip(lens.iter_mut()).take(n) {
            let t = templates[next % TEMPLATES];
            slot[Frame::HEADROOM..Frame::HEADROOM + t.len()].copy_from_slice(t);
            *len = t.len();
            next += 1;
        }
        let mut frames: Vec<Frame<'_>> = buf
            .chunks_exact_mut(SLOT)
            .zip(lens)
            .take(n)
            .map(|(slot, len)| {
                Frame::new(slot, Frame::HEADROOM, Frame::HEADROOM + len).expect("frame")
            })
            .collect();
        forward_batch(&mut engine, &mut frames, &mut verdicts[..n]);
        forwarded += verdicts[..n]
            .iter()
            .filter(|v| matches!(v, Verdict::ToServer { .. } | Verdict::ToClient { .. }))
            .count();
        sent += n;
    }
    assert_eq!(forwarded, packets, "every segment is forwarded");
    println!("{dir} sessions {sessions} packets {packets} forwarded {forwarded}");
}

#[inline(never)]
fn forward_batch(engine: &mut Engine, frames: &mut [Frame<'_>], verdicts: &mut [Verdict]) {
    engine.handle_batch(Instant::from_secs(2), frames, verdicts);
}
