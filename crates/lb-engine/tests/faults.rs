//! Faults that must not lock real clients out (issue 13, items A, B and F),
//! through the public API on a simulated clock, with etherparse-built
//! frames:
//!
//! - A: a client's SYN retransmission leaves a backend that went down,
//!   was drained or removed before the server answered, for another
//!   backend and a new local tuple; a session the server answered, and an
//!   established one, keep their backend;
//! - B: the TCP or UDP checksum, pseudo-header included, of every packet
//!   that would start a session (4to4, 6to4, 6to6), checked before
//!   anything changes; of every packet with [`ChecksumPolicy::All`], of
//!   none with `Off`; UDP's checksum 0 passes over IPv4, not over IPv6;
//! - F: a full table gives a SYN the place of its oldest half-open session
//!   (never an established one, never for UDP, never for a SYN that could
//!   not be served), and the server's packets do not keep a half-open
//!   session alive.
//!
//! Every test also checks that the session count is what the counters
//! say: created - expired - reset - replaced - rescheduled - evicted.
//!
//! Frames, their parsing, the checksum oracle and the simulated clock are
//! the test kit's (`lb-testkit`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use etherparse::{SlicedPacket, TransportSlice};
use lb_engine::{
    BackendConfig, ChecksumPolicy, DropReason, Engine, EngineConfig, Instant, ListenerConfig,
    ListenerId, LocalPool, Protocol, Timeouts, Verdict,
};
use lb_testkit::Ep;
use lb_testkit::checksum::l4_right as checksum_right;
use lb_testkit::frame::{C_ISN, S_ISN, Tcp, corrupt, l4_offset, tcp, udp, udp_without_checksum};
use lb_testkit::parse::endpoints;
use lb_testkit::sim::{Conn, Sim, dropped, sent_to_server, to_client, to_server};

const SWEEP: Duration = Duration::from_secs(1);

fn v4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// `2001:db8:g::last`.
fn v6(group: u16, last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, group, 0, 0, 0, 0, last))
}

fn vip4() -> IpAddr {
    v4([198, 51, 100, 1])
}
/// The 6to4 VIP (IPv4 local address and servers).
fn vip64() -> IpAddr {
    v6(1, 1)
}
/// The 6to6 VIP.
fn vip66() -> IpAddr {
    v6(1, 2)
}
fn lip4() -> IpAddr {
    v4([10, 0, 0, 100])
}
fn lip6() -> IpAddr {
    v6(0, 0x100)
}
fn servers4() -> [IpAddr; 3] {
    [v4([10, 0, 0, 2]), v4([10, 0, 0, 3]), v4([10, 0, 0, 4])]
}
fn servers6() -> [IpAddr; 3] {
    [v6(2, 2), v6(2, 3), v6(2, 4)]
}

/// The `i`-th client of a family.
fn client(v6_client: bool, i: u16) -> Ep {
    let addr = if v6_client {
        v6(0xc, 0x10 + i)
    } else {
        v4([192, 0, 2, 10 + i as u8])
    };
    (addr, 40000 + i)
}

fn syn() -> Tcp {
    Tcp::syn(C_ISN)
}

fn synack() -> Tcp {
    Tcp::synack(S_ISN, C_ISN + 1)
}

fn ack(seq: u32, ack: u32) -> Tcp {
    Tcp::ack(seq, ack)
}

fn rst(seq: u32) -> Tcp {
    Tcp::rst(seq)
}

