//! The fast path changes nothing but speed: the same traffic through an
//! engine with it on and one with it off (`Engine::set_fast_path`) gives
//! the same verdicts, the same frames byte for byte, the same counters and
//! traffic figures, the same expiry RSTs and the same sessions (compared
//! through `export_state`, which holds every session's state, sequence
//! numbers and deadline).
//!
//! The traffic is random but seeded: clients of four listeners (TTM on
//! with the default stripped kinds; TTM off; every checksum verified; a
//! second VIP) open, use and close TCP sessions, with timestamps, spoofed
//! TTM options, EOLs, data either way, retransmissions and stray ACKs, some
//! frames damaged (a byte changed in the headers, Ethernet padding, cut
//! short), time moving on past timeouts, and backends and listeners
//! changed, removed and added on the way.

#![allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)] // test code

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};
use lb_engine::{
    BackendConfig, ChecksumPolicy, Engine, EngineConfig, Frame, Instant, ListenerConfig, LocalPool,
    Protocol, Verdict,
};

const VIP: [u8; 4] = [198, 51, 100, 1];
const VIP2: [u8; 4] = [198, 51, 100, 2];
const SLOT: usize = 512;

/// xorshift64*: seeded, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// (VIP, port) of listener `i`.
fn listener_addr(i: usize) -> ([u8; 4], u16) {
    [(VIP, 80), (VIP, 81), (VIP, 82), (VIP2, 80)][i]
}

/// Listener `i`'s configuration: TTM on with the default stripped kinds;
/// TTM off and no checksum verified; every checksum verified; the same
/// as the first on a second VIP.
fn listener_config(i: usize) -> ListenerConfig {
    let (vip, port) = listener_addr(i);
    let locals = (0..2u8)
        .map(|j| IpAddr::V4(Ipv4Addr::new(10, 0, 1, 10 * i as u8 + j + 1)))
        .collect();
    let mut l = ListenerConfig::new(
        IpAddr::V4(Ipv4Addr::from(vip)),
        port,
        Protocol::Tcp,
        LocalPool::new(locals),
    );
    for b in 0..3u8 {
        l.backends.push(backend_config(i, b));
    }
    match i {
        1 => {
            l.ttm.enabled = false;
            l.verify_checksums = ChecksumPolicy::Off;
        }
        2 => l.verify_checksums = ChecksumPolicy::All,
        _ => {}
    }
    l
}

fn backend_config(listener: usize, b: u8) -> BackendConfig {
    let rs = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 10 * listener as u8 + b + 2));
    BackendConfig::new(rs, 8080)
}

fn engine(fast: bool, capacity: u32) -> Engine {
    let mut engine = Engine::new(EngineConfig {
        capacity,
        quarantine_capacity: 1 << 12,
        ..EngineConfig::default()
    })
    .unwrap();
    engine.set_fast_path(fast);
    for i in 0..4 {
        engine.add_listener(listener_config(i)).unwrap();
    }
    engine
}

/// A client and what the test knows of its session.
#[derive(Clone, Copy)]
struct Client {
    addr: [u8; 4],
    port: u16,
    listener: usize,
    /// Next sequence numbers each way.
    c_seq: u32,
    s_seq: u32,
    /// (server, server port, local address, local port), once a SYN has
    /// been forwarded.
    server: Option<([u8; 4], u16, [u8; 4], u16)>,
}

fn clients(n: u32) -> Vec<Client> {
    (0..n)
        .map(|i| Client {
            addr: [10, 1, (i >> 8) as u8, i as u8],
            port: 1024 + (i % 7) as u16,
            listener: (i % 4) as usize,
            c_seq: 1000 * i,
            s_seq: 0x8000_0000u32.wrapping_add(777 * i),
            server: None,
        })
        .collect()
}

/// TCP flags of a generated segment.
const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// Options for a client segment: none, timestamps, timestamps and a
/// spoofed option of kind 254 or 253, an EOL, or unknown kind 30.
fn options(rng: &mut Rng) -> Vec<u8> {
    let ts = [1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9];
    match rng.below(8) {
        0..=2 => Vec::new(),
        3 | 4 => ts.to_vec(),
        5 => [&ts[..], &[254, 8, 10, 9, 9, 9, 0, 80]].concat(),
        6 => [&ts[..], &[0, 0, 0, 0]].concat(),
        _ => [&ts[..], &[30, 4, 1, 2]].concat(),
    }
}

