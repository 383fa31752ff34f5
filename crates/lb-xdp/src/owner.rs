//! Which queue's engine owns a frame, when `lbd` runs one engine per
//! receive queue: a pure function of the frame's headers and the
//! configuration (the local addresses, the number of engines, the hash
//! seed), never a shared table, so that every queue's loop answers alike
//! without talking to the others.
//!
//! * A packet to a local address (a server's reply, FULLNAT's
//!   `RIP:rport -> LIP:lport`) belongs to the engine whose
//!   [`PortShare`] holds its destination port: each engine allocates its
//!   local ports from its own share only.
//! * A packet to any other address (the XDP program gives `lbd` only its
//!   VIPs and local addresses, so a VIP: `cip:cport -> VIP:vport`) belongs
//!   to [`client_owner`] of [`client_hash`] of the client's tuple, the
//!   engine that made its session (and allocated its local port from its
//!   own share, so both directions meet in one engine).
//! * An ICMP error is owned as the packet it quotes would be answered: an
//!   error to a local address by the quoted packet's source port (the
//!   local port), an error to a VIP by the client's tuple read from the
//!   quoted packet (`VIP:vport -> cip:cport`, the other way round).
//! * Anything else (an echo request, a fragment without ports, a frame the
//!   parser does not know) has no owner: the queue it arrived on handles
//!   it, and the engine answers or counts it as it would on one queue.
//!
//! All three families of FULLNAT are covered by the same two rules: in
//! 6to4 the client's side is IPv6 (hashed as IPv6) and the reply's side
//! IPv4 (owned by its port).
//!
//! In RSS-aware mode ([`Owners::with_rss`]) the owner of a TCP or UDP
//! packet is the queue the NIC's own RSS hash delivers it on: the engines
//! choose local ports whose replies it delivers home, so every such
//! packet arrives at its owner and nothing is handed off. An ICMP error,
//! which the NIC hashes by its addresses only, is owned by the queue on
//! which the packets of the flow it quotes arrive (the quoted packet's
//! tuple, the other way round): that one is handed off.
//!
//! [`client_hash`] is a seeded hash of `(proto, client address, client
//! port, VIP, VIP port)`, seeded with the engines' hash seed, which a
//! restart keeps with the sessions: so a restored session's client packets
//! reach the engine that holds it.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lb_engine::rss::{RssConfig, RssTuple};
use lb_engine::{PortShare, client_owner};

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERNET_LEN: usize = 14;
const IPV6_LEN: usize = 40;
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMPV4: u8 = 1;
const ICMPV6: u8 = 58;
/// The ICMP header in front of a quoted packet.
const ICMP_LEN: usize = 8;

/// What decides ownership: the engines, their seed, the local addresses.
#[derive(Debug, Clone)]
pub struct Owners {
    engines: u16,
    seed: u64,
    local: HashSet<IpAddr>,
    /// RSS-aware mode: the NIC's configuration.
    rss: Option<&'static RssConfig>,
}

/// The parts of an IP packet that ownership reads.
struct Ip<'a> {
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    /// The transport header and what follows; `None` for a fragment that
    /// is not the first.
    payload: Option<&'a [u8]>,
}

impl Owners {
    /// The owners among `engines` engines (1 or more; 0 is taken as 1),
    /// whose local addresses are `local` and whose hash seed is `seed`.
    pub fn new(engines: u16, seed: u64, local: impl IntoIterator<Item = IpAddr>) -> Owners {
        Owners {
            engines: engines.max(1),
            seed,
            local: local.into_iter().collect(),
            rss: None,
        }
    }

    /// The same owners in RSS-aware mode when `rss` (the NIC's RSS
    /// configuration, whose engines choose their ports with it) is set.
    pub fn with_rss(mut self, rss: Option<&'static RssConfig>) -> Owners {
        self.rss = rss;
        self
    }

    /// The number of engines.
    pub fn engines(&self) -> u16 {
        self.engines
    }

    /// The local addresses change (a reload).
    pub fn set_local(&mut self, local: impl IntoIterator<Item = IpAddr>) {
        self.local = local.into_iter().collect();
    }

