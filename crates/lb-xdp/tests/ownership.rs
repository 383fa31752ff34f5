//! One engine per queue, in memory: engines with their port shares, and
//! every frame given to the engine that [`Owners::of`] names, whatever
//! queue a NIC would have put it on. Over many connections of each family
//! (4to4, 6to4, 6to6) and 2 to 4 engines, every handshake completes in the
//! engine that made its session: each server reply and each later client
//! segment is owned by that engine, never by another. In RSS-aware mode
//! (a simulated NIC with a random key and table), every frame's owner is
//! the queue the NIC delivers it on: the loop hands nothing off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use lb_engine::rss::{FlowFields, RssConfig, RssSteering, RssTuple};
use lb_engine::{
    BackendConfig, EngineConfig, Instant, ListenerConfig, LocalPool, PortShare, Protocol,
};
use lb_testkit::frame::{C_ISN, S_ISN, Tcp, tcp};
use lb_testkit::parse::endpoints;
use lb_testkit::sim::{Conn, Sim, to_client, to_server};
use lb_xdp::owner::Owners;

const SEED: u64 = 0x0dd_ba11;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// `engines` engines, each with its share, all with one listener on
/// `vip`:80 to `rip`:8080 through `lips`.
fn engines(engines: u16, vip: IpAddr, rip: IpAddr, lips: &[IpAddr]) -> Vec<Sim> {
    (0..engines)
        .map(|i| {
            let config = EngineConfig {
                capacity: 4096,
                affinity_capacity: 64,
                quarantine_capacity: 4096,
                hash_seed: SEED,
                port_share: PortShare::new(i, engines).unwrap(),
                ..EngineConfig::default()
            };
            let mut s = Sim::new(config, Instant::from_secs(10));
            let mut l = ListenerConfig::new(vip, 80, Protocol::Tcp, LocalPool::new(lips.to_vec()));
            l.backends.push(BackendConfig::new(rip, 8080));
            s.e.add_listener(l).unwrap();
            s
        })
        .collect()
}

#[test]
fn every_handshake_stays_in_the_engine_that_owns_it() {
    let families = [
        (
            "4to4",
            "10.77.1.10",
            "10.77.0.100",
            "10.77.0.11",
            "10.77.0.200",
        ),
        ("6to4", "fd77::10", "fd77::100", "10.77.0.11", "10.77.0.200"),
        ("6to6", "fd77::10", "fd77::100", "fd77::11", "fd77::200"),
    ];
    for (family, cip, vip, rip, lip) in families {
        let (cip, vip, rip, lip) = (ip(cip), ip(vip), ip(rip), ip(lip));
        for n in [2u16, 3, 4] {
            let mut sims = engines(n, vip, rip, &[lip]);
            let owners = Owners::new(n, SEED, [lip]);
            let mut per_engine = vec![0u32; usize::from(n)];
            for cport in 20_000..20_600u16 {
                let c = (cip, cport);
                let v = (vip, 80);
                let syn = tcp(c, v, Tcp::syn(C_ISN), b"");
                let e = usize::from(owners.of(&syn).unwrap());
                per_engine[e] += 1;
                let (verdict, out) = sims[e].send(&syn);
                assert_eq!(verdict, to_server(rip), "{family}: SYN");
                let (l, r) = endpoints(&out);
                assert_eq!(PortShare::new(0, n).unwrap().owner(l.1), e as u16);
                let conn = Conn { c, v, l, r };
                let synack = conn.server(Tcp::synack(S_ISN, C_ISN + 1), b"");
                assert_eq!(owners.of(&synack), Some(e as u16), "{family}: SYN-ACK");
                assert_eq!(
                    sims[e].verdict(&synack),
                    to_client(cip),
                    "{family}: SYN-ACK"
                );
                let ack = conn.client(Tcp::ack(C_ISN + 1, S_ISN + 1), b"");
                assert_eq!(owners.of(&ack), Some(e as u16), "{family}: ACK");
                assert_eq!(sims[e].verdict(&ack), to_server(rip), "{family}: ACK");
            }
            assert!(
                per_engine.iter().all(|&k| k > 600 / u32::from(n) / 2),
                "{family}, {n} engines: {per_engine:?}"
            );
            let sessions: u32 = sims.iter().map(|s| s.e.session_count()).sum();
            assert_eq!(sessions, 600, "{family}, {n} engines");
        }
    }
}

