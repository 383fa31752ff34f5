//! Inputs shared by the criterion benchmarks in this directory.
//!
//! The benchmarks themselves are the `[[bench]]` targets beside this crate
//! (`ttm.rs`: group `ttm`; `engine.rs`: group `engine`). Run them with
//! `cargo bench -p benches`.

use std::net::{IpAddr, Ipv4Addr};

use lb_engine::{
    BackendConfig, ChecksumPolicy, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool,
    Protocol, Verdict,
};
use lb_testkit::frame::{Tcp, tcp, tcp_opts};
use lb_testkit::parse::segment;
/// The generator that picks sessions: the test kit's SplitMix64.
pub use lb_testkit::rng::Rng;

/// The options area of a typical third handshake ACK leaving the balancer:
/// NOP, NOP, timestamps (TSval 1, TSecr 2), then the TTM option for
/// 203.0.113.9:51234 (20 bytes, data offset 10).
pub const THIRD_ACK_OPTIONS: [u8; 20] = [
    0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xfe, 0x08, 0xc8, 0x22,
    0xcb, 0x00, 0x71, 0x09,
];

/// The VIP of the benchmark engine; its TCP listener is on port 80.
pub const VIP: [u8; 4] = [198, 51, 100, 1];

/// Room for one frame in a benchmark buffer: headroom, a 64-byte-payload
/// TCP frame, tailroom.
pub const SLOT: usize = 256;

/// A client of the benchmark: the `i`-th distinct (address, port).
pub fn client(i: u32) -> ([u8; 4], u16) {
    let host = i / 60_000;
    let port = 1024 + (i % 60_000) as u16;
    (
        [10, 64 + (host >> 16) as u8, (host >> 8) as u8, host as u8],
        port,
    )
}

/// An Ethernet + IPv4 + TCP frame from `client` to the VIP's `port`: a
/// SYN, or an ACK with 64 bytes of data.
pub fn client_frame(client: ([u8; 4], u16), port: u16, syn: bool) -> Vec<u8> {
    if syn {
        tcp(client, (VIP, port), Tcp::syn(1000), &[])
    } else {
        data_frame(client, port, 64)
    }
}

/// An Ethernet + IPv4 + TCP frame from `client` to the VIP's `port`: an
/// ACK with `payload` bytes of data.
pub fn data_frame(client: ([u8; 4], u16), port: u16, payload: usize) -> Vec<u8> {
    tcp(
        client,
        (VIP, port),
        Tcp::ack(1000, 5001),
        &vec![0x5a; payload],
    )
}

/// An engine with a TCP listener on the VIP (4 backends, 8 local
/// addresses, every port from 1024) holding `sessions` sessions, one per
/// [`client`] `0..sessions`.
pub fn engine_with_sessions(sessions: u32, capacity: u32) -> Engine {
    engine_with_policy(sessions, capacity, ChecksumPolicy::default())
}

/// [`engine_with_sessions`] with the listener's checksum policy.
pub fn engine_with_policy(sessions: u32, capacity: u32, policy: ChecksumPolicy) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        capacity,
        quarantine_capacity: 1 << 16,
        ..EngineConfig::default()
    })
    .unwrap_or_else(|e| panic!("engine: {e}"));
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
    listener.verify_checksums = policy;
    engine
        .add_listener(listener)
        .unwrap_or_else(|e| panic!("listener: {e}"));
    let mut buf = vec![0u8; SLOT];
    for i in 0..sessions {
        let syn = client_frame(client(i), 80, true);
        let verdict = handle(&mut engine, &mut buf, &syn);
        assert!(
            matches!(verdict, Verdict::ToServer { .. }),
            "session {i}: {verdict:?}"
        );
    }
    assert_eq!(engine.session_count(), sessions);
    engine
}

