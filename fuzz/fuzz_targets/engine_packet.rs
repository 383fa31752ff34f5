//! Push arbitrary frames through a configured engine and check that the
//! counters add up.
//!
//! Each input builds two engines with the same small configuration (16
//! sessions, 4 local ports, short timeouts, three listeners on two VIPs,
//! one with affinity, one with Maglev, TTM on for TCP) and runs a sequence
//! of operations on both: frames, batches, clock advances with expiry, and
//! configuration changes. One engine takes batches through `handle_batch`,
//! the other frame by frame through `handle_packet`; both must give the
//! same verdicts, the same bytes and the same counters.
//!
//! Input: one byte choosing the clock's epoch and the room around frames
//! (bit 0: start just before the engine's 32-bit millisecond ticks wrap;
//! bits 2-6: 100 ms steps later; bit 7: 4 bytes of headroom and none after,
//! too few for the TTM option) and, when it is exactly 2 and
//! `ENGINE_PACKET_LARGE` is set, the large mode: 8193 more sessions opened
//! first on a fourth listener, so that `handle_batch` takes its pipelined
//! path, which it keeps for tables of more than 8192 sessions. That costs
//! about 50 ms an input, 100 times the others, and left to itself the
//! fuzzer soon spends most of its time there: hence the opt-in, for runs of
//! their own. Then chunks `[op][len][body]`:
//!
//! - `op % 4 == 0`, a frame: `[sel][who][plen][options][mutations...]`.
//!   `sel & 7` picks a template (0: the rest of the body as raw bytes; 1/3:
//!   TCP/UDP from a client to the VIP; 2/4: TCP/UDP from a server to the
//!   local address; 5: echo request; 6: other ICMP; 7: odd packets), bits
//!   3-5 the TCP flags (or the variant), bit 6 recomputes the checksums
//!   after the mutations, bit 7 adds a VLAN tag. `who & 63` names
//!   the client (and its flow, whose sequence numbers and outbound tuple
//!   the harness tracks, so that servers can answer); `who >> 6` a variant
//!   (1: wrong port, 2: other VIP or address, 3: a retransmission). `plen`
//!   is the payload length, `options` a set of TCP options (see
//!   [`tcp_options`]). Mutations: `[op][a]...`: overwrite a byte, truncate,
//!   extend, overwrite 16 bits.
//! - `op % 4 == 1`, a batch: `[mode][len][frame body]...` (mode 1: one
//!   verdict more than frames; mode 2: one fewer).
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
//! drops + passed = handled, with the drop counters equal to the drop
//! verdicts reason by reason, and the traffic bytes to the IP bytes
//! received); the session count equals the listeners' active sessions and
//! created - expired - reset - replaced, and stays within the capacity; each
//! listener's traffic is the sum of its backends'.
//!
//! Each frame: a forwarded frame has a right IPv4 header checksum, and a
//! right transport checksum if it came with one; it keeps its length, less
//! Ethernet padding, except a TCP segment to a server, whose options the
//! TTM option may change: there the payload is unchanged, the one option
//! of a TTM kind is the engine's and carries the true client, the client's
//! other options are kept in order (timestamps always), and the TTM
//! counters agree with what was done. A passed frame is unchanged; nothing
//! outside the frame is written; RSTs from `poll_transmit` are well formed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::Duration;

use lb_engine::{
    Affinity, BackendConfig, BackendId, Counters, DropReason, Engine, EngineConfig, Frame, Instant,
    ListenerConfig, ListenerId, LocalPool, MaglevKey, Protocol, SchedulerKind, Timeouts, Traffic,
    Verdict,
};
use libfuzzer_sys::fuzz_target;

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
const VIP: [u8; 4] = [198, 51, 100, 1];
const VIP2: [u8; 4] = [198, 51, 100, 2];
const LIP: [u8; 4] = [10, 0, 0, 100];
const LIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100);
const OTHER: [u8; 4] = [10, 9, 9, 9];
const CLIENTS: [[u8; 4]; 4] = [
    [192, 0, 2, 10],
    [192, 0, 2, 11],
    [203, 0, 113, 7],
    [10, 0, 0, 50],
];
const SERVERS: [[u8; 4]; 4] = [[10, 0, 0, 2], [10, 0, 0, 3], [10, 0, 0, 4], [10, 0, 0, 5]];
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

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_GRE: u8 = 47;

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

// ----- checksums and parsing, written apart from the engine's ----------

fn ones_sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    ones_sum(src) + ones_sum(dst) + u64::from(proto) + len as u64
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The offset of the IPv4 header behind at most two VLAN tags, if the
/// frame's EtherType says IPv4.
fn ipv4_offset(b: &[u8]) -> Option<usize> {
    let mut off = 12;
    for _ in 0..3 {
        match be16(b, off)? {
            0x8100 | 0x88a8 => off += 4,
            0x0800 => return Some(off + 2),
            _ => return None,
        }
    }
    None
}

