//! The flow hash: one 64-bit hash of a packet's (protocol, source, source
//! port, destination, destination port) as it arrives, used for both
//! session keys and for the schedulers.
//!
//! A seeded folded multiply (the mixing step of foldhash and ahash): the
//! 128-bit product of two 64-bit words, high half xor low half. The seed is
//! configuration, so a client cannot aim collisions at the table without
//! knowing it.

use core::net::IpAddr;

const K0: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x1319_8a2e_0370_7344;
const K2: u64 = 0xa409_3822_299f_31d0;

#[inline]
fn fold_mul(x: u64, y: u64) -> u64 {
    let full = u128::from(x) * u128::from(y);
    (full as u64) ^ ((full >> 64) as u64)
}

/// Hash an IPv4 5-tuple.
#[inline(always)]
pub(crate) fn flow4(
    seed: u64,
    proto: u8,
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
) -> u64 {
    let addrs = (u64::from(u32::from_be_bytes(src)) << 32) | u64::from(u32::from_be_bytes(dst));
    let rest = (u64::from(sport) << 48) | (u64::from(dport) << 32) | u64::from(proto);
    let h = fold_mul(addrs ^ seed, rest ^ K0);
    fold_mul(h ^ K1, seed ^ K2)
}

/// Hash an IPv6 5-tuple.
#[inline]
pub(crate) fn flow6(
    seed: u64,
    proto: u8,
    src: &[u8; 16],
    sport: u16,
    dst: &[u8; 16],
    dport: u16,
) -> u64 {
    let (s, d) = (u128::from_be_bytes(*src), u128::from_be_bytes(*dst));
    let folded_s = fold_mul((s >> 64) as u64 ^ K1, s as u64 ^ seed);
    let folded_d = fold_mul((d >> 64) as u64 ^ K2, d as u64 ^ seed);
    let rest = (u64::from(sport) << 48) | (u64::from(dport) << 32) | u64::from(proto);
    fold_mul(folded_s ^ folded_d.rotate_left(29) ^ K0, rest ^ seed ^ K2)
}

/// Hash a client address alone (source affinity, Maglev by source).
#[inline]
pub(crate) fn source(seed: u64, addr: IpAddr) -> u64 {
    // The address as IPv6 (IPv4 mapped, `::ffff:a.b.c.d`), in two halves,
    // built from the IPv4 bits directly rather than through 16 bytes.
    let (high, low) = match addr {
        IpAddr::V4(v4) => (0, MAPPED | u64::from(v4.to_bits())),
        IpAddr::V6(v6) => {
            let a = v6.to_bits();
            ((a >> 64) as u64, a as u64)
        }
    };
    fold_mul(high ^ seed ^ K0, low ^ K1)
}

/// The low half of an IPv4-mapped IPv6 address without its IPv4 bits.
const MAPPED: u64 = 0xffff << 32;

#[cfg(test)]
mod test {
    use super::*;
    use core::net::Ipv4Addr;

    #[test]
    fn every_field_matters() {
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let b = Ipv4Addr::new(10, 0, 0, 2);
        let h = flow4(7, 6, a.octets(), 1000, b.octets(), 80);
        assert_ne!(h, flow4(7, 6, b.octets(), 1000, a.octets(), 80));
        assert_ne!(h, flow4(7, 17, a.octets(), 1000, b.octets(), 80));
        assert_ne!(h, flow4(7, 6, a.octets(), 1001, b.octets(), 80));
        assert_ne!(h, flow4(8, 6, a.octets(), 1000, b.octets(), 80));
    }

    /// Consecutive client ports spread over the low bits (the table index).
    #[test]
    fn source_hashes_ipv4_as_its_mapped_ipv6_address() {
        let mapped = |v4: Ipv4Addr| {
            let a = u128::from(v4.to_ipv6_mapped());
            fold_mul((a >> 64) as u64 ^ 9 ^ K0, a as u64 ^ K1)
        };
        for v4 in [
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::new(192, 0, 2, 77),
        ] {
            assert_eq!(source(9, IpAddr::V4(v4)), mapped(v4));
            assert_eq!(
                source(9, IpAddr::V4(v4)),
                source(9, IpAddr::V6(v4.to_ipv6_mapped()))
            );
        }
        let v6 = IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6));
        let a = 0x2001_0db8_0001_0002_0003_0004_0005_0006u128;
        assert_eq!(
            source(9, v6),
            fold_mul((a >> 64) as u64 ^ 9 ^ K0, a as u64 ^ K1)
        );
    }

    #[test]
    fn low_bits_spread() {
        let mut buckets = [0u32; 64];
        for port in 0..6400u16 {
            let h = flow4(1, 6, [192, 0, 2, 1], port, [198, 51, 100, 1], 80);
            buckets[(h & 63) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (60..=140).contains(&n)),
            "{buckets:?}"
        );
    }
}