/// An engine like [`engine_with_sessions`] whose quarantine holds the
/// outbound tuples of `ended` sessions, as a busy balancer's does: SYNs
/// from [`client`] `0..ended` at 1 s, left half-open until they expire
/// (`handle_timeout` past the SYN_RECV timeout), then `sessions` sessions
/// of [`client`] `ended..ended + sessions`. Returns the engine and the
/// time it has reached: the quarantine holds every ended tuple for about
/// two minutes after it.
pub fn engine_with_quarantine(ended: u32, sessions: u32, capacity: u32) -> (Engine, Instant) {
    let mut engine = engine_with_sessions(ended, capacity);
    let mut now = Instant::from_secs(40);
    while engine.session_count() > 0 {
        engine.handle_timeout(now);
        now = now + std::time::Duration::from_millis(100);
    }
    assert_eq!(engine.quarantined(), ended, "every ended tuple is held");
    let mut buf = vec![0u8; SLOT];
    for i in ended..ended + sessions {
        let syn = client_frame(client(i), 80, true);
        let verdict = handle_at(&mut engine, &mut buf, &syn, now);
        assert!(
            matches!(verdict, Verdict::ToServer { .. }),
            "session {i}: {verdict:?}"
        );
    }
    assert_eq!(engine.session_count(), sessions);
    (engine, now)
}

/// The server's SYN-ACK (ISN 5000, MSS 1460) for the session a SYN from
/// `client` created: read the local address and port from the SYN the
/// engine forwarded (`forwarded`, an Ethernet frame).
pub fn synack_for(forwarded: &[u8]) -> Vec<u8> {
    let syn = segment(forwarded).unwrap_or_else(|| panic!("the forwarded SYN is not TCP"));
    let t = Tcp::synack(5000, syn.seq.wrapping_add(1));
    tcp_opts(syn.dst, syn.src, t, &MSS_1460, &[])
}

/// The options area of the server's SYN-ACK: MSS 1460.
const MSS_1460: [u8; 4] = [2, 4, 0x05, 0xb4];

/// The options area of the client's segments after the handshake: NOP,
/// NOP, timestamps (TSval 1, TSecr 2).
const NOP_NOP_TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];

/// A client's segment with NOP, NOP, timestamps and 64 bytes of data that
/// acknowledges the server's SYN-ACK of [`synack_for`]: the engine gives
/// it the TTM option for as long as the server has sent nothing.
pub fn third_ack_frame(client: ([u8; 4], u16)) -> Vec<u8> {
    tcp_opts(
        client,
        (VIP, 80),
        Tcp::ack(1001, 5001),
        &NOP_NOP_TS,
        &[0x5a; 64],
    )
}

/// An engine like [`engine_with_sessions`] whose sessions have all seen
/// the server's SYN-ACK and nothing else from the server.
pub fn engine_with_synacked_sessions(sessions: u32, capacity: u32) -> Engine {
    let mut engine = engine_with_sessions(0, capacity);
    let mut buf = vec![0u8; SLOT];
    for i in 0..sessions {
        let syn = client_frame(client(i), 80, true);
        let start = Frame::HEADROOM;
        buf[start..start + syn.len()].copy_from_slice(&syn);
        let mut f =
            Frame::new(&mut buf, start, start + syn.len()).unwrap_or_else(|| panic!("range"));
        let verdict = engine.handle_packet(Instant::from_secs(1), &mut f);
        assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
        let synack = synack_for(f.bytes());
        let verdict = handle(&mut engine, &mut buf, &synack);
        assert!(matches!(verdict, Verdict::ToClient { .. }), "{verdict:?}");
    }
    engine
}

/// An engine like [`engine_with_synacked_sessions`] whose sessions are
/// also past the client's third ACK ([`third_ack_frame`], which got the
/// TTM option) and the server's first data segment: established, and no
/// segment of theirs gets the option any more.
pub fn engine_with_established_sessions(sessions: u32, capacity: u32) -> Engine {
    let mut engine = engine_with_synacked_sessions(sessions, capacity);
    let mut buf = vec![0u8; SLOT];
    for i in 0..sessions {
        let ack = third_ack_frame(client(i));
        let start = Frame::HEADROOM;
        buf[start..start + ack.len()].copy_from_slice(&ack);
        let mut f =
            Frame::new(&mut buf, start, start + ack.len()).unwrap_or_else(|| panic!("range"));
        let verdict = engine.handle_packet(Instant::from_secs(1), &mut f);
        assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
        let data = server_data_for(f.bytes());
        let verdict = handle(&mut engine, &mut buf, &data);
        assert!(matches!(verdict, Verdict::ToClient { .. }), "{verdict:?}");
    }
    engine
}