/// An IPv4 packet's header length, total length and protocol, when the
/// header and the total length fit the frame.
fn ipv4_fields(b: &[u8], l3: usize) -> Option<(usize, usize, u8)> {
    let h = b.get(l3..l3 + 20)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    (ihl >= 20 && total >= ihl && l3 + total <= b.len()).then_some((ihl, total, h[9]))
}

/// The state of a packet's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Sum {
    /// Not TCP, UDP or ICMP, or not parseable.
    Unknown,
    Valid,
    Invalid,
    /// UDP without a checksum (0).
    Absent,
}

fn l4_sum(b: &[u8]) -> L4Sum {
    let Some(l3) = ipv4_offset(b) else {
        return L4Sum::Unknown;
    };
    let Some((ihl, total, proto)) = ipv4_fields(b, l3) else {
        return L4Sum::Unknown;
    };
    let (src, dst) = (&b[l3 + 12..l3 + 16], &b[l3 + 16..l3 + 20]);
    let seg = &b[l3 + ihl..l3 + total];
    let sum = match proto {
        PROTO_TCP if seg.len() >= 20 => pseudo(src, dst, proto, seg.len()) + ones_sum(seg),
        PROTO_UDP if seg.len() >= 8 => {
            if seg[6..8] == [0, 0] {
                return L4Sum::Absent;
            }
            pseudo(src, dst, proto, seg.len()) + ones_sum(seg)
        }
        PROTO_ICMP if seg.len() >= 4 => ones_sum(seg),
        _ => return L4Sum::Unknown,
    };
    if fold(sum) == 0xffff {
        L4Sum::Valid
    } else {
        L4Sum::Invalid
    }
}

/// Recompute the IPv4 header checksum and the transport checksum of the
/// packet at `l3`, as far as the frame holds them.
fn fix_checksums(b: &mut [u8], l3: usize) {
    let Some(&vihl) = b.get(l3) else { return };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if ihl < 20 || l3 + ihl > b.len() {
        return;
    }
    b[l3 + 10] = 0;
    b[l3 + 11] = 0;
    let sum = !fold(ones_sum(&b[l3..l3 + ihl]));
    b[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    let Some((ihl, total, proto)) = ipv4_fields(b, l3) else {
        return;
    };
    let (src, dst) = (
        <[u8; 4]>::try_from(&b[l3 + 12..l3 + 16]).unwrap(),
        <[u8; 4]>::try_from(&b[l3 + 16..l3 + 20]).unwrap(),
    );
    let seg = &mut b[l3 + ihl..l3 + total];
    let at = match proto {
        PROTO_TCP if seg.len() >= 20 => 16,
        PROTO_UDP if seg.len() >= 8 => 6,
        PROTO_ICMP if seg.len() >= 4 => 2,
        _ => return,
    };
    seg[at] = 0;
    seg[at + 1] = 0;
    let base = if proto == PROTO_ICMP {
        0
    } else {
        pseudo(&src, &dst, proto, seg.len())
    };
    let mut sum = !fold(base + ones_sum(seg));
    if proto == PROTO_UDP && sum == 0 {
        sum = 0xffff;
    }
    seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

// ----- frames built by hand --------------------------------------------

fn payload(len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(|i| (i as u8) ^ 0x5a)
}

fn ethernet(vlan: Option<u8>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
    if let Some(vid) = vlan {
        f.extend_from_slice(&[0x81, 0x00, 0, vid]);
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An IPv4 packet with its header checksum; `frag` is the flags and
/// fragment offset word.
fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, options: &[u8], frag: u16, l4: &[u8]) -> Vec<u8> {
    let hlen = 20 + options.len();
    let mut p = vec![0u8; hlen];
    p[0] = 0x40 | (hlen / 4) as u8;
    p[2..4].copy_from_slice(&((hlen + l4.len()) as u16).to_be_bytes());
    p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    p[20..].copy_from_slice(options);
    let sum = !fold(ones_sum(&p));
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(l4);
    p
}

struct Tcp {
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    flags: u8,
    /// Which options: see [`tcp_options`].
    options: u8,
    len: usize,
}

/// A spoofed TTM option: kind 254 (or 253, TOA) claiming 6.6.6.6:666.
const SPOOF_V4: [u8; 8] = [254, 8, 0x02, 0x9a, 6, 6, 6, 6];

/// An options area of whole words: bit 0 MSS, 1 SACK-permitted, 2
/// timestamps, 3 three SACK blocks, 4 a spoofed TTM option, 5 a spoofed
/// TOA option (kind 253), 6 a spoofed IPv6 TTM option; bit 7 fills the
/// area to 40 bytes with NOPs. Items that would not fit are left out.
fn tcp_options(bits: u8) -> Vec<u8> {
    let mut toa = SPOOF_V4;
    toa[0] = 253;
    let mut spoof6 = [0x66u8; 20];
    spoof6[..4].copy_from_slice(&[254, 20, 0x02, 0x9a]);
    let mut sack = [0u8; 28];
    sack[..4].copy_from_slice(&[1, 1, 5, 26]);
    for (i, b) in sack[4..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let items: [&[u8]; 7] = [
        &[2, 4, 0x05, 0xb4],
        &[1, 1, 4, 2],
        &[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        &sack,
        &SPOOF_V4,
        &toa,
        &spoof6,
    ];
    let mut area = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if bits & (1 << i) != 0 && area.len() + item.len() <= 40 {
            area.extend_from_slice(item);
        }
    }
    if bits & 0x80 != 0 {
        area.resize(40, 1);
    }
    area
}

fn tcp(t: &Tcp) -> Vec<u8> {
    let mut s = vec![0u8; 20];
    s[0..2].copy_from_slice(&t.src.1.to_be_bytes());
    s[2..4].copy_from_slice(&t.dst.1.to_be_bytes());
    s[4..8].copy_from_slice(&t.seq.to_be_bytes());
    s[8..12].copy_from_slice(&t.ack.to_be_bytes());
    s.extend(tcp_options(t.options));
    s[12] = ((s.len() / 4) << 4) as u8;
    s[13] = t.flags;
    s[14..16].copy_from_slice(&64240u16.to_be_bytes());
    s.extend(payload(t.len));
    let sum = !fold(pseudo(&t.src.0, &t.dst.0, PROTO_TCP, s.len()) + ones_sum(&s));
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), len: usize) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    d[0..2].copy_from_slice(&src.1.to_be_bytes());
    d[2..4].copy_from_slice(&dst.1.to_be_bytes());
    d[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    d.extend(payload(len));
    let mut sum = !fold(pseudo(&src.0, &dst.0, PROTO_UDP, d.len()) + ones_sum(&d));
    if sum == 0 {
        sum = 0xffff;
    }
    d[6..8].copy_from_slice(&sum.to_be_bytes());
    d
}

fn icmp(kind: u8, code: u8, id: u8, len: usize) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, 0, id, 0, 7];
    m.extend(payload(len));
    let sum = !fold(ones_sum(&m));
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

fn seq_len(flags: u8, len: usize) -> u32 {
    len as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0)
}

/// A local tuple as the server sees it: (local address, local port, server
/// address, server port).
type Tuple = ([u8; 4], u16, [u8; 4], u16);

/// What the harness knows of one client's connection: the next sequence
/// number each way, and the outbound tuple the engine gave it.
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    c_next: u32,
    s_next: u32,
    out: Option<Tuple>,
}

