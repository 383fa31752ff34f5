//! [`TtmOption`]: the TCP option that carries the client's address.
//!
//! | byte | 0 | 1 | 2..4 | 4..len |
//! |---|---|---|---|---|
//! | field | kind | len: 8 (IPv4) or 20 (IPv6) | client port (network order) | client address |
//!
//! [`TtmOption::decode`] takes exactly one option and checks, in this
//! order: the kind byte is there and accepted, the length byte is there and
//! is 8 or 20, the slice holds exactly that many bytes. [`TtmOption::emit`]
//! writes the same bytes back: for every slice that `decode` accepts,
//! `emit` reproduces it exactly.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::{Error, KindSet};

/// Length of the option for an IPv4 client.
pub const V4_LEN: usize = 8;

/// Length of the option for an IPv6 client.
pub const V6_LEN: usize = 20;

/// The length of the option that carries `client`: [`V4_LEN`] or
/// [`V6_LEN`]. What the engine needs to make room before it emits.
///
/// ```
/// use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
/// assert_eq!(ttm_core::option_len(IpAddr::V4(Ipv4Addr::LOCALHOST)), 8);
/// assert_eq!(ttm_core::option_len(IpAddr::V6(Ipv6Addr::LOCALHOST)), 20);
/// ```
#[inline]
pub const fn option_len(client: IpAddr) -> usize {
    match client {
        IpAddr::V4(_) => V4_LEN,
        IpAddr::V6(_) => V6_LEN,
    }
}

/// A TTM option: its kind and the client address it carries.
///
/// An IPv6 client's flow label and scope are not carried; a decoded
/// address has both zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TtmOption {
    kind: u8,
    client: SocketAddr,
}

impl TtmOption {
    /// An option of `kind` carrying `client`.
    pub const fn new(kind: u8, client: SocketAddr) -> TtmOption {
        TtmOption { kind, client }
    }

    /// The option kind.
    pub const fn kind(&self) -> u8 {
        self.kind
    }

    /// The client's address and port.
    pub const fn client(&self) -> SocketAddr {
        self.client
    }

