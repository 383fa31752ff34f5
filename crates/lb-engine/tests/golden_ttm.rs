//! Golden-packet fixtures for the TTM option (TOA format: kind, len 8,
//! client port, client IPv4 address) through the public [`Engine`] API:
//! {description, input frame, expected output frame, verdict}, one table
//! per rule. Every frame is built with etherparse, so every expected
//! checksum is computed independently of the engine's own code; outputs
//! are compared byte for byte.
//!
//! Each fixture also states how many bytes the frame's headers grew by:
//! the engine moves them into the headroom (or toward the payload when the
//! options area shrinks), so `Frame::start()` moves back by the growth
//! while `Frame::end()` and the payload stay put (only Ethernet padding
//! after the IP packet is cut off). The bytes of the buffer outside the
//! frame are checked untouched, and the engine's counters too: `ttm_inserted`, `ttm_missed`, `ttm_pruned`, `ttm_spoofed`
//! and `mss_lowered` change by exactly what each fixture says, and the
//! listener's and the backend's byte counters by the IP length *as
//! received* (before any option was added or removed).
//!
//! The expected layouts follow `src/tcp_edit.rs`: the TTM option first,
//! right after the fixed TCP header, then the kept options in their order,
//! then NOPs to a multiple of 4 bytes (an EOL and the zeros after it are
//! dropped); when the 40 bytes of option space are short, NOPs go first,
//! then MSS / window scale / SACK-permitted, then SACK blocks (the last
//! block first, the first block last), then unknown options; timestamps
//! never.
//!
//! Decisions documented here (the engine's configuration leaves them
//! open):
//! - A custom `ttm.kind` whose kind is in `ttm.strip` (200 with strip
//!   `{200}`): the engine writes kind 200, removes clients' kind-200
//!   options, and leaves kinds outside the configured strip set (254 then)
//!   alone: the strip set is the operator's.
//! - A custom `ttm.kind` *outside* `ttm.strip` (200 with the default
//!   `{253, 254}`): a client's own kind-200 option would reach an RS that
//!   reads kind 200, which is exactly what stripping exists to prevent.
//!   Either `add_listener` refuses the configuration, or the engine strips
//!   the kind it writes as well; both are accepted here, forwarding the
//!   client's option is not.
//! - A kind that TCP parsers read as a standard option (0, 1, 2, 3, 4, 5,
//!   8, the kinds `KindSet` refuses) would make a malformed options area:
//!   `add_listener` must refuse it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use lb_engine::{
    BackendConfig, ConfigError, Counters, Engine, EngineConfig, Frame, Instant, ListenerConfig,
    LocalPool, Protocol, TtmConfig, Verdict,
};
use lb_testkit::frame::{Tcp, tcp_opts, tcp_vlan};
use ttm_core::{KindSet, TtmOption};

const CIP: [u8; 4] = [192, 0, 2, 10];
const VIP: [u8; 4] = [198, 51, 100, 1];
const RIP: [u8; 4] = [10, 0, 0, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
/// The client, the VIP, the real server, and the one local port of the
/// pool (so that outputs are exact).
const C: ([u8; 4], u16) = (CIP, 40000);
const V: ([u8; 4], u16) = (VIP, 80);
const R: ([u8; 4], u16) = (RIP, 8080);
const L: ([u8; 4], u16) = (LIP, 50000);

/// The client's TTM option, written out by hand: kind 254, length 8, port
/// 40000 (0x9c40), 192.0.2.10.
const TTM: [u8; 8] = [254, 8, 0x9c, 0x40, 192, 0, 2, 10];
/// Timestamps (kind 8, length 10).
const TS: [u8; 10] = [8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];
/// NOP, NOP, timestamps: a Linux ACK's options.
const NOP_NOP_TS: [u8; 12] = [1, 1, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0x56, 0x78];
/// A Linux SYN's (and SYN-ACK's) options: MSS 1460, SACK permitted,
/// timestamps, NOP, window scale 7.
const LINUX_SYN: [u8; 20] = [
    2, 4, 5, 180, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// The same with MSS 1452: 1460 less the 8 bytes of the option.
const LINUX_SYN_1452: [u8; 20] = [
    2, 4, 5, 172, 4, 2, 8, 10, 0, 0, 0x12, 0x34, 0, 0, 0, 0, 1, 3, 3, 7,
];
/// A client's forged TOA option (kind 254, length 8) claiming
/// 6.6.6.6:80.
const SPOOF_254: [u8; 8] = [254, 8, 0, 80, 6, 6, 6, 6];
/// A client's forged kind-253 option of length 20 (an IPv6 TOA) claiming
/// [2001:db8::6]:80.
const SPOOF_253: [u8; 20] = [
    253, 20, 0, 80, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6,
];

/// Bytes of the buffer outside the frame, to see that nothing else is
/// written.
const FILL: u8 = 0xee;
const TAIL: usize = 32;

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn try_engine(ttm: TtmConfig) -> Result<Engine, ConfigError> {
    let mut engine = Engine::new(EngineConfig {
        capacity: 64,
        quarantine_capacity: 64,
        ..EngineConfig::default()
    })?;
    let mut local = LocalPool::new(vec![ip(LIP)]);
    local.ports = L.1..=L.1;
    let mut l = ListenerConfig::new(ip(VIP), V.1, Protocol::Tcp, local);
    l.backends.push(BackendConfig::new(ip(RIP), R.1));
    l.ttm = ttm;
    engine.add_listener(l)?;
    Ok(engine)
}

fn engine() -> Engine {
    try_engine(TtmConfig::default()).unwrap()
}

/// The IP total length of a frame as received (behind at most one VLAN
/// tag).
fn ip_total(frame: &[u8]) -> u64 {
    let l3 = if frame[12..14] == [0x81, 0x00] {
        18
    } else {
        14
    };
    u64::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]))
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The client's TTM option with another kind.
fn ttm_kind(kind: u8) -> [u8; 8] {
    let mut option = TTM;
    option[0] = kind;
    option
}