/// Flows by protocol (0 TCP, 1 UDP) and client key (`who & 63`).
struct Sim {
    flows: [[Flow; 64]; 2],
}

/// A frame to hand to the engine, and the client flow it belongs to.
struct Built {
    bytes: Vec<u8>,
    origin: Option<(usize, usize)>,
}

fn client_of(key: usize) -> ([u8; 4], u16) {
    (CLIENTS[key & 3], 40000 + (key >> 2) as u16)
}

impl Sim {
    fn template(&mut self, kind: u8, variant: usize, who: u8, plen: usize, options: u8) -> Built {
        let key = usize::from(who & 63);
        let mode = who >> 6;
        let client = client_of(key);
        let flags = TCP_FLAGS[variant];
        match kind {
            1 | 3 => {
                let is_tcp = kind == 1;
                let (p, proto, port) = if is_tcp {
                    (0, PROTO_TCP, TCP_PORT)
                } else {
                    (1, PROTO_UDP, UDP_PORT)
                };
                let dst = match mode {
                    1 => (VIP, port + 1),
                    2 => (VIP2, port),
                    _ => (VIP, port),
                };
                let flow = &mut self.flows[p][key];
                let l4 = if is_tcp {
                    if flags & (SYN | ACK) == SYN {
                        flow.c_next = 0xffff_ffc0u32.wrapping_add((key as u32) << 24);
                    }
                    let seq = flow.c_next;
                    let ack = if flags & ACK != 0 { flow.s_next } else { 0 };
                    if mode != 3 {
                        flow.c_next = seq.wrapping_add(seq_len(flags, plen));
                    }
                    tcp(&Tcp {
                        src: client,
                        dst,
                        seq,
                        ack,
                        flags,
                        options,
                        len: plen,
                    })
                } else {
                    udp(client, dst, plen)
                };
                Built {
                    bytes: ipv4(client.0, dst.0, proto, &[], 0, &l4),
                    origin: Some((p, key)),
                }
            }
            2 | 4 => {
                let is_tcp = kind == 2;
                let (p, proto, rport) = if is_tcp {
                    (0, PROTO_TCP, TCP_RPORT)
                } else {
                    (1, PROTO_UDP, UDP_RPORT)
                };
                let flow = &mut self.flows[p][key];
                let (lip, lport, rip, rport) = flow.out.unwrap_or((
                    LIP,
                    LPORT_FIRST + ((key >> 1) & 3) as u16,
                    SERVERS[key & 1],
                    rport,
                ));
                let (rport, lport) = match mode {
                    1 => (rport.wrapping_add(1), lport),
                    2 => (rport, lport.wrapping_add(LPORTS)),
                    _ => (rport, lport),
                };
                let l4 = if is_tcp {
                    if flags & SYN != 0 {
                        flow.s_next = 0x8000_0000u32.wrapping_add((key as u32) << 16);
                    }
                    let seq = flow.s_next;
                    let ack = if flags & ACK != 0 { flow.c_next } else { 0 };
                    if mode != 3 {
                        flow.s_next = seq.wrapping_add(seq_len(flags, plen));
                    }
                    tcp(&Tcp {
                        src: (rip, rport),
                        dst: (lip, lport),
                        seq,
                        ack,
                        flags,
                        options,
                        len: plen,
                    })
                } else {
                    udp((rip, rport), (lip, lport), plen)
                };
                Built {
                    bytes: ipv4(rip, lip, proto, &[], 0, &l4),
                    origin: None,
                }
            }
            5 | 6 => {
                let (t, code) = if kind == 5 {
                    (8, 0)
                } else {
                    ICMP_KINDS[variant]
                };
                let (src, dst) = match mode {
                    1 => (client.0, VIP2),
                    2 => (SERVERS[key & 1], LIP),
                    _ => (client.0, VIP),
                };
                Built {
                    bytes: ipv4(src, dst, PROTO_ICMP, &[], 0, &icmp(t, code, who, plen)),
                    origin: None,
                }
            }
            _ => {
                let syn = |dst: ([u8; 4], u16)| Tcp {
                    src: client,
                    dst,
                    seq: 1,
                    ack: 0,
                    flags: SYN,
                    options,
                    len: plen,
                };
                let data: Vec<u8> = payload(plen).collect();
                let bytes = match variant {
                    0 => ipv4(client.0, OTHER, PROTO_TCP, &[], 0, &tcp(&syn((OTHER, 80)))),
                    1 => ipv4(
                        client.0,
                        OTHER,
                        PROTO_UDP,
                        &[],
                        0,
                        &udp(client, (OTHER, 53), plen),
                    ),
                    2 => ipv4(client.0, VIP, PROTO_GRE, &[], 0, &data),
                    3 => ipv4(SERVERS[key & 1], LIP, PROTO_GRE, &[], 0, &data),
                    // Not IP: the caller builds the Ethernet header.
                    4 | 5 => data,
                    6 => ipv4(
                        client.0,
                        VIP,
                        PROTO_UDP,
                        &[],
                        0x2000,
                        &udp(client, (VIP, UDP_PORT), plen),
                    ),
                    _ => ipv4(
                        client.0,
                        VIP,
                        PROTO_TCP,
                        &[1, 1, 1, 0],
                        0,
                        &tcp(&syn((VIP, TCP_PORT))),
                    ),
                };
                Built {
                    bytes,
                    origin: None,
                }
            }
        }
    }

