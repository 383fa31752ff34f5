//! Who owns a packet when one engine runs per receive queue: a pure
//! function of its headers and the configuration, never a shared table.
//!
//! * A reply to a local address belongs to the engine whose share of the
//!   local ports holds its destination port ([`PortShare`]): each engine
//!   allocates only from its own share. In RSS-aware mode the share is
//!   every port, and the engine takes only ports whose reply the NIC
//!   delivers on its queue ([`crate::rss::RssConfig::reply_ports`]); the
//!   owner of a reply is then the queue the NIC's hash names.
//! * A client packet to a VIP belongs to the engine that [`client_owner`]
//!   names from the flow hash of the client's tuple (hand-off mode), or to
//!   the queue the NIC's own hash names (RSS-aware mode).
//!
//! # The shares
//!
//! Engine `i` of `n` owns the ports `p` with `p % n == i`, whatever the
//! pool's range: every port belongs to exactly one engine, a reply's owner
//! is known from its port alone, a reload that changes the range moves no
//! live session to another engine, and with `n` a power of two the share
//! is a mask of the port's low bits, which a NIC's flow-steering rule
//! (`ethtool -N ... dst-port P m MASK action Q`) can match.

use core::ops::RangeInclusive;

/// The local ports of one engine among several: those whose remainder by
/// the number of engines is its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortShare {
    index: u16,
    count: u16,
}

/// Why a [`PortShare`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShareError {
    /// No engine, or an index not below the count.
    #[error("engine {index} of {count}: the index must be below the count")]
    Index {
        /// The engine's index.
        index: u16,
        /// Engines.
        count: u16,
    },
}

impl PortShare {
    /// Every port: the only engine's share (and RSS-aware mode's).
    pub const ALL: PortShare = PortShare { index: 0, count: 1 };

    /// Engine `index`'s share of `count` engines.
    pub fn new(index: u16, count: u16) -> Result<PortShare, ShareError> {
        if index >= count {
            return Err(ShareError::Index { index, count });
        }
        Ok(PortShare { index, count })
    }

    /// The engine's index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// The number of engines.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The engine, of this share's count, that owns `port`.
    #[inline]
    pub fn owner(&self, port: u16) -> u16 {
        port % self.count
    }

    /// Whether `port` is in this share.
    #[inline]
    pub fn owns(&self, port: u16) -> bool {
        self.owner(port) == self.index
    }

    /// The first port of the share at or after `port`, if any.
    fn first_from(&self, port: u16) -> Option<u16> {
        let (index, count) = (u32::from(self.index), u32::from(self.count));
        let ahead = (index + count - u32::from(port) % count) % count;
        u16::try_from(u32::from(port) + ahead).ok()
    }

    /// How many ports of `ports` are in the share.
    pub fn len_in(&self, ports: &RangeInclusive<u16>) -> u32 {
        match self.first_from(*ports.start()) {
            Some(first) if first <= *ports.end() => {
                u32::from(ports.end() - first) / u32::from(self.count) + 1
            }
            _ => 0,
        }
    }

    /// The `k`-th port (from 0, increasing) of the share in `ports`, if
    /// there are more than `k`: what an allocator walks instead of
    /// `start + k`.
    #[inline]
    pub fn nth_in(&self, ports: &RangeInclusive<u16>, k: u32) -> Option<u16> {
        let first = self.first_from(*ports.start())?;
        let port = u32::from(first).checked_add(k.checked_mul(u32::from(self.count))?)?;
        u16::try_from(port).ok().filter(|p| p <= ports.end())
    }

    /// The share's ports in `ports`, increasing.
    pub fn iter_in(&self, ports: &RangeInclusive<u16>) -> impl Iterator<Item = u16> + use<> {
        let end = *ports.end();
        let first = self.first_from(*ports.start()).filter(|&f| f <= end);
        let step = usize::from(self.count);
        first.into_iter().flat_map(move |f| (f..=end).step_by(step))
    }
}

/// The engine, of `engines` (at least 1), that owns a client's packet
/// whose flow hash (`crate::hash::flow4` / `flow6` of its tuple as it
/// arrives, with the seed that every engine shares) is `flow_hash`.
///
/// Takes the hash's high half to a range (multiply and shift, no
/// division): the session table indexes by the low bits, which would
/// otherwise be the same for every flow of one engine.
#[inline]
pub fn client_owner(flow_hash: u64, engines: u16) -> u16 {
    (((flow_hash >> 32) * u64::from(engines)) >> 32) as u16
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn every_port_in_exactly_one_share() {
        for count in [1u16, 2, 3, 4, 7, 8, 64, 40_000, u16::MAX] {
            let shares: Vec<PortShare> = (0..count)
                .map(|i| PortShare::new(i, count).unwrap())
                .collect();
            for ports in [
                1024..=65535u16,
                1..=1,
                5000..=5007,
                65530..=65535,
                1..=65535,
            ] {
                let mut seen = alloc::vec![0u8; 65536];
                for s in &shares {
                    let listed: Vec<u16> = s.iter_in(&ports).collect();
                    assert_eq!(listed.len() as u32, s.len_in(&ports), "{s:?} {ports:?}");
                    for (k, &p) in listed.iter().enumerate() {
                        assert!(s.owns(p));
                        assert_eq!(s.owner(p), s.index());
                        assert_eq!(s.nth_in(&ports, k as u32), Some(p));
                        seen[usize::from(p)] += 1;
                    }
                    assert_eq!(s.nth_in(&ports, listed.len() as u32), None);
                    assert_eq!(s.nth_in(&ports, u32::MAX), None);
                }
                for p in 0..=65535u16 {
                    let expected = u8::from(ports.contains(&p));
                    assert_eq!(seen[usize::from(p)], expected, "port {p}, {count} engines");
                }
            }
        }
    }

    #[test]
    fn share_errors() {
        assert_eq!(
            PortShare::new(0, 0),
            Err(ShareError::Index { index: 0, count: 0 })
        );
        assert_eq!(
            PortShare::new(4, 4),
            Err(ShareError::Index { index: 4, count: 4 })
        );
        assert_eq!(PortShare::new(0, 1), Ok(PortShare::ALL));
    }

    #[test]
    fn client_owner_is_in_range_and_even() {
        for engines in [1u16, 2, 3, 4, 16] {
            let mut counts = alloc::vec![0u32; usize::from(engines)];
            for port in 0..20_000u16 {
                let h = crate::hash::flow4(9, 6, [192, 0, 2, 1], port, [198, 51, 100, 1], 80);
                let owner = client_owner(h, engines);
                assert!(owner < engines);
                counts[usize::from(owner)] += 1;
            }
            let mean = 20_000 / u32::from(engines);
            assert!(
                counts
                    .iter()
                    .all(|&n| n > mean * 9 / 10 && n < mean * 11 / 10),
                "{counts:?}"
            );
        }
        assert_eq!(client_owner(u64::MAX, 4), 3);
        assert_eq!(client_owner(0, 4), 0);
        assert_eq!(client_owner(u64::MAX, u16::MAX), u16::MAX - 1);
    }
}
