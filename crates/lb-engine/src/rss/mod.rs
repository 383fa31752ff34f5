//! Receive-side scaling (RSS) as a NIC computes it, in software: the
//! Toeplitz hash ([`toeplitz`]), a NIC's configuration and the queue it
//! delivers a packet on ([`RssConfig`], [`RssConfig::queue_of`]), and the
//! RSS-aware choice of local ports ([`RssConfig::reply_ports`]): ports
//! whose reply `rip:rport -> lip:lport` the NIC delivers on the queue of
//! the engine that holds the session, so that no reply is handed off;
//! an engine's setting of that mode ([`RssSteering`]).
//!
//! Pure functions of their arguments: no I/O, no clock, no allocation
//! after [`RssConfig::new`].

mod config;
mod steer;
mod steering;
mod toeplitz;

pub use config::{FlowFields, HashFields, RssConfig, RssError, RssTuple};
pub use steer::{ReplyKey, ReplyPorts};
pub use steering::RssSteering;
pub use toeplitz::{MAX_INPUT, Toeplitz, toeplitz};

/// The 40-byte key of Microsoft's RSS verification suite ("Verifying the
/// RSS Hash Calculation"), whose vectors this module's tests pass.
pub const MICROSOFT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

#[cfg(test)]
mod test {
    //! Microsoft's RSS verification suite.
    //!
    //! Source: "Verifying the RSS Hash Calculation", Microsoft's Windows
    //! driver documentation
    //! (<https://learn.microsoft.com/windows-hardware/drivers/network/verifying-the-rss-hash-calculation>),
    //! read from its source, `windows-driver-docs-pr/network/verifying-the-rss-hash-calculation.md`
    //! in github.com/MicrosoftDocs/windows-driver-docs (commit 088014e6).
    //! Checked against a second, independent copy: DPDK's
    //! `app/test/test_thash.c` ("From 82599 Datasheet 7.1.2.8.3 RSS
    //! Verification Suite"), which lists the same key, addresses, ports
    //! and the same sixteen hashes. The tables give the destination first;
    //! the hash input is source first.
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};

    const KEY: [u8; 40] = MICROSOFT_KEY;

    /// (destination, destination port, source, source port, IPv4 only,
    /// IPv4 with TCP).
    const V4: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "161.142.100.80",
            1766,
            "66.9.149.187",
            2794,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "65.69.140.83",
            4739,
            "199.92.111.2",
            14230,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "12.22.207.184",
            38024,
            "24.19.198.95",
            12898,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "209.142.163.6",
            2217,
            "38.27.205.30",
            48228,
            0x82989176,
            0xafc7327f,
        ),
        (
            "202.188.127.2",
            1303,
            "153.39.163.191",
            44251,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    /// (destination, destination port, source, source port, IPv6 only,
    /// IPv6 with TCP).
    const V6: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:3::1",
            1766,
            "3ffe:2501:200:1fff::7",
            2794,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "ff02::1",
            4739,
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "fe80::200:f8ff:fe21:67cf",
            38024,
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    const TCP: u8 = 6;
    const UDP: u8 = 17;

    fn config(fields: HashFields) -> RssConfig {
        let all = FlowFields {
            tcp4: fields,
            udp4: fields,
            tcp6: fields,
            udp6: fields,
        };
        RssConfig::new(&KEY, &[0, 1, 2, 3], all, 4).unwrap()
    }

    #[test]
    fn microsoft_ipv4_vectors() {
        let (only, with_ports) = (
            config(HashFields::Addresses),
            config(HashFields::AddressesAndPorts),
        );
        for (dst, dport, src, sport, h2, h4) in V4 {
            let (src, dst): (Ipv4Addr, Ipv4Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            let tuple = RssTuple::new(src.into(), sport, dst.into(), dport).unwrap();
            let mut input = [0u8; 12];
            input[..4].copy_from_slice(&src.octets());
            input[4..8].copy_from_slice(&dst.octets());
            input[8..10].copy_from_slice(&sport.to_be_bytes());
            input[10..].copy_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz(&KEY, &input[..8]), h2, "{src} -> {dst}");
            assert_eq!(toeplitz(&KEY, &input), h4, "{src} -> {dst}");
            for proto in [TCP, UDP] {
                assert_eq!(only.hash(proto, &tuple), h2);
                assert_eq!(with_ports.hash(proto, &tuple), h4);
                assert_eq!(with_ports.queue_of(proto, &tuple), (h4 & 3) as u16);
            }
            // Other protocols are hashed by their addresses.
            assert_eq!(with_ports.hash(1, &tuple), h2);
        }
    }

    #[test]
    fn microsoft_ipv6_vectors() {
        let (only, with_ports) = (
            config(HashFields::Addresses),
            config(HashFields::AddressesAndPorts),
        );
        for (dst, dport, src, sport, h2, h4) in V6 {
            let (src, dst): (Ipv6Addr, Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
            let tuple = RssTuple::new(src.into(), sport, dst.into(), dport).unwrap();
            let mut input = [0u8; 36];
            input[..16].copy_from_slice(&src.octets());
            input[16..32].copy_from_slice(&dst.octets());
            input[32..34].copy_from_slice(&sport.to_be_bytes());
            input[34..].copy_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz(&KEY, &input[..32]), h2, "{src} -> {dst}");
            assert_eq!(toeplitz(&KEY, &input), h4, "{src} -> {dst}");
            for proto in [TCP, UDP] {
                assert_eq!(only.hash(proto, &tuple), h2);
                assert_eq!(with_ports.hash(proto, &tuple), h4);
            }
            assert_eq!(with_ports.hash(58, &tuple), h2);
        }
    }

    #[test]
    fn config_errors() {
        let f = FlowFields::ALL_PORTS;
        assert_eq!(
            RssConfig::new(&KEY[..39], &[0], f, 1).unwrap_err(),
            RssError::KeyTooShort {
                len: 39,
                needed: 40
            }
        );
        let addresses6 = FlowFields {
            tcp6: HashFields::Addresses,
            udp6: HashFields::Addresses,
            ..f
        };
        assert!(RssConfig::new(&KEY[..36], &[0], addresses6, 1).is_ok());
        assert_eq!(
            RssConfig::new(&KEY[..35], &[0], addresses6, 1).unwrap_err(),
            RssError::KeyTooShort {
                len: 35,
                needed: 36
            }
        );
        for len in [0, 3, 96, (1 << 16) + 1, 1 << 17] {
            assert_eq!(
                RssConfig::new(&KEY, &alloc::vec![0; len], f, 1).unwrap_err(),
                RssError::IndirectionLength(len)
            );
        }
        assert!(RssConfig::new(&KEY, &alloc::vec![0; 1 << 16], f, 1).is_ok());
        assert_eq!(
            RssConfig::new(&KEY, &[0, 1, 2, 1], f, 2).unwrap_err(),
            RssError::QueueOutOfRange {
                index: 2,
                queue: 2,
                queues: 2
            }
        );
        // A longer key (ice's 52 bytes) is fine.
        assert!(RssConfig::new(&[7; 52], &[0, 1], f, 2).is_ok());
    }

    #[test]
    fn queue_is_the_entry_at_the_low_bits() {
        let table: alloc::vec::Vec<u16> = (0..128).map(|i| (i * 7 % 3) as u16).collect();
        let c = RssConfig::new(&KEY, &table, FlowFields::ALL_PORTS, 3).unwrap();
        let (dst, dport, src, sport, _, h4) = V4[1];
        let tuple =
            RssTuple::new(src.parse().unwrap(), sport, dst.parse().unwrap(), dport).unwrap();
        assert_eq!(c.queue_of(TCP, &tuple), table[(h4 & 127) as usize]);
        assert_eq!(c.queue_of_hash(h4), table[(h4 & 127) as usize]);
        assert!(RssTuple::new(src.parse().unwrap(), 1, "::1".parse().unwrap(), 2).is_none());
    }
}