    /// A frame from a chunk's body: `[sel][who][plen][options][mutations...]`.
    fn frame(&mut self, body: &[u8]) -> Built {
        let Some((&sel, rest)) = body.split_first() else {
            return Built {
                bytes: Vec::new(),
                origin: None,
            };
        };
        let kind = sel & 7;
        if kind == 0 {
            return Built {
                bytes: rest.to_vec(),
                origin: None,
            };
        }
        let who = rest.first().copied().unwrap_or(0);
        let plen = usize::from(rest.get(1).copied().unwrap_or(0));
        let options = rest.get(2).copied().unwrap_or(0);
        let program = rest.get(3..).unwrap_or(&[]);
        let variant = usize::from((sel >> 3) & 7);
        let vlan = (sel & 0x80 != 0).then_some(who);
        let mut built = self.template(kind, variant, who, plen, options);
        let ethertype = match (kind, variant) {
            (7, 4) => 0x0806,
            (7, 5) => 0x86dd,
            _ => 0x0800,
        };
        built.bytes = ethernet(vlan, ethertype, &built.bytes);
        mutate(&mut built.bytes, program);
        if sel & 0x40 != 0 {
            fix_checksums(&mut built.bytes, if vlan.is_some() { 18 } else { 14 });
        }
        built
    }
}

/// Apply a mutation program: `[op][a]...`; `op & 3`: 0 writes byte `b` at
/// `a`, 1 cuts `a` bytes off the end, 2 appends `a` bytes of `op >> 2`, 3
/// writes the 16-bit `b c` at `a` (offsets modulo the length).
fn mutate(bytes: &mut Vec<u8>, program: &[u8]) {
    let mut it = program.iter().copied();
    while let Some(op) = it.next() {
        let a = usize::from(it.next().unwrap_or(0));
        match op & 3 {
            0 => {
                let b = it.next().unwrap_or(0);
                let n = bytes.len();
                if n > 0 {
                    bytes[a % n] = b;
                }
            }
            1 => bytes.truncate(bytes.len().saturating_sub(a)),
            2 => bytes.extend(std::iter::repeat_n(op >> 2, a)),
            _ => {
                let (b, c) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
                let n = bytes.len();
                if n > 1 {
                    let i = a % (n - 1);
                    bytes[i] = b;
                    bytes[i + 1] = c;
                }
            }
        }
    }
}

// ----- the engines and what the harness expects of them ----------------

