//! The balancer's local-address ranges (`--lb-ranges`): the option is
//! believed only on connections from an address in one of them, so that a
//! client that reaches the real server directly cannot choose the address
//! the server sees.
//!
//! The BPF programs look them up in an LPM trie keyed by 128-bit
//! addresses, IPv4 ones as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), which is
//! also how an IPv4 peer of a dual-stack IPv6 socket appears.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Why a range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Not an address, or not `ADDRESS/PREFIX`.
    #[error("{0:?} is not an address or ADDRESS/PREFIX")]
    Syntax(String),
    /// The prefix length is above 32 (IPv4) or 128 (IPv6).
    #[error("{0:?}: the prefix length is above {1}")]
    Prefix(String, u8),
    /// Bits set after the prefix: most often a typo for the network.
    #[error("{given:?} has bits set after the prefix: did you mean {network}?")]
    HostBits {
        /// What was written.
        given: String,
        /// The network it lies in.
        network: Range,
    },
    /// No range at all: nothing would ever be believed.
    #[error("no range given: the option would never be believed")]
    Empty,
}

/// One range: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The network's first address.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl Range {
    /// The LPM trie key of this range: its prefix length over 128 bits and
    /// its address as 16 bytes (IPv4-mapped for IPv4).
    #[must_use]
    pub fn key(&self) -> (u32, [u8; 16]) {
        match self.addr {
            IpAddr::V4(a) => (96 + u32::from(self.prefix), a.to_ipv6_mapped().octets()),
            IpAddr::V6(a) => (u32::from(self.prefix), a.octets()),
        }
    }

    /// The range of an LPM trie key (the inverse of [`Range::key`]).
    #[must_use]
    pub fn from_key(prefixlen: u32, addr: [u8; 16]) -> Range {
        let v6 = Ipv6Addr::from(addr);
        match v6.to_ipv4_mapped() {
            Some(v4) if prefixlen >= 96 => Range {
                addr: IpAddr::V4(v4),
                prefix: u8::try_from(prefixlen - 96).unwrap_or(32),
            },
            _ => Range {
                addr: IpAddr::V6(v6),
                prefix: u8::try_from(prefixlen).unwrap_or(128),
            },
        }
    }

    /// Whether `ip` lies in this range (an IPv4-mapped IPv6 address counts
    /// as the IPv4 address it maps).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (len, net) = self.key();
        let ip = match ip {
            IpAddr::V4(a) => a.to_ipv6_mapped(),
            IpAddr::V6(a) => a,
        };
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        u128::from(ip) & mask == u128::from_be_bytes(net) & mask
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Range {
    type Err = RangeError;

    /// `ADDRESS/PREFIX`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Range, RangeError> {
        let syntax = || RangeError::Syntax(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| syntax())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| syntax())?,
            None => max,
        };
        if prefix > max {
            return Err(RangeError::Prefix(s.to_owned(), max));
        }
        let range = Range { addr, prefix };
        let (len, bytes) = range.key();
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        let network = u128::from_be_bytes(bytes) & mask;
        if network != u128::from_be_bytes(bytes) {
            let net6 = Ipv6Addr::from(network);
            let addr = match (addr, net6.to_ipv4_mapped()) {
                (IpAddr::V4(_), Some(v4)) => IpAddr::V4(v4),
                _ => IpAddr::V6(net6),
            };
            return Err(RangeError::HostBits {
                given: s.to_owned(),
                network: Range { addr, prefix },
            });
        }
        Ok(range)
    }
}

/// A comma-separated list of ranges, at least one.
///
/// # Errors
/// The first range refused, or [`RangeError::Empty`].
pub fn parse_list(s: &str) -> Result<Vec<Range>, RangeError> {
    let ranges = s
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(Range::from_str)
        .collect::<Result<Vec<_>, _>>()?;
    if ranges.is_empty() {
        return Err(RangeError::Empty);
    }
    Ok(ranges)
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn r(s: &str) -> Range {
        s.parse().unwrap()
    }

    #[test]
    fn parses_both_families_and_bare_addresses() {
        assert_eq!(r("10.77.0.200/31").to_string(), "10.77.0.200/31");
        assert_eq!(r(" 10.0.0.1 ").to_string(), "10.0.0.1/32");
        assert_eq!(r("fd77::/64").to_string(), "fd77::/64");
        assert_eq!(r("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(r("0.0.0.0/0").prefix, 0);
    }

    #[test]
    fn refuses_what_is_not_a_range() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0/24",
            "fd77::/x",
            "/24",
            "10.0.0.0/24/1",
        ] {
            assert!(
                matches!(bad.parse::<Range>(), Err(RangeError::Syntax(_))),
                "{bad}"
            );
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Range>(),
            Err(RangeError::Prefix("10.0.0.0/33".into(), 32))
        );
        assert_eq!(
            "fd77::/129".parse::<Range>(),
            Err(RangeError::Prefix("fd77::/129".into(), 128))
        );
        let e = "10.77.0.201/24".parse::<Range>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"10.77.0.201/24\" has bits set after the prefix: did you mean 10.77.0.0/24?"
        );
        let e = "fd77::1/64".parse::<Range>().unwrap_err();
        assert!(e.to_string().ends_with("did you mean fd77::/64?"), "{e}");
    }

    #[test]
    fn keys_map_ipv4_into_ipv6_and_back() {
        let v4 = r("10.77.0.200/31");
        let (len, addr) = v4.key();
        assert_eq!(len, 127);
        assert_eq!(
            addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 77, 0, 200]
        );
        assert_eq!(Range::from_key(len, addr), v4);
        let v6 = r("fd77::/64");
        let (len, addr) = v6.key();
        assert_eq!(len, 64);
        assert_eq!(Range::from_key(len, addr), v6);
        assert_eq!(Range::from_key(0, [0; 16]), r("::/0"));
    }

    #[test]
    fn contains_follows_the_prefix() {
        let lips = r("10.77.0.200/31");
        assert!(lips.contains("10.77.0.200".parse().unwrap()));
        assert!(lips.contains("10.77.0.201".parse().unwrap()));
        assert!(!lips.contains("10.77.0.202".parse().unwrap()));
        assert!(!lips.contains("10.77.0.10".parse().unwrap()));
        // An IPv4 peer of a dual-stack socket.
        assert!(lips.contains("::ffff:10.77.0.201".parse().unwrap()));
        assert!(!lips.contains("fd77::200".parse().unwrap()));
        assert!(r("0.0.0.0/0").contains("192.0.2.1".parse().unwrap()));
        assert!(!r("0.0.0.0/0").contains("2001:db8::1".parse().unwrap()));
        assert!(r("::/0").contains("2001:db8::1".parse().unwrap()));
        assert!(r("fd77::/64").contains("fd77::ffff".parse().unwrap()));
        assert!(!r("fd77::/64").contains("fd78::1".parse().unwrap()));
    }

    #[test]
    fn lists() {
        assert_eq!(
            parse_list("10.77.0.200/31, fd77::200/127").unwrap(),
            [r("10.77.0.200/31"), r("fd77::200/127")]
        );
        assert_eq!(parse_list(" , "), Err(RangeError::Empty));
        assert!(matches!(
            parse_list("10.0.0.0/8,nope"),
            Err(RangeError::Syntax(s)) if s == "nope"
        ));
    }
}
