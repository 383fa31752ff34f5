//! The grammar of the fuzzed input: frames built by hand from a few
//! bytes (Ethernet, IPv4 with options, IPv6 with extension headers, TCP
//! with a chosen set of options, UDP, ICMP and ICMPv6, ICMP errors that
//! quote a packet), what a frame body asks of its template ([`Params`]),
//! and the mutations applied after.

use super::*;

pub(crate) fn payload(len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(|i| (i as u8) ^ 0x5a)
}

pub(crate) fn ethernet(vlan: Option<u8>, ethertype: u16, payload: &[u8]) -> Vec<u8> {
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
pub(crate) fn ipv4(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    options: &[u8],
    frag: u16,
    l4: &[u8],
) -> Vec<u8> {
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
pub(crate) type Ext = (u8, Vec<u8>);

/// A hop-by-hop (0) or destination options (60) header holding the
/// options `body`, padded with PadN to whole 8-byte units.
pub(crate) fn options_header(kind: u8, body: &[u8]) -> Ext {
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
pub(crate) fn ext_chain(n: usize) -> Vec<Ext> {
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
pub(crate) fn ipv6(src: &[u8; 16], dst: &[u8; 16], exts: &[Ext], proto: u8, l4: &[u8]) -> Vec<u8> {
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
pub(crate) fn ip(
    src: &[u8],
    dst: &[u8],
    proto: u8,
    options: &[u8],
    exts: &[Ext],
    l4: &[u8],
) -> Vec<u8> {
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
pub(crate) struct Tcp<A> {
    pub(crate) src: (A, u16),
    pub(crate) dst: (A, u16),
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    /// Which options: see [`tcp_options`].
    pub(crate) options: u8,
    pub(crate) len: usize,
}

/// A spoofed TTM option: kind 254 (or 253, TOA) claiming 6.6.6.6:666.
pub(crate) const SPOOF_V4: [u8; 8] = [254, 8, 0x02, 0x9a, 6, 6, 6, 6];

/// An options area of whole words: bit 0 MSS, 1 SACK-permitted, 2
/// timestamps, 3 three SACK blocks, 4 a spoofed TTM option, 5 a spoofed
/// TOA option (kind 253), 6 a spoofed IPv6 TTM option; bit 7 fills the
/// area to 40 bytes with NOPs. Items that would not fit are left out.
pub(crate) fn tcp_options(bits: u8) -> Vec<u8> {
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

pub(crate) fn tcp<A: AsRef<[u8]>>(t: &Tcp<A>) -> Vec<u8> {
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

pub(crate) fn udp<A: AsRef<[u8]>>(src: (A, u16), dst: (A, u16), len: usize) -> Vec<u8> {
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

pub(crate) fn icmp(kind: u8, code: u8, id: u8, len: usize) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0, 0, id, 0, 7];
    m.extend(payload(len));
    let sum = !fold(ones_sum(&m));
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// An ICMP message, or with `pseudo_of` (its source and destination) an
/// ICMPv6 one: type, code, checksum, the 4 bytes `rest`, then `body`.
pub(crate) fn icmp_message(
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
pub(crate) fn segment<A: AsRef<[u8]>>(
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
pub(crate) fn error_kind(v6: bool, which: usize, options: u8) -> (u8, u8, [u8; 4]) {
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
pub(crate) fn rfc4884(quote: &mut Vec<u8>, rest: &mut [u8; 4], v6: bool, kind: u8) {
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

pub(crate) fn seq_len(flags: u8, len: usize) -> u32 {
    len as u32 + u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0)
}

/// What a frame body asks of its template.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Params {
    /// `sel >> 3 & 7`: the TCP flags' index, or the template's variant.
    pub(crate) variant: usize,
    /// `who` itself (ICMP identifiers).
    pub(crate) who: u8,
    /// `who & 63`: the client, and its flows.
    pub(crate) key: usize,
    /// `who >> 6`.
    pub(crate) mode: u8,
    pub(crate) plen: usize,
    pub(crate) options: u8,
}

impl Params {
    /// TCP or UDP: the protocol's index in [`Sim::flows`], its number, the
    /// listeners' port and the servers'.
    pub(crate) fn proto(is_tcp: bool) -> (usize, u8, u16, u16) {
        if is_tcp {
            (0, PROTO_TCP, TCP_PORT, TCP_RPORT)
        } else {
            (1, PROTO_UDP, UDP_PORT, UDP_RPORT)
        }
    }

    pub(crate) fn flags(&self) -> u8 {
        TCP_FLAGS[self.variant]
    }

    /// The local port the engine may have given the client's flow, before
    /// the harness has seen it.
    pub(crate) fn lport_guess(&self) -> u16 {
        LPORT_FIRST + ((self.key >> 1) & 3) as u16
    }
}

/// Template 7 of set 0: odd packets, by variant.
pub(crate) fn odd4(q: &Params) -> Vec<u8> {
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
pub(crate) fn echo6(
    src: &[u8; 16],
    dst: &[u8; 16],
    (t, code): (u8, u8),
    q: &Params,
    exts: &[Ext],
) -> Vec<u8> {
    let body: Vec<u8> = payload(q.plen).collect();
    let message = icmp_message(Some((src, dst)), t, code, [0, q.who, 0, 7], &body);
    ipv6(src, dst, exts, PROTO_ICMPV6, &message)
}

/// Apply a mutation program: `[op][a]...`; `op & 3`: 0 writes byte `b` at
/// `a`, 1 cuts `a` bytes off the end, 2 appends `a` bytes of `op >> 2`, 3
/// writes the 16-bit `b c` at `a` (offsets modulo the length).
pub(crate) fn mutate(bytes: &mut Vec<u8>, program: &[u8]) {
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