fn timeouts() -> Timeouts {
    Timeouts {
        tcp_established: Duration::from_secs(5),
        syn_recv: Duration::from_secs(2),
        fin_wait: Duration::from_secs(2),
        close_wait: Duration::from_secs(2),
        last_ack: Duration::from_secs(1),
        time_wait: Duration::from_secs(1),
        close: Duration::from_millis(500),
        udp: Duration::from_secs(3),
    }
}

/// An engine and its listeners: VIP:80/TCP (round robin, affinity),
/// VIP:53/UDP (least connections; its pool also has an IPv6 local
/// address) and VIP2:53/UDP (Maglev, no ping), all going out from LIP
/// ports 50000..=50003; `big` adds VIP3:9999/UDP for the preloaded
/// sessions, with a pool and timeouts of its own, and room for them.
fn build(big: bool) -> (Engine, Vec<ListenerId>) {
    let mut engine = Engine::new(EngineConfig {
        capacity: capacity(big),
        affinity_capacity: 8,
        hash_seed: 0x5eed_f00d,
        sweep_period: Duration::from_secs(1),
        sweep_tick: Duration::from_millis(100),
        quarantine: Duration::from_secs(2),
        quarantine_capacity: QUARANTINE_CAPACITY,
    })
    .unwrap();
    let pool = |v6: bool| {
        let mut addresses = vec![v4(LIP)];
        if v6 {
            addresses.push(IpAddr::V6(LIP6));
        }
        let mut p = LocalPool::new(addresses);
        p.ports = LPORT_FIRST..=LPORT_FIRST + LPORTS - 1;
        p
    };
    let mut tcp = ListenerConfig::new(v4(VIP), TCP_PORT, Protocol::Tcp, pool(false));
    tcp.affinity = Some(Affinity {
        timeout: Duration::from_secs(4),
    });
    let mut udp = ListenerConfig::new(v4(VIP), UDP_PORT, Protocol::Udp, pool(true));
    udp.scheduler = SchedulerKind::LeastConnections;
    let mut other = ListenerConfig::new(v4(VIP2), UDP_PORT, Protocol::Udp, pool(false));
    other.scheduler = SchedulerKind::Maglev {
        table_size: 13,
        key: MaglevKey::SourceAddress,
    };
    other.ping = false;
    let mut ids = Vec::new();
    for (mut l, rport, servers) in [
        (tcp, TCP_RPORT, [0, 1]),
        (udp, UDP_RPORT, [0, 1]),
        (other, UDP_RPORT, [0, 2]),
    ] {
        l.timeouts = timeouts();
        for s in servers {
            l.backends.push(BackendConfig::new(v4(SERVERS[s]), rport));
        }
        ids.push(engine.add_listener(l).unwrap());
    }
    if big {
        let mut l = ListenerConfig::new(
            v4(VIP3),
            PRELOAD_PORT,
            Protocol::Udp,
            LocalPool::new(vec![v4(LIP3)]),
        );
        l.timeouts.udp = Duration::from_secs(20 * 24 * 3600);
        l.backends
            .push(BackendConfig::new(v4(SERVERS[3]), PRELOAD_PORT));
        ids.push(engine.add_listener(l).unwrap());
    }
    (engine, ids)
}

fn capacity(big: bool) -> u32 {
    if big { PRELOAD + CAPACITY } else { CAPACITY }
}

/// The frames that open the preloaded sessions: UDP from as many clients.
fn preload_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        (0..PRELOAD)
            .map(|i| {
                let client = [100, 64 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
                let l4 = udp((client, 7777), (VIP3, PRELOAD_PORT), 4);
                ethernet(None, 0x0800, &ipv4(client, VIP3, PROTO_UDP, &[], 0, &l4))
            })
            .collect()
    })
}

/// What the TTM counters say the engine did to one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Edits {
    inserted: u64,
    missed: u64,
    pruned: u64,
    spoofed: u64,
    mss_lowered: u64,
}

impl Edits {
    fn of(c: &Counters) -> Edits {
        Edits {
            inserted: c.ttm_inserted,
            missed: c.ttm_missed,
            pruned: c.ttm_pruned,
            spoofed: c.ttm_spoofed,
            mss_lowered: c.mss_lowered,
        }
    }

    fn since(before: &Edits, after: &Edits) -> Edits {
        Edits {
            inserted: after.inserted - before.inserted,
            missed: after.missed - before.missed,
            pruned: after.pruned - before.pruned,
            spoofed: after.spoofed - before.spoofed,
            mss_lowered: after.mss_lowered - before.mss_lowered,
        }
    }

    /// Each counter moves by at most one per frame, and only for the
    /// direction it is about.
    fn check(&self, verdict: Verdict) {
        let e = self;
        let ok = match verdict {
            Verdict::ToServer { .. } => {
                e.inserted + e.missed <= 1 && e.pruned <= e.inserted && e.mss_lowered == 0
            }
            Verdict::ToClient { .. } => {
                *e == Edits {
                    mss_lowered: e.mss_lowered.min(1),
                    ..Edits::default()
                }
            }
            _ => *e == Edits::default(),
        };
        assert!(ok, "TTM counters moved by {e:?} for {verdict:?}");
    }
}

