//! [`PeerRecord`]: the 20 bytes that `getsockopt(SOL_IP, 1345)` returns on
//! the real server.
//!
//! | byte | 0..2 | 2..4 | 4..8 | 8..20 |
//! |---|---|---|---|---|
//! | IPv4 client | `af` = 2, host order | port, network order | address | zero |
//! | IPv6 client | `af` = 10, host order | port, network order | address (bytes 4..20) | |
//!
//! The family is in host byte order because the FAQ's kernel module copies
//! a `struct ttm_peer { __u16 af; __be16 port; ... }` straight to user
//! space; its Python example reads it with `!bbH4s12s`, whose first `b` is
//! the low byte of `af` on the little-endian hosts it was written for.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{AF_INET, AF_INET6, Error, PEER_RECORD_LEN};

/// The client address as the RS-side peer query reports it.
///
/// ```
/// use ttm_core::PeerRecord;
///
/// let record = PeerRecord::new("198.51.100.7:40000".parse().unwrap());
/// let bytes = record.to_bytes();
/// assert_eq!(u16::from_ne_bytes([bytes[0], bytes[1]]), ttm_core::AF_INET);
/// assert_eq!(bytes[2..8], [0x9c, 0x40, 198, 51, 100, 7]);
/// assert_eq!(PeerRecord::from_bytes(&bytes)?, record);
/// # Ok::<(), ttm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRecord {
    client: SocketAddr,
}

impl PeerRecord {
    /// The record for `client`.
    pub const fn new(client: SocketAddr) -> PeerRecord {
        PeerRecord { client }
    }

    /// The client's address and port.
    pub const fn client(&self) -> SocketAddr {
        self.client
    }

    /// The record's family: [`AF_INET`] or [`AF_INET6`].
    pub const fn family(&self) -> u16 {
        match self.client {
            SocketAddr::V4(_) => AF_INET,
            SocketAddr::V6(_) => AF_INET6,
        }
    }

    /// The 20 bytes of the record.
    pub fn to_bytes(&self) -> [u8; PEER_RECORD_LEN] {
        let mut out = [0u8; PEER_RECORD_LEN];
        let [af0, af1, p0, p1, addr @ ..] = &mut out;
        [*af0, *af1] = self.family().to_ne_bytes();
        [*p0, *p1] = self.client.port().to_be_bytes();
        match self.client.ip() {
            IpAddr::V4(ip) => {
                let [a, b, c, d, ..] = addr;
                [*a, *b, *c, *d] = ip.octets();
            }
            IpAddr::V6(ip) => *addr = ip.octets(),
        }
        out
    }

    /// Decode a record, which must be exactly [`PEER_RECORD_LEN`] bytes.
    ///
    /// ```
    /// use ttm_core::{Error, PeerRecord};
    ///
    /// let mut bytes = [0u8; 20];
    /// bytes[..2].copy_from_slice(&10u16.to_ne_bytes());
    /// bytes[2..4].copy_from_slice(&443u16.to_be_bytes());
    /// bytes[4..6].copy_from_slice(&[0x20, 0x01]);
    /// let record = PeerRecord::from_bytes(&bytes)?;
    /// assert_eq!(record.client(), "[2001::]:443".parse().unwrap());
    ///
    /// bytes[..2].copy_from_slice(&7u16.to_ne_bytes());
    /// assert_eq!(PeerRecord::from_bytes(&bytes), Err(Error::BadFamily { af: 7 }));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Truncated`] or [`Error::TrailingBytes`] when `bytes` is not
    /// 20 bytes long, [`Error::BadFamily`], and [`Error::NonZeroPadding`]
    /// when an IPv4 record has a non-zero byte after the address.
    pub fn from_bytes(bytes: &[u8]) -> Result<PeerRecord, Error> {
        let record: [u8; PEER_RECORD_LEN] = bytes.try_into().map_err(|_| {
            if bytes.len() < PEER_RECORD_LEN {
                Error::Truncated {
                    needed: PEER_RECORD_LEN,
                    available: bytes.len(),
                }
            } else {
                Error::TrailingBytes {
                    expected: PEER_RECORD_LEN,
                    available: bytes.len(),
                }
            }
        })?;
        let [af0, af1, p0, p1, addr @ ..] = record;
        let port = u16::from_be_bytes([p0, p1]);
        let ip = match u16::from_ne_bytes([af0, af1]) {
            AF_INET => {
                let [a, b, c, d, pad @ ..] = addr;
                if let Some(i) = pad.iter().position(|&byte| byte != 0) {
                    return Err(Error::NonZeroPadding {
                        offset: PAD4_START + i,
                    });
                }
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            AF_INET6 => IpAddr::V6(Ipv6Addr::from(addr)),
            af => return Err(Error::BadFamily { af }),
        };
        Ok(PeerRecord::new(SocketAddr::new(ip, port)))
    }
}

/// Offset of an IPv4 record's padding: after `af`, port and address.
const PAD4_START: usize = 8;

#[cfg(test)]
mod test {
    use super::*;