/// A SACK option of `n` blocks (RFC 2018), block `i` being
/// `[i * 0x100, i * 0x100 + 0x80)`.
fn sack(n: u8) -> Vec<u8> {
    let mut option = vec![5, 2 + 8 * n];
    for i in 1..=n {
        option.extend_from_slice(&[0, 0, i, 0, 0, 0, i, 0x80]);
    }
    option
}

/// An option of a kind the engine does not accept (200), `len` bytes.
fn other(len: u8) -> Vec<u8> {
    let mut option = vec![200, len];
    option.extend((2..len).map(|i| 0xa0 + i));
    option
}

/// Engine counters that the TTM rules move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    inserted: u64,
    missed: u64,
    pruned: u64,
    spoofed: u64,
    mss_lowered: u64,
}

impl Counts {
    fn of(c: &Counters) -> Counts {
        Counts {
            inserted: c.ttm_inserted,
            missed: c.ttm_missed,
            pruned: c.ttm_pruned,
            spoofed: c.ttm_spoofed,
            mss_lowered: c.mss_lowered,
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            inserted: self.inserted - before.inserted,
            missed: self.missed - before.missed,
            pruned: self.pruned - before.pruned,
            spoofed: self.spoofed - before.spoofed,
            mss_lowered: self.mss_lowered - before.mss_lowered,
        }
    }
}

#[derive(Clone)]
struct Fixture {
    what: String,
    input: Vec<u8>,
    verdict: Verdict,
    output: Vec<u8>,
    /// Bytes the frame grows by at its start (negative: it shrinks).
    grown: isize,
    /// Bytes free before the frame.
    headroom: usize,
    /// Ethernet padding after the IP packet, which the engine cuts off.
    trim: usize,
    /// What the fixture adds to the engine's counters.
    counts: Counts,
}

impl Fixture {
    /// The segment got the TTM option.
    fn inserted(mut self) -> Fixture {
        self.counts.inserted += 1;
        self
    }

    /// The segment should have got the option and could not.
    fn missed(mut self) -> Fixture {
        self.counts.missed += 1;
        self
    }

    /// Lesser options were pruned to make room.
    fn pruned(mut self) -> Fixture {
        self.counts.pruned += 1;
        self
    }

    /// `n` client-supplied options of accepted kinds were removed.
    fn spoofed(mut self, n: u64) -> Fixture {
        self.counts.spoofed += n;
        self
    }

    /// The SYN-ACK's MSS was lowered.
    fn mss(mut self) -> Fixture {
        self.counts.mss_lowered += 1;
        self
    }

    fn headroom(mut self, headroom: usize) -> Fixture {
        self.headroom = headroom;
        self
    }

    /// Pad the input frame with zeros to `len` bytes (the Ethernet
    /// minimum is 60): the engine cuts the padding off.
    fn padded(mut self, len: usize) -> Fixture {
        self.trim = len - self.input.len();
        self.input.resize(len, 0);
        self
    }
}

/// A client segment to the VIP, forwarded to the server with options
/// `out_opts`.
fn inb(
    what: impl Into<String>,
    t: Tcp,
    in_opts: &[u8],
    out_opts: &[u8],
    payload: &[u8],
    grown: isize,
) -> Fixture {
    Fixture {
        what: what.into(),
        input: tcp_opts(C, V, t, in_opts, payload),
        verdict: Verdict::ToServer { next_hop: ip(RIP) },
        output: tcp_opts(L, R, t, out_opts, payload),
        grown,
        headroom: Frame::HEADROOM,
        trim: 0,
        counts: Counts::default(),
    }
}