/// A TCP segment in a frame: the client's (source) address and port, the
/// options area and the payload.
struct Segment<'a> {
    src: [u8; 4],
    sport: u16,
    area: &'a [u8],
    payload: &'a [u8],
}

fn tcp_segment(b: &[u8]) -> Option<Segment<'_>> {
    let l3 = ipv4_offset(b)?;
    let (ihl, total, proto) = ipv4_fields(b, l3)?;
    let seg = &b[l3 + ihl..l3 + total];
    let hlen = usize::from(*seg.get(12)? >> 4) * 4;
    if proto != PROTO_TCP || hlen < 20 || hlen > seg.len() {
        return None;
    }
    Some(Segment {
        src: b[l3 + 12..l3 + 16].try_into().ok()?,
        sport: be16(seg, 0)?,
        area: &seg[20..hlen],
        payload: &seg[hlen..],
    })
}

/// The options of an area, without NOPs, up to an EOL; `None` if an
/// option's length is below 2 or runs past the area.
fn options(area: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < area.len() {
        match area[i] {
            0 => break,
            1 => i += 1,
            _ => {
                let len = usize::from(*area.get(i + 1)?);
                if len < 2 || i + len > area.len() {
                    return None;
                }
                out.push(&area[i..i + len]);
                i += len;
            }
        }
    }
    Some(out)
}

/// A segment forwarded to the server: the payload is unchanged; the only
/// option of a TTM kind (253, 254) is the engine's, first, carrying the
/// client's address and port; the other options are the client's, in order
/// (pruning may drop some, or shorten SACK blocks, timestamps never); and
/// with the counters at hand, the option is there as `ttm_inserted` says,
/// `ttm_spoofed` counts the client's TTM-kind options and nothing is
/// pruned without `ttm_pruned`.
fn check_options_to_server(input: &[u8], output: &[u8], edits: Option<Edits>) {
    let before = tcp_segment(input).expect("a TCP segment forwarded to the server");
    let after = tcp_segment(output).expect("a TCP segment forwarded to the server parses");
    assert_eq!(after.payload, before.payload, "the payload changed");
    let (Some(opts_in), Some(opts_out)) = (options(before.area), options(after.area)) else {
        return;
    };
    let mut ttm = vec![254, 8];
    ttm.extend_from_slice(&before.sport.to_be_bytes());
    ttm.extend_from_slice(&before.src);
    let ttm_kind = |o: &&[u8]| o[0] == 253 || o[0] == 254;
    let ours: Vec<&[u8]> = opts_out.iter().copied().filter(ttm_kind).collect();
    assert!(
        ours.len() <= 1 && ours.iter().all(|o| *o == ttm.as_slice()),
        "the server got TTM-kind options other than the client's own: {ours:02x?}"
    );
    if !ours.is_empty() {
        assert_eq!(opts_out[0], ttm.as_slice(), "the TTM option is not first");
    }
    let kept_in: Vec<&[u8]> = opts_in.iter().copied().filter(|o| !ttm_kind(o)).collect();
    let kept_out: Vec<&[u8]> = opts_out.iter().copied().filter(|o| !ttm_kind(o)).collect();
    // Kept byte for byte, or a SACK option that lost its last blocks.
    let from = |o: &[u8], i: &[u8]| {
        o == i
            || (o[0] == 5
                && i[0] == 5
                && o.len() >= 10
                && o.len() < i.len()
                && o[2..] == i[2..o.len()])
    };
    let mut rest = kept_in.iter();
    assert!(
        kept_out.iter().all(|o| rest.any(|i| from(o, i))),
        "options invented or reordered: {opts_in:02x?} became {opts_out:02x?}"
    );
    let timestamps = |v: &[&[u8]]| v.iter().filter(|o| o[0] == 8).count();
    assert_eq!(
        timestamps(&kept_out),
        timestamps(&kept_in),
        "timestamps removed: {opts_in:02x?} became {opts_out:02x?}"
    );
    if let Some(e) = edits {
        assert_eq!(ours.len() as u64, e.inserted, "the option vs ttm_inserted");
        assert_eq!(
            opts_in.iter().filter(|o| ttm_kind(o)).count() as u64,
            e.spoofed,
            "the client's TTM-kind options vs ttm_spoofed"
        );
        if e.pruned == 0 {
            assert_eq!(kept_out, kept_in, "options pruned without ttm_pruned");
        }
    }
}

/// What the verdicts so far say the counters must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    handled: u64,
    to_server: u64,
    to_client: u64,
    replies: u64,
    passed: u64,
    drops: [u64; DropReason::COUNT],
    bytes_in: u64,
    bytes_out: u64,
    rsts: u64,
}

fn add(sum: &mut Traffic, t: &Traffic) {
    sum.packets_in += t.packets_in;
    sum.bytes_in += t.bytes_in;
    sum.packets_out += t.packets_out;
    sum.bytes_out += t.bytes_out;
    sum.new_sessions += t.new_sessions;
    sum.active_sessions += t.active_sessions;
}

fn backends(e: &Engine, l: ListenerId) -> Vec<Traffic> {
    (0..)
        .map_while(|b: BackendId| e.backend_traffic(l, b).copied())
        .collect()
}