/// An Ethernet + IPv4 + TCP frame, checksums right.
#[allow(clippy::too_many_arguments)]
fn segment(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    flags: u8,
    seq: u32,
    ack: u32,
    opts: &[u8],
    payload: usize,
) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, seq, 64240);
    if flags & SYN != 0 {
        b = b.syn();
    }
    if flags & FIN != 0 {
        b = b.fin();
    }
    if flags & RST != 0 {
        b = b.rst();
    }
    if flags & PSH != 0 {
        b = b.psh();
    }
    if flags & ACK != 0 {
        b = b.ack(ack);
    }
    if !opts.is_empty() {
        // Raw bytes (a multiple of 4), so that EOLs and unknown kinds go
        // out as written.
        b = b.options_raw(opts).unwrap();
    }
    let mut out = Vec::new();
    b.write(&mut out, &vec![0x5a; payload]).unwrap();
    out
}

/// Damage a frame now and then: a byte of the headers changed, Ethernet
/// padding added, or the frame cut short.
fn damage(rng: &mut Rng, mut frame: Vec<u8>) -> Vec<u8> {
    if !rng.chance(8) {
        return frame;
    }
    match rng.below(4) {
        0 => {
            let i = 12 + rng.below(42) as usize;
            frame[i] ^= 1 << rng.below(8);
        }
        1 => frame.extend(std::iter::repeat_n(0, 1 + rng.below(20) as usize)),
        2 => frame.truncate(rng.below(frame.len() as u64) as usize),
        _ => {
            // The data offset made to disagree with the lengths.
            frame[46] = (frame[46] & 0x0f) | ((rng.below(16) as u8) << 4);
        }
    }
    frame
}

/// What a frame turned into.
#[derive(Debug, PartialEq)]
struct Outcome {
    verdict: Verdict,
    start: usize,
    bytes: Vec<u8>,
}

/// Two engines, fast path on and off, fed the same frames.
struct Pair {
    fast: Engine,
    general: Engine,
}

impl Pair {
    fn new(capacity: u32) -> Pair {
        Pair {
            fast: engine(true, capacity),
            general: engine(false, capacity),
        }
    }

    /// One frame through both engines with `handle_packet`.
    fn packet(&mut self, now: Instant, frame: &[u8]) -> Outcome {
        let run = |engine: &mut Engine| {
            let mut buf = vec![0u8; SLOT];
            let start = Frame::HEADROOM;
            buf[start..start + frame.len()].copy_from_slice(frame);
            let mut f = Frame::new(&mut buf, start, start + frame.len()).unwrap();
            let verdict = engine.handle_packet(now, &mut f);
            Outcome {
                verdict,
                start: f.start(),
                bytes: f.bytes().to_vec(),
            }
        };
        let fast = run(&mut self.fast);
        let general = run(&mut self.general);
        assert_eq!(fast, general, "frame {frame:02x?}");
        general
    }

    /// Frames through both engines with `handle_batch`.
    fn batch(&mut self, now: Instant, frames: &[Vec<u8>]) -> Vec<Outcome> {
        let run = |engine: &mut Engine| {
            let mut buf = vec![0u8; SLOT * frames.len()];
            let mut batch: Vec<Frame<'_>> = buf
                .chunks_exact_mut(SLOT)
                .zip(frames)
                .map(|(slot, frame)| {
                    let start = Frame::HEADROOM;
                    slot[start..start + frame.len()].copy_from_slice(frame);
                    Frame::new(slot, start, start + frame.len()).unwrap()
                })
                .collect();
            let mut verdicts = vec![Verdict::Pass; frames.len()];
            engine.handle_batch(now, &mut batch, &mut verdicts);
            batch
                .iter()
                .zip(verdicts)
                .map(|(f, verdict)| Outcome {
                    verdict,
                    start: f.start(),
                    bytes: f.bytes().to_vec(),
                })
                .collect::<Vec<_>>()
        };
        let fast = run(&mut self.fast);
        let general = run(&mut self.general);
        for (i, (f, g)) in fast.iter().zip(&general).enumerate() {
            assert_eq!(f, g, "frame {i} of the batch: {:02x?}", frames[i]);
        }
        general
    }

