//! A simulated RSS NIC in front of one engine per queue, in RSS-aware mode
//! (`EngineConfig::rss`): every frame goes to the engine of the queue that
//! the NIC's Toeplitz hash and indirection table name, as a NIC without
//! any software steering would deliver it. Over random keys (40 bytes),
//! random indirection tables and 2 to 8 engines, thousands of TCP and UDP
//! connections of each family (4to4, 6to4, whose reply is IPv4, and 6to6)
//! are made by the engine their first packet reaches, and every reply
//! (SYN-ACK, data, UDP answers) and every later client packet lands by RSS
//! on that engine: no frame would ever be handed off.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use lb_engine::rss::{FlowFields, RssConfig, RssSteering, RssTuple};
use lb_engine::{
    BackendConfig, ConfigError, DropReason, Engine, EngineConfig, Instant, ListenerConfig,
    LocalPool, PortShare, Protocol,
};
use lb_testkit::Ep;
use lb_testkit::frame::{C_ISN, S_ISN, Tcp, tcp, udp};
use lb_testkit::parse::endpoints;
use lb_testkit::rng::Rng;
use lb_testkit::sim::{Conn, Sim, to_client, to_server};

const TCP: u8 = 6;
const UDP: u8 = 17;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A NIC with a random 40-byte key and a random indirection table over
/// `queues` queues, hashing addresses and ports of TCP and UDP.
fn random_nic(rng: &mut Rng, queues: u16) -> &'static RssConfig {
    let key: Vec<u8> = (0..40).map(|_| rng.next_u64() as u8).collect();
    let len = [64usize, 128, 256, 512][rng.below(4) as usize];
    let table: Vec<u16> = (0..len)
        .map(|_| rng.below(u64::from(queues)) as u16)
        .collect();
    let nic = RssConfig::new(&key, &table, FlowFields::ALL_PORTS, queues).unwrap();
    Box::leak(Box::new(nic))
}

/// The queue on which `nic` delivers a TCP or UDP frame.
fn queue_of(nic: &RssConfig, proto: u8, frame: &[u8]) -> usize {
    let ((src, sport), (dst, dport)) = endpoints(frame);
    let tuple = RssTuple::new(src, sport, dst, dport).unwrap();
    usize::from(nic.queue_of(proto, &tuple))
}

/// One engine per queue of `nic`, each in RSS-aware mode, each with a TCP
/// and a UDP listener on `vip` to `rip` through `lips`.
fn engines(nic: &'static RssConfig, vip: IpAddr, rip: IpAddr, lips: &[IpAddr]) -> Vec<Sim> {
    (0..nic.queues())
        .map(|queue| {
            let config = EngineConfig {
                capacity: 8192,
                affinity_capacity: 64,
                quarantine_capacity: 8192,
                hash_seed: 0x5eed,
                rss: Some(RssSteering { config: nic, queue }),
                ..EngineConfig::default()
            };
            let mut s = Sim::new(config, Instant::from_secs(10));
            for protocol in [Protocol::Tcp, Protocol::Udp] {
                let mut l = ListenerConfig::new(vip, 80, protocol, LocalPool::new(lips.to_vec()));
                l.backends.push(BackendConfig::new(rip, 8080));
                s.e.add_listener(l).unwrap();
            }
            s
        })
        .collect()
}