/// A server segment to the local address, forwarded to the client with
/// options `out_opts`.
fn outb(
    what: impl Into<String>,
    t: Tcp,
    in_opts: &[u8],
    out_opts: &[u8],
    payload: &[u8],
    grown: isize,
) -> Fixture {
    Fixture {
        what: what.into(),
        input: tcp_opts(R, L, t, in_opts, payload),
        verdict: Verdict::ToClient { next_hop: ip(CIP) },
        output: tcp_opts(V, C, t, out_opts, payload),
        grown,
        headroom: Frame::HEADROOM,
        trim: 0,
        counts: Counts::default(),
    }
}

fn run(engine: &mut Engine, fixtures: &[Fixture]) {
    for f in fixtures {
        let what = &f.what;
        let len = f.input.len();
        let mut buf = vec![FILL; f.headroom + len + TAIL];
        buf[f.headroom..f.headroom + len].copy_from_slice(&f.input);
        let counts_before = Counts::of(engine.counters());
        let listener_before = *engine.listener_traffic(0).unwrap();
        let backend_before = *engine.backend_traffic(0, 0).unwrap();
        let (verdict, start, end, out) = {
            let mut frame = Frame::new(&mut buf, f.headroom, f.headroom + len).unwrap();
            let verdict = engine.handle_packet(Instant::from_secs(1), &mut frame);
            (verdict, frame.start(), frame.end(), frame.bytes().to_vec())
        };
        assert_eq!(verdict, f.verdict, "{what}: verdict");
        assert_eq!(
            f.output.len() as isize,
            (len - f.trim) as isize + f.grown,
            "{what}: the fixture's own growth"
        );
        assert_eq!(
            end,
            f.headroom + len - f.trim,
            "{what}: the frame's end moved (beyond the Ethernet padding cut)"
        );
        assert_eq!(
            start as isize,
            f.headroom as isize - f.grown,
            "{what}: the frame's start"
        );
        assert_eq!(out, f.output, "{what}: output frame");
        assert!(
            buf[..start.min(f.headroom)].iter().all(|&b| b == FILL),
            "{what}: headroom written"
        );
        assert_eq!(
            buf[end..f.headroom + len],
            f.input[len - f.trim..],
            "{what}: the padding cut off was written"
        );
        assert!(
            buf[f.headroom + len..].iter().all(|&b| b == FILL),
            "{what}: tailroom written"
        );
        assert_eq!(
            Counts::of(engine.counters()).since(counts_before),
            f.counts,
            "{what}: TTM counters"
        );
        // Bytes as received: the IP packet of the input frame.
        let ip_len = ip_total(&f.input);
        let listener = engine.listener_traffic(0).unwrap();
        let backend = engine.backend_traffic(0, 0).unwrap();
        let (want_in, want_out) = match f.verdict {
            Verdict::ToServer { .. } => (ip_len, 0),
            Verdict::ToClient { .. } => (0, ip_len),
            _ => (0, 0),
        };
        for (name, now, before) in [
            ("listener", listener, listener_before),
            ("backend", backend, backend_before),
        ] {
            assert_eq!(
                (
                    now.bytes_in - before.bytes_in,
                    now.bytes_out - before.bytes_out
                ),
                (want_in, want_out),
                "{what}: {name} bytes as received"
            );
            assert_eq!(
                (
                    now.packets_in - before.packets_in,
                    now.packets_out - before.packets_out
                ),
                (u64::from(want_in > 0), u64::from(want_out > 0)),
                "{what}: {name} packets"
            );
        }
    }
}

// Segments of the one connection every test opens: client ISN 1000,
// server ISN 5000.

const SYN: Tcp = Tcp::syn(1000);
const SYN_ACK: Tcp = Tcp::synack(5000, 1001);
/// The third ACK, and any client segment before the server's first byte:
/// it acknowledges the server's ISN + 1.
const fn ack_isn(seq: u32) -> Tcp {
    Tcp::ack(seq, 5001)
}
const fn ack(seq: u32, ack: u32) -> Tcp {
    Tcp::ack(seq, ack)
}

/// The SYN and the SYN-ACK with Linux's options, the MSS lowered.
fn handshake() -> [Fixture; 2] {
    [
        inb("SYN", SYN, &LINUX_SYN, &LINUX_SYN, b"", 0),
        outb(
            "SYN-ACK (MSS 1460 -> 1452)",
            SYN_ACK,
            &LINUX_SYN,
            &LINUX_SYN_1452,
            b"",
            0,
        )
        .mss(),
    ]
}

#[test]
fn the_option_is_what_ttm_core_writes() {
    let option = TtmOption::new(254, SocketAddr::from(C));
    let mut buf = [0u8; 8];
    assert!(option.emit(&mut buf).unwrap().is_empty());
    assert_eq!(buf, TTM);
    assert_eq!(TtmConfig::default().kind, 254);
    assert_eq!(
        TtmConfig::default().strip,
        KindSet::new(&[253, 254]).unwrap()
    );
    assert!(!TtmConfig::default().strip_timestamps);
    assert!(TtmConfig::default().enabled);
}