    /// Counters, traffic, sessions and the expiry RSTs agree.
    fn check(&mut self, now: Instant) {
        assert_eq!(self.fast.counters(), self.general.counters());
        assert_eq!(self.fast.session_count(), self.general.session_count());
        for l in 0..4u16 {
            assert_eq!(
                self.fast.listener_traffic(l),
                self.general.listener_traffic(l)
            );
            for b in 0..3u32 {
                assert_eq!(
                    self.fast.backend_traffic(l, b),
                    self.general.backend_traffic(l, b)
                );
            }
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        self.fast.export_state(now, &mut a);
        self.general.export_state(now, &mut b);
        assert!(a == b, "sessions differ");
    }

    /// The same configuration change on both engines, with the same
    /// result: a backend down or up, its weight, removed (its sessions
    /// kept or reset) and added again, reset; a listener removed and added
    /// again.
    fn reconfigure(&mut self, rng: &mut Rng) {
        let l = rng.below(4) as usize;
        let id = l as u16;
        let b = rng.below(3) as u32;
        let op = rng.below(6);
        let up = rng.chance(50);
        let weight = rng.below(3) as u16;
        let reset = rng.chance(50);
        let change = |engine: &mut Engine| -> String {
            let result = match op {
                0 => engine.set_up(id, b, up).map(|()| 0),
                1 => engine.set_weight(id, b, weight).map(|()| 0),
                2 => engine
                    .remove_backend(id, b, reset)
                    .and_then(|()| engine.add_backend(id, backend_config(l, b as u8))),
                3 => engine.reset_backend(id, b).map(|()| 0),
                4 => engine.set_up(id, b, true).map(|()| 0),
                _ => engine
                    .remove_listener(id)
                    .and_then(|()| engine.add_listener(listener_config(l)))
                    .map(u32::from),
            };
            format!("{result:?}")
        };
        let a = change(&mut self.fast);
        let g = change(&mut self.general);
        assert_eq!(a, g, "configuration change {op}");
    }

    fn timeout(&mut self, now: Instant) {
        self.fast.handle_timeout(now);
        self.general.handle_timeout(now);
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        loop {
            let x = self.fast.poll_transmit(&mut a);
            let y = self.general.poll_transmit(&mut b);
            assert_eq!(x, y);
            let Some((len, _)) = x else { break };
            assert_eq!(a[..len], b[..len]);
        }
    }
}

/// The next segment of a random client, and which client it is.
fn next_segment(rng: &mut Rng, clients: &mut [Client]) -> (usize, Vec<u8>) {
    let i = rng.below(clients.len() as u64) as usize;
    let c = &mut clients[i];
    let (vip, vport) = listener_addr(c.listener);
    let from_client = c.server.is_none() || rng.chance(55);
    let frame = if from_client {
        let flags = match rng.below(40) {
            0..=2 => SYN,
            3 => FIN | ACK,
            4 => RST | ACK,
            5 => RST,
            6 => ACK | SYN,
            _ => ACK | if rng.chance(30) { PSH } else { 0 },
        };
        // Mostly the right acknowledgment; now and then another.
        let ack = if rng.chance(85) {
            c.s_seq
        } else {
            rng.next() as u32
        };
        let payload = if flags & SYN != 0 {
            0
        } else {
            [0, 0, 1, 64, 300][rng.below(5) as usize]
        };
        let seq = if rng.chance(10) {
            c.c_seq.wrapping_sub(100)
        } else {
            c.c_seq
        };
        let opts = options(rng);
        let frame = segment(
            (c.addr, c.port),
            (vip, vport),
            flags,
            seq,
            ack,
            &opts,
            payload,
        );
        c.c_seq = c
            .c_seq
            .wrapping_add(payload as u32 + u32::from(flags & (SYN | FIN) != 0));
        frame
    } else {
        let (rip, rport, lip, lport) = c.server.unwrap_or_default();
        let flags = match rng.below(30) {
            0..=3 => SYN | ACK,
            4 => FIN | ACK,
            5 => RST,
            _ => ACK,
        };
        let payload = if flags & SYN != 0 {
            0
        } else {
            [0, 10, 200][rng.below(3) as usize]
        };
        let opts: &[u8] = if rng.chance(50) {
            &[1, 1, 8, 10, 0, 0, 0, 3, 0, 0, 0, 7]
        } else {
            &[]
        };
        let frame = segment(
            (rip, rport),
            (lip, lport),
            flags,
            c.s_seq,
            c.c_seq,
            opts,
            payload,
        );
        c.s_seq = c
            .s_seq
            .wrapping_add(payload as u32 + u32::from(flags & (SYN | FIN) != 0));
        frame
    };
    (i, damage(rng, frame))
}

/// Learn a session's server side from the client segment the engine sent
/// on to it.
fn learn(c: &mut Client, outcome: &Outcome) {
    if !matches!(outcome.verdict, Verdict::ToServer { .. }) {
        return;
    }
    let Ok(p) = SlicedPacket::from_ethernet(&outcome.bytes) else {
        return;
    };
    if let (Some(etherparse::NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) =
        (&p.net, &p.transport)
    {
        c.server = Some((
            ip.header().destination(),
            tcp.destination_port(),
            ip.header().source(),
            tcp.source_port(),
        ));
    }
}

#[test]
fn one_frame_at_a_time_as_the_general_path() {
    one_frame_at_a_time(0x5eed_f00d, 4096);
}

#[test]
fn a_full_table_as_the_general_path() {
    // SYNs evict the oldest half-open sessions, which only those that
    // never became established may be.
    one_frame_at_a_time(0x00dd_ba11, 24);
}

fn one_frame_at_a_time(seed: u64, capacity: u32) {
    let mut rng = Rng(seed);
    let mut pair = Pair::new(capacity);
    let mut clients = clients(48);
    let mut now = Instant::from_secs(1);
    for step in 0..40_000 {
        let (i, frame) = next_segment(&mut rng, &mut clients);
        let outcome = pair.packet(now, &frame);
        learn(&mut clients[i], &outcome);
        now = Instant::from_millis(now.as_millis() + rng.below(50));
        if rng.chance(1) {
            // Past the half-open and closing timeouts, now and then past
            // the established one.
            let by = if rng.chance(10) { 1_000_000 } else { 20_000 };
            now = Instant::from_millis(now.as_millis() + rng.below(by));
            pair.timeout(now);
        }
        if rng.chance(1) && rng.chance(30) {
            pair.reconfigure(&mut rng);
        }
        if step % 500 == 0 {
            pair.check(now);
        }
    }
    pair.check(now);
    let taken = pair.fast.fast_path_forwarded();
    let forwarded = pair.general.counters();
    assert_eq!(pair.general.fast_path_forwarded(), 0, "switched off");
    assert!(
        taken > 5_000,
        "the traffic takes the fast path ({taken} frames; {forwarded:?})"
    );
}

#[test]
fn batches_over_a_large_table_as_the_general_path() {
    // More sessions than the batch path keeps in cache, so that it parses
    // and touches the table ahead of the work.
    let mut rng = Rng(0x0ba7_c4e5);
    let mut pair = Pair::new(16_384);
    let mut now = Instant::from_secs(1);
    let fillers: Vec<Vec<u8>> = (0..9000u32)
        .map(|i| {
            segment(
                ([10, 9, (i >> 8) as u8, i as u8], 2000 + (i % 3) as u16),
                (VIP, 80),
                SYN,
                i,
                0,
                &[],
                0,
            )
        })
        .collect();
    for chunk in fillers.chunks(64) {
        pair.batch(now, chunk);
    }
    assert!(pair.fast.session_count() > 8192);
    let mut clients = clients(64);
    for round in 0..800 {
        let n = 1 + rng.below(48) as usize;
        let picked: Vec<(usize, Vec<u8>)> = (0..n)
            .map(|_| next_segment(&mut rng, &mut clients))
            .collect();
        let frames: Vec<Vec<u8>> = picked.iter().map(|(_, f)| f.clone()).collect();
        let outcomes = pair.batch(now, &frames);
        for ((i, _), outcome) in picked.iter().zip(&outcomes) {
            learn(&mut clients[*i], outcome);
        }
        now = Instant::from_millis(now.as_millis() + rng.below(200));
        if round % 50 == 0 {
            pair.check(now);
        }
    }
    pair.check(now);
    let taken = pair.fast.fast_path_forwarded();
    assert!(taken > 2_000, "the traffic takes the fast path ({taken})");
}

#[test]
fn segments_that_are_not_for_a_session_as_the_general_path() {
    // Plain ACKs the fast path reads but cannot take: to a VIP without
    // a session, to a VIP port without a listener, to a local address
    // without a session, and to an address that is not ours (passed).
    let mut pair = Pair::new(64);
    let now = Instant::from_secs(1);
    let local = [10, 0, 1, 1];
    let frames = [
        segment(([10, 1, 0, 1], 1000), (VIP, 80), ACK, 1, 2, &[], 10),
        segment(([10, 1, 0, 1], 1000), (VIP, 99), ACK, 1, 2, &[], 10),
        segment(([10, 0, 0, 2], 8080), (local, 40000), ACK, 1, 2, &[], 10),
        segment(
            ([10, 0, 0, 2], 8080),
            ([10, 9, 9, 9], 40000),
            ACK,
            1,
            2,
            &[],
            0,
        ),
        segment(
            ([10, 0, 0, 2], 8080),
            (local, 40000),
            SYN | ACK,
            1,
            2,
            &[],
            0,
        ),
    ];
    let verdicts: Vec<Verdict> = frames.iter().map(|f| pair.packet(now, f).verdict).collect();
    assert!(matches!(verdicts[3], Verdict::Pass), "{verdicts:?}");
    assert!(
        verdicts
            .iter()
            .all(|v| !matches!(v, Verdict::ToServer { .. } | Verdict::ToClient { .. })),
        "{verdicts:?}"
    );
    pair.batch(now, &frames);
    pair.check(now);
}