/// An engine with small tables and a short sweep, its clock at 10 s,
/// its session counts checked after every frame and clock move.
fn sim(capacity: u32) -> Sim {
    let config = EngineConfig {
        capacity,
        affinity_capacity: 64,
        quarantine_capacity: 1024,
        sweep_period: SWEEP,
        sweep_tick: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    Sim::counted(config, Instant::from_secs(10))
}

/// A listener on `vip:port` with `backends` (port 8080 for TCP, 5353 for
/// UDP), local address `lip`, and the checksum policy.
fn listener(
    vip: IpAddr,
    port: u16,
    protocol: Protocol,
    backends: &[IpAddr],
    lip: IpAddr,
    policy: ChecksumPolicy,
) -> ListenerConfig {
    let local = LocalPool::new(vec![lip]);
    let mut l = ListenerConfig::new(vip, port, protocol, local);
    let rport = if protocol == Protocol::Tcp {
        8080
    } else {
        5353
    };
    for &b in backends {
        l.backends.push(BackendConfig::new(b, rport));
    }
    l.verify_checksums = policy;
    l
}

/// The three kinds of listener: 4to4, 6to4 and 6to6, each TCP on port 80
/// and UDP on 53, with the servers of their family.
#[derive(Debug, Clone, Copy)]
enum Path {
    FourToFour,
    SixToFour,
    SixToSix,
}

const PATHS: [Path; 3] = [Path::FourToFour, Path::SixToFour, Path::SixToSix];

impl Path {
    fn vip(self) -> IpAddr {
        match self {
            Path::FourToFour => vip4(),
            Path::SixToFour => vip64(),
            Path::SixToSix => vip66(),
        }
    }

    fn v6_client(self) -> bool {
        !matches!(self, Path::FourToFour)
    }

    fn servers(self) -> [IpAddr; 3] {
        match self {
            Path::SixToSix => servers6(),
            _ => servers4(),
        }
    }

    fn lip(self) -> IpAddr {
        match self {
            Path::SixToSix => lip6(),
            _ => lip4(),
        }
    }
}

/// An engine with the TCP and UDP listeners of every path (ids: TCP
/// `2 * path`, UDP `2 * path + 1`), each with two servers.
fn every_path(policy: ChecksumPolicy) -> Sim {
    let mut s = sim(64);
    for path in PATHS {
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            let port = if protocol == Protocol::Tcp { 80 } else { 53 };
            let l = listener(
                path.vip(),
                port,
                protocol,
                &path.servers()[..2],
                path.lip(),
                policy,
            );
            s.e.add_listener(l).unwrap();
        }
    }
    s
}

/// An engine with one 4to4 TCP listener (id 0) and its three servers.
fn one_tcp_listener(capacity: u32) -> Sim {
    let mut s = sim(capacity);
    let l = listener(
        vip4(),
        80,
        Protocol::Tcp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    s.e.add_listener(l).unwrap();
    s
}

/// The backend id of a server of [`one_tcp_listener`].
fn backend_of(server: IpAddr) -> u32 {
    servers4().iter().position(|&a| a == server).unwrap() as u32
}

// ----- A: SYN retransmissions and backends that go away -------------------

type Change = fn(&mut Engine, ListenerId, u32);

fn ways_a_backend_goes() -> [(&'static str, Change); 3] {
    [
        ("set_up(false)", |e, l, b| e.set_up(l, b, false).unwrap()),
        ("weight 0", |e, l, b| e.set_weight(l, b, 0).unwrap()),
        ("remove_backend", |e, l, b| {
            e.remove_backend(l, b, false).unwrap()
        }),
    ]
}

#[test]
fn a_retransmitted_syn_leaves_a_backend_that_can_take_no_new_session() {
    for (what, change) in ways_a_backend_goes() {
        let mut s = one_tcp_listener(16);
        let v = (vip4(), 80);
        let first = s.open(client(false, 0), v);
        let old = backend_of(first.r.0);
        change(&mut s.e, 0, old);
        // The client has heard nothing and sends its SYN again.
        let (verdict, out) = s.send(&first.client(syn(), b""));
        let (l, r) = endpoints(&out);
        assert_eq!(verdict, to_server(r.0), "{what}");
        assert_ne!(r, first.r, "{what}: another backend");
        assert_ne!(l.1, first.l.1, "{what}: a new local port");
        let second = Conn { l, r, ..first };
        let c = *s.e.counters();
        assert_eq!(
            (
                c.sessions_created,
                c.sessions_rescheduled,
                c.sessions_replaced
            ),
            (2, 1, 0),
            "{what}"
        );
        assert_eq!(s.e.session_count(), 1, "{what}");
        assert_eq!(s.e.quarantined(), 1, "{what}: the old tuple is held");
        let old_traffic = s.e.backend_traffic(0, old).unwrap();
        assert_eq!(
            (old_traffic.new_sessions, old_traffic.active_sessions),
            (1, 0),
            "{what}"
        );
        let new = s.e.backend_traffic(0, backend_of(r.0)).unwrap();
        assert_eq!((new.new_sessions, new.active_sessions), (1, 1), "{what}");
        // The old server's late SYN-ACK finds nothing; the new one's goes
        // through and the connection works.
        s.gone(&first, what);
        s.answer(&second);
        s.third_ack(&second);
        s.still_flows(&second, what);
        assert_eq!(s.e.counters().sessions_rescheduled, 1, "{what}");
    }
}

#[test]
fn a_retransmitted_syn_to_a_live_backend_keeps_its_session() {
    let mut s = one_tcp_listener(16);
    let v = (vip4(), 80);
    let first = s.open(client(false, 0), v);
    // Another backend goes down: not this session's.
    let other = (backend_of(first.r.0) + 1) % 3;
    s.e.set_up(0, other, false).unwrap();
    for _ in 0..3 {
        let (verdict, out) = s.send(&first.client(syn(), b""));
        assert_eq!(verdict, to_server(first.r.0));
        assert_eq!(endpoints(&out), (first.l, first.r), "same tuple");
    }
    let c = *s.e.counters();
    assert_eq!((c.sessions_created, c.sessions_rescheduled), (1, 0));
    assert_eq!(s.e.quarantined(), 0);
}

#[test]
fn a_session_the_server_answered_keeps_its_backend() {
    for (what, change) in ways_a_backend_goes() {
        let mut s = one_tcp_listener(16);
        let v = (vip4(), 80);
        // Answered, not yet acknowledged by the client.
        let answered = s.open(client(false, 0), v);
        s.answer(&answered);
        // Established.
        let established = s.establish(client(false, 1), v);
        for conn in [answered, established] {
            change(&mut s.e, 0, backend_of(conn.r.0));
        }
        for conn in [answered, established] {
            let (verdict, out) = s.send(&conn.client(syn(), b""));
            assert_eq!(verdict, to_server(conn.r.0), "{what}: {conn:?}");
            assert_eq!(endpoints(&out), (conn.l, conn.r), "{what}");
        }
        s.third_ack(&answered);
        for conn in [answered, established] {
            s.still_flows(&conn, what);
        }
        let c = *s.e.counters();
        assert_eq!(
            (c.sessions_created, c.sessions_rescheduled),
            (2, 0),
            "{what}"
        );
    }
}

#[test]
fn with_no_backend_left_a_retransmitted_syn_stays_where_it_was() {
    let mut s = one_tcp_listener(16);
    let first = s.open(client(false, 0), (vip4(), 80));
    for b in 0..3 {
        s.e.set_up(0, b, false).unwrap();
    }
    // Nowhere better to go: the SYN goes where it went, as before.
    let (verdict, out) = s.send(&first.client(syn(), b""));
    assert_eq!(verdict, to_server(first.r.0));
    assert_eq!(endpoints(&out), (first.l, first.r));
    assert_eq!(s.e.counters().sessions_rescheduled, 0);
    // A new client gets nothing.
    assert_eq!(
        s.verdict(&tcp(client(false, 1), (vip4(), 80), syn(), b"")),
        dropped(DropReason::NoBackend)
    );
}

#[test]
fn rescheduling_works_on_every_path() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::New);
        let tcp_listener = 2 * path as u16;
        let first = s.open(client(path.v6_client(), 3), (path.vip(), 80));
        let old = path.servers().iter().position(|&a| a == first.r.0).unwrap() as u32;
        s.e.set_up(tcp_listener, old, false).unwrap();
        let (verdict, out) = s.send(&first.client(syn(), b""));
        let (l, r) = endpoints(&out);
        assert_eq!(verdict, to_server(r.0), "{path:?}");
        assert_ne!(r.0, first.r.0, "{path:?}");
        assert_eq!(s.e.counters().sessions_rescheduled, 1, "{path:?}");
        s.gone(&first, &format!("{path:?}"));
        let second = Conn { l, r, ..first };
        s.answer(&second);
    }
}