/// One engine, what it must count, and the traffic of backends whose slot
/// a new backend took (the slot's counters start again from zero).
struct Side {
    engine: Engine,
    capacity: u32,
    model: Model,
    retired: Vec<Traffic>,
}

impl Side {
    fn check(&self, ids: &[ListenerId]) {
        let (e, m) = (&self.engine, &self.model);
        let c = e.counters();
        for &r in DropReason::ALL {
            assert_eq!(
                c.dropped(r),
                m.drops[r.index()],
                "drop counter {} differs from the drop verdicts",
                r.label()
            );
        }
        assert_eq!(c.passed, m.passed, "passed counter");
        assert_eq!(c.echo_replies, m.replies, "echo_replies counter");
        assert_eq!(c.rst_sent, m.rsts, "rst_sent counter");
        let mut total = Traffic::default();
        for (i, &id) in ids.iter().enumerate() {
            let l = *e.listener_traffic(id).unwrap();
            let mut sum = self.retired[i];
            for t in backends(e, id) {
                add(&mut sum, &t);
            }
            assert_eq!(
                sum, l,
                "listener {id}: its backends' traffic does not add up"
            );
            add(&mut total, &l);
        }
        assert_eq!(
            total.packets_in, m.to_server,
            "packets_in vs ToServer verdicts"
        );
        assert_eq!(
            total.packets_out, m.to_client,
            "packets_out vs ToClient verdicts"
        );
        assert_eq!(total.bytes_in, m.bytes_in, "bytes_in vs forwarded IP bytes");
        assert_eq!(
            total.bytes_out, m.bytes_out,
            "bytes_out vs forwarded IP bytes"
        );
        assert_eq!(
            total.packets_in + total.packets_out + c.echo_replies + c.dropped_total() + c.passed,
            m.handled,
            "forwarded + replies + drops + passed != frames handled"
        );
        let n = u64::from(e.session_count());
        assert!(n <= u64::from(self.capacity), "{n} sessions");
        assert_eq!(n, total.active_sessions, "session_count vs active_sessions");
        assert_eq!(
            total.new_sessions, c.sessions_created,
            "sessions_created vs new_sessions"
        );
        assert_eq!(
            i128::from(n),
            i128::from(c.sessions_created)
                - i128::from(c.sessions_expired)
                - i128::from(c.sessions_reset)
                - i128::from(c.sessions_replaced),
            "session_count != created {} - expired {} - reset {} - replaced {}",
            c.sessions_created,
            c.sessions_expired,
            c.sessions_reset,
            c.sessions_replaced
        );
        assert_eq!(e.poll_timeout().is_some(), n > 0, "poll_timeout");
        assert!(e.quarantined() <= QUARANTINE_CAPACITY);
    }

    /// Count a verdict and check the frame it left: `input` as given,
    /// `output` as the engine left it, `edits` what the TTM counters say
    /// was done to it (when the frame was handled alone).
    fn judge(&mut self, verdict: Verdict, input: &[u8], output: &[u8], edits: Option<Edits>) {
        if let Some(e) = edits {
            e.check(verdict);
        }
        let m = &mut self.model;
        m.handled += 1;
        let next_hop = match verdict {
            Verdict::Drop(r) => {
                m.drops[r.index()] += 1;
                return;
            }
            Verdict::Pass => {
                // Unchanged, but for Ethernet padding after the IP packet.
                assert!(input.starts_with(output), "a passed frame was changed");
                if output.len() != input.len() {
                    let l3 = ipv4_offset(input).expect("a shortened frame is IPv4");
                    let total = usize::from(be16(input, l3 + 2).unwrap());
                    assert_eq!(
                        output.len(),
                        l3 + total,
                        "a passed frame lost more than padding"
                    );
                }
                m.passed += 1;
                return;
            }
            Verdict::ToServer { next_hop }
            | Verdict::ToClient { next_hop }
            | Verdict::Reply { next_hop } => next_hop,
        };
        let l3 = ipv4_offset(input).expect("a forwarded frame is IPv4");
        let total = usize::from(be16(input, l3 + 2).unwrap());
        assert_eq!(ipv4_offset(output), Some(l3), "the network layer moved");
        let (ihl, out_total, _) = ipv4_fields(output, l3).expect("a forwarded IPv4 header");
        if matches!(verdict, Verdict::ToServer { .. }) && input[l3 + 9] == PROTO_TCP {
            // The TTM option may be inserted, spoofed ones removed, the
            // options area rebuilt: the headers move into the headroom or
            // toward the payload, which stays where it is.
            assert_eq!(
                output.len(),
                l3 + out_total,
                "a forwarded frame's IP length does not match the frame"
            );
            check_options_to_server(input, output, edits);
        } else {
            assert_eq!(
                output.len(),
                input.len().min(l3 + total),
                "a forwarded frame changed length beyond dropping padding"
            );
            assert_eq!(out_total, total, "the IP total length changed");
        }
        assert_eq!(
            fold(ones_sum(&output[l3..l3 + ihl])),
            0xffff,
            "the IPv4 header checksum of a forwarded frame is wrong"
        );
        let dst = <[u8; 4]>::try_from(&output[l3 + 16..l3 + 20]).unwrap();
        assert_eq!(next_hop, v4(dst), "next hop vs destination address");
        match l4_sum(input) {
            L4Sum::Valid => assert_eq!(l4_sum(output), L4Sum::Valid, "transport checksum broken"),
            L4Sum::Absent => assert_eq!(l4_sum(output), L4Sum::Absent, "UDP checksum invented"),
            L4Sum::Invalid | L4Sum::Unknown => {}
        }
        match verdict {
            Verdict::ToServer { .. } => {
                m.to_server += 1;
                m.bytes_in += total as u64;
            }
            Verdict::ToClient { .. } => {
                m.to_client += 1;
                m.bytes_out += total as u64;
            }
            _ => m.replies += 1,
        }
    }