    /// The engine that owns the Ethernet frame `frame`, or `None` when any
    /// engine may handle it (one engine only, or a frame without an
    /// owner: see the module documentation).
    pub fn of(&self, frame: &[u8]) -> Option<u16> {
        if self.engines <= 1 {
            return None;
        }
        let ip = parse_ip(frame.get(ETHERNET_LEN..)?, ethertype(frame)?)?;
        let payload = ip.payload?;
        if let Some(nic) = self.rss {
            return match ip.proto {
                TCP | UDP => {
                    let (sport, dport) = (port(payload, 0)?, port(payload, 2)?);
                    rss_queue(nic, ip.proto, ip.src, sport, ip.dst, dport)
                }
                ICMPV4 | ICMPV6 if is_error(ip.proto, payload) => {
                    // The flow the quoted packet belongs to arrives the
                    // other way round.
                    let q = self.quoted(ip.proto, payload)?;
                    let qp = q.payload?;
                    let (sport, dport) = (port(qp, 0)?, port(qp, 2)?);
                    if q.proto != TCP && q.proto != UDP {
                        return None;
                    }
                    rss_queue(nic, q.proto, q.dst, dport, q.src, sport)
                }
                _ => None,
            };
        }
        if self.local.contains(&ip.dst) {
            match ip.proto {
                TCP | UDP => Some(self.port_owner(port(payload, 2)?)),
                ICMPV4 | ICMPV6 if is_error(ip.proto, payload) => {
                    let quoted = self.quoted(ip.proto, payload)?;
                    Some(self.port_owner(port(quoted.payload?, 0)?))
                }
                _ => None,
            }
        } else {
            match ip.proto {
                TCP | UDP => {
                    let (sport, dport) = (port(payload, 0)?, port(payload, 2)?);
                    Some(self.hash_owner(ip.proto, ip.src, sport, ip.dst, dport))
                }
                ICMPV4 | ICMPV6 if is_error(ip.proto, payload) => {
                    // The quoted packet went VIP:vport -> cip:cport.
                    let q = self.quoted(ip.proto, payload)?;
                    let qp = q.payload?;
                    let (vport, cport) = (port(qp, 0)?, port(qp, 2)?);
                    (q.proto == TCP || q.proto == UDP)
                        .then(|| self.hash_owner(q.proto, q.dst, cport, q.src, vport))
                }
                _ => None,
            }
        }
    }

    fn port_owner(&self, port: u16) -> u16 {
        // `engines` is at least 1, so the share exists.
        PortShare::new(0, self.engines).map_or(0, |s| s.owner(port))
    }

    fn hash_owner(&self, proto: u8, client: IpAddr, cport: u16, vip: IpAddr, vport: u16) -> u16 {
        client_owner(
            client_hash(self.seed, proto, client, cport, vip, vport),
            self.engines,
        )
    }

    /// The packet an ICMP error quotes (of the error's own family).
    fn quoted<'a>(&self, proto: u8, icmp: &'a [u8]) -> Option<Ip<'a>> {
        let inner = icmp.get(ICMP_LEN..)?;
        if proto == ICMPV4 {
            parse_ip(inner, ETHERTYPE_IPV4)
        } else {
            parse_ip(inner, ETHERTYPE_IPV6)
        }
    }
}

/// The hash of a client's tuple that decides its engine
/// ([`client_owner`] takes its high half): the words `proto | cport |
/// vport`, then each address as 128 bits (IPv4 as its IPv4-mapped IPv6
/// form), folded with the 64-bit finaliser of MurmurHash3 from a start
/// mixed from `seed`. Pure; the same on every queue.
pub fn client_hash(
    seed: u64,
    proto: u8,
    client: IpAddr,
    cport: u16,
    vip: IpAddr,
    vport: u16,
) -> u64 {
    let bits = |a: IpAddr| match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    };
    let (c, v) = (bits(client), bits(vip));
    [
        u64::from(proto) << 32 | u64::from(cport) << 16 | u64::from(vport),
        (c >> 64) as u64,
        c as u64,
        (v >> 64) as u64,
        v as u64,
    ]
    .into_iter()
    .fold(fmix64(seed ^ 0x5bd1_e995_9e37_79b9), |h, w| {
        fmix64(h ^ w).wrapping_add(w)
    })
}

/// The queue on which `nic` delivers `src:sport -> dst:dport` of `proto`.
fn rss_queue(
    nic: &RssConfig,
    proto: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
) -> Option<u16> {
    Some(nic.queue_of(proto, &RssTuple::new(src, sport, dst, dport)?))
}

/// MurmurHash3's 64-bit finaliser: every input bit moves every output bit.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]))
}

/// The big-endian `u16` at `at`.
fn port(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([
        *bytes.get(at)?,
        *bytes.get(at.checked_add(1)?)?,
    ]))
}

