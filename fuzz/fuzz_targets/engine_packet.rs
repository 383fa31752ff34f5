//! Push arbitrary frames through a configured engine and check that the
//! counters add up.
//!
//! Each input builds two engines with the same small configuration (16
//! sessions, 4 local ports, short timeouts, TTM on for TCP) and seven
//! listeners on four VIPs: 4to4 TCP (affinity) and UDP on one VIP, UDP
//! (Maglev, no ping, no checksum verified) on a second; 6to4 TCP and UDP
//! on an IPv6 VIP, toward the same IPv4 servers and local address; 6to6
//! TCP (every checksum verified) and UDP (Maglev) on another IPv6 VIP,
//! toward IPv6 servers from an IPv6 local address; the others verify the
//! checksums of what starts a session. With 16 sessions, floods of SYNs
//! evict half-open sessions, and SYNs sent again after a configuration
//! change reschedule them. It
//! runs a sequence of operations on both: frames, batches, clock advances
//! with expiry, and configuration changes. One engine takes batches
//! through `handle_batch`, the other frame by frame through
//! `handle_packet`; both must give the same verdicts, the same bytes and
//! the same counters.
//!
//! Input: one byte choosing the clock's epoch and the room around frames
//! (bit 0: start just before the engine's 32-bit millisecond ticks wrap;
//! bits 2-6: 100 ms steps later; bit 7: 4 bytes of headroom and none after,
//! too few for the TTM option or for growing into IPv6) and, when it is
//! exactly 2 and `ENGINE_PACKET_LARGE` is set, the large mode: 8193 more
//! sessions opened first on an eighth listener, so that `handle_batch`
//! takes its pipelined path, which it keeps for tables of more than 8192
//! sessions. That costs about 50 ms an input, 100 times the others, and
//! left to itself the fuzzer soon spends most of its time there: hence the
//! opt-in, for runs of their own. Then chunks `[op][len][body]`:
//!
//! - `op % 4 == 0`, a frame from the template set `op >> 2 & 3` (below):
//!   `[sel][who][plen][options][mutations...]`. `sel & 7` picks a template
//!   (0, in every set: the rest of the body as raw bytes), bits 3-5 the
//!   TCP flags (or the variant), bit 6 recomputes the checksums after the
//!   mutations, bit 7 adds a VLAN tag. `who & 63` names the client (and
//!   its flows, one per set and protocol, whose sequence numbers and
//!   outbound tuple the harness tracks, so that servers can answer and
//!   ICMP errors can quote them); `who >> 6` a variant (1: wrong port, 2:
//!   other VIP or address, 3: a retransmission). `plen` is the payload
//!   length, `options` a set of TCP options (see [`tcp_options`]).
//!   Mutations: `[op][a]...`: overwrite a byte, truncate, extend,
//!   overwrite 16 bits.
//!   - Set 0, IPv4 (the 4to4 listeners): 1/3: TCP/UDP from a client to the
//!     VIP; 2/4: TCP/UDP from a server to the local address; 5: echo
//!     request; 6: other ICMP; 7: odd packets.
//!   - Sets 1 and 2, the 6to4 and the 6to6 listeners: 1 to 4 as in set 0,
//!     from IPv6 clients to the set's VIP and from its servers (IPv4 for
//!     6to4, IPv6 for 6to6), except that `who >> 6 == 2` puts extension
//!     headers (see [`ext_chain`] 3) in an IPv6 packet rather than change
//!     its address; 5: ICMPv6 echo request; 6: other ICMPv6 (see
//!     [`ICMP6_KINDS`]); for both, `who >> 6` 1 is to an address not ours,
//!     2 from a server to the local address, 3 with extension headers; 7:
//!     the extension headers [`ext_chain`] `variant` in front of a TCP SYN,
//!     a UDP datagram, an echo request or TCP data (`who >> 6`).
//!   - Set 3, ICMP errors quoting the last packet the engine sent on a
//!     flow: 1/2 4to4, 3/4 6to4, 5/6 6to6, from a router on the server's
//!     side (odd: to the local address, quoting what went to the server)
//!     or on the client's (even: to the VIP, quoting what went to the
//!     client); 7: as 3 or 4 (by the client's parity), with an RFC 4884
//!     extension after a quote padded to 128 bytes. Variant bit 0: the UDP
//!     flow rather than TCP; bits 1-2: too big (fragmentation needed or
//!     packet too big, MTU `options * 8`), time exceeded, destination
//!     unreachable (code from `options`), parameter problem (never
//!     forwarded). `who >> 6`: 1 quotes a destination port off by one (no
//!     session), 2 only the IP header and 8 bytes, 3 adds IP options to a
//!     quoted IPv4 header, extension headers to the IPv6 packets.
//! - `op % 4 == 1`, a batch: `[mode][len][frame body]...` (mode & 3 == 1:
//!   one verdict more than frames; 2: one fewer; `mode >> 2 & 3` the
//!   template set of its frames).
//! - `op % 4 == 2`, the clock: `[mode][lo][hi]`, an advance of `lo|hi`
//!   milliseconds (seconds with mode bit 1), sweeping at every
//!   `poll_timeout` on the way (at most 300 times) with mode bit 0; RSTs
//!   are drained unless mode bit 3; mode bit 2 first tries a buffer too
//!   short for one.
//! - `op % 4 == 3`, configuration: `[action][listener][backend][x][y][z]`:
//!   set_weight, set_up, remove_backend, add_backend, reset_backend; errors
//!   are fine, but both engines must agree.
//!
//! After every operation (and, on the frame-by-frame engine, after every
//! frame), the counters must add up: every frame handled has exactly one
//! verdict, counted once (forwarded in + forwarded out + echo replies +
//! ICMP errors forwarded + drops + passed = handled, with the drop counters
//! equal to the drop verdicts reason by reason, and the traffic bytes to
//! the IP bytes received); the session count equals the listeners' active
//! sessions and created - expired - reset - replaced - rescheduled -
//! evicted, and stays within the capacity; each listener's traffic is the
//! sum of its backends'.
//!
//! Each frame: a forwarded frame (IPv4 or IPv6, whichever the engine made
//! of it) has the length its IP header says, a right IPv4 header checksum,
//! and a right transport checksum if it came with one (over the new
//! family's pseudo-header when translated); an ICMP echo is answered in
//! its own family. A packet forwarded as it came keeps its transport
//! length and payload, and its IP length, less Ethernet padding, within a
//! family; translated, its header is a plain IPv4 or IPv6 one. A TCP
//! segment to a server may have its options changed by the TTM option:
//! there the payload is unchanged, the one option of a TTM kind is the
//! engine's and carries the true client (IPv4 or IPv6), the client's other
//! options are kept in order (timestamps always), and the TTM counters
//! agree with what was done. A forwarded ICMP error moves no TTM counter,
//! is counted in `icmp_errors_forwarded` and not as traffic, is an error
//! type of its family, and quotes a packet of its family from its
//! destination to its source (what that side sent), with a right IPv4
//! header checksum, and a right transport checksum when quoted whole and
//! right on the way in; grown from ICMP into ICMPv6 it is at most 1280
//! bytes, with a packet-too-big MTU of at least 1280. A passed frame is
//! unchanged; nothing outside the frame is written; RSTs from
//! `poll_transmit` are well formed, IPv4 or IPv6. Checksums, by the
//! harness's own sum (see [`check_checksum_policy`]): a frame dropped as
//! `bad_l4_checksum` had a wrong one; a frame that started a session had
//! a right one, but on the listener that verifies none; the listener that
//! verifies all forwards no wrong one.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;