#[test]
fn a_rescheduling_syn_with_a_bad_checksum_changes_nothing() {
    let mut s = one_tcp_listener(16);
    let first = s.open(client(false, 0), (vip4(), 80));
    s.e.set_up(0, backend_of(first.r.0), false).unwrap();
    assert_eq!(
        s.verdict(&corrupt(first.client(syn(), b""))),
        dropped(DropReason::BadL4Checksum)
    );
    let c = *s.e.counters();
    assert_eq!((c.sessions_created, c.sessions_rescheduled), (1, 0));
    assert_eq!(s.e.quarantined(), 0);
    // The session is still there, on its old backend.
    s.answer(&first);
}

// ----- B: checksums ------------------------------------------------------------

#[test]
fn a_syn_or_datagram_with_a_bad_checksum_starts_nothing_on_any_path() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::New);
        let c = client(path.v6_client(), 1);
        let (t, u) = ((path.vip(), 80), (path.vip(), 53));
        let bad_syn = corrupt(tcp(c, t, syn(), b""));
        let bad_dgram = corrupt(udp(c, u, b"query"));
        assert!(!checksum_right(&bad_syn) && !checksum_right(&bad_dgram));
        for bad in [&bad_syn, &bad_dgram] {
            assert_eq!(
                s.verdict(bad),
                dropped(DropReason::BadL4Checksum),
                "{path:?}"
            );
        }
        assert_eq!(s.e.session_count(), 0, "{path:?}");
        assert_eq!(s.e.counters().dropped(DropReason::BadL4Checksum), 2);
        assert_eq!(s.e.counters().dropped_total(), 2);
        // The same packets with their checksums right start sessions.
        s.open(c, t);
        let (verdict, out) = s.send(&udp(c, u, b"query"));
        assert!(matches!(verdict, Verdict::ToServer { .. }), "{path:?}");
        assert!(checksum_right(&out), "{path:?}");
        assert_eq!(s.e.session_count(), 2, "{path:?}");
    }
}

