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
    Timeouts, Traffic, Verdict,
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

/// The sum of a pseudo-header, IPv4's or IPv6's alike: their length
/// fields (16 or 32 bits) add up the same for lengths below 65536.
fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    ones_sum(src) + ones_sum(dst) + u64::from(proto) + len as u64
}

fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// The offset of the IP header behind at most two VLAN tags, if the
/// frame's EtherType says IPv4 or IPv6.
fn l3_offset(b: &[u8]) -> Option<usize> {
    let mut off = 12;
    for _ in 0..3 {
        match be16(b, off)? {
            0x8100 | 0x88a8 => off += 4,
            0x0800 | 0x86dd => return Some(off + 2),
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

/// An IP packet as the harness reads it.
#[derive(Debug, Clone, Copy)]
struct Ip<'a> {
    /// Where the IP header starts.
    l3: usize,
    v6: bool,
    src: &'a [u8],
    dst: &'a [u8],
    /// The upper-layer protocol, after any IPv6 extension headers.
    proto: u8,
    /// Where the upper-layer header starts.
    l4: usize,
    /// Where the packet ends, as its header says: past the end of the
    /// buffer for a packet an ICMP error quotes in part.
    end: usize,
}

/// The IP packet at `l3` of `b`, by its version: IPv4 with a header
/// length and total length that hold together, or IPv6 with its hop-by-hop,
/// routing, destination options and fragment headers walked (at most
/// eight) and within its payload length.
fn ip_at(b: &[u8], l3: usize) -> Option<Ip<'_>> {
    match b.get(l3)? >> 4 {
        4 => {
            let h = b.get(l3..l3 + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(be16(h, 2)?);
            (ihl >= 20 && total >= ihl).then_some(Ip {
                l3,
                v6: false,
                src: &h[12..16],
                dst: &h[16..20],
                proto: h[9],
                l4: l3 + ihl,
                end: l3 + total,
            })
        }
        6 => {
            let h = b.get(l3..l3 + 40)?;
            let end = l3 + 40 + usize::from(be16(h, 4)?);
            let (mut next, mut at) = (h[6], l3 + 40);
            for _ in 0..8 {
                let len = match next {
                    0 | 43 | 60 => (usize::from(*b.get(at + 1)?) + 1) * 8,
                    44 => 8,
                    _ => break,
                };
                next = *b.get(at)?;
                at += len;
            }
            (at <= end).then_some(Ip {
                l3,
                v6: true,
                src: &h[8..24],
                dst: &h[24..40],
                proto: next,
                l4: at,
                end,
            })
        }
        _ => None,
    }
}

/// The IP packet of a frame, of the family its EtherType says, whole in
/// the frame.
fn ip_of(b: &[u8]) -> Option<Ip<'_>> {
    let l3 = l3_offset(b)?;
    let ip = ip_at(b, l3)?;
    let ethertype = if ip.v6 { 0x86dd } else { 0x0800 };
    (be16(b, l3 - 2)? == ethertype && ip.end <= b.len()).then_some(ip)
}

/// Whether an IPv4 header's checksum is right (false if it is not whole
/// in `b`).
fn header_sum_ok(b: &[u8], ip: &Ip) -> bool {
    b.get(ip.l3..ip.l4)
        .is_some_and(|h| fold(ones_sum(h)) == 0xffff)
}

/// The state of a packet's transport checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Sum {
    /// Not TCP, UDP, ICMP or ICMPv6, or not parseable.
    Unknown,
    Valid,
    Invalid,
    /// UDP without a checksum (0).
    Absent,
}

/// The transport checksum of a frame's IP packet.
fn l4_sum(b: &[u8]) -> L4Sum {
    ip_of(b).map_or(L4Sum::Unknown, |ip| l4_sum_of(b, &ip))
}

/// The transport checksum of the packet `ip` in `b` (`Unknown` if it is
/// not whole there).
fn l4_sum_of(b: &[u8], ip: &Ip) -> L4Sum {
    let Some(seg) = b.get(ip.l4..ip.end) else {
        return L4Sum::Unknown;
    };
    let sum = match ip.proto {
        PROTO_TCP if seg.len() >= 20 => pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg),
        PROTO_UDP if seg.len() >= 8 => {
            if seg[6..8] == [0, 0] {
                return L4Sum::Absent;
            }
            pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg)
        }
        PROTO_ICMP if !ip.v6 && seg.len() >= 4 => ones_sum(seg),
        PROTO_ICMPV6 if ip.v6 && seg.len() >= 4 => {
            pseudo(ip.src, ip.dst, ip.proto, seg.len()) + ones_sum(seg)
        }
        _ => return L4Sum::Unknown,
    };
    if fold(sum) == 0xffff {
        L4Sum::Valid
    } else {
        L4Sum::Invalid
    }
}

/// Recompute the checksums of the packet at `l3`, as far as the frame
/// holds them: IPv6's transport checksum, or IPv4's header checksum and
/// transport checksum.
fn fix_checksums(b: &mut [u8], l3: usize) {
    if b.get(l3).is_some_and(|v| v >> 4 == 6) {
        fix_checksums6(b, l3);
    } else {
        fix_checksums4(b, l3);
    }
}