use lb_engine::{
    Affinity, BackendConfig, BackendId, ChecksumPolicy, Counters, DropReason, Engine, EngineConfig,
    Frame, Instant, ListenerConfig, ListenerId, LocalPool, MaglevKey, Protocol, SchedulerKind,
    Timeouts, Traffic, Transmit, Verdict,
};
// The checksum oracle, written apart from the engine's (the test kit's).
use lb_testkit::checksum::{
    Ip, L4Sum, be16, fix_checksums, fold, header_sum_ok, ip_at, ip_of, l4_sum, l4_sum_of, ones_sum,
    pseudo,
};
use libfuzzer_sys::fuzz_target;

// The target's own modules, in `engine_packet/` (a crate root looks for
// its modules beside itself, where cargo-fuzz keeps the other targets).
#[path = "engine_packet/grammar.rs"]
mod grammar;
#[path = "engine_packet/model.rs"]
mod model;
#[path = "engine_packet/sim.rs"]
mod sim;

use grammar::*;
use model::*;
use sim::*;

/// Sessions the fuzzed traffic can open.
const CAPACITY: u32 = 16;
/// Sessions opened before the fuzzed operations in the large mode: more
/// than the 8192 up to which `handle_batch` takes each frame in turn
/// (above, it parses and prefetches a chunk of frames ahead of the work).
const PRELOAD: u32 = 8193;
const VIP3: [u8; 4] = [198, 51, 100, 3];
const LIP3: [u8; 4] = [10, 0, 0, 101];
const PRELOAD_PORT: u16 = 9999;
const QUARANTINE_CAPACITY: u32 = 8;
/// The listeners configuration changes can name (not the preloaded one).
const LISTENERS: usize = 7;
const VIP: [u8; 4] = [198, 51, 100, 1];
const VIP2: [u8; 4] = [198, 51, 100, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const OTHER: [u8; 4] = [10, 9, 9, 9];
const CLIENTS: [[u8; 4]; 4] = [
    [192, 0, 2, 10],
    [192, 0, 2, 11],
    [203, 0, 113, 7],
    [10, 0, 0, 50],
];
const SERVERS: [[u8; 4]; 4] = [[10, 0, 0, 2], [10, 0, 0, 3], [10, 0, 0, 4], [10, 0, 0, 5]];

/// `2001:db8:0:g::l` (the documentation prefix, RFC 3849).
const fn a6(group: u8, last: u16) -> [u8; 16] {
    let [l0, l1] = last.to_be_bytes();
    [
        0x20, 1, 0x0d, 0xb8, 0, group, 0, 0, 0, 0, 0, 0, 0, 0, l0, l1,
    ]
}

/// The 6to4 VIP (IPv6 clients, IPv4 servers and local address).
const VIP64: [u8; 16] = a6(1, 1);
/// The 6to6 VIP (IPv6 all the way).
const VIP66: [u8; 16] = a6(1, 2);
/// The IPv6 local address: the 6to6 listeners', and in the pool of the
/// 4to4 UDP listener, where it is never used.
const LIP6: [u8; 16] = a6(0, 0x100);
const NOT_OURS6: [u8; 16] = a6(1, 0x99);
const CLIENTS6: [[u8; 16]; 4] = [a6(0xc, 0x10), a6(0xc, 0x11), a6(0xd, 7), a6(0, 0x50)];
const SERVERS6: [[u8; 16]; 2] = [a6(2, 2), a6(2, 3)];
/// Routers that send ICMP errors: on the servers' side and on the
/// clients', for each family.
const ROUTER4_S: [u8; 4] = [10, 0, 0, 254];
const ROUTER4_C: [u8; 4] = [192, 0, 2, 1];
const ROUTER6_S: [u8; 16] = a6(2, 0xfe);
const ROUTER6_C: [u8; 16] = a6(0xc, 1);
const LPORT_FIRST: u16 = 50000;
const LPORTS: u16 = 4;
const TCP_PORT: u16 = 80;
const UDP_PORT: u16 = 53;
const TCP_RPORT: u16 = 8080;
const UDP_RPORT: u16 = 5353;
const TAILROOM: usize = 32;
/// What the harness fills the buffer around a frame with.
const GUARD: u8 = 0xee;
const MAX_BATCH: usize = 64;

/// Template sets (`op >> 2 & 3` of a frame or batch chunk).
const SET_4TO4: u8 = 0;
const SET_6TO4: usize = 1;
const SET_6TO6: usize = 2;
const SET_ERRORS: u8 = 3;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_GRE: u8 = 47;
const PROTO_ICMPV6: u8 = 58;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const TCP_FLAGS: [u8; 8] = [
    SYN,
    SYN | ACK,
    ACK,
    PSH | ACK,
    FIN | ACK,
    RST,
    RST | ACK,
    SYN | FIN,
];
/// ICMP (type, code) of template 6.
const ICMP_KINDS: [(u8, u8); 8] = [
    (0, 0),
    (3, 3),
    (5, 1),
    (11, 0),
    (13, 0),
    (8, 1),
    (8, 0),
    (0, 1),
];
/// ICMPv6 (type, code) of template 6 in the IPv6 sets: echo reply, echo
/// request with a code, neighbour solicitation, the three errors the
/// engine forwards and parameter problem (quoting garbage), an MLDv2
/// report.
const ICMP6_KINDS: [(u8, u8); 8] = [
    (129, 0),
    (128, 1),
    (135, 0),
    (2, 0),
    (3, 0),
    (4, 0),
    (1, 4),
    (143, 0),
];

/// Whether to print each operation and its outcome (set
/// `ENGINE_PACKET_TRACE` when reproducing a failure).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("ENGINE_PACKET_TRACE").is_some())
}

