//! A NIC's RSS configuration ([`RssConfig`]: the Toeplitz key, the
//! indirection table and the fields hashed per flow type), the tuple it
//! hashes ([`RssTuple`]) and the queue it chooses ([`RssConfig::queue_of`]).
//!
//! The input is the packet's source address, destination address, source
//! port and destination port, in that order, each in network byte order
//! (Microsoft's RSS specification, "RSS Hashing Functions"); without the
//! ports when the flow type hashes addresses only. Packets other than TCP
//! and UDP (ICMP) are hashed by their addresses, as NICs hash their `ip4`
//! and `ip6` flow types.
//!
//! The queue is the indirection table's entry at the hash's low bits: the
//! table's length must be a power of two (as every NIC's we know is; a
//! table of another length is refused rather than guessed at).

use alloc::vec::Vec;
use core::net::IpAddr;

use super::steer::{Solver, Targets, solvers};
use super::toeplitz::{MAX_INPUT, Toeplitz};

/// IP protocol numbers.
const TCP: u8 = 6;
const UDP: u8 = 17;

/// Which fields a NIC hashes for one flow type (`ethtool -n IF
/// rx-flow-hash tcp4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashFields {
    /// Source and destination address (`ethtool`'s `sd`).
    Addresses,
    /// Source and destination address, source and destination port
    /// (`sdfn`).
    AddressesAndPorts,
}

/// The fields hashed for each flow type that RSS-aware mode depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowFields {
    /// TCP over IPv4.
    pub tcp4: HashFields,
    /// UDP over IPv4.
    pub udp4: HashFields,
    /// TCP over IPv6.
    pub tcp6: HashFields,
    /// UDP over IPv6.
    pub udp6: HashFields,
}

impl FlowFields {
    /// Addresses and ports for every flow type.
    pub const ALL_PORTS: FlowFields = FlowFields {
        tcp4: HashFields::AddressesAndPorts,
        udp4: HashFields::AddressesAndPorts,
        tcp6: HashFields::AddressesAndPorts,
        udp6: HashFields::AddressesAndPorts,
    };

    /// The fields hashed for protocol `proto` over IPv6 (`v6`) or IPv4.
    pub fn of(&self, proto: u8, v6: bool) -> HashFields {
        match (proto, v6) {
            (TCP, false) => self.tcp4,
            (UDP, false) => self.udp4,
            (TCP, true) => self.tcp6,
            (UDP, true) => self.udp6,
            _ => HashFields::Addresses,
        }
    }
}

/// The fields of a packet that RSS hashes, as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RssTuple {
    /// An IPv4 packet.
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
        /// Source port (0 without one).
        sport: u16,
        /// Destination port (0 without one).
        dport: u16,
    },
    /// An IPv6 packet.
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
        /// Source port (0 without one).
        sport: u16,
        /// Destination port (0 without one).
        dport: u16,
    },
}

impl RssTuple {
    /// The tuple of `src:sport -> dst:dport`, or `None` when the two
    /// addresses are of different families.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Option<RssTuple> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Some(RssTuple::V4 {
                src: s.octets(),
                dst: d.octets(),
                sport,
                dport,
            }),
            (IpAddr::V6(s), IpAddr::V6(d)) => Some(RssTuple::V6 {
                src: s.octets(),
                dst: d.octets(),
                sport,
                dport,
            }),
            _ => None,
        }
    }

    /// Whether this is an IPv6 tuple.
    pub fn is_v6(&self) -> bool {
        matches!(self, RssTuple::V6 { .. })
    }

    /// The hash input: the bytes and how many of them are used.
    pub fn input(&self, fields: HashFields) -> ([u8; MAX_INPUT], usize) {
        let mut input = [0u8; MAX_INPUT];
        let (addresses, sport, dport) = match self {
            RssTuple::V4 {
                src,
                dst,
                sport,
                dport,
            } => {
                put(&mut input, 0, src);
                put(&mut input, 4, dst);
                (8, sport, dport)
            }
            RssTuple::V6 {
                src,
                dst,
                sport,
                dport,
            } => {
                put(&mut input, 0, src);
                put(&mut input, 16, dst);
                (32, sport, dport)
            }
        };
        match fields {
            HashFields::Addresses => (input, addresses),
            HashFields::AddressesAndPorts => {
                put(&mut input, addresses, &sport.to_be_bytes());
                put(&mut input, addresses + 2, &dport.to_be_bytes());
                (input, addresses + 4)
            }
        }
    }
}

