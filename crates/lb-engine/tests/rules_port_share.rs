//! Local ports of one engine among several (`EngineConfig::port_share`):
//! every port it allocates is in its share, the exhaustion of its share is
//! the counted `ports_exhausted` drop, and a share with no port in the
//! range refuses every SYN the same way, never a crash.
//! (One of the `rules_*.rs` files: see `rules_common/mod.rs`.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod rules_common;

use lb_engine::PortShare;
use rules_common::*;

fn engine_of(share: PortShare, ports: RangeInclusive<u16>, lips: &[IpAddr]) -> Sim {
    let mut s = Sim::new(
        EngineConfig {
            port_share: share,
            ..cfg()
        },
        Instant::from_secs(100),
    );
    let l = listener(VIP, 80, Protocol::Tcp, &[(RIP1, 8080)], lips, ports);
    s.e.add_listener(l).unwrap();
    s
}

#[test]
fn every_allocated_port_is_in_the_share() {
    for count in [2u16, 3, 4] {
        for index in 0..count {
            let share = PortShare::new(index, count).unwrap();
            let mut s = engine_of(share, 20000..=29999, &[LIP]);
            let mut seen = HashSet::new();
            for i in 0..300u16 {
                let c = s.open((CIP, 1000 + i), (VIP, 80));
                assert!(share.owns(c.l.1), "{share:?} gave port {}", c.l.1);
                assert_eq!(share.owner(c.l.1), index);
                assert!((20000..=29999).contains(&c.l.1));
                assert!(seen.insert(c.l.1), "unique");
            }
            assert_eq!(s.e.counters().dropped(DropReason::PortsExhausted), 0);
        }
    }
}

#[test]
fn exhausting_a_share_is_a_counted_drop() {
    // Engine 1 of 4 owns 40001 and 40005 of 40000..=40007.
    let share = PortShare::new(1, 4).unwrap();
    let mut s = engine_of(share, 40000..=40007, &[LIP]);
    let v = (VIP, 80);
    let a = s.establish((CIP, 1000), v);
    let b = s.establish((CIP, 1001), v);
    let mut ports = [a.l.1, b.l.1];
    ports.sort_unstable();
    assert_eq!(ports, [40001, 40005]);
    for port in 2000..2010u16 {
        assert_eq!(
            s.verdict(&tcp_frame((CIP2, port), v, syn(1), b"")),
            Verdict::Drop(DropReason::PortsExhausted)
        );
    }
    assert_eq!(s.e.counters().dropped(DropReason::PortsExhausted), 10);
    assert_eq!(s.e.session_count(), 2);
    // Two LIPs double the share's tuples.
    let mut s = engine_of(share, 40000..=40007, &[LIP, RIP1_LIP2]);
    for i in 0..4u16 {
        let c = s.open((CIP, 1000 + i), v);
        assert!(share.owns(c.l.1));
    }
    assert_eq!(
        s.verdict(&tcp_frame((CIP2, 1), v, syn(1), b"")),
        Verdict::Drop(DropReason::PortsExhausted)
    );
}

/// A second local address for the two-LIP case.
const RIP1_LIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101));

#[test]
fn a_share_without_a_port_in_the_range_drops_every_syn() {
    // One port, 40000: engine 1 of 2 has none of it.
    let mut s = engine_of(PortShare::new(1, 2).unwrap(), 40000..=40000, &[LIP]);
    for port in 1..50u16 {
        assert_eq!(
            s.verdict(&tcp_frame((CIP, port), (VIP, 80), syn(1), b"")),
            Verdict::Drop(DropReason::PortsExhausted)
        );
    }
    assert_eq!(s.e.counters().dropped(DropReason::PortsExhausted), 49);
    // Engine 0 of 2 has it.
    let mut s = engine_of(PortShare::new(0, 2).unwrap(), 40000..=40000, &[LIP]);
    assert_eq!(s.open((CIP, 1), (VIP, 80)).l.1, 40000);
}

#[test]
fn the_whole_range_is_covered_by_the_shares_together() {
    // Four engines over 16 ports: each hands out its own four, and
    // together the sixteen, each once.
    let mut all = Vec::new();
    for index in 0..4u16 {
        let share = PortShare::new(index, 4).unwrap();
        let mut s = engine_of(share, 50000..=50015, &[LIP]);
        for i in 0..4u16 {
            all.push(s.open((CIP, 1000 + i), (VIP, 80)).l.1);
        }
        assert_eq!(
            s.verdict(&tcp_frame((CIP2, 9), (VIP, 80), syn(1), b"")),
            Verdict::Drop(DropReason::PortsExhausted)
        );
    }
    all.sort_unstable();
    assert_eq!(all, (50000..=50015).collect::<Vec<u16>>());
}