/// Whether inputs whose first byte is 2 run in the large mode (set
/// `ENGINE_PACKET_LARGE`).
fn large() -> bool {
    static LARGE: OnceLock<bool> = OnceLock::new();
    *LARGE.get_or_init(|| std::env::var_os("ENGINE_PACKET_LARGE").is_some())
}

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn v6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

/// An address from its bytes on the wire (4 or 16 of them).
fn addr(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b).ok().map(v4),
        16 => <[u8; 16]>::try_from(b).ok().map(v6),
        _ => None,
    }
}

// ----- the harness: operations on both engines -------------------------

struct Harness {
    ids: Vec<ListenerId>,
    room: Room,
    /// Batches go through `handle_batch`.
    batched: Side,
    /// Batches go through `handle_packet`, one frame at a time.
    single: Side,
    now: Instant,
    sim: Sim,
}

impl Harness {
    fn new(epoch: u8) -> Harness {
        let big = epoch == 2 && large();
        let (a, ids) = build(big);
        let (b, ids_b) = build(big);
        assert_eq!(ids, ids_b);
        let side = |engine| Side {
            engine,
            capacity: capacity(big),
            model: Model::default(),
            retired: vec![Traffic::default(); ids.len()],
        };
        let base = if epoch & 1 != 0 {
            Instant::from_millis(u64::from(u32::MAX) - 30_000)
        } else {
            Instant::from_secs(1)
        };
        let room = if epoch & 0x80 != 0 {
            // Too little for the TTM option (`ttm_missed`).
            Room { head: 4, tail: 0 }
        } else {
            Room {
                head: Frame::HEADROOM,
                tail: TAILROOM,
            }
        };
        let mut h = Harness {
            room,
            batched: side(a),
            single: side(b),
            ids,
            now: base + Duration::from_millis(u64::from((epoch >> 2) & 0x1f) * 100),
            sim: Sim {
                flows: [[[Flow::default(); 64]; 2]; 3],
            },
        };
        if big {
            h.preload();
        }
        h
    }

