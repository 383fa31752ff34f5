//! The engines under test and what the harness expects of them: their
//! configuration, the TTM edits the counters report, the checks of every
//! frame out (options, headers, rewrites, ICMP errors, checksum policy),
//! the counters the verdicts imply ([`Model`], [`Side`]) and the room
//! around each frame ([`Room`]).

use super::*;

pub(crate) fn timeouts() -> Timeouts {
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
pub(crate) fn build(big: bool) -> (Engine, Vec<ListenerId>) {
    let mut engine = Engine::new(EngineConfig {
        capacity: capacity(big),
        affinity_capacity: 8,
        hash_seed: 0x5eed_f00d,
        sweep_period: Duration::from_secs(1),
        sweep_tick: Duration::from_millis(100),
        quarantine: Duration::from_secs(2),
        quarantine_capacity: QUARANTINE_CAPACITY,
        port_share: lb_engine::PortShare::ALL,
        rss: None,
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

pub(crate) fn capacity(big: bool) -> u32 {
    if big { PRELOAD + CAPACITY } else { CAPACITY }
}

/// The frames that open the preloaded sessions: UDP from as many clients.
pub(crate) fn preload_frames() -> &'static [Vec<u8>] {
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
pub(crate) struct Edits {
    pub(crate) inserted: u64,
    pub(crate) missed: u64,
    pub(crate) pruned: u64,
    pub(crate) spoofed: u64,
    pub(crate) mss_lowered: u64,
    /// Not a TTM counter: [`Edits::check`] leaves it out.
    pub(crate) created: u64,
}

impl Edits {
    pub(crate) fn of(c: &Counters) -> Edits {
        Edits {
            inserted: c.ttm_inserted,
            missed: c.ttm_missed,
            pruned: c.ttm_pruned,
            spoofed: c.ttm_spoofed,
            mss_lowered: c.mss_lowered,
            created: c.sessions_created,
        }
    }

    pub(crate) fn since(before: &Edits, after: &Edits) -> Edits {
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
    pub(crate) fn check(&self, verdict: Verdict) {
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
pub(crate) struct Segment<'a> {
    pub(crate) src: &'a [u8],
    pub(crate) sport: u16,
    pub(crate) area: &'a [u8],
    pub(crate) payload: &'a [u8],
}

pub(crate) fn tcp_segment(b: &[u8]) -> Option<Segment<'_>> {
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
pub(crate) fn options(area: &[u8]) -> Option<Vec<&[u8]>> {
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
pub(crate) fn check_options_to_server(input: &[u8], output: &[u8], edits: Option<Edits>) {
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
pub(crate) fn check_header(i: &Ip, o: &Ip) {
    let want = match (i.v6, o.v6) {
        (a, b) if a == b => i.l4 - i.l3,
        (_, true) => 40,
        (_, false) => 20,
    };
    assert_eq!(o.l4 - o.l3, want, "the forwarded IP header's length");
}

/// The bytes after a TCP or UDP header.
pub(crate) fn l4_payload<'a>(b: &'a [u8], ip: &Ip) -> Option<&'a [u8]> {
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
pub(crate) fn check_rewritten(input: &[u8], i: &Ip, output: &[u8], o: &Ip) {
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
pub(crate) fn check_icmp_error(input: &[u8], i: &Ip, output: &[u8], o: &Ip) {
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
pub(crate) fn check_checksum_policy(verdict: Verdict, input: &[u8], edits: Option<Edits>) {
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
pub(crate) struct Model {
    pub(crate) handled: u64,
    pub(crate) to_server: u64,
    pub(crate) to_client: u64,
    pub(crate) replies: u64,
    /// ICMP errors forwarded (not traffic).
    pub(crate) icmp_errors: u64,
    pub(crate) passed: u64,
    pub(crate) drops: [u64; DropReason::COUNT],
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
    pub(crate) rsts: u64,
}

pub(crate) fn add(sum: &mut Traffic, t: &Traffic) {
    sum.packets_in += t.packets_in;
    sum.bytes_in += t.bytes_in;
    sum.packets_out += t.packets_out;
    sum.bytes_out += t.bytes_out;
    sum.new_sessions += t.new_sessions;
    sum.active_sessions += t.active_sessions;
}

pub(crate) fn backends(e: &Engine, l: ListenerId) -> Vec<Traffic> {
    (0..)
        .map_while(|b: BackendId| e.backend_traffic(l, b).copied())
        .collect()
}

/// One engine, what it must count, and the traffic of backends whose slot
/// a new backend took (the slot's counters start again from zero).
pub(crate) struct Side {
    pub(crate) engine: Engine,
    pub(crate) capacity: u32,
    pub(crate) model: Model,
    pub(crate) retired: Vec<Traffic>,
}

impl Side {
    pub(crate) fn check(&self, ids: &[ListenerId]) {
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
    pub(crate) fn judge(
        &mut self,
        verdict: Verdict,
        input: &[u8],
        output: &[u8],
        edits: Option<Edits>,
    ) {
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
    pub(crate) fn transmit(&mut self) -> Option<(Vec<u8>, Transmit)> {
        let mut buf = [GUARD; Engine::TRANSMIT_LEN + 8];
        let (len, to) = self.engine.poll_transmit(&mut buf)?;
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
        assert_eq!(Some(to.next_hop()), addr(ip.dst));
        self.model.rsts += 1;
        Some((out, to))
    }
}

/// Headroom and tailroom around each frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Room {
    pub(crate) head: usize,
    pub(crate) tail: usize,
}

impl Room {
    /// A frame in a buffer, the room around it filled with `GUARD`.
    pub(crate) fn buffer(self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = vec![GUARD; self.head + bytes.len() + self.tail];
        buf[self.head..self.head + bytes.len()].copy_from_slice(bytes);
        buf
    }

    pub(crate) fn frame<'a>(self, buf: &'a mut [u8], len: usize) -> Frame<'a> {
        Frame::new(buf, self.head, self.head + len).unwrap()
    }

    /// Check that nothing outside both the frame's first and last range
    /// was written.
    pub(crate) fn check(self, buf: &[u8], len: usize, start: usize, end: usize) {
        let lo = start.min(self.head);
        let hi = end.max(self.head + len);
        assert!(
            buf[..lo].iter().chain(&buf[hi..]).all(|&b| b == GUARD),
            "the engine wrote outside the frame"
        );
    }

    /// One frame through `handle_packet`: the verdict, the frame after,
    /// and what the TTM counters say was done to it.
    pub(crate) fn run(
        self,
        e: &mut Engine,
        now: Instant,
        bytes: &[u8],
    ) -> (Verdict, Vec<u8>, Edits) {
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