#[test]
fn the_pseudo_header_is_part_of_the_checksum() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::New);
        let (c, other) = (client(path.v6_client(), 1), client(path.v6_client(), 2));
        // Checksummed for `other`'s address, sent from `c`'s: the
        // transport bytes are the same, only the pseudo-header differs.
        for (protocol, port) in [(Protocol::Tcp, 80), (Protocol::Udp, 53)] {
            let build = |from: Ep| match protocol {
                Protocol::Tcp => tcp((from.0, c.1), (path.vip(), port), syn(), b""),
                Protocol::Udp => udp((from.0, c.1), (path.vip(), port), b"q"),
            };
            let mut forged = build(other);
            let right = build(c);
            let (src_at, len) = if path.v6_client() {
                (14 + 8, 16)
            } else {
                (14 + 12, 4)
            };
            forged[src_at..src_at + len].copy_from_slice(&right[src_at..src_at + len]);
            // The IPv4 header's own checksum is made right again.
            if !path.v6_client() {
                forged[24..26].copy_from_slice(&right[24..26]);
            }
            assert_eq!(forged.len(), right.len());
            assert_eq!(forged[..l4_offset(&right)], right[..l4_offset(&right)]);
            assert_eq!(
                s.verdict(&forged),
                dropped(DropReason::BadL4Checksum),
                "{path:?} {protocol:?}"
            );
        }
        assert_eq!(s.e.session_count(), 0);
    }
}

#[test]
fn udp_checksum_zero_passes_over_ipv4_only() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::New);
        let c = client(path.v6_client(), 1);
        let frame = udp_without_checksum(c, (path.vip(), 53), b"query");
        let verdict = s.verdict(&frame);
        match path {
            Path::FourToFour => {
                assert!(matches!(verdict, Verdict::ToServer { .. }), "{verdict:?}");
                assert_eq!(s.e.session_count(), 1);
            }
            _ => {
                assert_eq!(verdict, dropped(DropReason::BadL4Checksum), "{path:?}");
                assert_eq!(s.e.session_count(), 0);
            }
        }
    }
}

#[test]
fn a_replacing_syn_with_a_bad_checksum_leaves_the_closing_session() {
    let mut s = one_tcp_listener(16);
    let conn = s.establish(client(false, 0), (vip4(), 80));
    assert_eq!(
        s.verdict(&conn.client(rst(C_ISN + 1), b"")),
        to_server(conn.r.0)
    );
    assert_eq!(
        s.verdict(&corrupt(conn.client(syn(), b""))),
        dropped(DropReason::BadL4Checksum)
    );
    assert_eq!(s.e.counters().sessions_replaced, 0);
    assert_eq!(s.e.quarantined(), 0);
    // Right, it replaces the closed session.
    let (verdict, _) = s.send(&conn.client(syn(), b""));
    assert!(matches!(verdict, Verdict::ToServer { .. }));
    assert_eq!(s.e.counters().sessions_replaced, 1);
}

/// Client and server packets of an established TCP session and of a UDP
/// session on `path`, each with a bad checksum, and what the engine did.
fn bad_packets_of_sessions(s: &mut Sim, path: Path) -> Vec<(String, Verdict, Vec<u8>)> {
    let c = client(path.v6_client(), 5);
    let conn = s.establish(c, (path.vip(), 80));
    let dgram = udp(c, (path.vip(), 53), b"q");
    let (verdict, out) = s.send(&dgram);
    assert!(matches!(verdict, Verdict::ToServer { .. }));
    let (l, r) = endpoints(&out);
    let mut results = Vec::new();
    for (what, frame) in [
        (
            "client TCP",
            corrupt(conn.client(ack(C_ISN + 1, S_ISN + 1), b"data")),
        ),
        (
            "server TCP",
            corrupt(conn.server(ack(S_ISN + 1, C_ISN + 1), b"data")),
        ),
        ("client UDP", corrupt(dgram.clone())),
        ("server UDP", corrupt(udp(r, l, b"answer"))),
    ] {
        let (verdict, out) = s.send(&frame);
        results.push((format!("{path:?} {what}"), verdict, out));
    }
    results
}

#[test]
fn by_default_packets_of_a_session_are_not_verified() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::New);
        for (what, verdict, out) in bad_packets_of_sessions(&mut s, path) {
            assert!(
                matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }),
                "{what}: {verdict:?}"
            );
            // Updated incrementally: still wrong, for the receiver to drop.
            assert!(!checksum_right(&out), "{what}: the checksum came out right");
        }
        assert_eq!(s.e.counters().dropped(DropReason::BadL4Checksum), 0);
    }
}