    /// Open the preloaded sessions, in batches on both engines. They are
    /// counted in bulk: judging each frame would double the cost.
    fn preload(&mut self) {
        let frames = preload_frames();
        let slot = Frame::HEADROOM + frames[0].len() + TAILROOM;
        let mut buf = vec![0u8; slot * 64];
        let mut verdicts = [Verdict::Pass; 64];
        for side in [&mut self.batched, &mut self.single] {
            for chunk in frames.chunks(64) {
                let mut batch: Vec<Frame<'_>> = buf
                    .chunks_mut(slot)
                    .zip(chunk)
                    .map(|(b, f)| {
                        b[Frame::HEADROOM..Frame::HEADROOM + f.len()].copy_from_slice(f);
                        Frame::new(b, Frame::HEADROOM, Frame::HEADROOM + f.len()).unwrap()
                    })
                    .collect();
                side.engine
                    .handle_batch(self.now, &mut batch, &mut verdicts[..chunk.len()]);
                for (f, verdict) in chunk.iter().zip(&verdicts) {
                    assert!(
                        matches!(verdict, Verdict::ToServer { .. }),
                        "preload: {verdict:?}"
                    );
                    side.model.handled += 1;
                    side.model.to_server += 1;
                    side.model.bytes_in += u64::from(be16(f, 16).unwrap());
                }
            }
        }
        self.check();
    }

    fn check(&self) {
        self.batched.check(&self.ids);
        self.single.check(&self.ids);
        let (a, b) = (&self.batched.engine, &self.single.engine);
        assert_eq!(a.counters(), b.counters(), "batch vs one by one: counters");
        assert_eq!(a.session_count(), b.session_count());
        assert_eq!(a.quarantined(), b.quarantined());
        assert_eq!(a.poll_timeout(), b.poll_timeout());
        for &id in &self.ids {
            assert_eq!(a.listener_traffic(id), b.listener_traffic(id));
            assert_eq!(backends(a, id), backends(b, id));
        }
    }