/// The layout: the option right after the fixed header, the kept options
/// in order, NOPs to a multiple of 4.
#[test]
fn third_ack_layout_and_padding() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK with NOP NOP TS: TTM, then NOP NOP TS (20 bytes, no padding)",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "no options: the TTM option alone",
            ack_isn(1001),
            &[],
            &TTM,
            b"",
            8,
        )
        .inserted(),
        inb(
            "TS then EOL: the EOL and its zeros dropped, NOP padding",
            ack_isn(1001),
            &cat(&[&TS, &[0, 0]]),
            &cat(&[&TTM, &TS, &[1, 1]]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "an unknown 3-byte option and EOL: one NOP of padding",
            ack_isn(1001),
            &cat(&[&other(3), &[0]]),
            &cat(&[&TTM, &other(3), &[1]]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "an unknown 6-byte option, NOP, NOP: kept in order",
            ack_isn(1001),
            &cat(&[&other(6), &[1, 1]]),
            &cat(&[&TTM, &other(6), &[1, 1]]),
            b"",
            8,
        )
        .inserted(),
    ]);
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_inserted, 5);
}

/// Full option space: lesser options are pruned, in the documented order,
/// and timestamps are never.
#[test]
fn full_option_space_is_pruned() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK with NOP NOP TS NOP NOP SACK(3 blocks), 40 bytes: NOPs, then the \
             last SACK block go; TTM TS SACK(2 blocks), 36 bytes",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &[1, 1], &sack(3)]),
            &cat(&[&TTM, &TS, &sack(2)]),
            b"",
            -4,
        )
        .inserted()
        .pruned(),
        inb(
            "MSS NOP WS NOP NOP TS NOP NOP SACK(2), 40 bytes: NOPs, then the window \
             scale (SYN-only, last first); the MSS and both SACK blocks stay",
            ack_isn(1001),
            &cat(&[&[2, 4, 5, 180, 1, 3, 3, 7], &NOP_NOP_TS, &[1, 1], &sack(2)]),
            &cat(&[&TTM, &[2, 4, 5, 180], &TS, &sack(2)]),
            b"",
            0,
        )
        .inserted()
        .pruned(),
        inb(
            "TS SACK(1 block) unknown(20), 40 bytes: the SACK option goes whole before \
             the unknown option",
            ack_isn(1001),
            &cat(&[&TS, &sack(1), &other(20)]),
            &cat(&[&TTM, &TS, &other(20), &[1, 1]]),
            b"",
            0,
        )
        .inserted()
        .pruned(),
        inb(
            "NOP NOP TS unknown(28), 40 bytes: the unknown option goes, timestamps stay",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &other(28)]),
            &cat(&[&TTM, &TS, &[1, 1]]),
            b"",
            -20,
        )
        .inserted()
        .pruned(),
        inb(
            "NOP NOP TS SACK(3) with data: pruned, the payload unmoved",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &[1, 1], &sack(3)]),
            &cat(&[&TTM, &TS, &sack(2)]),
            b"GET / HTTP/1.0\r\n\r\n",
            -4,
        )
        .inserted()
        .pruned(),
    ]);
    run(&mut e, &fixtures);
    let c = e.counters();
    assert_eq!((c.ttm_inserted, c.ttm_pruned, c.ttm_missed), (5, 5, 0));
}

/// Which client segments get the option: those that acknowledge the
/// server's ISN + 1 before the server's first byte (or FIN), SYN and RST
/// excepted.
#[test]
fn third_ack_with_data() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK carrying data gets the option; the payload does not move",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"hello",
            8,
        )
        .inserted(),
        outb(
            "the server's data",
            ack(5001, 1006),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"hi!",
            0,
        ),
        inb(
            "after the server's first byte: no option",
            ack(1006, 5004),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"more",
            0,
        ),
    ]);
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_inserted, 1);
}

#[test]
fn lost_third_ack_then_client_data() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "the third ACK was lost: the client's first data still acks ISN+1 and gets it",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"GET /",
            8,
        )
        .inserted(),
        outb(
            "the server's pure ACK (no data) does not end the window",
            ack(5001, 1006),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "more client data before the server's first byte: gets it",
            ack_isn(1006),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b" HTTP/1.0",
            8,
        )
        .inserted(),
        outb(
            "the server's first byte",
            ack(5001, 1015),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"200 OK",
            0,
        ),
        inb(
            "a client ACK of the server's data: no option",
            ack(1015, 5007),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "client data sent before it saw the server's (still acks ISN+1): no option",
            ack_isn(1015),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"x",
            0,
        ),
    ]);
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_inserted, 2);
}