#[test]
fn policy_all_verifies_every_packet_both_ways() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::All);
        let results = bad_packets_of_sessions(&mut s, path);
        for (what, verdict, _) in &results {
            assert_eq!(*verdict, dropped(DropReason::BadL4Checksum), "{what}");
        }
        assert_eq!(
            s.e.counters().dropped(DropReason::BadL4Checksum),
            results.len() as u64
        );
        // Right ones pass both ways, and still come out right.
        let conn = s.establish(client(path.v6_client(), 6), (path.vip(), 80));
        s.still_flows(&conn, &format!("{path:?}"));
        let (_, out) = s.send(&conn.client(ack(C_ISN + 1, S_ISN + 1), b"x"));
        assert!(checksum_right(&out));
        let (verdict, out) = s.send(&corrupt(conn.client(syn(), b"")));
        assert_eq!(verdict, dropped(DropReason::BadL4Checksum));
        assert_eq!(out.len(), tcp(conn.c, conn.v, syn(), b"").len());
    }
}

#[test]
fn policy_off_verifies_nothing() {
    for path in PATHS {
        let mut s = every_path(ChecksumPolicy::Off);
        let c = client(path.v6_client(), 1);
        let bad_syn = corrupt(tcp(c, (path.vip(), 80), syn(), b""));
        assert!(matches!(s.verdict(&bad_syn), Verdict::ToServer { .. }));
        // Not refused as a checksum; the 6to4 translator has no checksum to
        // start from and refuses it as it always has, once its session is
        // made.
        let verdict = s.verdict(&udp_without_checksum(c, (path.vip(), 53), b"q"));
        match path {
            Path::SixToFour => assert_eq!(verdict, dropped(DropReason::BadL4Header)),
            _ => assert!(matches!(verdict, Verdict::ToServer { .. }), "{path:?}"),
        }
        assert_eq!(s.e.session_count(), 2);
        for (what, verdict, _) in bad_packets_of_sessions(&mut s, path) {
            assert!(
                matches!(verdict, Verdict::ToServer { .. } | Verdict::ToClient { .. }),
                "{what}: {verdict:?}"
            );
        }
        assert_eq!(s.e.counters().dropped(DropReason::BadL4Checksum), 0);
    }
}

#[test]
fn the_drop_reason_is_last_and_labelled() {
    assert_eq!(DropReason::BadL4Checksum.label(), "bad_l4_checksum");
    assert_eq!(DropReason::ALL.last(), Some(&DropReason::BadL4Checksum));
    assert_eq!(ChecksumPolicy::default(), ChecksumPolicy::New);
    let l = ListenerConfig::new(vip4(), 80, Protocol::Tcp, LocalPool::new(vec![lip4()]));
    assert_eq!(l.verify_checksums, ChecksumPolicy::New);
}

// ----- F: half-open sessions and a full table ---------------------------------------

const CAPACITY: u32 = 8;

/// `n` half-open sessions (SYN only), one a millisecond, oldest first.
fn half_open(s: &mut Sim, first: u16, n: u16) -> Vec<Conn> {
    (first..first + n)
        .map(|i| {
            s.advance(Duration::from_millis(1));
            s.open(client(false, i), (vip4(), 80))
        })
        .collect()
}

#[test]
fn a_full_table_of_half_open_sessions_takes_a_new_syn_in_place_of_the_oldest() {
    let mut s = one_tcp_listener(CAPACITY);
    let flood = half_open(&mut s, 0, CAPACITY as u16);
    assert_eq!(s.e.session_count(), CAPACITY);
    let real = s.open(client(false, 100), (vip4(), 80));
    assert_eq!(s.e.session_count(), CAPACITY);
    let c = *s.e.counters();
    assert_eq!((c.sessions_evicted, c.sessions_created), (1, 9));
    assert_eq!(c.dropped(DropReason::TableFull), 0);
    assert_eq!(s.e.quarantined(), 1, "the evicted tuple is held");
    s.gone(&flood[0], "the oldest");
    // The new session works, and the others are all there.
    s.answer(&real);
    s.third_ack(&real);
    s.still_flows(&real, "the new session");
    for conn in &flood[1..] {
        s.answer(conn);
    }
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    assert_eq!(s.e.poll_transmit(&mut buf), None, "eviction sends no RST");
}