    /// Remember the outbound tuple the engine gave a client's flow.
    fn record(&mut self, origin: Option<Origin>, verdict: Verdict, out: &[u8]) {
        let (Some((set, p, key)), Verdict::ToServer { .. }) = (origin, verdict) else {
            return;
        };
        let Some(ip) = ip_of(out) else { return };
        let (Some(sport), Some(dport)) = (be16(out, ip.l4), be16(out, ip.l4 + 2)) else {
            return;
        };
        let flow = &mut self.sim.flows[set][p][key];
        if let (Ok(src), Ok(dst)) = (ip.src.try_into(), ip.dst.try_into()) {
            flow.out = Some((src, sport, dst, dport));
        } else if let (Ok(src), Ok(dst)) = (ip.src.try_into(), ip.dst.try_into()) {
            flow.out6 = Some((src, sport, dst, dport));
        }
    }

    /// A frame from template set `set`.
    fn frame(&mut self, set: u8, body: &[u8]) {
        let built = self.sim.frame(set, body);
        let (va, out_a, ea) = self
            .room
            .run(&mut self.batched.engine, self.now, &built.bytes);
        let (vb, out_b, eb) = self
            .room
            .run(&mut self.single.engine, self.now, &built.bytes);
        if trace() {
            eprintln!("frame {:02x?}: {va:?}", built.bytes);
            if ea != Edits::default() {
                eprintln!("  out {out_a:02x?}: {ea:?}");
            }
        }
        assert_eq!(va, vb, "same frame, same verdict");
        assert_eq!(out_a, out_b, "same frame, same output");
        assert_eq!(ea, eb, "same frame, same edits");
        self.batched.judge(va, &built.bytes, &out_a, Some(ea));
        self.single.judge(vb, &built.bytes, &out_b, Some(eb));
        self.record(built.origin, va, &out_a);
    }