    /// The number of bytes [`TtmOption::emit`] writes: 8 or 20.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        option_len(self.client.ip())
    }

    /// Decode `bytes`, which must hold exactly one option of a kind in
    /// `accept`.
    ///
    /// ```
    /// use ttm_core::{KindSet, TtmOption};
    ///
    /// let option = TtmOption::decode(&[254, 8, 0x1f, 0x90, 192, 0, 2, 1], &KindSet::DEFAULT)?;
    /// assert_eq!(option.kind(), 254);
    /// assert_eq!(option.client(), "192.0.2.1:8080".parse().unwrap());
    ///
    /// let err = TtmOption::decode(&[253, 8, 0, 80, 192, 0, 2, 1], &KindSet::DEFAULT);
    /// assert_eq!(err, Err(ttm_core::Error::KindNotAccepted { kind: 253 }));
    /// # Ok::<(), ttm_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Truncated`] when a byte the option needs is missing,
    /// [`Error::KindNotAccepted`], [`Error::BadLength`] when the length byte
    /// is neither 8 nor 20, and [`Error::TrailingBytes`] when `bytes` is
    /// longer than the option.
    #[inline]
    pub fn decode(bytes: &[u8], accept: &KindSet) -> Result<TtmOption, Error> {
        // Fast path: an accepted kind whose length byte is the slice's
        // length, and a body of 6 or 18 bytes. Anything else is an error,
        // worked out off the hot path.
        if let [kind, len, body @ ..] = bytes
            && accept.contains(*kind)
            && usize::from(*len) == bytes.len()
            && let Some(option) = Self::from_body(*kind, body)
        {
            return Ok(option);
        }
        Err(Self::decode_error(bytes, accept))
    }

    /// Why [`TtmOption::decode`] refused `bytes`, checked in the documented
    /// order.
    #[cold]
    fn decode_error(bytes: &[u8], accept: &KindSet) -> Error {
        let truncated = |needed| Error::Truncated {
            needed,
            available: bytes.len(),
        };
        let [kind, rest @ ..] = bytes else {
            return truncated(1);
        };
        if !accept.contains(*kind) {
            return Error::KindNotAccepted { kind: *kind };
        }
        let [len, ..] = rest else {
            return truncated(2);
        };
        let want = usize::from(*len);
        if want != V4_LEN && want != V6_LEN {
            return Error::BadLength {
                kind: *kind,
                len: *len,
            };
        }
        if bytes.len() < want {
            return truncated(want);
        }
        Error::TrailingBytes {
            expected: want,
            available: bytes.len(),
        }
    }

    /// Build the option from what follows its kind and length bytes: the
    /// port and a 4- or 16-byte address. `None` for any other length.
    #[inline]
    pub(crate) fn from_body(kind: u8, body: &[u8]) -> Option<TtmOption> {
        let (port, addr) = body.split_first_chunk::<2>()?;
        let ip = match addr.len() {
            4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            _ => return None,
        };
        Some(TtmOption::new(
            kind,
            SocketAddr::new(ip, u16::from_be_bytes(*port)),
        ))
    }

    /// Write the option at the start of `buf` and return the unused rest.
    ///
    /// ```
    /// use ttm_core::TtmOption;
    ///
    /// let mut buf = [0u8; 24];
    /// let option = TtmOption::new(254, "[2001:db8::1]:443".parse().unwrap());
    /// let rest = option.emit(&mut buf)?;
    /// assert_eq!(rest.len(), 4);
    /// assert_eq!(buf[..4], [254, 20, 0x01, 0xbb]);
    /// assert_eq!(buf[4..6], [0x20, 0x01]);
    /// # Ok::<(), ttm_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `buf` is shorter than
    /// [`TtmOption::buffer_len`]; `buf` is then left untouched.
    #[inline]
    pub fn emit<'a>(&self, buf: &'a mut [u8]) -> Result<&'a mut [u8], Error> {
        let len = self.buffer_len();
        let available = buf.len();
        let (head, rest) = buf.split_at_mut_checked(len).ok_or(Error::BufferTooSmall {
            needed: len,
            available,
        })?;
        // `head` is exactly `len` (8 or 20) bytes, chosen by the address
        // family, so the pattern matches and the address lengths agree.
        if let [kind, length, port_hi, port_lo, addr @ ..] = head {
            let [hi, lo] = self.client.port().to_be_bytes();
            (*kind, *length, *port_hi, *port_lo) = (self.kind, len as u8, hi, lo);
            match self.client.ip() {
                IpAddr::V4(ip) => addr.copy_from_slice(&ip.octets()),
                IpAddr::V6(ip) => addr.copy_from_slice(&ip.octets()),
            }
        }
        Ok(rest)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    static V4_BYTES: [u8; 8] = [0xfe, 0x08, 0x1f, 0x90, 0xc0, 0x00, 0x02, 0x01];

    static V6_BYTES: [u8; 20] = [
        0xfe, 0x14, 0x01, 0xbb, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x01,
    ];

    fn v4() -> TtmOption {
        TtmOption::new(
            254,
            SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), 8080),
        )
    }

    fn v6() -> TtmOption {
        let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
        TtmOption::new(254, SocketAddr::new(ip.into(), 443))
    }

    #[test]
    fn deconstruct_v4() {
        assert_eq!(TtmOption::decode(&V4_BYTES, &KindSet::DEFAULT), Ok(v4()));
    }

    #[test]
    fn deconstruct_v6() {
        assert_eq!(TtmOption::decode(&V6_BYTES, &KindSet::DEFAULT), Ok(v6()));
    }

    #[test]
    fn construct_v4() {
        let mut buf = [0xa5; 12];
        let rest = v4().emit(&mut buf).unwrap();
        assert_eq!(rest, &[0xa5; 4]);
        assert_eq!(buf[..8], V4_BYTES);
    }

    #[test]
    fn construct_v6() {
        let mut buf = [0xa5; 20];
        let rest = v6().emit(&mut buf).unwrap();
        assert!(rest.is_empty());
        assert_eq!(buf, V6_BYTES);
    }

    #[test]
    fn other_kind() {
        let mut bytes = V4_BYTES;
        bytes[0] = 200;
        let accept = KindSet::new(&[200, 254]).unwrap();
        let option = TtmOption::decode(&bytes, &accept).unwrap();
        assert_eq!(option.kind(), 200);
        let mut out = [0; 8];
        option.emit(&mut out).unwrap();
        assert_eq!(out, bytes);
    }

    #[test]
    fn buffer_len() {
        assert_eq!(v4().buffer_len(), 8);
        assert_eq!(v6().buffer_len(), 20);
    }

    #[test]
    fn truncated() {
        let set = KindSet::DEFAULT;
        let t = |needed, available| Err(Error::Truncated { needed, available });
        assert_eq!(TtmOption::decode(&[], &set), t(1, 0));
        assert_eq!(TtmOption::decode(&V4_BYTES[..1], &set), t(2, 1));
        assert_eq!(TtmOption::decode(&V4_BYTES[..7], &set), t(8, 7));
        assert_eq!(TtmOption::decode(&V6_BYTES[..19], &set), t(20, 19));
    }

    #[test]
    fn malformed() {
        let set = KindSet::DEFAULT;
        for len in [0u8, 1, 2, 7, 9, 19, 21, 255] {
            let mut bytes = V6_BYTES;
            bytes[1] = len;
            assert_eq!(
                TtmOption::decode(&bytes, &set),
                Err(Error::BadLength { kind: 254, len }),
                "len {len}"
            );
        }
        assert_eq!(
            TtmOption::decode(&V4_BYTES, &KindSet::new(&[253]).unwrap()),
            Err(Error::KindNotAccepted { kind: 254 })
        );
        let mut long = [0u8; 9];
        long[..8].copy_from_slice(&V4_BYTES);
        assert_eq!(
            TtmOption::decode(&long, &set),
            Err(Error::TrailingBytes {
                expected: 8,
                available: 9
            })
        );
    }

    #[test]
    fn emit_into_short_buffer_leaves_it_untouched() {
        let mut buf = [0xa5; 19];
        assert_eq!(
            v6().emit(&mut buf),
            Err(Error::BufferTooSmall {
                needed: 20,
                available: 19
            })
        );
        assert_eq!(buf, [0xa5; 19]);
        assert!(v4().emit(&mut buf[..7]).is_err());
    }
}