    /// Take one packet from `poll_transmit`, check it and count it.
    fn transmit(&mut self) -> Option<(Vec<u8>, Verdict)> {
        let mut buf = [GUARD; Engine::TRANSMIT_LEN + 8];
        let (len, verdict) = self.engine.poll_transmit(&mut buf)?;
        // An RST over IPv4: 54 bytes.
        assert_eq!(len, 54);
        assert!(
            buf[Engine::TRANSMIT_LEN..].iter().all(|&b| b == GUARD),
            "wrote past TRANSMIT_LEN"
        );
        let out = buf[..len].to_vec();
        assert_eq!(ipv4_offset(&out), Some(14));
        assert_eq!(fold(ones_sum(&out[14..34])), 0xffff, "RST: IPv4 checksum");
        assert_eq!(out[23], PROTO_TCP);
        assert_eq!(l4_sum(&out), L4Sum::Valid, "RST: TCP checksum");
        assert_eq!(out[34 + 13], RST | ACK);
        let dst = <[u8; 4]>::try_from(&out[30..34]).unwrap();
        match verdict {
            Verdict::ToServer { next_hop } | Verdict::ToClient { next_hop } => {
                assert_eq!(next_hop, v4(dst))
            }
            other => panic!("poll_transmit gave {other:?}"),
        }
        self.model.rsts += 1;
        Some((out, verdict))
    }
}

/// Headroom and tailroom around each frame.
#[derive(Debug, Clone, Copy)]
struct Room {
    head: usize,
    tail: usize,
}

impl Room {
    /// A frame in a buffer, the room around it filled with `GUARD`.
    fn buffer(self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = vec![GUARD; self.head + bytes.len() + self.tail];
        buf[self.head..self.head + bytes.len()].copy_from_slice(bytes);
        buf
    }

    fn frame<'a>(self, buf: &'a mut [u8], len: usize) -> Frame<'a> {
        Frame::new(buf, self.head, self.head + len).unwrap()
    }

    /// Check that nothing outside both the frame's first and last range
    /// was written.
    fn check(self, buf: &[u8], len: usize, start: usize, end: usize) {
        let lo = start.min(self.head);
        let hi = end.max(self.head + len);
        assert!(
            buf[..lo].iter().chain(&buf[hi..]).all(|&b| b == GUARD),
            "the engine wrote outside the frame"
        );
    }

    /// One frame through `handle_packet`: the verdict, the frame after,
    /// and what the TTM counters say was done to it.
    fn run(self, e: &mut Engine, now: Instant, bytes: &[u8]) -> (Verdict, Vec<u8>, Edits) {
        let before = Edits::of(e.counters());
        let mut buf = self.buffer(bytes);
        let mut frame = self.frame(&mut buf, bytes.len());
        let verdict = e.handle_packet(now, &mut frame);
        let out = frame.bytes().to_vec();
        let (start, end) = (frame.start(), frame.end());
        self.check(&buf, bytes.len(), start, end);
        (
            verdict,
            out,
            Edits::since(&before, &Edits::of(e.counters())),
        )
    }
}

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
                flows: [[Flow::default(); 64]; 2],
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
    fn record(&mut self, origin: Option<(usize, usize)>, verdict: Verdict, out: &[u8]) {
        let (Some((p, key)), Verdict::ToServer { .. }) = (origin, verdict) else {
            return;
        };
        let Some(l3) = ipv4_offset(out) else { return };
        let Some(h) = out.get(l3..l3 + 24) else {
            return;
        };
        let addr = |i: usize| <[u8; 4]>::try_from(&h[i..i + 4]).unwrap();
        let port = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        self.sim.flows[p][key].out = Some((addr(12), port(20), addr(16), port(22)));
    }

    fn frame(&mut self, body: &[u8]) {
        let built = self.sim.frame(body);
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

    /// `[mode][len][frame body]...`
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
            built.push(self.sim.frame(chunk));
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
        let li = usize::from(b(1) % 4);
        let listener = if li < 3 { self.ids[li] } else { 7 };
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
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        ];
        let mut added = BackendConfig::new(
            addrs[usize::from(b(3) % 5)],
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
            0 => h.frame(body),
            1 => h.batch(body),
            2 => h.time(body),
            _ => h.config(body),
        }
        h.check();
    }
});