/// The server's first data segment (10 bytes, seq 5001) for the session
/// whose client segment the engine forwarded as `forwarded`.
pub fn server_data_for(forwarded: &[u8]) -> Vec<u8> {
    let seg = segment(forwarded).unwrap_or_else(|| panic!("the forwarded segment is not TCP"));
    tcp(seg.dst, seg.src, Tcp::ack(5001, seg.seq), &[0x33; 10])
}

/// The IPv6 VIP of the benchmark's 6to4 listener (port 80).
pub const VIP6: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// The `i`-th IPv6 client of the 6to4 benchmarks.
pub fn client6(i: u32) -> ([u8; 16], u16) {
    let mut addr = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let host = (i / 60_000).to_be_bytes();
    addr[12..16].copy_from_slice(&host);
    (addr, 1024 + (i % 60_000) as u16)
}

/// An IPv6 client segment to the VIP6 port 80: a SYN, or an ACK of the
/// server's SYN-ACK (ISN 5000) with NOP, NOP, timestamps and 64 bytes.
pub fn client6_frame(client: ([u8; 16], u16), syn: bool) -> Vec<u8> {
    if syn {
        tcp(client, (VIP6, 80), Tcp::syn(1000), &[])
    } else {
        tcp_opts(
            client,
            (VIP6, 80),
            Tcp::ack(1000, 5001),
            &NOP_NOP_TS,
            &[0x5a; 64],
        )
    }
}

/// An engine with a 6to4 listener (IPv6 VIP, IPv4 local addresses and
/// servers) holding `sessions` sessions of [`client6`] `0..sessions`, each
/// past the server's SYN-ACK; with `server_sent`, each also past the
/// server's first byte (so that no option is added any more).
pub fn engine_6to4(sessions: u32, server_sent: bool) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        capacity: sessions + 1024,
        quarantine_capacity: 1 << 16,
        ..EngineConfig::default()
    })
    .unwrap_or_else(|e| panic!("engine: {e}"));
    let locals = (0..8u8)
        .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 1, 100 + i)))
        .collect();
    let mut listener = ListenerConfig::new(
        IpAddr::V6(VIP6.into()),
        80,
        Protocol::Tcp,
        LocalPool::new(locals),
    );
    for i in 0..4u8 {
        listener.backends.push(BackendConfig::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 + i)),
            8080,
        ));
    }
    engine
        .add_listener(listener)
        .unwrap_or_else(|e| panic!("listener: {e}"));
    let mut buf = vec![0u8; SLOT];
    for i in 0..sessions {
        let start = Frame::HEADROOM;
        let syn = client6_frame(client6(i), true);
        buf[start..start + syn.len()].copy_from_slice(&syn);
        let mut f =
            Frame::new(&mut buf, start, start + syn.len()).unwrap_or_else(|| panic!("range"));
        let verdict = engine.handle_packet(Instant::from_secs(1), &mut f);
        assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
        let synack = synack_for(f.bytes());
        let verdict = handle(&mut engine, &mut buf, &synack);
        assert!(matches!(verdict, Verdict::ToClient { .. }), "{verdict:?}");
        if server_sent {
            let ack = client6_frame(client6(i), false);
            buf[start..start + ack.len()].copy_from_slice(&ack);
            let mut f =
                Frame::new(&mut buf, start, start + ack.len()).unwrap_or_else(|| panic!("range"));
            engine.handle_packet(Instant::from_secs(1), &mut f);
            let data = server_data_for(f.bytes());
            handle(&mut engine, &mut buf, &data);
        }
    }
    engine
}

/// Put `frame` into `buf` behind [`Frame::HEADROOM`] and hand it to the
/// engine.
pub fn handle(engine: &mut Engine, buf: &mut [u8], frame: &[u8]) -> Verdict {
    handle_at(engine, buf, frame, Instant::from_secs(1))
}

/// [`handle`] at `now`.
pub fn handle_at(engine: &mut Engine, buf: &mut [u8], frame: &[u8], now: Instant) -> Verdict {
    let start = Frame::HEADROOM;
    let end = start + frame.len();
    buf.get_mut(start..end)
        .unwrap_or_else(|| panic!("frame of {} bytes does not fit", frame.len()))
        .copy_from_slice(frame);
    let mut f = Frame::new(buf, start, end).unwrap_or_else(|| panic!("range"));
    engine.handle_packet(now, &mut f)
}