#[test]
fn fin_in_the_window() {
    let fin = Tcp {
        fin: true,
        ..ack_isn(1001)
    };
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "the client's FIN before the server's first byte gets it",
            fin,
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
        outb(
            "the server's FIN",
            Tcp {
                fin: true,
                ..ack(5001, 1002)
            },
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "the client's last ACK, after the server's FIN: no option",
            ack(1002, 5002),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
    ]);
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_inserted, 2);
}

#[test]
fn fin_with_data_after_a_lost_third_ack() {
    let fin = Tcp {
        fin: true,
        ..ack_isn(1001)
    };
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.push(
        inb(
            "FIN with data, the first client segment after the SYN-ACK: gets it",
            fin,
            &[],
            &TTM,
            b"bye",
            8,
        )
        .inserted(),
    );
    run(&mut e, &fixtures);
}

#[test]
fn syn_and_rst_never_get_it() {
    let rst = Tcp {
        rst: true,
        ..ack_isn(1001)
    };
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "a retransmitted SYN after the SYN-ACK: no option",
            SYN,
            &LINUX_SYN,
            &LINUX_SYN,
            b"",
            0,
        ),
        inb("an RST acking ISN+1: no option", rst, &[], &[], b"", 0),
        inb(
            "an RST with NOP NOP TS: no option, untouched",
            rst,
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "an RST with a forged option: removed, nothing inserted",
            rst,
            &SPOOF_254,
            &[],
            b"",
            -8,
        )
        .spoofed(1),
    ]);
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_inserted, 0);
    // The very first SYN, before any SYN-ACK, on a fresh engine.
    let mut e = engine();
    run(
        &mut e,
        &[inb(
            "the first SYN: no option",
            SYN,
            &LINUX_SYN,
            &LINUX_SYN,
            b"",
            0,
        )],
    );
}

#[derive(Debug, Clone, Copy)]
enum Pos {
    First,
    Middle,
    Last,
}

/// `option` placed in `base` at `pos`; the middle is at `split`, an option
/// boundary of `base`.
fn place(base: &[u8], split: usize, option: &[u8], pos: Pos) -> Vec<u8> {
    match pos {
        Pos::First => cat(&[option, base]),
        Pos::Middle => cat(&[&base[..split], option, &base[split..]]),
        Pos::Last => cat(&[base, option]),
    }
}

/// A client-supplied option of each accepted kind, at each position: on the
/// SYN (removed), the third ACK (removed, then ours inserted) and a later
/// segment (removed, nothing inserted).
#[test]
fn spoofed_options_are_removed() {
    for spoof in [&SPOOF_254[..], &SPOOF_253[..]] {
        for pos in [Pos::First, Pos::Middle, Pos::Last] {
            let kind = spoof[0];
            let n = spoof.len() as isize;
            let mut e = engine();
            let fixtures = [
                inb(
                    format!("SYN with kind {kind} ({pos:?}): removed"),
                    SYN,
                    &place(&LINUX_SYN, 4, spoof, pos),
                    &LINUX_SYN,
                    b"",
                    -n,
                )
                .spoofed(1),
                outb("SYN-ACK", SYN_ACK, &LINUX_SYN, &LINUX_SYN_1452, b"", 0).mss(),
                inb(
                    format!("third ACK with kind {kind} ({pos:?}): removed, ours inserted"),
                    ack_isn(1001),
                    &place(&NOP_NOP_TS, 2, spoof, pos),
                    &cat(&[&TTM, &NOP_NOP_TS]),
                    b"",
                    8 - n,
                )
                .spoofed(1)
                .inserted(),
                outb(
                    "the server's data",
                    ack(5001, 1001),
                    &NOP_NOP_TS,
                    &NOP_NOP_TS,
                    b"hi",
                    0,
                ),
                inb(
                    format!("later segment with kind {kind} ({pos:?}): removed, nothing inserted"),
                    ack(1001, 5003),
                    &place(&NOP_NOP_TS, 2, spoof, pos),
                    &NOP_NOP_TS,
                    b"data",
                    -n,
                )
                .spoofed(1),
            ];
            run(&mut e, &fixtures);
            let c = e.counters();
            assert_eq!((c.ttm_spoofed, c.ttm_inserted), (3, 1), "{kind} {pos:?}");
        }
    }
}