/// Recompute the IPv4 header checksum and the transport checksum of the
/// packet at `l3`, as far as the frame holds them.
fn fix_checksums4(b: &mut [u8], l3: usize) {
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

/// Recompute the transport checksum (TCP, UDP, ICMPv6) of the IPv6 packet
/// at `l3`, if the frame holds it whole.
fn fix_checksums6(b: &mut [u8], l3: usize) {
    let Some(ip) = ip_at(b, l3).filter(|ip| ip.end <= b.len()) else {
        return;
    };
    let base = ones_sum(ip.src) + ones_sum(ip.dst);
    let (proto, l4, end) = (ip.proto, ip.l4, ip.end);
    let seg = &mut b[l4..end];
    let at = match proto {
        PROTO_TCP if seg.len() >= 20 => 16,
        PROTO_UDP if seg.len() >= 8 => 6,
        PROTO_ICMPV6 if seg.len() >= 4 => 2,
        _ => return,
    };
    seg[at] = 0;
    seg[at + 1] = 0;
    let mut sum = !fold(base + u64::from(proto) + seg.len() as u64 + ones_sum(seg));
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

/// An IPv6 extension header: the Next Header value that names it, and its
/// bytes, whose first (the header after it) [`ipv6`] writes.
type Ext = (u8, Vec<u8>);

/// A hop-by-hop (0) or destination options (60) header holding the
/// options `body`, padded with PadN to whole 8-byte units.
fn options_header(kind: u8, body: &[u8]) -> Ext {
    let mut h = vec![0, 0];
    h.extend_from_slice(body);
    let len = (h.len() + 2).next_multiple_of(8);
    let pad = len - h.len();
    h.extend_from_slice(&[1, (pad - 2) as u8]);
    h.resize(len, 0);
    h[1] = (len / 8 - 1) as u8;
    (kind, h)
}

/// Chains of IPv6 extension headers. Skipped by the engine: 0 hop-by-hop,
/// 1 routing with no segment left, 2 destination options (Router Alert),
/// 3 all three and an atomic fragment (as many as it walks). Refused: 4
/// routing with a segment left, 5 ESP, 6 a first fragment, 7 five headers.
fn ext_chain(n: usize) -> Vec<Ext> {
    let hop = options_header(0, &[]);
    let dest = options_header(60, &[5, 2, 0, 0]);
    let routing = |left: u8| (43, vec![0, 0, 4, left, 0, 0, 0, 0]);
    let fragment = |more: u8| (44, vec![0, 0, 0, more, 0, 0, 0x12, 0x34]);
    match n & 7 {
        0 => vec![hop],
        1 => vec![routing(0)],
        2 => vec![dest],
        3 => vec![hop, routing(0), dest, fragment(0)],
        4 => vec![routing(1)],
        5 => vec![(50, vec![0; 16])],
        6 => vec![fragment(1)],
        _ => vec![hop, dest.clone(), dest.clone(), dest.clone(), dest],
    }
}

/// An IPv6 packet (traffic class 0x28, a flow label, hop limit 64): the
/// extension headers `exts`, then `l4` as `proto`.
fn ipv6(src: &[u8; 16], dst: &[u8; 16], exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
    let len: usize = exts.iter().map(|e| e.1.len()).sum::<usize>() + l4.len();
    let mut p = vec![0x62, 0x81, 0x23, 0x45];
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p.push(exts.first().map_or(proto, |e| e.0));
    p.push(64);
    p.extend_from_slice(src);
    p.extend_from_slice(dst);
    for (i, (_, h)) in exts.iter().enumerate() {
        let at = p.len();
        p.extend_from_slice(h);
        p[at] = exts.get(i + 1).map_or(proto, |e| e.0);
    }
    p.extend_from_slice(l4);
    p
}

/// An IPv4 (with `options`) or IPv6 packet (with `exts`), by the length
/// of the addresses.
fn ip(src: &[u8], dst: &[u8], proto: u8, options: &[u8], exts: &[Ext], l4: &[u8]) -> Vec<u8> {
    match (<[u8; 4]>::try_from(src), <[u8; 4]>::try_from(dst)) {
        (Ok(s), Ok(d)) => ipv4(s, d, proto, options, 0, l4),
        _ => ipv6(
            &src.try_into().unwrap(),
            &dst.try_into().unwrap(),
            exts,
            proto,
            l4,
        ),
    }
}

/// A TCP segment from `src` to `dst`, addresses of either family.
struct Tcp<A> {
    src: (A, u16),
    dst: (A, u16),
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

fn tcp<A: AsRef<[u8]>>(t: &Tcp<A>) -> Vec<u8> {
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
    let (src, dst) = (t.src.0.as_ref(), t.dst.0.as_ref());
    let sum = !fold(pseudo(src, dst, PROTO_TCP, s.len()) + ones_sum(&s));
    s[16..18].copy_from_slice(&sum.to_be_bytes());
    s
}

fn udp<A: AsRef<[u8]>>(src: (A, u16), dst: (A, u16), len: usize) -> Vec<u8> {
    let mut d = vec![0u8; 8];
    d[0..2].copy_from_slice(&src.1.to_be_bytes());
    d[2..4].copy_from_slice(&dst.1.to_be_bytes());
    d[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    d.extend(payload(len));
    let sum = pseudo(src.0.as_ref(), dst.0.as_ref(), PROTO_UDP, d.len()) + ones_sum(&d);
    let mut sum = !fold(sum);
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

/// An ICMP message, or with `pseudo_of` (its source and destination) an
/// ICMPv6 one: type, code, checksum, the 4 bytes `rest`, then `body`.
fn icmp_message(
    pseudo_of: Option<(&[u8], &[u8])>,
    kind: u8,
    code: u8,
    rest: [u8; 4],
    body: &[u8],
) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(&rest);
    m.extend_from_slice(body);
    let base = pseudo_of.map_or(0, |(s, d)| pseudo(s, d, PROTO_ICMPV6, m.len()));
    let sum = !fold(base + ones_sum(&m));
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// A TCP segment (PSH|ACK, `seq` and `ack`) or a UDP datagram with `len`
/// bytes of payload from `src` to `dst`.
fn segment<A: AsRef<[u8]>>(
    is_tcp: bool,
    (seq, ack): (u32, u32),
    len: usize,
    src: (A, u16),
    dst: (A, u16),
) -> Vec<u8> {
    if !is_tcp {
        return udp(src, dst, len);
    }
    tcp(&Tcp {
        src,
        dst,
        seq,
        ack,
        flags: PSH | ACK,
        options: 0,
        len,
    })
}

/// ICMP or ICMPv6 (type, code, the 4 bytes after the checksum) of an
/// error in set 3, by `which` (`variant >> 1`): too big (the MTU
/// `options * 8`), time exceeded, destination unreachable, parameter
/// problem (codes and pointer from `options`).
fn error_kind(v6: bool, which: usize, options: u8) -> (u8, u8, [u8; 4]) {
    let mtu = u16::from(options) * 8;
    let [m0, m1] = mtu.to_be_bytes();
    match (v6, which) {
        (false, 0) => (3, 4, [0, 0, m0, m1]),
        (false, 1) => (11, options & 1, [0; 4]),
        (false, 2) => (3, options & 15, [0; 4]),
        (false, _) => (12, 0, [options, 0, 0, 0]),
        (true, 0) => (2, 0, u32::from(mtu).to_be_bytes()),
        (true, 1) => (3, options & 1, [0; 4]),
        (true, 2) => (1, options & 7, [0; 4]),
        (true, _) => (4, options % 3, u32::from(options).to_be_bytes()),
    }
}

/// Make an error an RFC 4884 one: the quote padded to at least 128 bytes
/// in whole 8-byte units, its length in the length attribute (ICMP byte
/// 5 in 32-bit words; ICMPv6 byte 4 in 64-bit words), for the types that
/// have one, then an extension structure with one object.
fn rfc4884(quote: &mut Vec<u8>, rest: &mut [u8; 4], v6: bool, kind: u8) {
    let len = quote.len().max(128).next_multiple_of(8);
    quote.resize(len, 0);
    match (v6, kind) {
        (false, 3 | 11 | 12) => rest[1] = u8::try_from(len / 4).unwrap_or(0),
        (true, 1 | 3) => rest[0] = u8::try_from(len / 8).unwrap_or(0),
        _ => {}
    }
    let mut ext = vec![0x20, 0, 0, 0, 0, 8, 1, 1, 0, 0, 0, 0];
    let sum = !fold(ones_sum(&ext));
    ext[2..4].copy_from_slice(&sum.to_be_bytes());
    quote.extend(ext);
}

fn seq_len(flags: u8, len: usize) -> u32 {
    len as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0)
}

/// A local tuple as the server sees it: (local address, local port, server
/// address, server port).
type Tuple = ([u8; 4], u16, [u8; 4], u16);
/// [`Tuple`] for a 6to6 session.
type Tuple6 = ([u8; 16], u16, [u8; 16], u16);

/// What the harness knows of one client's flow: the next sequence number
/// each way, and the outbound tuple the engine gave it (IPv4 in the 4to4
/// and 6to4 sets, IPv6 in the 6to6 set).
#[derive(Debug, Clone, Copy, Default)]
struct Flow {
    c_next: u32,
    s_next: u32,
    out: Option<Tuple>,
    out6: Option<Tuple6>,
}

impl Flow {
    /// The sequence and acknowledgment numbers of the client's next
    /// segment, with `flags` and `len` bytes; a retransmission (`again`)
    /// leaves the next one where it was.
    fn client_numbers(&mut self, key: usize, flags: u8, len: usize, again: bool) -> (u32, u32) {
        if flags & (SYN | ACK) == SYN {
            self.c_next = 0xffff_ffc0u32.wrapping_add((key as u32) << 24);
        }
        let seq = self.c_next;
        let ack = if flags & ACK != 0 { self.s_next } else { 0 };
        if !again {
            self.c_next = seq.wrapping_add(seq_len(flags, len));
        }
        (seq, ack)
    }

    /// [`Flow::client_numbers`] for the server's segment.
    fn server_numbers(&mut self, key: usize, flags: u8, len: usize, again: bool) -> (u32, u32) {
        if flags & SYN != 0 {
            self.s_next = 0x8000_0000u32.wrapping_add((key as u32) << 16);
        }
        let seq = self.s_next;
        let ack = if flags & ACK != 0 { self.c_next } else { 0 };
        if !again {
            self.s_next = seq.wrapping_add(seq_len(flags, len));
        }
        (seq, ack)
    }
}

/// Flows by template set (4to4, 6to4, 6to6), protocol (0 TCP, 1 UDP) and
/// client key (`who & 63`).
struct Sim {
    flows: [[[Flow; 64]; 2]; 3],
}

/// The flow a frame belongs to: template set, protocol, client key.
type Origin = (usize, usize, usize);

/// A frame to hand to the engine, and the client flow it belongs to.
struct Built {
    bytes: Vec<u8>,
    origin: Option<Origin>,
}

/// What a frame body asks of its template.
#[derive(Debug, Clone, Copy)]
struct Params {
    /// `sel >> 3 & 7`: the TCP flags' index, or the template's variant.
    variant: usize,
    /// `who` itself (ICMP identifiers).
    who: u8,
    /// `who & 63`: the client, and its flows.
    key: usize,
    /// `who >> 6`.
    mode: u8,
    plen: usize,
    options: u8,
}

impl Params {
    /// TCP or UDP: the protocol's index in [`Sim::flows`], its number, the
    /// listeners' port and the servers'.
    fn proto(is_tcp: bool) -> (usize, u8, u16, u16) {
        if is_tcp {
            (0, PROTO_TCP, TCP_PORT, TCP_RPORT)
        } else {
            (1, PROTO_UDP, UDP_PORT, UDP_RPORT)
        }
    }

    fn flags(&self) -> u8 {
        TCP_FLAGS[self.variant]
    }

    /// The local port the engine may have given the client's flow, before
    /// the harness has seen it.
    fn lport_guess(&self) -> u16 {
        LPORT_FIRST + ((self.key >> 1) & 3) as u16
    }
}

fn client_of(key: usize) -> ([u8; 4], u16) {
    (CLIENTS[key & 3], 40000 + (key >> 2) as u16)
}

fn client6_of(key: usize) -> ([u8; 16], u16) {
    (CLIENTS6[key & 3], 40000 + (key >> 2) as u16)
}

/// The VIP of the 6to4 or the 6to6 set.
fn vip6_of(set: usize) -> [u8; 16] {
    if set == SET_6TO4 { VIP64 } else { VIP66 }
}

/// The transport part of a flow's next packet from `src` to `dst`: a TCP
/// segment with `flags`, numbered on `flow` as the client's
/// (`from_client`) or the server's (a retransmission, `who >> 6 == 3`,
/// leaves the numbers where they were), or a UDP datagram.
fn next_l4<A: AsRef<[u8]>>(
    flow: &mut Flow,
    q: &Params,
    is_tcp: bool,
    flags: u8,
    from_client: bool,
    src: (A, u16),
    dst: (A, u16),
) -> Vec<u8> {
    if !is_tcp {
        return udp(src, dst, q.plen);
    }
    let again = q.mode == 3;
    let (seq, ack) = if from_client {
        flow.client_numbers(q.key, flags, q.plen, again)
    } else {
        flow.server_numbers(q.key, flags, q.plen, again)
    };
    tcp(&Tcp {
        src,
        dst,
        seq,
        ack,
        flags,
        options: q.options,
        len: q.plen,
    })
}

impl Sim {
    /// Set 0: the 4to4 listeners, IPv4.
    fn template4(&mut self, kind: u8, q: &Params) -> Built {
        let (key, mode, variant) = (q.key, q.mode, q.variant);
        let client = client_of(key);
        match kind {
            1 | 3 => {
                let is_tcp = kind == 1;
                let (p, proto, port, _) = Params::proto(is_tcp);
                let dst = match mode {
                    1 => (VIP, port + 1),
                    2 => (VIP2, port),
                    _ => (VIP, port),
                };
                let flow = &mut self.flows[0][p][key];
                let l4 = next_l4(flow, q, is_tcp, q.flags(), true, client, dst);
                Built {
                    bytes: ipv4(client.0, dst.0, proto, &[], 0, &l4),
                    origin: Some((0, p, key)),
                }
            }
            2 | 4 => self.server4(0, kind == 2, q),
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
                    bytes: ipv4(src, dst, PROTO_ICMP, &[], 0, &icmp(t, code, q.who, q.plen)),
                    origin: None,
                }
            }
            _ => Built {
                bytes: odd4(q),
                origin: None,
            },
        }
    }

    /// A TCP segment or UDP datagram from an IPv4 server to the local
    /// address, on the flow of set `set` (4to4 or 6to4): its outbound
    /// tuple, or a guess while there is none. `who >> 6`: 1 the server's
    /// port off by one, 2 a local port outside the pool.
    fn server4(&mut self, set: usize, is_tcp: bool, q: &Params) -> Built {
        let (p, proto, _, rport) = Params::proto(is_tcp);
        let flow = &mut self.flows[set][p][q.key];
        let (lip, lport, rip, rport) =
            flow.out
                .unwrap_or((LIP, q.lport_guess(), SERVERS[q.key & 1], rport));
        let (rport, lport) = match q.mode {
            1 => (rport.wrapping_add(1), lport),
            2 => (rport, lport.wrapping_add(LPORTS)),
            _ => (rport, lport),
        };
        let l4 = next_l4(
            flow,
            q,
            is_tcp,
            q.flags(),
            false,
            (rip, rport),
            (lip, lport),
        );
        Built {
            bytes: ipv4(rip, lip, proto, &[], 0, &l4),
            origin: None,
        }
    }

    /// Sets 1 and 2: the 6to4 and 6to6 listeners, IPv6 clients.
    fn template6(&mut self, set: usize, kind: u8, q: &Params) -> Built {
        let exts = if q.mode == 2 {
            ext_chain(3)
        } else {
            Vec::new()
        };
        match kind {
            1 | 3 => self.client6(set, kind == 1, q.flags(), q, &exts),
            2 | 4 if set == SET_6TO4 => self.server4(set, kind == 2, q),
            2 | 4 => self.server6(kind == 2, q, &exts),
            5 | 6 => {
                let (t, code) = if kind == 5 {
                    (128, 0)
                } else {
                    ICMP6_KINDS[q.variant]
                };
                let client = CLIENTS6[q.key & 3];
                let (src, dst) = match q.mode {
                    1 => (client, NOT_OURS6),
                    2 => (SERVERS6[q.key & 1], LIP6),
                    _ => (client, vip6_of(set)),
                };
                let exts = if q.mode == 3 {
                    ext_chain(3)
                } else {
                    Vec::new()
                };
                Built {
                    bytes: echo6(&src, &dst, (t, code), q, &exts),
                    origin: None,
                }
            }
            _ => {
                let exts = ext_chain(q.variant);
                let plain = Params { mode: 0, ..*q };
                match q.mode {
                    0 => self.client6(set, true, SYN, &plain, &exts),
                    1 => self.client6(set, false, 0, &plain, &exts),
                    2 => {
                        let (client, vip) = (CLIENTS6[q.key & 3], vip6_of(set));
                        Built {
                            bytes: echo6(&client, &vip, (128, 0), q, &exts),
                            origin: None,
                        }
                    }
                    _ => self.client6(set, true, PSH | ACK, &plain, &exts),
                }
            }
        }
    }

    /// A TCP segment or UDP datagram from an IPv6 client to the VIP of
    /// set `set`, with the extension headers `exts`. `who >> 6`: 1 the
    /// VIP's port off by one, 3 a retransmission.
    fn client6(&mut self, set: usize, is_tcp: bool, flags: u8, q: &Params, exts: &[Ext]) -> Built {
        let (p, proto, port, _) = Params::proto(is_tcp);
        let client = client6_of(q.key);
        let dst = (vip6_of(set), if q.mode == 1 { port + 1 } else { port });
        let flow = &mut self.flows[set][p][q.key];
        let l4 = next_l4(flow, q, is_tcp, flags, true, client, dst);
        Built {
            bytes: ipv6(&client.0, &dst.0, exts, proto, &l4),
            origin: Some((set, p, q.key)),
        }
    }

    /// A TCP segment or UDP datagram from an IPv6 server to the IPv6 local
    /// address (6to6), as [`Sim::server4`] does for IPv4, with the
    /// extension headers `exts`.
    fn server6(&mut self, is_tcp: bool, q: &Params, exts: &[Ext]) -> Built {
        let (p, proto, _, rport) = Params::proto(is_tcp);
        let flow = &mut self.flows[SET_6TO6][p][q.key];
        let (lip, lport, rip, rport) =
            flow.out6
                .unwrap_or((LIP6, q.lport_guess(), SERVERS6[q.key & 1], rport));
        let rport = if q.mode == 1 {
            rport.wrapping_add(1)
        } else {
            rport
        };
        let l4 = next_l4(
            flow,
            q,
            is_tcp,
            q.flags(),
            false,
            (rip, rport),
            (lip, lport),
        );
        Built {
            bytes: ipv6(&rip, &lip, exts, proto, &l4),
            origin: None,
        }
    }

    /// Set 3: an ICMP error quoting what the engine last sent on a flow
    /// (see the module's documentation).
    fn error(&mut self, kind: u8, q: &Params) -> Built {
        let (set, to_server) = match kind {
            1 | 2 => (0, kind == 1),
            3 | 4 => (SET_6TO4, kind == 3),
            5 | 6 => (SET_6TO6, kind == 5),
            _ => (SET_6TO4, q.key & 1 == 0),
        };
        let mut quote = self.sent(set, to_server, q.variant & 1, q);
        let v6 = quote[0] >> 4 == 6;
        let (t, code, mut rest) = error_kind(v6, q.variant >> 1, q.options);
        if q.mode == 2 {
            quote.truncate(if v6 { 48 } else { 28 });
        }
        if kind == 7 {
            rfc4884(&mut quote, &mut rest, v6, t);
        }
        // From a router on the side the quoted packet went to, back to
        // whoever sent it.
        let (router, to): (&[u8], &[u8]) = match (v6, to_server) {
            (false, true) => (&ROUTER4_S, &quote[12..16]),
            (false, false) => (&ROUTER4_C, &quote[12..16]),
            (true, true) => (&ROUTER6_S, &quote[8..24]),
            (true, false) => (&ROUTER6_C, &quote[8..24]),
        };
        let (proto, exts) = match (v6, q.mode) {
            (false, _) => (PROTO_ICMP, Vec::new()),
            (true, 3) => (PROTO_ICMPV6, ext_chain(3)),
            (true, _) => (PROTO_ICMPV6, Vec::new()),
        };
        let message = icmp_message(v6.then_some((router, to)), t, code, rest, &quote);
        Built {
            bytes: ip(router, to, proto, &[], &exts, &message),
            origin: None,
        }
    }

    /// The packet the engine last sent on the flow `p` of client `q.key`
    /// in set `set`, to the server (from the flow's outbound tuple, or a
    /// guess) or to the client, with the flow's numbers. `who >> 6`: 1 the
    /// destination port off by one, 3 IPv4 options or IPv6 extension
    /// headers.
    fn sent(&self, set: usize, to_server: bool, p: usize, q: &Params) -> Vec<u8> {
        let flow = &self.flows[set][p][q.key];
        let (_, proto, vport, rport) = Params::proto(p == 0);
        let off = u16::from(q.mode == 1);
        let options: &[u8] = if q.mode == 3 { &[1, 1, 1, 0] } else { &[] };
        let exts = if q.mode == 3 {
            ext_chain(3)
        } else {
            Vec::new()
        };
        let numbers = if to_server {
            (flow.c_next, flow.s_next)
        } else {
            (flow.s_next, flow.c_next)
        };
        let l4 = |src: &[u8], sport: u16, dst: &[u8], dport: u16| {
            segment(p == 0, numbers, q.plen, (src, sport), (dst, dport + off))
        };
        match (set, to_server) {
            (SET_6TO6, true) => {
                let (lip, lport, rip, rport) =
                    flow.out6
                        .unwrap_or((LIP6, q.lport_guess(), SERVERS6[q.key & 1], rport));
                ipv6(&lip, &rip, &exts, proto, &l4(&lip, lport, &rip, rport))
            }
            (_, true) => {
                let (lip, lport, rip, rport) =
                    flow.out
                        .unwrap_or((LIP, q.lport_guess(), SERVERS[q.key & 1], rport));
                ipv4(lip, rip, proto, options, 0, &l4(&lip, lport, &rip, rport))
            }
            (0, false) => {
                let (cip, cport) = client_of(q.key);
                ipv4(VIP, cip, proto, options, 0, &l4(&VIP, vport, &cip, cport))
            }
            _ => {
                let (cip, cport) = client6_of(q.key);
                let vip = vip6_of(set);
                ipv6(&vip, &cip, &exts, proto, &l4(&vip, vport, &cip, cport))
            }
        }
    }

    /// A frame from a chunk's body in the template set `set`:
    /// `[sel][who][plen][options][mutations...]`.
    fn frame(&mut self, set: u8, body: &[u8]) -> Built {
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
        let q = Params {
            variant: usize::from((sel >> 3) & 7),
            who,
            key: usize::from(who & 63),
            mode: who >> 6,
            plen: usize::from(rest.get(1).copied().unwrap_or(0)),
            options: rest.get(2).copied().unwrap_or(0),
        };
        let program = rest.get(3..).unwrap_or(&[]);
        let vlan = (sel & 0x80 != 0).then_some(who);
        let mut built = match set {
            SET_4TO4 => self.template4(kind, &q),
            SET_ERRORS => self.error(kind, &q),
            _ => self.template6(usize::from(set), kind, &q),
        };
        let ethertype = match (set, kind, q.variant) {
            (SET_4TO4, 7, 4) => 0x0806,
            (SET_4TO4, 7, 5) => 0x86dd,
            _ if built.bytes.first().is_some_and(|b| b >> 4 == 6) => 0x86dd,
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

/// Template 7 of set 0: odd packets, by variant.
fn odd4(q: &Params) -> Vec<u8> {
    let client = client_of(q.key);
    let syn = |dst: ([u8; 4], u16)| Tcp {
        src: client,
        dst,
        seq: 1,
        ack: 0,
        flags: SYN,
        options: q.options,
        len: q.plen,
    };
    let data: Vec<u8> = payload(q.plen).collect();
    match q.variant {
        0 => ipv4(client.0, OTHER, PROTO_TCP, &[], 0, &tcp(&syn((OTHER, 80)))),
        1 => ipv4(
            client.0,
            OTHER,
            PROTO_UDP,
            &[],
            0,
            &udp(client, (OTHER, 53), q.plen),
        ),
        2 => ipv4(client.0, VIP, PROTO_GRE, &[], 0, &data),
        3 => ipv4(SERVERS[q.key & 1], LIP, PROTO_GRE, &[], 0, &data),
        // Not IP: the caller builds the Ethernet header.
        4 | 5 => data,
        6 => ipv4(
            client.0,
            VIP,
            PROTO_UDP,
            &[],
            0x2000,
            &udp(client, (VIP, UDP_PORT), q.plen),
        ),
        _ => ipv4(
            client.0,
            VIP,
            PROTO_TCP,
            &[1, 1, 1, 0],
            0,
            &tcp(&syn((VIP, TCP_PORT))),
        ),
    }
}

/// An ICMPv6 message `(type, code)` from `src` to `dst` with the
/// extension headers `exts`: an identifier (`who`) and sequence number,
/// then `plen` bytes.
fn echo6(src: &[u8; 16], dst: &[u8; 16], (t, code): (u8, u8), q: &Params, exts: &[Ext]) -> Vec<u8> {
    let body: Vec<u8> = payload(q.plen).collect();
    let message = icmp_message(Some((src, dst)), t, code, [0, q.who, 0, 7], &body);
    ipv6(src, dst, exts, PROTO_ICMPV6, &message)
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
/// address) and VIP2:53/UDP (Maglev, no ping), going out from LIP; the
/// 6to4 VIP64:80/TCP and VIP64:53/UDP toward the same IPv4 servers, from
/// LIP; the 6to6 VIP66:80/TCP and VIP66:53/UDP (Maglev) toward IPv6
/// servers, from LIP6; all on local ports 50000..=50003. `big` adds
/// VIP3:9999/UDP for the preloaded sessions, with a pool and timeouts of
/// its own, and room for them.
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
    let pool = |addresses: &[IpAddr]| {
        let mut p = LocalPool::new(addresses.to_vec());
        p.ports = LPORT_FIRST..=LPORT_FIRST + LPORTS - 1;
        p
    };
    let maglev = SchedulerKind::Maglev {
        table_size: 13,
        key: MaglevKey::SourceAddress,
    };
    let mut tcp = ListenerConfig::new(v4(VIP), TCP_PORT, Protocol::Tcp, pool(&[v4(LIP)]));
    tcp.affinity = Some(Affinity {
        timeout: Duration::from_secs(4),
    });
    let mut udp = ListenerConfig::new(v4(VIP), UDP_PORT, Protocol::Udp, pool(&[v4(LIP), v6(LIP6)]));
    udp.scheduler = SchedulerKind::LeastConnections;
    let mut other = ListenerConfig::new(v4(VIP2), UDP_PORT, Protocol::Udp, pool(&[v4(LIP)]));
    other.scheduler = maglev;
    other.ping = false;
    other.verify_checksums = ChecksumPolicy::Off;
    let tcp64 = ListenerConfig::new(v6(VIP64), TCP_PORT, Protocol::Tcp, pool(&[v4(LIP)]));
    let udp64 = ListenerConfig::new(v6(VIP64), UDP_PORT, Protocol::Udp, pool(&[v4(LIP)]));
    let mut tcp66 = ListenerConfig::new(v6(VIP66), TCP_PORT, Protocol::Tcp, pool(&[v6(LIP6)]));
    tcp66.verify_checksums = ChecksumPolicy::All;
    let mut udp66 = ListenerConfig::new(v6(VIP66), UDP_PORT, Protocol::Udp, pool(&[v6(LIP6)]));
    udp66.scheduler = maglev;
    let servers4 = |a: usize, b: usize| [v4(SERVERS[a]), v4(SERVERS[b])];
    let servers6 = [v6(SERVERS6[0]), v6(SERVERS6[1])];
    let mut ids = Vec::new();
    for (mut l, rport, servers) in [
        (tcp, TCP_RPORT, servers4(0, 1)),
        (udp, UDP_RPORT, servers4(0, 1)),
        (other, UDP_RPORT, servers4(0, 2)),
        (tcp64, TCP_RPORT, servers4(0, 1)),
        (udp64, UDP_RPORT, servers4(0, 1)),
        (tcp66, TCP_RPORT, servers6),
        (udp66, UDP_RPORT, servers6),
    ] {
        l.timeouts = timeouts();
        for s in servers {
            l.backends.push(BackendConfig::new(s, rport));
        }
        ids.push(engine.add_listener(l).unwrap());
    }
    assert_eq!(ids.len(), LISTENERS);
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

/// What the counters say the engine did with one frame: the TTM counters,
/// and the sessions it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Edits {
    inserted: u64,
    missed: u64,
    pruned: u64,
    spoofed: u64,
    mss_lowered: u64,
    /// Not a TTM counter: [`Edits::check`] leaves it out.
    created: u64,
}

impl Edits {
    fn of(c: &Counters) -> Edits {
        Edits {
            inserted: c.ttm_inserted,
            missed: c.ttm_missed,
            pruned: c.ttm_pruned,
            spoofed: c.ttm_spoofed,
            mss_lowered: c.mss_lowered,
            created: c.sessions_created,
        }
    }

    fn since(before: &Edits, after: &Edits) -> Edits {
        Edits {
            inserted: after.inserted - before.inserted,
            missed: after.missed - before.missed,
            pruned: after.pruned - before.pruned,
            spoofed: after.spoofed - before.spoofed,
            mss_lowered: after.mss_lowered - before.mss_lowered,
            created: after.created - before.created,
        }
    }

    /// Each counter moves by at most one per frame, and only for the
    /// direction it is about.
    fn check(&self, verdict: Verdict) {
        let e = &Edits {
            created: 0,
            ..*self
        };
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

/// A TCP segment in a frame: the client's (source) address (IPv4 or
/// IPv6) and port, the options area and the payload.
struct Segment<'a> {
    src: &'a [u8],
    sport: u16,
    area: &'a [u8],
    payload: &'a [u8],
}

fn tcp_segment(b: &[u8]) -> Option<Segment<'_>> {
    let ip = ip_of(b)?;
    let seg = &b[ip.l4..ip.end];
    let hlen = usize::from(*seg.get(12)? >> 4) * 4;
    if ip.proto != PROTO_TCP || hlen < 20 || hlen > seg.len() {
        return None;
    }
    Some(Segment {
        src: ip.src,
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
/// client's address and port (8 bytes for an IPv4 client, 20 for an IPv6
/// one); the other options are the client's, in order (pruning may drop
/// some, or shorten SACK blocks, timestamps never); and with the counters
/// at hand, the option is there as `ttm_inserted` says, `ttm_spoofed`
/// counts the client's TTM-kind options and nothing is pruned without
/// `ttm_pruned`.
fn check_options_to_server(input: &[u8], output: &[u8], edits: Option<Edits>) {
    let before = tcp_segment(input).expect("a TCP segment forwarded to the server");
    let after = tcp_segment(output).expect("a TCP segment forwarded to the server parses");
    assert_eq!(after.payload, before.payload, "the payload changed");
    let (Some(opts_in), Some(opts_out)) = (options(before.area), options(after.area)) else {
        return;
    };
    let mut ttm = vec![254, 4 + before.src.len() as u8];
    ttm.extend_from_slice(&before.sport.to_be_bytes());
    ttm.extend_from_slice(before.src);
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

/// The header of a packet forwarded from `i` to `o`: the same length
/// within a family (extension headers kept), a plain 20-byte IPv4 or
/// 40-byte IPv6 header when translated.
fn check_header(i: &Ip, o: &Ip) {
    let want = match (i.v6, o.v6) {
        (a, b) if a == b => i.l4 - i.l3,
        (_, true) => 40,
        (_, false) => 20,
    };
    assert_eq!(o.l4 - o.l3, want, "the forwarded IP header's length");
}

/// The bytes after a TCP or UDP header.
fn l4_payload<'a>(b: &'a [u8], ip: &Ip) -> Option<&'a [u8]> {
    let seg = b.get(ip.l4..ip.end)?;
    let hlen = match ip.proto {
        PROTO_TCP => usize::from(*seg.get(12)? >> 4) * 4,
        PROTO_UDP => 8,
        _ => return None,
    };
    seg.get(hlen..)
}

/// A packet forwarded as it came, but for its addresses, ports and
/// checksums (and a SYN-ACK's MSS), translated or not: the same protocol,
/// transport length and payload.
fn check_rewritten(input: &[u8], i: &Ip, output: &[u8], o: &Ip) {
    check_header(i, o);
    assert_eq!(o.proto, i.proto, "the protocol changed");
    assert_eq!(o.end - o.l4, i.end - i.l4, "the transport length changed");
    assert_eq!(
        l4_payload(output, o),
        l4_payload(input, i),
        "the transport payload changed"
    );
}

/// A forwarded ICMP error `o` (from `i`): an error type of its family,
/// quoting a packet of its family that its destination sent to its source
/// (the session's other side, as it sent it), with a right IPv4 header
/// checksum where it came with one or was made from IPv6, and a right
/// transport checksum where quoted whole both ways and right on the way
/// in; grown from ICMP into ICMPv6, within the IPv6 minimum MTU, 1280
/// bytes, and with a packet-too-big MTU of at least 1280 (RFC 7915 §6).
fn check_icmp_error(input: &[u8], i: &Ip, output: &[u8], o: &Ip) {
    let errors: &[u8] = if o.v6 { &[1, 2, 3, 4] } else { &[3, 11, 12] };
    let kind = output.get(o.l4).copied();
    assert!(
        kind.is_some_and(|k| errors.contains(&k)),
        "forwarded ICMP type {kind:?} is not an error (IPv6: {})",
        o.v6
    );
    assert_eq!(o.proto, if o.v6 { PROTO_ICMPV6 } else { PROTO_ICMP });
    let before = ip_at(input, i.l4 + 8).expect("a forwarded error's quote parsed");
    let quote = ip_at(output, o.l4 + 8).expect("a forwarded error's quote parses");
    assert_eq!(quote.v6, o.v6, "the quote's family is not the error's");
    assert_eq!(
        (quote.src, quote.dst),
        (o.dst, o.src),
        "the quote is not what the error's destination sent to its source"
    );
    if !quote.v6 && (before.v6 || header_sum_ok(input, &before)) {
        assert!(
            header_sum_ok(output, &quote),
            "the quoted IPv4 header's checksum is wrong"
        );
    }
    if before.end <= i.end && quote.end <= o.end && l4_sum_of(input, &before) == L4Sum::Valid {
        assert_eq!(
            l4_sum_of(output, &quote),
            L4Sum::Valid,
            "the quoted transport checksum broken"
        );
    }
    if !i.v6 && o.v6 {
        assert!(
            o.end - o.l3 <= 1280,
            "an ICMPv6 error of {} bytes",
            o.end - o.l3
        );
        if kind == Some(2) {
            let mtu = &output[o.l4 + 4..o.l4 + 8];
            let mtu = u32::from_be_bytes(mtu.try_into().unwrap());
            assert!(mtu >= 1280, "packet too big with an MTU of {mtu}");
        }
    }
}

/// The checksum policies of [`build`]: a drop for a bad checksum is of a
/// packet whose checksum is wrong (or UDP's 0 over IPv6), never to the
/// listener that verifies none (VIP2's, `Off`); a session starts only
/// from a packet whose checksum is right (or UDP's 0 over IPv4) but on
/// that listener; the 6to6 TCP listener (`All`) forwards nothing whose
/// checksum is wrong, either way.
fn check_checksum_policy(verdict: Verdict, input: &[u8], edits: Option<Edits>) {
    let ip = ip_of(input);
    let sum = ip.map_or(L4Sum::Unknown, |ip| l4_sum_of(input, &ip));
    let v6 = ip.is_some_and(|ip| ip.v6);
    let unverified = ip.is_some_and(|ip| ip.dst == VIP2);
    let right = sum == L4Sum::Valid || (sum == L4Sum::Absent && !v6);
    if verdict == Verdict::Drop(DropReason::BadL4Checksum) {
        assert!(
            !unverified && (sum == L4Sum::Invalid || (sum == L4Sum::Absent && v6)),
            "dropped as bad_l4_checksum with a {sum:?} checksum (IPv6: {v6})"
        );
    }
    if edits.is_some_and(|e| e.created > 0) && !unverified {
        assert!(
            right,
            "a session started from a {sum:?} checksum (IPv6: {v6})"
        );
    }
    let all_66 =
        ip.is_some_and(|ip| ip.v6 && ip.proto == PROTO_TCP && (ip.dst == VIP66 || ip.dst == LIP6));
    if all_66 && matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }) {
        assert_eq!(sum, L4Sum::Valid, "the 6to6 TCP listener verifies all");
    }
}

/// What the verdicts so far say the counters must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Model {
    handled: u64,
    to_server: u64,
    to_client: u64,
    replies: u64,
    /// ICMP errors forwarded (not traffic).
    icmp_errors: u64,
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
        assert_eq!(
            c.icmp_errors_forwarded, m.icmp_errors,
            "icmp_errors_forwarded counter"
        );
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
            total.packets_in
                + total.packets_out
                + c.echo_replies
                + c.icmp_errors_forwarded
                + c.dropped_total()
                + c.passed,
            m.handled,
            "forwarded + replies + ICMP errors + drops + passed != frames handled"
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
                - i128::from(c.sessions_replaced)
                - i128::from(c.sessions_rescheduled)
                - i128::from(c.sessions_evicted),
            "session_count != created {} - expired {} - reset {} - replaced {} - rescheduled {} \
             - evicted {}",
            c.sessions_created,
            c.sessions_expired,
            c.sessions_reset,
            c.sessions_replaced,
            c.sessions_rescheduled,
            c.sessions_evicted
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
        check_checksum_policy(verdict, input, edits);
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
                    let ip = ip_of(input).expect("a shortened frame is IP");
                    assert_eq!(
                        output.len(),
                        ip.end,
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
        let i = ip_of(input).expect("a forwarded frame is IP");
        let o = ip_of(output).expect("a forwarded frame is IP once handled");
        assert_eq!(o.l3, i.l3, "the network layer moved");
        assert_eq!(
            output.len(),
            o.end,
            "a forwarded frame's IP length does not match the frame"
        );
        assert!(
            o.v6 || header_sum_ok(output, &o),
            "the IPv4 header checksum of a forwarded frame is wrong"
        );
        assert_eq!(
            Some(next_hop),
            addr(o.dst),
            "next hop vs destination address"
        );
        match (l4_sum_of(input, &i), l4_sum_of(output, &o)) {
            (L4Sum::Valid, after) => assert_eq!(after, L4Sum::Valid, "transport checksum broken"),
            (L4Sum::Absent, after) if !i.v6 && !o.v6 => {
                assert_eq!(after, L4Sum::Absent, "UDP checksum invented")
            }
            (L4Sum::Absent, after) if !i.v6 => {
                assert_eq!(after, L4Sum::Valid, "UDP into IPv6 without a checksum")
            }
            _ => {}
        }
        let icmp = i.proto == if i.v6 { PROTO_ICMPV6 } else { PROTO_ICMP };
        let received = (i.end - i.l3) as u64;
        match verdict {
            Verdict::Reply { .. } => {
                assert!(icmp, "a reply to something other than ICMP");
                assert_eq!(o.v6, i.v6, "an echo reply in another family");
                check_rewritten(input, &i, output, &o);
                m.replies += 1;
            }
            _ if icmp => {
                if let Some(e) = edits {
                    assert_eq!(e, Edits::default(), "TTM counters moved for an ICMP error");
                }
                check_icmp_error(input, &i, output, &o);
                m.icmp_errors += 1;
            }
            Verdict::ToServer { .. } => {
                if i.proto == PROTO_TCP {
                    // The TTM option may be inserted, spoofed ones removed,
                    // the options area rebuilt: the headers move into the
                    // headroom or toward the payload, which stays where it
                    // is.
                    check_header(&i, &o);
                    check_options_to_server(input, output, edits);
                } else {
                    check_rewritten(input, &i, output, &o);
                }
                m.to_server += 1;
                m.bytes_in += received;
            }
            _ => {
                check_rewritten(input, &i, output, &o);
                m.to_client += 1;
                m.bytes_out += received;
            }
        }
    }

    /// Take one packet from `poll_transmit`, check it and count it.
    fn transmit(&mut self) -> Option<(Vec<u8>, Verdict)> {
        let mut buf = [GUARD; Engine::TRANSMIT_LEN + 8];
        let (len, verdict) = self.engine.poll_transmit(&mut buf)?;
        assert!(
            buf[Engine::TRANSMIT_LEN..].iter().all(|&b| b == GUARD),
            "wrote past TRANSMIT_LEN"
        );
        let out = buf[..len].to_vec();
        let ip = ip_of(&out).expect("an RST is IP");
        // An RST over IPv4: 54 bytes; over IPv6: 74.
        assert_eq!((ip.l3, len), (14, if ip.v6 { 74 } else { 54 }));
        assert!(ip.v6 || header_sum_ok(&out, &ip), "RST: IPv4 checksum");
        assert_eq!(ip.proto, PROTO_TCP);
        assert_eq!(l4_sum(&out), L4Sum::Valid, "RST: TCP checksum");
        assert_eq!(out[ip.l4 + 13], RST | ACK);
        match verdict {
            Verdict::ToServer { next_hop } | Verdict::ToClient { next_hop } => {
                assert_eq!(Some(next_hop), addr(ip.dst))
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