/// An evicted session whose server answered gets an RST toward the server
/// (freeing its SYN_RECV entry for the tuple) instead of the quarantine,
/// so that a flood does not hold every local port for the quarantine's
/// period.
#[test]
fn an_evicted_session_the_server_answered_gets_an_rst_not_the_quarantine() {
    let mut s = one_tcp_listener(CAPACITY);
    let flood = half_open(&mut s, 0, CAPACITY as u16);
    for conn in &flood {
        s.answer(conn);
    }
    s.open(client(false, 100), (vip4(), 80));
    s.gone(&flood[0], "the oldest");
    assert_eq!(s.e.counters().sessions_evicted, 1);
    assert_eq!(s.e.quarantined(), 0, "the tuple is free at once");
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    let (len, to) = s.e.poll_transmit(&mut buf).expect("an RST to the server");
    assert_eq!(to, sent_to_server(flood[0].r.0));
    assert_eq!(
        s.e.poll_transmit(&mut buf),
        None,
        "one RST, to the server only"
    );
    assert_eq!(s.e.counters().rst_sent, 1);
    let frame = &buf[..len];
    assert!(checksum_right(frame));
    assert_eq!(endpoints(frame), (flood[0].l, flood[0].r));
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(TransportSlice::Tcp(t)) = p.transport else {
        panic!("not TCP")
    };
    assert!(t.rst() && t.ack() && !t.syn());
    // What the server expects: the client's next byte, and its own ISN + 1.
    assert_eq!(
        (t.sequence_number(), t.acknowledgment_number()),
        (C_ISN + 1, S_ISN + 1)
    );
}

/// A spoofed client never sees the SYN-ACK: an ACK it sends after its SYN
/// with any other number than the server's ISN + 1 leaves the session
/// half-open, so evictable (were it taken as established, a flood of SYN
/// and ACK pairs would fill the table for good).
#[test]
fn a_guessed_ack_leaves_a_session_evictable() {
    let mut s = one_tcp_listener(CAPACITY);
    let flood = half_open(&mut s, 0, CAPACITY as u16);
    for conn in &flood {
        s.answer(conn);
        assert_eq!(
            s.verdict(&conn.client(ack(C_ISN + 1, S_ISN + 77), b"")),
            to_server(conn.r.0)
        );
    }
    let real = s.open(client(false, 100), (vip4(), 80));
    assert_eq!(s.e.counters().sessions_evicted, 1);
    s.gone(&flood[0], "the oldest, never acknowledged right");
    s.answer(&real);
    s.third_ack(&real);
    s.still_flows(&real, "the new session");
}