/// Copies `bytes` into `input` at `at` (bytes past its end are dropped).
fn put(input: &mut [u8; MAX_INPUT], at: usize, bytes: &[u8]) {
    for (slot, &b) in input.iter_mut().skip(at).zip(bytes) {
        *slot = b;
    }
}

/// Why an [`RssConfig`] was refused (the interface then runs in hand-off
/// mode).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RssError {
    /// The key is shorter than the longest input hashed plus 4 bytes.
    #[error("the RSS key has {len} bytes; the hashed fields need {needed}")]
    KeyTooShort {
        /// Bytes in the key.
        len: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// The indirection table is empty, longer than 65536 entries or not a
    /// power of two long.
    #[error("the RSS indirection table has {0} entries; a power of two up to 65536 is needed")]
    IndirectionLength(usize),
    /// An entry names a queue that is not served.
    #[error("RSS indirection entry {index} names queue {queue}; only {queues} are served")]
    QueueOutOfRange {
        /// The entry's position.
        index: usize,
        /// The queue it names.
        queue: u16,
        /// Queues served.
        queues: u16,
    },
}

/// A NIC's RSS configuration, checked, with its Toeplitz tables.
#[derive(Debug, Clone)]
pub struct RssConfig {
    pub(super) toeplitz: Toeplitz,
    pub(super) indirection: Vec<u16>,
    /// `indirection.len() - 1`.
    pub(super) mask: u32,
    pub(super) fields: FlowFields,
    pub(super) queues: u16,
    /// The local-port steering of IPv4 and of IPv6 replies.
    pub(super) solvers: [Solver; 2],
    /// The table indices of each queue.
    pub(super) targets: Targets,
}

impl RssConfig {
    /// The configuration of a NIC whose key is `key`, whose indirection
    /// table is `indirection` (a queue per entry) and which hashes
    /// `fields`, for engines on queues `0..queues`.
    pub fn new(
        key: &[u8],
        indirection: &[u16],
        fields: FlowFields,
        queues: u16,
    ) -> Result<RssConfig, RssError> {
        let ports6 = [fields.tcp6, fields.udp6].contains(&HashFields::AddressesAndPorts);
        let needed = if ports6 { 40 } else { 36 };
        if key.len() < needed {
            return Err(RssError::KeyTooShort {
                len: key.len(),
                needed,
            });
        }
        let len = indirection.len();
        if len == 0 || len > 1 << 16 || !len.is_power_of_two() {
            return Err(RssError::IndirectionLength(len));
        }
        if let Some((index, &queue)) = indirection.iter().enumerate().find(|&(_, &q)| q >= queues) {
            return Err(RssError::QueueOutOfRange {
                index,
                queue,
                queues,
            });
        }
        let toeplitz = Toeplitz::new(key);
        let mask = (len - 1) as u32;
        Ok(RssConfig {
            solvers: solvers(&toeplitz, mask),
            targets: Targets::new(indirection, queues),
            toeplitz,
            indirection: indirection.to_vec(),
            mask,
            fields,
            queues,
        })
    }

    /// The fields hashed per flow type.
    pub fn fields(&self) -> FlowFields {
        self.fields
    }

    /// The queues served (every indirection entry is below it).
    pub fn queues(&self) -> u16 {
        self.queues
    }

    /// The indirection table.
    pub fn indirection(&self) -> &[u16] {
        &self.indirection
    }

    /// The NIC's hash of a packet of protocol `proto` with `tuple`.
    #[inline]
    pub fn hash(&self, proto: u8, tuple: &RssTuple) -> u32 {
        let (input, len) = tuple.input(self.fields.of(proto, tuple.is_v6()));
        self.toeplitz.hash(input.get(..len).unwrap_or(&input))
    }

    /// The queue of a hash: the indirection table's entry at its low bits.
    #[inline]
    pub fn queue_of_hash(&self, hash: u32) -> u16 {
        // The mask keeps the index inside the table.
        self.indirection
            .get((hash & self.mask) as usize)
            .copied()
            .unwrap_or(0)
    }

    /// The queue on which the NIC delivers a packet of protocol `proto`
    /// with `tuple`.
    #[inline]
    pub fn queue_of(&self, proto: u8, tuple: &RssTuple) -> u16 {
        self.queue_of_hash(self.hash(proto, tuple))
    }
}