fn is_error(proto: u8, icmp: &[u8]) -> bool {
    match (proto, icmp.first()) {
        // Destination unreachable, time exceeded, parameter problem.
        (ICMPV4, Some(3 | 11 | 12)) => true,
        // Destination unreachable, packet too big, time exceeded,
        // parameter problem.
        (ICMPV6, Some(1..=4)) => true,
        _ => false,
    }
}

/// The IP header at the start of `packet` (`ethertype` says which), as far
/// as ownership needs it. IPv6 extension headers are not walked: such a
/// packet has no owner.
fn parse_ip(packet: &[u8], ethertype: u16) -> Option<Ip<'_>> {
    match ethertype {
        ETHERTYPE_IPV4 => {
            let first = *packet.first()?;
            let ihl = usize::from(first & 0x0f) * 4;
            if first >> 4 != 4 || ihl < 20 {
                return None;
            }
            let fragment = port(packet, 6)? & 0x1fff;
            let addr = |at: usize| -> Option<IpAddr> {
                let b: [u8; 4] = packet.get(at..at + 4)?.try_into().ok()?;
                Some(IpAddr::V4(Ipv4Addr::from(b)))
            };
            Some(Ip {
                proto: *packet.get(9)?,
                src: addr(12)?,
                dst: addr(16)?,
                payload: if fragment == 0 {
                    Some(packet.get(ihl..)?)
                } else {
                    None
                },
            })
        }
        ETHERTYPE_IPV6 => {
            if packet.first()? >> 4 != 6 {
                return None;
            }
            let addr = |at: usize| -> Option<IpAddr> {
                let b: [u8; 16] = packet.get(at..at + 16)?.try_into().ok()?;
                Some(IpAddr::V6(Ipv6Addr::from(b)))
            };
            Some(Ip {
                proto: *packet.get(6)?,
                src: addr(8)?,
                dst: addr(24)?,
                payload: Some(packet.get(IPV6_LEN..)?),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use etherparse::PacketBuilder;

    const SEED: u64 = 0x1234_5678;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn owners(n: u16) -> Owners {
        Owners::new(n, SEED, [ip("10.77.2.1"), ip("fd77::2:1")])
    }

    fn tcp4(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (ip(src), ip(dst)) else {
            panic!()
        };
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(s.octets(), d.octets(), 64)
            .tcp(sport, dport, 1, 1000);
        let mut out = Vec::new();
        b.write(&mut out, &[]).unwrap();
        out
    }

    fn udp6(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (ip(src), ip(dst)) else {
            panic!()
        };
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6(s.octets(), d.octets(), 64)
            .udp(sport, dport);
        let mut out = Vec::new();
        b.write(&mut out, b"x").unwrap();
        out
    }

    #[test]
    fn one_engine_owns_nothing() {
        assert_eq!(
            owners(1).of(&tcp4("10.77.1.2", 4000, "10.77.0.1", 80)),
            None
        );
    }

    #[test]
    fn replies_by_local_port() {
        for n in [2u16, 3, 4] {
            let o = owners(n);
            for lport in 1024..1100u16 {
                // 4to4 / 6to4 reply, and 6to6.
                let f = tcp4("10.77.3.1", 80, "10.77.2.1", lport);
                assert_eq!(o.of(&f), Some(lport % n));
                let f = udp6("fd77::3:1", 53, "fd77::2:1", lport);
                assert_eq!(o.of(&f), Some(lport % n));
            }
        }
    }

    #[test]
    fn clients_by_hash_spread_over_every_engine() {
        let o = owners(4);
        let mut seen = [0u32; 4];
        for cport in 30000..34000u16 {
            let f = tcp4("10.77.1.2", cport, "10.77.0.1", 80);
            let owner = o.of(&f).unwrap();
            let h = client_hash(SEED, TCP, ip("10.77.1.2"), cport, ip("10.77.0.1"), 80);
            assert_eq!(owner, client_owner(h, 4));
            seen[usize::from(owner)] += 1;
            // 6to4 / 6to6 clients: IPv6 tuples.
            let f = udp6("fd77::1:2", cport, "fd77::1", 53);
            assert!(o.of(&f).unwrap() < 4);
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn icmp_errors_by_the_quoted_packet() {
        let o = owners(4);
        // A server's error about LIP:5003 -> RIP:80: owned by port 5003.
        let quoted = tcp4("10.77.2.1", 5003, "10.77.3.1", 80);
        let mut payload = vec![3, 4, 0, 0, 0, 0, 5, 0xdc];
        payload.extend_from_slice(&quoted[ETHERNET_LEN..]);
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 77, 3, 1], [10, 77, 2, 1], 64);
        let mut f = Vec::new();
        b.write(&mut f, etherparse::IpNumber(ICMPV4), &payload)
            .unwrap();
        assert_eq!(o.of(&f), Some(5003 % 4));
        // A router's error about VIP:80 -> client:40000: the client's owner.
        let quoted = tcp4("10.77.0.1", 80, "10.77.1.2", 40000);
        let mut payload = vec![3, 4, 0, 0, 0, 0, 5, 0xdc];
        payload.extend_from_slice(&quoted[ETHERNET_LEN..]);
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 77, 9, 9], [10, 77, 0, 1], 64);
        let mut f = Vec::new();
        b.write(&mut f, etherparse::IpNumber(ICMPV4), &payload)
            .unwrap();
        let client = tcp4("10.77.1.2", 40000, "10.77.0.1", 80);
        assert_eq!(o.of(&f), o.of(&client));
        // An echo request has no owner.
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 77, 9, 9], [10, 77, 0, 1], 64)
            .icmpv4_echo_request(1, 1);
        let mut f = Vec::new();
        b.write(&mut f, &[]).unwrap();
        assert_eq!(o.of(&f), None);
    }

    #[test]
    fn rss_mode_owner_is_the_nics_queue() {
        use lb_engine::rss::FlowFields;
        let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
        let table: Vec<u16> = (0..128).map(|i| i % 3).collect();
        let nic = RssConfig::new(&key, &table, FlowFields::ALL_PORTS, 3).unwrap();
        let nic: &'static RssConfig = Box::leak(Box::new(nic));
        let o = owners(3).with_rss(Some(nic));
        let queue = |src: &str, sport, dst: &str, dport| {
            let t = RssTuple::new(ip(src), sport, ip(dst), dport).unwrap();
            Some(nic.queue_of(TCP, &t))
        };
        let mut seen = [false; 3];
        for p in 30000..30100u16 {
            // Clients and replies alike, wherever the address.
            let f = tcp4("10.77.1.2", p, "10.77.0.1", 80);
            assert_eq!(o.of(&f), queue("10.77.1.2", p, "10.77.0.1", 80));
            let f = tcp4("10.77.3.1", 80, "10.77.2.1", p);
            assert_eq!(o.of(&f), queue("10.77.3.1", 80, "10.77.2.1", p));
            seen[usize::from(o.of(&f).unwrap())] = true;
            let f = udp6("fd77::3:1", 53, "fd77::2:1", p);
            let t = RssTuple::new(ip("fd77::3:1"), 53, ip("fd77::2:1"), p).unwrap();
            assert_eq!(o.of(&f), Some(nic.queue_of(UDP, &t)));
        }
        assert_eq!(seen, [true; 3]);
        // An ICMP error about LIP:5003 -> RIP:80: the queue of RIP:80 ->
        // LIP:5003.
        let quoted = tcp4("10.77.2.1", 5003, "10.77.3.1", 80);
        let mut payload = vec![3, 4, 0, 0, 0, 0, 5, 0xdc];
        payload.extend_from_slice(&quoted[ETHERNET_LEN..]);
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4([10, 77, 3, 1], [10, 77, 2, 1], 64);
        let mut f = Vec::new();
        b.write(&mut f, etherparse::IpNumber(ICMPV4), &payload)
            .unwrap();
        assert_eq!(o.of(&f), queue("10.77.3.1", 80, "10.77.2.1", 5003));
        // One engine: no owner, as without RSS.
        assert_eq!(owners(1).with_rss(Some(nic)).of(&f), None);
    }

    #[test]
    fn truncated_and_malformed_have_no_owner() {
        let o = owners(2);
        let f = tcp4("10.77.1.2", 4000, "10.77.0.1", 80);
        for len in 0..ETHERNET_LEN + 24 {
            assert_eq!(o.of(&f[..len]), None, "{len}");
        }
        let mut bad = f.clone();
        bad[ETHERNET_LEN] = 0x45 ^ 0xf0;
        assert_eq!(o.of(&bad), None);
        // A later fragment.
        let mut frag = f.clone();
        frag[ETHERNET_LEN + 7] = 1;
        assert_eq!(o.of(&frag), None);
    }
}