#[test]
fn in_rss_mode_every_frame_is_owned_by_the_queue_it_arrives_on() {
    let mut rng = lb_testkit::rng::Rng::new(42);
    let families = [
        (
            "4to4",
            "10.77.1.10",
            "10.77.0.100",
            "10.77.0.11",
            "10.77.0.200",
        ),
        ("6to4", "fd77::10", "fd77::100", "10.77.0.11", "10.77.0.200"),
        ("6to6", "fd77::10", "fd77::100", "fd77::11", "fd77::200"),
    ];
    for (family, cip, vip, rip, lip) in families {
        let (cip, vip, rip, lip) = (ip(cip), ip(vip), ip(rip), ip(lip));
        for n in [2u16, 3, 4, 8] {
            let key: Vec<u8> = (0..40).map(|_| rng.next_u64() as u8).collect();
            let table: Vec<u16> = (0..128).map(|_| rng.below(u64::from(n)) as u16).collect();
            let nic = RssConfig::new(&key, &table, FlowFields::ALL_PORTS, n).unwrap();
            let nic: &'static RssConfig = Box::leak(Box::new(nic));
            // The queue the NIC delivers a TCP frame on.
            let arrives = |frame: &[u8]| {
                let ((s, sp), (d, dp)) = endpoints(frame);
                nic.queue_of(6, &RssTuple::new(s, sp, d, dp).unwrap())
            };
            let owners = Owners::new(n, SEED, [lip]).with_rss(Some(nic));
            let mut sims: Vec<Sim> = (0..n)
                .map(|queue| {
                    let config = EngineConfig {
                        capacity: 4096,
                        affinity_capacity: 64,
                        quarantine_capacity: 4096,
                        hash_seed: SEED,
                        rss: Some(RssSteering { config: nic, queue }),
                        ..EngineConfig::default()
                    };
                    let mut s = Sim::new(config, Instant::from_secs(10));
                    let mut l =
                        ListenerConfig::new(vip, 80, Protocol::Tcp, LocalPool::new(vec![lip]));
                    l.backends.push(BackendConfig::new(rip, 8080));
                    s.e.add_listener(l).unwrap();
                    s
                })
                .collect();
            for cport in 20_000..20_300u16 {
                let (c, v) = ((cip, cport), (vip, 80));
                let syn = tcp(c, v, Tcp::syn(C_ISN), b"");
                let q = arrives(&syn);
                assert_eq!(owners.of(&syn), Some(q), "{family}: SYN");
                let (verdict, out) = sims[usize::from(q)].send(&syn);
                assert_eq!(verdict, to_server(rip), "{family}: SYN");
                let (l, r) = endpoints(&out);
                let conn = Conn { c, v, l, r };
                let synack = conn.server(Tcp::synack(S_ISN, C_ISN + 1), b"");
                assert_eq!(arrives(&synack), q, "{family}, {n} queues: SYN-ACK");
                assert_eq!(owners.of(&synack), Some(q), "{family}: SYN-ACK");
                assert_eq!(sims[usize::from(q)].verdict(&synack), to_client(cip));
                let ack = conn.client(Tcp::ack(C_ISN + 1, S_ISN + 1), b"");
                assert_eq!(owners.of(&ack), Some(q), "{family}: ACK");
                assert_eq!(sims[usize::from(q)].verdict(&ack), to_server(rip));
            }
            let sessions: u32 = sims.iter().map(|s| s.e.session_count()).sum();
            assert_eq!(sessions, 300, "{family}, {n} queues");
        }
    }
}