#[test]
fn other_kinds_survive_and_several_spoofs_count() {
    let mut e = engine();
    let fixtures = [
        inb(
            "SYN with an unknown kind 200: untouched",
            SYN,
            &cat(&[&LINUX_SYN, &other(8)]),
            &cat(&[&LINUX_SYN, &other(8)]),
            b"",
            0,
        ),
        outb("SYN-ACK", SYN_ACK, &LINUX_SYN, &LINUX_SYN_1452, b"", 0).mss(),
        inb(
            "third ACK with kind 200: kept after ours",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &other(8)]),
            &cat(&[&TTM, &NOP_NOP_TS, &other(8)]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "in the window, kinds 253 and 254 together with 200: both removed, 200 kept",
            ack_isn(1001),
            &cat(&[&SPOOF_253, &other(8), &SPOOF_254]),
            &cat(&[&TTM, &other(8)]),
            b"",
            -20,
        )
        .spoofed(2)
        .inserted(),
        outb("the server's data", ack(5001, 1001), &[], &[], b"hi", 0),
        inb(
            "later segment with kind 200: untouched",
            ack(1001, 5003),
            &cat(&[&other(8), &NOP_NOP_TS]),
            &cat(&[&other(8), &NOP_NOP_TS]),
            b"",
            0,
        ),
        inb(
            "later segment with two forged options: both removed",
            ack(1001, 5003),
            &cat(&[&SPOOF_254, &SPOOF_254]),
            &[],
            b"",
            -16,
        )
        .spoofed(2),
    ];
    run(&mut e, &fixtures);
    assert_eq!(e.counters().ttm_spoofed, 4);
}

#[test]
fn server_segments_are_not_stripped() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb("third ACK", ack_isn(1001), &[], &TTM, b"", 8).inserted(),
        outb(
            "a server segment carrying kind 254: not ours to touch (strip is client to RS)",
            ack(5001, 1001),
            &cat(&[&SPOOF_254, &NOP_NOP_TS]),
            &cat(&[&SPOOF_254, &NOP_NOP_TS]),
            b"hi",
            0,
        ),
    ]);
    run(&mut e, &fixtures);
}

#[test]
fn syn_ack_mss_is_lowered() {
    let mut e = engine();
    let fixtures = [
        inb("SYN", SYN, &LINUX_SYN, &LINUX_SYN, b"", 0),
        outb(
            "SYN-ACK with MSS 1460: 1452 toward the client",
            SYN_ACK,
            &LINUX_SYN,
            &LINUX_SYN_1452,
            b"",
            0,
        )
        .mss(),
        outb(
            "a retransmitted SYN-ACK is lowered again",
            SYN_ACK,
            &LINUX_SYN,
            &LINUX_SYN_1452,
            b"",
            0,
        )
        .mss(),
        inb("third ACK", ack_isn(1001), &[], &TTM, b"", 8).inserted(),
    ];
    run(&mut e, &fixtures);
    assert_eq!(e.counters().mss_lowered, 2);

    // A SYN-ACK without an MSS option: nothing to lower, not counted.
    let mut e = engine();
    let fixtures = [
        inb("SYN", SYN, &[], &[], b"", 0),
        outb(
            "SYN-ACK without MSS: untouched",
            SYN_ACK,
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
    ];
    run(&mut e, &fixtures);
    assert_eq!(e.counters().mss_lowered, 0);
}

#[test]
fn disabled_listener_still_strips() {
    let mut e = try_engine(TtmConfig {
        enabled: false,
        ..TtmConfig::default()
    })
    .unwrap();
    let fixtures = [
        inb(
            "SYN with a forged option: removed",
            SYN,
            &cat(&[&SPOOF_254, &LINUX_SYN]),
            &LINUX_SYN,
            b"",
            -8,
        )
        .spoofed(1),
        outb(
            "SYN-ACK: MSS not lowered",
            SYN_ACK,
            &LINUX_SYN,
            &LINUX_SYN,
            b"",
            0,
        ),
        inb(
            "third ACK: no option",
            ack_isn(1001),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "in the window with a forged kind 253: removed, nothing inserted",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &SPOOF_253]),
            &NOP_NOP_TS,
            b"x",
            -20,
        )
        .spoofed(1),
    ];
    run(&mut e, &fixtures);
    let c = e.counters();
    assert_eq!((c.ttm_inserted, c.mss_lowered, c.ttm_spoofed), (0, 0, 2));
}

#[test]
fn timestamps_stripped_from_the_handshake() {
    let mut e = try_engine(TtmConfig {
        strip_timestamps: true,
        ..TtmConfig::default()
    })
    .unwrap();
    let fixtures = [
        inb(
            "SYN: timestamps removed; MSS, SACK-permitted, NOP, WS, NOP padding",
            SYN,
            &LINUX_SYN,
            &[2, 4, 5, 180, 4, 2, 1, 3, 3, 7, 1, 1],
            b"",
            -8,
        ),
        outb(
            "SYN-ACK: timestamps removed and MSS 1460 -> 1452",
            SYN_ACK,
            &LINUX_SYN,
            &[2, 4, 5, 172, 4, 2, 1, 3, 3, 7, 1, 1],
            b"",
            -8,
        )
        .mss(),
        inb(
            "third ACK: the option alone",
            ack_isn(1001),
            &[],
            &TTM,
            b"",
            8,
        )
        .inserted(),
        inb(
            "a later segment that carries timestamps anyway: kept (only the SYNs are stripped)",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"x",
            8,
        )
        .inserted(),
    ];
    run(&mut e, &fixtures);

    let mut e = try_engine(TtmConfig {
        strip_timestamps: true,
        ..TtmConfig::default()
    })
    .unwrap();
    run(
        &mut e,
        &[inb(
            "a SYN with a forged option and timestamps: both removed",
            SYN,
            &cat(&[&SPOOF_254, &LINUX_SYN]),
            &[2, 4, 5, 180, 4, 2, 1, 3, 3, 7, 1, 1],
            b"",
            -16,
        )
        .spoofed(1)],
    );
}

