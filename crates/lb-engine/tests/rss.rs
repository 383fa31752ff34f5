//! Properties of the multi-queue ownership functions: the port shares
//! ([`PortShare`]) and RSS-aware local ports ([`RssConfig::reply_ports`]),
//! for random keys, indirection tables, ranges and tuples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_engine::PortShare;
use lb_engine::rss::{FlowFields, HashFields, RssConfig, RssTuple};
use proptest::prelude::*;

const TCP: u8 = 6;
const UDP: u8 = 17;

fn ports() -> impl Strategy<Value = std::ops::RangeInclusive<u16>> {
    (1u16..=65535, 0u16..=65535).prop_map(|(a, b)| a.min(b.max(1))..=a.max(b.max(1)))
}

/// A NIC: a random key, a table of 2^(0..=11) entries over 1..=8 queues.
fn nic() -> impl Strategy<Value = RssConfig> {
    (
        proptest::collection::vec(any::<u8>(), 40..=52),
        1u16..=8,
        0u32..=11,
        any::<u64>(),
        any::<[bool; 4]>(),
    )
        .prop_map(|(key, queues, log, seed, ports)| {
            let mut x = seed | 1;
            let table: Vec<u16> = (0..1usize << log)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % u64::from(queues)) as u16
                })
                .collect();
            let f = |p: bool| {
                if p {
                    HashFields::AddressesAndPorts
                } else {
                    HashFields::Addresses
                }
            };
            let fields = FlowFields {
                tcp4: f(ports[0]),
                udp4: f(ports[1]),
                tcp6: f(ports[2]),
                udp6: f(ports[3]),
            };
            RssConfig::new(&key, &table, fields, queues).unwrap()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_port_is_in_exactly_one_share(count in 1u16..=16, range in ports(), port in any::<u16>()) {
        let shares: Vec<PortShare> = (0..count).map(|i| PortShare::new(i, count).unwrap()).collect();
        let owners: Vec<&PortShare> = shares.iter().filter(|s| s.owns(port)).collect();
        prop_assert_eq!(owners.len(), 1);
        prop_assert_eq!(owners[0].index(), shares[0].owner(port));
        let total: u32 = shares.iter().map(|s| s.len_in(&range)).sum();
        prop_assert_eq!(total, u32::from(range.end() - range.start()) + 1);
        for s in &shares {
            let n = s.len_in(&range);
            if n > 0 {
                let last = s.nth_in(&range, n - 1).unwrap();
                prop_assert!(s.owns(last) && range.contains(&last));
                // The share's next port is past the range.
                prop_assert!(u32::from(last) + u32::from(count) > u32::from(*range.end()));
            }
            prop_assert_eq!(s.nth_in(&range, n), None);
        }
    }

    /// Every port chosen for a queue makes the NIC deliver the reply on
    /// that queue; and a port is found whenever one exists.
    #[test]
    fn rss_aware_ports_land_on_the_queue(
        c in nic(),
        v6 in any::<bool>(),
        udp in any::<bool>(),
        rip in any::<u128>(),
        lip in any::<u128>(),
        rport in any::<u16>(),
        range in ports(),
        start in any::<u32>(),
    ) {
        let proto = if udp { UDP } else { TCP };
        let (rip, lip) = if v6 {
            (IpAddr::V6(Ipv6Addr::from(rip)), IpAddr::V6(Ipv6Addr::from(lip)))
        } else {
            (IpAddr::V4(Ipv4Addr::from(rip as u32)), IpAddr::V4(Ipv4Addr::from(lip as u32)))
        };
        let key = c.reply_key(proto, rip, rport, lip).unwrap();
        for queue in 0..c.queues() {
            let ports = c.reply_ports(&key, queue, range.clone());
            let picked = ports.pick(start, ports.len());
            if let Some((_, port)) = picked {
                prop_assert!(range.contains(&port));
                let reply = RssTuple::new(rip, rport, lip, port).unwrap();
                prop_assert_eq!(c.queue_of(proto, &reply), queue);
            }
            // Some port exists (checked over at most 4096 ports of the range)?
            let exists = range.clone().take(4096).any(|p| {
                c.queue_of(proto, &RssTuple::new(rip, rport, lip, p).unwrap()) == queue
            });
            if exists {
                prop_assert!(picked.is_some(), "queue {} has a port but none was picked", queue);
            }
            for j in (0..ports.len()).step_by(((ports.len() / 64) as usize).max(1)) {
                if let Some(port) = ports.candidate(j) {
                    let reply = RssTuple::new(rip, rport, lip, port).unwrap();
                    prop_assert_eq!(c.queue_of(proto, &reply), queue);
                }
            }
        }
    }

    /// A 6to4 session: the client's IPv6 packet arrives on a queue by the
    /// IPv6 hash; its reply from the IPv4 server is hashed as IPv4, and the
    /// port chosen with the IPv4 key brings it to the same queue.
    #[test]
    fn a_6to4_reply_is_steered_by_the_ipv4_hash(
        c in nic(),
        client in any::<u128>(),
        vip in any::<u128>(),
        cport in any::<u16>(),
        vport in any::<u16>(),
        rip in any::<u32>(),
        lip in any::<u32>(),
        rport in any::<u16>(),
        start in any::<u32>(),
    ) {
        let client = RssTuple::new(
            IpAddr::V6(Ipv6Addr::from(client)), cport, IpAddr::V6(Ipv6Addr::from(vip)), vport,
        ).unwrap();
        let queue = c.queue_of(TCP, &client);
        let (rip, lip) = (IpAddr::V4(Ipv4Addr::from(rip)), IpAddr::V4(Ipv4Addr::from(lip)));
        let key = c.reply_key(TCP, rip, rport, lip).unwrap();
        let ports = c.reply_ports(&key, queue, 1024..=65535);
        if let Some((_, port)) = ports.pick(start, ports.len()) {
            let reply = RssTuple::new(rip, rport, lip, port).unwrap();
            prop_assert!(!reply.is_v6());
            prop_assert_eq!(c.queue_of(TCP, &reply), queue);
        } else {
            // Only when no port of the range reaches the queue (the queue
            // has no table entry, or the ports are not hashed, or the key
            // leaves the entry out of reach from this reply).
            let none = (1024..=65535u16)
                .all(|p| c.queue_of(TCP, &RssTuple::new(rip, rport, lip, p).unwrap()) != queue);
            prop_assert!(none);
        }
    }
}
