//! The simulated clients and servers: each client's flows (sequence
//! numbers both ways, the outbound tuple the engine gave it), and the
//! templates that make a flow's next frame from a frame body.

use super::*;

/// A local tuple as the server sees it: (local address, local port, server
/// address, server port).
pub(crate) type Tuple = ([u8; 4], u16, [u8; 4], u16);
/// [`Tuple`] for a 6to6 session.
pub(crate) type Tuple6 = ([u8; 16], u16, [u8; 16], u16);

/// What the harness knows of one client's flow: the next sequence number
/// each way, and the outbound tuple the engine gave it (IPv4 in the 4to4
/// and 6to4 sets, IPv6 in the 6to6 set).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flow {
    pub(crate) c_next: u32,
    pub(crate) s_next: u32,
    pub(crate) out: Option<Tuple>,
    pub(crate) out6: Option<Tuple6>,
}

impl Flow {
    /// The sequence and acknowledgment numbers of the client's next
    /// segment, with `flags` and `len` bytes; a retransmission (`again`)
    /// leaves the next one where it was.
    pub(crate) fn client_numbers(
        &mut self,
        key: usize,
        flags: u8,
        len: usize,
        again: bool,
    ) -> (u32, u32) {
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
    pub(crate) fn server_numbers(
        &mut self,
        key: usize,
        flags: u8,
        len: usize,
        again: bool,
    ) -> (u32, u32) {
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
pub(crate) struct Sim {
    pub(crate) flows: [[[Flow; 64]; 2]; 3],
}

/// The flow a frame belongs to: template set, protocol, client key.
pub(crate) type Origin = (usize, usize, usize);

/// A frame to hand to the engine, and the client flow it belongs to.
pub(crate) struct Built {
    pub(crate) bytes: Vec<u8>,
    pub(crate) origin: Option<Origin>,
}

pub(crate) fn client_of(key: usize) -> ([u8; 4], u16) {
    (CLIENTS[key & 3], 40000 + (key >> 2) as u16)
}

pub(crate) fn client6_of(key: usize) -> ([u8; 16], u16) {
    (CLIENTS6[key & 3], 40000 + (key >> 2) as u16)
}

/// The VIP of the 6to4 or the 6to6 set.
pub(crate) fn vip6_of(set: usize) -> [u8; 16] {
    if set == SET_6TO4 { VIP64 } else { VIP66 }
}

/// The transport part of a flow's next packet from `src` to `dst`: a TCP
/// segment with `flags`, numbered on `flow` as the client's
/// (`from_client`) or the server's (a retransmission, `who >> 6 == 3`,
/// leaves the numbers where they were), or a UDP datagram.
pub(crate) fn next_l4<A: AsRef<[u8]>>(
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
    pub(crate) fn template4(&mut self, kind: u8, q: &Params) -> Built {
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
    pub(crate) fn server4(&mut self, set: usize, is_tcp: bool, q: &Params) -> Built {
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
    pub(crate) fn template6(&mut self, set: usize, kind: u8, q: &Params) -> Built {
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
    pub(crate) fn client6(
        &mut self,
        set: usize,
        is_tcp: bool,
        flags: u8,
        q: &Params,
        exts: &[Ext],
    ) -> Built {
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
    pub(crate) fn server6(&mut self, is_tcp: bool, q: &Params, exts: &[Ext]) -> Built {
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
    pub(crate) fn error(&mut self, kind: u8, q: &Params) -> Built {
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
    pub(crate) fn sent(&self, set: usize, to_server: bool, p: usize, q: &Params) -> Vec<u8> {
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
    pub(crate) fn frame(&mut self, set: u8, body: &[u8]) -> Built {
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
