//! The `rules_*.rs` files assert the behavioural rules through
//! the public API, with etherparse-built frames on a simulated clock, for
//! what `golden.rs` (byte-exact rewrites, bad input) and `smoltcp_e2e.rs`
//! (real stacks, established idle RSTs) do not already cover; one file per
//! topic: configuration, backends, schedulers, sessions, local ports,
//! expiry, `handle_batch`.
//!
//! This module is what they share: their addresses, a small engine
//! configuration, a listener, the TCP segments of their connections, a
//! comparison of two engines and the timeouts of the TCP states. Frames,
//! parsing and the simulated world are the test kit's (`lb-testkit`),
//! imported here under the names the tests use; each file takes this
//! module whole (`use rules_common::*`), hence the allowances below.
#![allow(dead_code, unused_imports)]

pub(crate) use std::collections::{HashMap, HashSet};
pub(crate) use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
pub(crate) use std::ops::RangeInclusive;
pub(crate) use std::time::Duration;

pub(crate) use etherparse::{SlicedPacket, TransportSlice};
pub(crate) use lb_engine::{
    Affinity, BackendConfig, ConfigError, DropReason, Engine, EngineConfig, Frame, Instant,
    ListenerConfig, LocalPool, LportError, MaglevKey, Protocol, SchedError, SchedulerKind,
    Timeouts, Transmit, Verdict,
};
pub(crate) use lb_testkit::Ep;
pub(crate) use lb_testkit::frame::{
    C_ISN, S_ISN, Tcp, arp, echo, fix_ipv4_header_checksum, tcp as tcp_frame, tcp_vlan,
    udp as udp_frame,
};
pub(crate) use lb_testkit::parse::endpoints;
pub(crate) use lb_testkit::rng::Rng;
pub(crate) use lb_testkit::sim::{Conn, Sim, sent_to_client, sent_to_server, to_client, to_server};

pub(crate) const CIP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
pub(crate) const CIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11));
pub(crate) const CIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 12));
pub(crate) const VIP: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
pub(crate) const VIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
/// A VIP that no accepted configuration ever has.
pub(crate) const VIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 3));
pub(crate) const RIP1: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
pub(crate) const RIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 3));
pub(crate) const RIP3: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 4));
pub(crate) const RIP4: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5));
pub(crate) const LIP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100));
/// A local address that no accepted configuration has (until said).
pub(crate) const LIP2: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 101));
pub(crate) const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));

/// An address from its octets (or itself).
pub(crate) fn ip(a: impl Into<IpAddr>) -> IpAddr {
    a.into()
}

pub(crate) fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().unwrap())
}

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Small tables, so that every engine is cheap to make.
pub(crate) fn cfg() -> EngineConfig {
    EngineConfig {
        capacity: 1024,
        affinity_capacity: 1024,
        quarantine_capacity: 4096,
        ..EngineConfig::default()
    }
}

pub(crate) fn listener(
    vip: IpAddr,
    port: u16,
    protocol: Protocol,
    backends: &[(IpAddr, u16)],
    lips: &[IpAddr],
    ports: RangeInclusive<u16>,
) -> ListenerConfig {
    let mut local = LocalPool::new(lips.iter().map(|&a| ip(a)).collect());
    local.ports = ports;
    let mut l = ListenerConfig::new(ip(vip), port, protocol, local);
    for &(a, p) in backends {
        l.backends.push(BackendConfig::new(ip(a), p));
    }
    l
}

// ----- frames ------------------------------------------------------------

pub(crate) fn syn(seq: u32) -> Tcp {
    Tcp::syn(seq)
}

pub(crate) fn synack(seq: u32, ack: u32) -> Tcp {
    Tcp::synack(seq, ack)
}

pub(crate) fn ack(seq: u32, ack: u32) -> Tcp {
    Tcp::ack(seq, ack)
}

pub(crate) fn fin(seq: u32, ack: u32) -> Tcp {
    Tcp::fin(seq, ack)
}

pub(crate) fn rst(seq: u32) -> Tcp {
    Tcp::rst(seq)
}

pub(crate) fn echo_frame(src: IpAddr, dst: IpAddr, reply: bool) -> Vec<u8> {
    echo(src, dst, reply, 64, b"ping")
}

/// The IP bytes of an unpadded Ethernet frame.
pub(crate) fn ip_len(frame: &[u8]) -> u64 {
    (frame.len() - 14) as u64
}

// ----- the simulated world -------------------------------------------------

/// Everything two engines expose is the same.
pub(crate) fn same_everywhere(a: &Engine, b: &Engine, what: &str) {
    assert_eq!(a.counters(), b.counters(), "{what}: counters");
    assert_eq!(a.session_count(), b.session_count(), "{what}: sessions");
    assert_eq!(a.quarantined(), b.quarantined(), "{what}: quarantine");
    assert_eq!(a.poll_timeout(), b.poll_timeout(), "{what}: poll_timeout");
    for l in 0..4 {
        assert_eq!(
            a.listener_traffic(l),
            b.listener_traffic(l),
            "{what}: listener {l}"
        );
        for bk in 0..5 {
            assert_eq!(
                a.backend_traffic(l, bk),
                b.backend_traffic(l, bk),
                "{what}: listener {l} backend {bk}"
            );
        }
    }
}

/// Distinct timeouts, more than a sweep period apart.
pub(crate) fn state_timeouts() -> Timeouts {
    Timeouts {
        syn_recv: secs(5),
        close: secs(11),
        fin_wait: secs(17),
        close_wait: secs(23),
        last_ack: secs(29),
        time_wait: secs(35),
        tcp_established: secs(41),
        udp: secs(47),
    }
}