#[test]
fn every_reply_lands_on_the_engine_that_holds_its_session() {
    let families = [
        (
            "4to4",
            "10.77.1.10",
            "10.77.0.100",
            "10.77.0.11",
            ["10.77.0.200", "10.77.0.201"],
        ),
        (
            "6to4",
            "fd77::10",
            "fd77::100",
            "10.77.0.11",
            ["10.77.0.200", "10.77.0.201"],
        ),
        (
            "6to6",
            "fd77::10",
            "fd77::100",
            "fd77::11",
            ["fd77::200", "fd77::201"],
        ),
    ];
    let mut rng = Rng::new(15);
    let mut connections = 0u32;
    for round in 0..4 {
        for (family, cip, vip, rip, lips) in families {
            let queues = 2 + rng.below(7) as u16;
            let nic = random_nic(&mut rng, queues);
            let (cip, vip, rip) = (ip(cip), ip(vip), ip(rip));
            // One LIP in the first rounds, two after.
            let lips: Vec<IpAddr> = lips.iter().take(1 + round / 2).map(|a| ip(a)).collect();
            let mut sims = engines(nic, vip, rip, &lips);
            let mut made = vec![0u32; usize::from(queues)];
            let what = |s: &str| format!("{family}, {queues} queues, round {round}: {s}");
            for cport in 20_000..20_500u16 {
                let (c, v): (Ep, Ep) = ((cip, cport), (vip, 80));
                // TCP: the handshake and data both ways.
                let syn = tcp(c, v, Tcp::syn(C_ISN), b"");
                let q = queue_of(nic, TCP, &syn);
                made[q] += 1;
                let (verdict, out) = sims[q].send(&syn);
                assert_eq!(verdict, to_server(rip), "{}", what("SYN"));
                let (l, r) = endpoints(&out);
                let conn = Conn { c, v, l, r };
                let synack = conn.server(Tcp::synack(S_ISN, C_ISN + 1), b"");
                assert_eq!(queue_of(nic, TCP, &synack), q, "{}", what("SYN-ACK"));
                assert_eq!(
                    sims[q].verdict(&synack),
                    to_client(cip),
                    "{}",
                    what("SYN-ACK")
                );
                let ack = conn.client(Tcp::ack(C_ISN + 1, S_ISN + 1), b"hello");
                assert_eq!(queue_of(nic, TCP, &ack), q);
                assert_eq!(sims[q].verdict(&ack), to_server(rip), "{}", what("ACK"));
                let data = conn.server(Tcp::ack(S_ISN + 1, C_ISN + 6), b"world");
                assert_eq!(queue_of(nic, TCP, &data), q, "{}", what("data"));
                assert_eq!(sims[q].verdict(&data), to_client(cip), "{}", what("data"));
                // UDP: a datagram and its answer.
                let d = udp(c, v, b"ping");
                let q = queue_of(nic, UDP, &d);
                let (verdict, out) = sims[q].send(&d);
                assert_eq!(verdict, to_server(rip), "{}", what("UDP"));
                let (l, r) = endpoints(&out);
                let answer = udp(r, l, b"pong");
                assert_eq!(queue_of(nic, UDP, &answer), q, "{}", what("UDP answer"));
                assert_eq!(
                    sims[q].verdict(&answer),
                    to_client(cip),
                    "{}",
                    what("UDP answer")
                );
                connections += 2;
            }
            let sessions: u32 = sims.iter().map(|s| s.e.session_count()).sum();
            assert_eq!(sessions, 1000, "{}", what("sessions"));
            for s in &sims {
                assert_eq!(s.e.counters().dropped_total(), 0, "{}", what("drops"));
            }
            // The NIC spreads the clients; each queue the table names made
            // some of the sessions.
            for (queue, &k) in made.iter().enumerate() {
                let named = nic.indirection().contains(&(queue as u16));
                assert!(!named || k > 0, "{}", what(&format!("{made:?}")));
            }
        }
    }
    assert_eq!(connections, 12_000);
}

#[test]
fn rss_steering_takes_all_ports_and_a_served_queue() {
    let mut rng = Rng::new(3);
    let nic = random_nic(&mut rng, 4);
    let steering = |queue| Some(RssSteering { config: nic, queue });
    let refused = |port_share, queue| {
        Engine::new(EngineConfig {
            port_share,
            rss: steering(queue),
            ..EngineConfig::default()
        })
        .err()
    };
    assert_eq!(
        refused(PortShare::new(1, 4).unwrap(), 1),
        Some(ConfigError::BadRssSteering {
            queue: 1,
            queues: 4,
            share: 1,
            shares: 4
        })
    );
    assert_eq!(
        refused(PortShare::ALL, 4),
        Some(ConfigError::BadRssSteering {
            queue: 4,
            queues: 4,
            share: 0,
            shares: 1
        })
    );
    assert_eq!(refused(PortShare::ALL, 3), None);
}

#[test]
fn exhaustion_of_a_queues_ports_is_a_counted_drop() {
    // A range of 64 ports: about 16 of them steer replies to each of 4
    // queues. Sessions fill a queue's ports; then SYNs are dropped and
    // counted, and nothing else breaks.
    let mut rng = Rng::new(9);
    let nic = random_nic(&mut rng, 4);
    let (cip, vip, rip, lip) = (
        ip("10.77.1.10"),
        ip("10.77.0.100"),
        ip("10.77.0.11"),
        ip("10.77.0.200"),
    );
    let config = EngineConfig {
        capacity: 1024,
        quarantine_capacity: 1024,
        rss: Some(RssSteering {
            config: nic,
            queue: 2,
        }),
        ..EngineConfig::default()
    };
    let mut s = Sim::new(config, Instant::from_secs(10));
    let pool = LocalPool {
        addresses: vec![lip],
        ports: 40_000..=40_063,
    };
    let mut l = ListenerConfig::new(vip, 80, Protocol::Tcp, pool);
    l.backends.push(BackendConfig::new(rip, 8080));
    s.e.add_listener(l).unwrap();
    let key = nic.reply_key(TCP, rip, 8080, lip).unwrap();
    let mine: Vec<u16> = (40_000..=40_063u16)
        .filter(|&p| nic.reply_queue(&key, p) == 2)
        .collect();
    let mut ports = Vec::new();
    for cport in 1000..1200u16 {
        let (verdict, out) = s.send(&tcp((cip, cport), (vip, 80), Tcp::syn(C_ISN), b""));
        if verdict == to_server(rip) {
            let (l, _) = endpoints(&out);
            assert!(mine.contains(&l.1), "port {} steers elsewhere", l.1);
            ports.push(l.1);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    assert!(!ports.is_empty() && ports.len() <= mine.len());
    let dropped = s.e.counters().dropped(DropReason::PortsExhausted);
    assert_eq!(dropped, 200 - ports.len() as u64);
    assert_eq!(s.e.session_count() as usize, ports.len());
}