#[test]
fn timestamps_kept_by_default() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.push(
        inb(
            "third ACK",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
    );
    // `handshake` asserts the SYN and the SYN-ACK keep their timestamps.
    assert_eq!(fixtures[0].output, tcp_opts(L, R, SYN, &LINUX_SYN, b""));
    run(&mut e, &fixtures);
}

/// Kind 200 with strip `{200}`: kind 200 written, clients' kind 200
/// removed, 254 (outside the configured set) left alone.
#[test]
fn custom_kind_in_its_strip_set() {
    let mut e = try_engine(TtmConfig {
        kind: 200,
        strip: KindSet::new(&[200]).unwrap(),
        ..TtmConfig::default()
    })
    .unwrap();
    let forged_200 = [200, 8, 0, 80, 6, 6, 6, 6];
    let fixtures = [
        inb(
            "SYN with a forged kind 200: removed",
            SYN,
            &cat(&[&LINUX_SYN, &forged_200]),
            &LINUX_SYN,
            b"",
            -8,
        )
        .spoofed(1),
        outb("SYN-ACK", SYN_ACK, &LINUX_SYN, &LINUX_SYN_1452, b"", 0).mss(),
        inb(
            "third ACK with kind 200 and 254: 200 replaced by ours, 254 kept",
            ack_isn(1001),
            &cat(&[&forged_200, &NOP_NOP_TS, &SPOOF_254]),
            &cat(&[&ttm_kind(200), &NOP_NOP_TS, &SPOOF_254]),
            b"",
            0,
        )
        .spoofed(1)
        .inserted(),
    ];
    run(&mut e, &fixtures);
}

/// Kind 200 with the default strip set `{253, 254}`: refused, or the kind
/// written is stripped too (see the module docs).
#[test]
fn custom_kind_outside_its_strip_set() {
    let config = TtmConfig {
        kind: 200,
        ..TtmConfig::default()
    };
    let Ok(mut e) = try_engine(config) else {
        // Refusing the configuration is an acceptable answer.
        return;
    };
    let forged_200 = [200, 8, 0, 80, 6, 6, 6, 6];
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK with a forged kind 200 and 4 bytes of headroom: the forged \
             option's room takes ours; were it kept, ours would be missed and the RS \
             would read the client's address",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &forged_200]),
            &cat(&[&ttm_kind(200), &NOP_NOP_TS]),
            b"",
            0,
        )
        .spoofed(1)
        .inserted()
        .headroom(4),
        inb(
            "third ACK with a forged kind 200: removed, ours inserted",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &forged_200]),
            &cat(&[&ttm_kind(200), &NOP_NOP_TS]),
            b"",
            0,
        )
        .spoofed(1)
        .inserted(),
        outb("the server's data", ack(5001, 1001), &[], &[], b"hi", 0),
        inb(
            "later segment with a forged kind 200: removed",
            ack(1001, 5003),
            &cat(&[&forged_200, &NOP_NOP_TS]),
            &NOP_NOP_TS,
            b"",
            -8,
        )
        .spoofed(1),
    ]);
    run(&mut e, &fixtures);
}

/// A TTM kind that TCP parsers read as a standard option would make a
/// malformed options area on every RS: the listener is refused.
#[test]
fn reserved_kind_is_refused() {
    let accepted: Vec<u8> = [0u8, 1, 2, 3, 4, 5, 8]
        .into_iter()
        .filter(|&kind| {
            try_engine(TtmConfig {
                kind,
                ..TtmConfig::default()
            })
            .is_ok()
        })
        .collect();
    assert_eq!(
        accepted, [0u8; 0],
        "ttm.kind accepted for these standard option kinds"
    );
}