    /// `[mode][len][frame body]...`, frames from template set `mode >> 2 &
    /// 3`.
    fn batch(&mut self, body: &[u8]) {
        let Some((&mode, mut rest)) = body.split_first() else {
            return;
        };
        let mut built = Vec::new();
        while let Some((&len, tail)) = rest.split_first() {
            if built.len() == MAX_BATCH {
                break;
            }
            let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
            built.push(self.sim.frame((mode >> 2) & 3, chunk));
            rest = tail;
        }
        let n = built.len();
        let slots = match mode & 3 {
            1 => n + 1,
            2 => n.saturating_sub(1),
            _ => n,
        };
        let handled = n.min(slots);
        // A verdict no engine gives, to see which slots were written.
        let unset = Verdict::Reply {
            next_hop: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let mut verdicts = vec![unset; slots];
        let room = self.room;
        let mut bufs: Vec<Vec<u8>> = built.iter().map(|b| room.buffer(&b.bytes)).collect();
        let mut frames: Vec<Frame<'_>> = bufs
            .iter_mut()
            .zip(&built)
            .map(|(buf, b)| room.frame(buf, b.bytes.len()))
            .collect();
        self.batched
            .engine
            .handle_batch(self.now, &mut frames, &mut verdicts);
        let results: Vec<(Vec<u8>, usize, usize)> = frames
            .iter()
            .map(|f| (f.bytes().to_vec(), f.start(), f.end()))
            .collect();
        drop(frames);
        for (i, b) in built.iter().enumerate() {
            let (out, start, end) = &results[i];
            room.check(&bufs[i], b.bytes.len(), *start, *end);
            if i >= handled {
                assert_eq!(out, &b.bytes, "a frame without a verdict slot was changed");
                continue;
            }
            let (vb, out_b, eb) = room.run(&mut self.single.engine, self.now, &b.bytes);
            if trace() {
                eprintln!("batch frame {i} {:02x?}: {:?}", b.bytes, verdicts[i]);
            }
            self.single.judge(vb, &b.bytes, &out_b, Some(eb));
            self.single.check(&self.ids);
            assert_eq!(
                verdicts[i], vb,
                "frame {i}: handle_batch vs handle_packet verdict"
            );
            assert_eq!(
                out, &out_b,
                "frame {i}: handle_batch vs handle_packet output"
            );
            self.batched.judge(verdicts[i], &b.bytes, out, None);
            self.record(b.origin, vb, &out_b);
        }
        assert!(
            verdicts[handled..].iter().all(|v| *v == unset),
            "a verdict slot without a frame was written"
        );
    }

    fn timeout(&mut self, mode: u8) {
        if trace() {
            eprintln!("handle_timeout at {} ms", self.now.as_millis());
        }
        self.batched.engine.handle_timeout(self.now);
        self.single.engine.handle_timeout(self.now);
        if mode & 4 != 0 {
            let mut short = [0u8; Engine::TRANSMIT_LEN - 1];
            assert_eq!(self.batched.engine.poll_transmit(&mut short), None);
            assert_eq!(self.single.engine.poll_transmit(&mut short), None);
        }
        if mode & 8 == 0 {
            for _ in 0..4096 {
                let a = self.batched.transmit();
                let b = self.single.transmit();
                assert_eq!(a, b, "same expiry, same RSTs");
                if let Some((_, v)) = &a
                    && trace()
                {
                    eprintln!("poll_transmit: RST {v:?}");
                }
                if a.is_none() {
                    break;
                }
            }
        }
    }

    /// `[mode][lo][hi]`
    fn time(&mut self, body: &[u8]) {
        let b = |i: usize| body.get(i).copied().unwrap_or(0);
        let mode = b(0);
        let mut ms = u64::from(u16::from_le_bytes([b(1), b(2)]));
        if mode & 2 != 0 {
            ms *= 1000;
        }
        let target = self.now + Duration::from_millis(ms);
        if mode & 1 != 0 {
            for _ in 0..300 {
                let next = self.batched.engine.poll_timeout();
                assert_eq!(next, self.single.engine.poll_timeout());
                match next {
                    Some(t) if t <= target => {
                        self.now = self.now.max(t);
                        self.timeout(mode);
                    }
                    _ => break,
                }
            }
        }
        self.now = target;
        self.timeout(mode);
    }

    /// `[action][listener][backend][x][y][z]`
    fn config(&mut self, body: &[u8]) {
        let b = |i: usize| body.get(i).copied().unwrap_or(0);
        let li = usize::from(b(1) % 8);
        let listener = if li < LISTENERS { self.ids[li] } else { 99 };
        let backend = BackendId::from(b(2) % 6);
        let weight = if b(4) & 0x80 != 0 {
            u16::from_le_bytes([b(3), b(4)])
        } else {
            u16::from(b(3) % 4)
        };
        let addrs = [
            v4(SERVERS[0]),
            v4(SERVERS[1]),
            v4(SERVERS[2]),
            v4(SERVERS[3]),
            v6(a6(0, 2)),
            v6(SERVERS6[0]),
            v6(SERVERS6[1]),
        ];
        let mut added = BackendConfig::new(
            addrs[usize::from(b(3) % 7)],
            [TCP_RPORT, UDP_RPORT, 9000][usize::from(b(4) % 3)],
        )
        .weight(u16::from(b(5) % 4));
        added.up = b(5) & 4 == 0;
        let action = b(0) % 5;
        let mut results = Vec::new();
        for side in [&mut self.batched, &mut self.single] {
            let e = &mut side.engine;
            let result = match action {
                0 => e.set_weight(listener, backend, weight).map(|()| None),
                1 => e.set_up(listener, backend, b(3) & 1 != 0).map(|()| None),
                2 => e
                    .remove_backend(listener, backend, b(3) & 1 != 0)
                    .map(|()| None),
                3 => {
                    let before = backends(e, listener);
                    let id = e.add_backend(listener, added);
                    if let Some(old) = id.as_ref().ok().and_then(|&i| before.get(i as usize)) {
                        // The slot is reused: its old counters are gone.
                        add(&mut side.retired[li], old);
                    }
                    id.map(Some)
                }
                _ => e.reset_backend(listener, backend).map(|()| None),
            };
            results.push(result);
        }
        if trace() {
            eprintln!(
                "config {action} listener {listener} backend {backend}: {:?}",
                results[0]
            );
        }
        assert_eq!(results[0], results[1], "same change, same result");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&epoch, mut rest)) = data.split_first() else {
        return;
    };
    let mut h = Harness::new(epoch);
    while let Some((&op, tail)) = rest.split_first() {
        let (len, tail) = match tail.split_first() {
            Some((&len, tail)) => (usize::from(len), tail),
            None => (0, tail),
        };
        let (body, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        match op & 3 {
            0 => h.frame((op >> 2) & 3, body),
            1 => h.batch(body),
            2 => h.time(body),
            _ => h.config(body),
        }
        h.check();
    }
});