/// Half-open sessions leave in the order they came, whatever their
/// session ids (a freed id is reused, lowest first, so the oldest session
/// need not have the lowest).
#[test]
fn half_open_sessions_are_evicted_oldest_first() {
    let mut s = sim(4);
    let mut l = listener(
        vip4(),
        80,
        Protocol::Tcp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    l.timeouts.close = Duration::from_secs(1);
    s.e.add_listener(l).unwrap();
    let first = half_open(&mut s, 0, 4);
    // The first one's client gives up (RST): it closes and idles out, and
    // its id is free for the next session.
    assert_eq!(
        s.verdict(&first[0].client(rst(C_ISN + 1), b"")),
        to_server(first[0].r.0)
    );
    s.advance(Duration::from_secs(1) + SWEEP);
    assert_eq!(s.e.counters().sessions_expired, 1);
    let newer = half_open(&mut s, 4, 1);
    // Oldest first: 1, 2, 3, then the newer one (which has the lowest id).
    let order = [first[1], first[2], first[3], newer[0]];
    for (k, victim) in order.iter().enumerate() {
        s.open(client(false, 10 + k as u16), (vip4(), 80));
        s.gone(victim, &format!("eviction {k}"));
        for later in &order[k + 1..] {
            assert_eq!(
                s.verdict(&later.server(synack(), b"")),
                to_client(later.c.0),
                "eviction {k}: {later:?} should stay"
            );
        }
    }
    assert_eq!(s.e.counters().sessions_evicted, 4);
}

#[test]
fn established_sessions_are_never_evicted() {
    let mut s = one_tcp_listener(CAPACITY);
    let v = (vip4(), 80);
    let established: Vec<Conn> = (0..5).map(|i| s.establish(client(false, i), v)).collect();
    let flood = half_open(&mut s, 5, 3);
    // Three SYNs take the places of the three half-open sessions.
    let newer = half_open(&mut s, 20, 3);
    for conn in &flood {
        s.gone(conn, "half-open");
    }
    assert_eq!(s.e.counters().sessions_evicted, 3);
    // Once the new ones are established too, nothing is half-open.
    for conn in &newer {
        s.answer(conn);
        s.third_ack(conn);
    }
    assert_eq!(
        s.verdict(&tcp(client(false, 30), v, syn(), b"")),
        dropped(DropReason::TableFull),
        "a table of established sessions refuses a SYN"
    );
    assert_eq!(s.e.counters().sessions_evicted, 3);
    for conn in established.iter().chain(&newer) {
        s.still_flows(conn, "established");
    }
}

#[test]
fn a_session_that_becomes_established_leaves_the_half_open_list() {
    let mut s = one_tcp_listener(CAPACITY);
    let v = (vip4(), 80);
    let oldest = s.open(client(false, 0), v);
    let flood = half_open(&mut s, 1, CAPACITY as u16 - 1);
    // The oldest completes its handshake after the flood began.
    s.answer(&oldest);
    s.third_ack(&oldest);
    s.open(client(false, 50), v);
    s.gone(&flood[0], "the oldest half-open one");
    s.still_flows(&oldest, "the oldest, established");
    // A SYN-ACK alone (no ACK from the client) leaves it half-open.
    s.answer(&flood[1]);
    s.open(client(false, 51), v);
    s.gone(&flood[1], "answered, not acknowledged");
}

#[test]
fn udp_neither_evicts_nor_is_evicted() {
    let mut s = sim(4);
    for (port, protocol) in [(80, Protocol::Tcp), (53, Protocol::Udp)] {
        let l = listener(
            vip4(),
            port,
            protocol,
            &servers4(),
            lip4(),
            ChecksumPolicy::New,
        );
        s.e.add_listener(l).unwrap();
    }
    let flood = half_open(&mut s, 0, 2);
    for i in 0..2 {
        let dgram = udp(client(false, 10 + i), (vip4(), 53), b"q");
        assert!(matches!(s.verdict(&dgram), Verdict::ToServer { .. }));
    }
    // Full: a datagram evicts no half-open TCP session...
    let dgram = udp(client(false, 20), (vip4(), 53), b"q");
    assert_eq!(s.verdict(&dgram), dropped(DropReason::TableFull));
    assert_eq!(s.e.counters().sessions_evicted, 0);
    // ...while SYNs evict the TCP ones, and then nothing more.
    half_open(&mut s, 30, 2);
    for conn in &flood {
        s.gone(conn, "half-open TCP");
    }
    for conn in half_open(&mut s, 40, 2) {
        assert_eq!(s.verdict(&conn.server(synack(), b"")), to_client(conn.c.0));
    }
    assert_eq!(s.e.counters().sessions_evicted, 4);
    for i in 0..2 {
        let dgram = udp(client(false, 10 + i), (vip4(), 53), b"again");
        assert!(matches!(s.verdict(&dgram), Verdict::ToServer { .. }));
    }
    // A table of UDP sessions refuses a SYN.
    let mut s = sim(2);
    let l = listener(
        vip4(),
        53,
        Protocol::Udp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    s.e.add_listener(l).unwrap();
    let l = listener(
        vip4(),
        80,
        Protocol::Tcp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    s.e.add_listener(l).unwrap();
    for i in 0..2 {
        let dgram = udp(client(false, i), (vip4(), 53), b"q");
        assert!(matches!(s.verdict(&dgram), Verdict::ToServer { .. }));
    }
    assert_eq!(
        s.verdict(&tcp(client(false, 5), (vip4(), 80), syn(), b"")),
        dropped(DropReason::TableFull)
    );
}

#[test]
fn a_syn_that_cannot_be_served_evicts_nothing() {
    let mut s = sim(4);
    let l = listener(
        vip4(),
        80,
        Protocol::Tcp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    s.e.add_listener(l).unwrap();
    // No live backend on port 81.
    let mut dead = listener(
        vip4(),
        81,
        Protocol::Tcp,
        &servers4()[..1],
        lip4(),
        ChecksumPolicy::New,
    );
    dead.backends[0].up = false;
    s.e.add_listener(dead).unwrap();
    // One local port on port 82, for one server: the second SYN finds it
    // taken.
    let mut narrow = listener(
        vip4(),
        82,
        Protocol::Tcp,
        &servers4()[..1],
        v4([10, 0, 0, 101]),
        ChecksumPolicy::New,
    );
    narrow.local.ports = 50000..=50000;
    s.e.add_listener(narrow).unwrap();
    s.open(client(false, 0), (vip4(), 82));
    let flood = half_open(&mut s, 1, 3);
    for (port, reason) in [
        (81, DropReason::NoBackend),
        (82, DropReason::PortsExhausted),
    ] {
        assert_eq!(
            s.verdict(&tcp(client(false, 9), (vip4(), port), syn(), b"")),
            dropped(reason)
        );
        assert_eq!(
            s.verdict(&corrupt(tcp(client(false, 9), (vip4(), 80), syn(), b""))),
            dropped(DropReason::BadL4Checksum)
        );
    }
    assert_eq!(s.e.counters().sessions_evicted, 0);
    for conn in &flood {
        assert_eq!(s.verdict(&conn.server(synack(), b"")), to_client(conn.c.0));
    }
}

#[test]
fn a_rescheduled_syn_on_a_full_table_evicts_nothing() {
    let mut s = one_tcp_listener(CAPACITY);
    let flood = half_open(&mut s, 0, CAPACITY as u16);
    s.e.set_up(0, backend_of(flood[3].r.0), false).unwrap();
    let (verdict, out) = s.send(&flood[3].client(syn(), b""));
    assert!(matches!(verdict, Verdict::ToServer { .. }));
    assert_ne!(endpoints(&out).1, flood[3].r);
    let c = *s.e.counters();
    assert_eq!((c.sessions_rescheduled, c.sessions_evicted), (1, 0));
    assert_eq!(s.e.session_count(), CAPACITY);
}

/// A listener whose half-open sessions live 5 s, closed ones 1 s.
fn short_syn_recv() -> Sim {
    let mut s = one_tcp_listener(16);
    s.e.remove_listener(0).unwrap();
    let mut l = listener(
        vip4(),
        80,
        Protocol::Tcp,
        &servers4(),
        lip4(),
        ChecksumPolicy::New,
    );
    l.timeouts = Timeouts {
        syn_recv: Duration::from_secs(5),
        close: Duration::from_secs(1),
        ..Timeouts::default()
    };
    s.e.add_listener(l).unwrap();
    s
}

#[test]
fn the_servers_syn_ack_retransmissions_do_not_keep_a_half_open_session() {
    let mut s = short_syn_recv();
    let conn = s.open(client(false, 0), (vip4(), 80));
    let syn_at = s.now;
    // The server retransmits its SYN-ACK (to a client that never
    // answers): 1, 2 and 4 s later, and once more just before the end.
    for at in [1000, 2000, 4000, 4990] {
        s.advance_to(syn_at + Duration::from_millis(at));
        s.answer(&conn);
    }
    s.advance_to(syn_at + Duration::from_millis(4999));
    assert_eq!(s.e.session_count(), 1, "still there before syn_recv");
    s.advance_to(syn_at + Duration::from_secs(5) + SWEEP);
    assert_eq!(s.e.session_count(), 0, "gone at syn_recv after the SYN");
    assert_eq!(s.e.counters().sessions_expired, 1);
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    assert_eq!(
        s.e.poll_transmit(&mut buf),
        None,
        "no RST for a half-open one"
    );
}

#[test]
fn the_clients_packets_keep_a_half_open_session_and_the_servers_rst_shortens_it() {
    let mut s = short_syn_recv();
    let conn = s.open(client(false, 0), (vip4(), 80));
    let start = s.now;
    s.advance_to(start + Duration::from_secs(3));
    s.answer(&conn);
    // The client retransmits its SYN at 3 s: syn_recv from there.
    assert_eq!(s.verdict(&conn.client(syn(), b"")), to_server(conn.r.0));
    s.advance_to(start + Duration::from_millis(7999));
    assert_eq!(s.e.session_count(), 1, "kept by the client's SYN");
    s.advance_to(start + Duration::from_secs(8) + SWEEP);
    assert_eq!(s.e.session_count(), 0);

    // The server refuses (RST): the closed session's shorter timeout
    // applies at once.
    let conn = s.open(client(false, 1), (vip4(), 80));
    let start = s.now;
    assert_eq!(
        s.verdict(&conn.server(rst(S_ISN), b"")),
        to_client(conn.c.0)
    );
    s.advance_to(start + Duration::from_secs(1) + SWEEP);
    assert_eq!(s.e.session_count(), 0, "gone at the close timeout");
    assert_eq!(s.e.counters().sessions_expired, 2);
}

/// Many half-open sessions, then as many new SYNs: each takes the place of
/// the oldest left, in order.
#[test]
fn a_large_flood_is_replaced_in_order() {
    const N: u16 = 2000;
    let mut s = one_tcp_listener(u32::from(N));
    let flood: Vec<Conn> = (0..N)
        .map(|i| {
            let c = (v4([192, 0, 3 + (i / 250) as u8, (i % 250) as u8]), 1024 + i);
            s.open(c, (vip4(), 80))
        })
        .collect();
    for (i, old) in flood.iter().enumerate() {
        let c = (
            v4([192, 0, 30 + (i / 250) as u8, (i % 250) as u8]),
            2048 + i as u16,
        );
        s.open(c, (vip4(), 80));
        s.gone(old, "in order");
        if let Some(next) = flood.get(i + 1) {
            assert_eq!(s.verdict(&next.server(synack(), b"")), to_client(next.c.0));
        }
    }
    assert_eq!(s.e.counters().sessions_evicted, u64::from(N));
    assert_eq!(s.e.session_count(), u32::from(N));
}