    /// The IPv4 record for 192.0.2.1:8080 on a little-endian host.
    static V4_LE: [u8; 20] = [
        0x02, 0x00, 0x1f, 0x90, 0xc0, 0x00, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn v4() -> PeerRecord {
        PeerRecord::new(SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 8080))
    }

    fn native(mut bytes: [u8; 20]) -> [u8; 20] {
        if cfg!(target_endian = "big") {
            bytes.swap(0, 1);
        }
        bytes
    }

    #[test]
    fn construct_v4() {
        assert_eq!(v4().to_bytes(), native(V4_LE));
    }

    #[test]
    fn deconstruct_v4() {
        assert_eq!(PeerRecord::from_bytes(&native(V4_LE)), Ok(v4()));
    }

    #[test]
    fn v6_round_trip() {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 6);
        let record = PeerRecord::new(SocketAddr::new(ip.into(), 1));
        let bytes = record.to_bytes();
        assert_eq!(u16::from_ne_bytes([bytes[0], bytes[1]]), AF_INET6);
        assert_eq!(bytes[2..4], [0, 1]);
        assert_eq!(bytes[4..20], ip.octets());
        assert_eq!(PeerRecord::from_bytes(&bytes), Ok(record));
    }

    #[test]
    fn wrong_length() {
        let bytes = native(V4_LE);
        assert_eq!(
            PeerRecord::from_bytes(&bytes[..19]),
            Err(Error::Truncated {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(
            PeerRecord::from_bytes(&[]),
            Err(Error::Truncated {
                needed: 20,
                available: 0
            })
        );
        let mut long = [0u8; 21];
        long[..20].copy_from_slice(&bytes);
        assert_eq!(
            PeerRecord::from_bytes(&long),
            Err(Error::TrailingBytes {
                expected: 20,
                available: 21
            })
        );
    }

    #[test]
    fn malformed() {
        let mut bytes = native(V4_LE);
        bytes[19] = 1;
        assert_eq!(
            PeerRecord::from_bytes(&bytes),
            Err(Error::NonZeroPadding { offset: 19 })
        );
        bytes[8] = 1;
        assert_eq!(
            PeerRecord::from_bytes(&bytes),
            Err(Error::NonZeroPadding { offset: 8 })
        );
        let mut bytes = native(V4_LE);
        bytes[..2].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(
            PeerRecord::from_bytes(&bytes),
            Err(Error::BadFamily { af: 0 })
        );
        // The family in network order on a little-endian host is 512.
        bytes[..2].copy_from_slice(&[0x00, 0x02]);
        if cfg!(target_endian = "little") {
            assert_eq!(
                PeerRecord::from_bytes(&bytes),
                Err(Error::BadFamily { af: 512 })
            );
        }
    }
}