/// Too little headroom, or an IP length that would pass 65535: the option
/// is missed (counted), the segment still stripped, and the next segment
/// in the window gets it.
#[test]
fn missed_then_retried() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK with 4 bytes of headroom: no option, missed",
            ack_isn(1001),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        )
        .missed()
        .headroom(4),
        inb(
            "no headroom, but a forged option's room: removed, ours inserted",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &SPOOF_254]),
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            0,
        )
        .spoofed(1)
        .inserted()
        .headroom(0),
        inb(
            "no headroom, a forged kind 253 alone: its 20 bytes hold ours (the area shrinks)",
            ack_isn(1001),
            &SPOOF_253,
            &TTM,
            b"",
            -12,
        )
        .spoofed(1)
        .inserted()
        .headroom(0),
        outb("the server's data", ack(5001, 1001), &[], &[], b"hi", 0),
        inb(
            "later segment with a forged option and no headroom: removed (shrinking needs none)",
            ack(1001, 5003),
            &cat(&[&NOP_NOP_TS, &SPOOF_254]),
            &NOP_NOP_TS,
            b"",
            -8,
        )
        .spoofed(1)
        .headroom(0),
    ]);
    run(&mut e, &fixtures);

    // An IP packet of 65535 bytes: the option would make it too long.
    let payload = vec![0x5a; 65535 - 20 - 20 - NOP_NOP_TS.len()];
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "a 65535-byte third ACK: no room, missed",
            ack_isn(1001),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            &payload,
            0,
        )
        .missed(),
        inb(
            "the next segment in the window gets it",
            ack_isn(1001 + payload.len() as u32),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
    ]);
    run(&mut e, &fixtures);
    let c = e.counters();
    assert_eq!((c.ttm_missed, c.ttm_inserted), (1, 1));
}

/// Over a whole connection: `ttm_inserted` is exactly the number of
/// segments that carry the option on the server side, and the byte
/// counters count bytes as received.
#[test]
fn counters_over_a_connection() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        inb(
            "third ACK",
            ack_isn(1001),
            &NOP_NOP_TS,
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"",
            8,
        )
        .inserted(),
        inb(
            "request",
            ack_isn(1001),
            &cat(&[&NOP_NOP_TS, &SPOOF_254]),
            &cat(&[&TTM, &NOP_NOP_TS]),
            b"GET / HTTP/1.0\r\n\r\n",
            0,
        )
        .inserted()
        .spoofed(1),
        outb(
            "response",
            ack(5001, 1019),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"HTTP/1.0 200 OK\r\n\r\n",
            0,
        ),
        inb(
            "ACK of the response",
            ack(1019, 5020),
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
        inb(
            "FIN",
            Tcp {
                fin: true,
                ..ack(1019, 5020)
            },
            &NOP_NOP_TS,
            &NOP_NOP_TS,
            b"",
            0,
        ),
    ]);
    run(&mut e, &fixtures);
    let inserted = fixtures.iter().filter(|f| f.counts.inserted > 0).count() as u64;
    let carry = fixtures
        .iter()
        .filter(|f| {
            matches!(f.verdict, Verdict::ToServer { .. }) && f.output[54..].starts_with(&TTM)
        })
        .count() as u64;
    assert_eq!(inserted, carry);
    assert_eq!(e.counters().ttm_inserted, inserted);
    let ip_bytes = |to_server: bool| -> u64 {
        fixtures
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::ToServer { .. }) == to_server)
            .map(|f| ip_total(&f.input))
            .sum()
    };
    let t = e.listener_traffic(0).unwrap();
    assert_eq!((t.bytes_in, t.bytes_out), (ip_bytes(true), ip_bytes(false)));
    let b = e.backend_traffic(0, 0).unwrap();
    assert_eq!((b.bytes_in, b.bytes_out), (ip_bytes(true), ip_bytes(false)));
}

/// The headers move into the headroom whatever is in front of the IP
/// header, and Ethernet padding is cut before the option goes in.
#[test]
fn vlan_tag_and_ethernet_padding() {
    let mut e = engine();
    let mut fixtures = handshake().to_vec();
    fixtures.extend([
        Fixture {
            what: "an 802.1Q-tagged third ACK: the tag moves with the headers".into(),
            input: tcp_vlan(Some(7), C, V, ack_isn(1001), &NOP_NOP_TS, b""),
            verdict: Verdict::ToServer { next_hop: ip(RIP) },
            output: tcp_vlan(
                Some(7),
                L,
                R,
                ack_isn(1001),
                &cat(&[&TTM, &NOP_NOP_TS]),
                b"",
            ),
            grown: 8,
            headroom: Frame::HEADROOM,
            trim: 0,
            counts: Counts::default(),
        }
        .inserted(),
        inb(
            "a 54-byte ACK padded to the 60-byte minimum: padding cut, then the option",
            ack_isn(1001),
            &[],
            &TTM,
            b"",
            8,
        )
        .padded(60)
        .inserted(),
        inb(
            "a 1-byte segment with a forged option, padded: padding cut, forged removed",
            ack_isn(1001),
            &SPOOF_254,
            &TTM,
            b"x",
            0,
        )
        .padded(70)
        .spoofed(1)
        .inserted(),
    ]);
    run(&mut e, &fixtures);
}
