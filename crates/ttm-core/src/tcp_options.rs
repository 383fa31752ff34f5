//! [`TcpOptions`]: a walker over a TCP header's options area, and [`find`].
//!
//! The area is the `data offset * 4 - 20` bytes after the fixed TCP header
//! (RFC 9293 §3.1). Each option is one of:
//!
//! | kind | length | option |
//! |---|---|---|
//! | 0 | 1 | end of option list: the walk stops; what follows is padding |
//! | 1 | 1 | no-operation |
//! | 2 | 4 | maximum segment size (RFC 9293) |
//! | 3 | 3 | window scale (RFC 7323) |
//! | 4 | 2 | SACK permitted (RFC 2018) |
//! | 5 | 2 + 8n, n ≥ 1 | SACK blocks (RFC 2018) |
//! | 8 | 10 | timestamps (RFC 7323) |
//! | other | its length byte, at least 2 | [`TcpOption::Unknown`] |
//!
//! A length byte below 2, a standard option of any other length, or an
//! option that runs past the end of the area is an error; the walker yields
//! that error once and then ends. Every step consumes at least one byte, so
//! a walk ends within `area.len() + 1` steps whatever the bytes.

use crate::option::{V4_LEN, V6_LEN};
use crate::{Error, KindSet, TtmOption};

/// One TCP option, borrowing from the options area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// Kind 0: the end of the list.
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2: the largest segment the sender will receive.
    MaxSegmentSize(u16),
    /// Kind 3: the sender's window scale shift.
    WindowScale(u8),
    /// Kind 4: the sender accepts SACK.
    SackPermitted,
    /// Kind 5: SACK blocks, 8 bytes each (left edge, right edge).
    SackRange(&'a [u8]),
    /// Kind 8: timestamp value and echo reply.
    Timestamps {
        /// TSval.
        tsval: u32,
        /// TSecr.
        tsecr: u32,
    },
    /// Any other kind, with the bytes after its length byte.
    Unknown {
        /// The option kind.
        kind: u8,
        /// The option's data (length byte minus 2 bytes).
        data: &'a [u8],
    },
}

impl TcpOption<'_> {
    /// The option's kind byte.
    pub const fn kind(&self) -> u8 {
        match self {
            TcpOption::EndOfList => 0,
            TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 2,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 4,
            TcpOption::SackRange(_) => 5,
            TcpOption::Timestamps { .. } => 8,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// The option's length on the wire, kind and length bytes included.
    pub const fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(data) | TcpOption::Unknown { data, .. } => 2 + data.len(),
            TcpOption::Timestamps { .. } => 10,
        }
    }
}

/// An iterator over the options in a TCP options area.
///
/// ```
/// use ttm_core::{TcpOption, TcpOptions};
///
/// let area = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 254, 8, 0, 80, 10, 0, 0, 1];
/// let mut walk = TcpOptions::new(&area);
/// assert_eq!(walk.next(), Some(Ok(TcpOption::NoOperation)));
/// assert_eq!(walk.next(), Some(Ok(TcpOption::NoOperation)));
/// assert_eq!(walk.offset(), 2);
/// assert_eq!(walk.next(), Some(Ok(TcpOption::Timestamps { tsval: 1, tsecr: 2 })));
/// assert_eq!(
///     walk.next(),
///     Some(Ok(TcpOption::Unknown { kind: 254, data: &[0, 80, 10, 0, 0, 1] }))
/// );
/// assert_eq!(walk.next(), None);
///
/// let bad = [2, 4, 5, 180, 3, 0];
/// let errors: Vec<_> = TcpOptions::new(&bad).filter_map(Result::err).collect();
/// assert_eq!(errors, [ttm_core::Error::MalformedOption { offset: 4, kind: 3, len: 0 }]);
/// ```
#[derive(Debug, Clone)]
pub struct TcpOptions<'a> {
    area: &'a [u8],
    offset: usize,
    done: bool,
}

impl<'a> TcpOptions<'a> {
    /// A walk over `area`, the bytes between the fixed TCP header and the
    /// payload.
    pub const fn new(area: &'a [u8]) -> TcpOptions<'a> {
        TcpOptions {
            area,
            offset: 0,
            done: false,
        }
    }

    /// The offset in the area of the option that [`Iterator::next`] will
    /// return (of the error, if it returns one).
    pub const fn offset(&self) -> usize {
        self.offset
    }
}

/// One step of a walk: the framing of the option at an offset, with its
/// length checked. Shared by the iterator and [`find`], so that both read
/// an area the same way.
#[derive(Clone, Copy)]
enum Raw<'a> {
    /// Kind 0: the walk ends.
    End,
    /// Kind 1: one byte.
    Nop,
    /// Any other kind, with a length that is valid for it; `data` is what
    /// follows the length byte.
    Option { kind: u8, data: &'a [u8] },
}

/// Whether `len` is a valid length byte for an option of `kind`: the fixed
/// length of a standard option, and at least 2 for any other.
#[inline]
const fn valid_len(kind: u8, len: u8) -> bool {
    match kind {
        2 => len == 4,
        3 => len == 3,
        4 => len == 2,
        5 => len > 2 && (len - 2).is_multiple_of(8),
        8 => len == 10,
        _ => len >= 2,
    }
}

/// The option starting at `offset` of `area`; `None` past the end.
#[inline]
fn raw_at(area: &[u8], offset: usize) -> Option<Result<Raw<'_>, Error>> {
    let rest = area.get(offset..)?;
    let (&kind, after_kind) = rest.split_first()?;
    let (&len, _) = match kind {
        0 => return Some(Ok(Raw::End)),
        1 => return Some(Ok(Raw::Nop)),
        _ => match after_kind.split_first() {
            Some(pair) => pair,
            None => {
                return Some(Err(Error::OptionOverrun {
                    offset,
                    kind,
                    needed: 2,
                    available: rest.len(),
                }));
            }
        },
    };
    if !valid_len(kind, len) {
        return Some(Err(Error::MalformedOption { offset, kind, len }));
    }
    Some(match rest.get(2..usize::from(len)) {
        Some(data) => Ok(Raw::Option { kind, data }),
        None => Err(Error::OptionOverrun {
            offset,
            kind,
            needed: usize::from(len),
            available: rest.len(),
        }),
    })
}

impl<'a> Iterator for TcpOptions<'a> {
    type Item = Result<TcpOption<'a>, Error>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let step = raw_at(self.area, self.offset);
        let option = match step {
            None => {
                self.done = true;
                return None;
            }
            Some(Err(error)) => {
                self.done = true;
                return Some(Err(error));
            }
            Some(Ok(Raw::End)) => {
                self.done = true;
                return Some(Ok(TcpOption::EndOfList));
            }
            Some(Ok(Raw::Nop)) => {
                self.offset += 1;
                return Some(Ok(TcpOption::NoOperation));
            }
            Some(Ok(Raw::Option { kind, data })) => {
                self.offset += 2 + data.len();
                // `raw_at` has checked the length of the standard kinds, so
                // each of their patterns matches; only other kinds are
                // unknown.
                match (kind, data) {
                    (2, &[hi, lo]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([hi, lo])),
                    (3, &[shift]) => TcpOption::WindowScale(shift),
                    (4, []) => TcpOption::SackPermitted,
                    (5, blocks) => TcpOption::SackRange(blocks),
                    (8, &[v0, v1, v2, v3, e0, e1, e2, e3]) => TcpOption::Timestamps {
                        tsval: u32::from_be_bytes([v0, v1, v2, v3]),
                        tsecr: u32::from_be_bytes([e0, e1, e2, e3]),
                    },
                    (kind, data) => TcpOption::Unknown { kind, data },
                }
            }
        };
        Some(Ok(option))
    }
}

impl core::iter::FusedIterator for TcpOptions<'_> {}

/// The first TTM option of a kind in `accept` in a TCP options area.
///
/// An option of an accepted kind whose length is neither 8 nor 20 is not a
/// TTM option and is passed over: kinds 253 and 254 are shared by RFC 6994
/// experiments, which carry other lengths.
///
/// ```
/// use ttm_core::{find, KindSet};
///
/// // NOP, NOP, timestamps, then the option: a typical third ACK.
/// let area = [1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 254, 8, 0, 80, 10, 0, 0, 1];
/// let option = find(&area, &KindSet::DEFAULT)?.unwrap();
/// assert_eq!(option.client(), "10.0.0.1:80".parse().unwrap());
/// assert_eq!(find(&area[..12], &KindSet::DEFAULT)?, None);
/// # Ok::<(), ttm_core::Error>(())
/// ```
///
/// # Errors
/// The walker's error when the area is malformed before an option is found.
#[inline]
pub fn find(area: &[u8], accept: &KindSet) -> Result<Option<TtmOption>, Error> {
    let mut offset = 0;
    while let Some(step) = raw_at(area, offset) {
        match step? {
            Raw::End => break,
            Raw::Nop => offset += 1,
            Raw::Option { kind, data } => {
                let len = 2 + data.len();
                if accept.contains(kind) && (len == V4_LEN || len == V6_LEN) {
                    return Ok(TtmOption::from_body(kind, data));
                }
                offset += len;
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod test {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

    /// A third ACK's options: NOP, NOP, timestamps, TTM for 10.0.0.1:80.
    static THIRD_ACK: [u8; 20] = [
        0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xfe, 0x08, 0x00,
        0x50, 0x0a, 0x00, 0x00, 0x01,
    ];

    /// A Linux SYN's options: MSS 1460, SACK permitted, timestamps, NOP,
    /// window scale 7.
    static LINUX_SYN: [u8; 20] = [
        0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn collect(area: &[u8]) -> ([Option<Result<TcpOption<'_>, Error>>; 12], usize) {
        let mut out = [None; 12];
        let mut n = 0;
        for (slot, item) in out.iter_mut().zip(TcpOptions::new(area)) {
            *slot = Some(item);
            n += 1;
        }
        (out, n)
    }

    #[test]
    fn deconstruct_linux_syn() {
        let (items, n) = collect(&LINUX_SYN);
        assert_eq!(n, 5);
        assert_eq!(items[0], Some(Ok(TcpOption::MaxSegmentSize(1460))));
        assert_eq!(items[1], Some(Ok(TcpOption::SackPermitted)));
        assert_eq!(
            items[2],
            Some(Ok(TcpOption::Timestamps {
                tsval: 0x1234_5678,
                tsecr: 0
            }))
        );
        assert_eq!(items[3], Some(Ok(TcpOption::NoOperation)));
        assert_eq!(items[4], Some(Ok(TcpOption::WindowScale(7))));
        let lens: usize = TcpOptions::new(&LINUX_SYN)
            .map(|o| o.unwrap().buffer_len())
            .sum();
        assert_eq!(lens, LINUX_SYN.len());
    }

    #[test]
    fn end_of_list_stops_the_walk() {
        let area = [1, 0, 2, 0xff, 0xff];
        let (items, n) = collect(&area);
        assert_eq!(n, 2);
        assert_eq!(items[1], Some(Ok(TcpOption::EndOfList)));
        let area = [0, 254, 8, 0, 80, 10, 0, 0, 1];
        assert_eq!(find(&area, &KindSet::DEFAULT), Ok(None));
    }

    #[test]
    fn sack_blocks() {
        let area = [5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
        let (items, n) = collect(&area);
        assert_eq!(n, 1);
        assert_eq!(items[0], Some(Ok(TcpOption::SackRange(&area[2..]))));
    }

    #[test]
    fn find_in_third_ack() {
        let option = find(&THIRD_ACK, &KindSet::DEFAULT).unwrap().unwrap();
        assert_eq!(option.kind(), 254);
        assert_eq!(
            option.client(),
            SocketAddr::new(Ipv4Addr::new(10, 0, 0, 1).into(), 80)
        );
        assert_eq!(find(&THIRD_ACK, &KindSet::new(&[253]).unwrap()), Ok(None));
        assert_eq!(find(&LINUX_SYN, &KindSet::DEFAULT), Ok(None));
        assert_eq!(find(&[], &KindSet::DEFAULT), Ok(None));
    }

    #[test]
    fn find_v6_and_first_wins() {
        let mut area = [0u8; 30];
        area[..2].copy_from_slice(&[253, 20]);
        area[2..4].copy_from_slice(&1234u16.to_be_bytes());
        area[4..20].copy_from_slice(&Ipv6Addr::LOCALHOST.octets());
        area[20..28].copy_from_slice(&[254, 8, 0, 80, 10, 0, 0, 1]);
        let accept = KindSet::new(&[253, 254]).unwrap();
        let option = find(&area, &accept).unwrap().unwrap();
        assert_eq!(option.kind(), 253);
        assert_eq!(
            option.client(),
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 1234)
        );
        let option = find(&area, &KindSet::DEFAULT).unwrap().unwrap();
        assert_eq!(option.kind(), 254);
    }

    #[test]
    fn find_passes_over_experiments() {
        // RFC 6994: kind 254, length 6, ExID 0xf989 (TFO), 2 bytes cookie.
        let area = [254, 6, 0xf9, 0x89, 1, 2, 254, 8, 0, 80, 10, 0, 0, 1];
        let option = find(&area, &KindSet::DEFAULT).unwrap().unwrap();
        assert_eq!(option.client().port(), 80);
    }

    #[test]
    fn truncated() {
        assert_eq!(
            collect(&[2]).0[0],
            Some(Err(Error::OptionOverrun {
                offset: 0,
                kind: 2,
                needed: 2,
                available: 1
            }))
        );
        assert_eq!(
            collect(&THIRD_ACK[..19]).0[3],
            Some(Err(Error::OptionOverrun {
                offset: 12,
                kind: 254,
                needed: 8,
                available: 7
            }))
        );
        assert!(find(&THIRD_ACK[..19], &KindSet::DEFAULT).is_err());
    }

    #[test]
    fn malformed() {
        for len in [0u8, 1] {
            let area = [1, 254, len, 1, 1, 1];
            let (items, n) = collect(&area);
            assert_eq!(n, 2, "the walk ends after the error");
            assert_eq!(
                items[1],
                Some(Err(Error::MalformedOption {
                    offset: 1,
                    kind: 254,
                    len
                }))
            );
            assert!(find(&area, &KindSet::DEFAULT).is_err());
        }
        for (kind, len) in [(2u8, 3u8), (3, 4), (4, 3), (5, 2), (5, 9), (8, 8)] {
            let mut area = [0u8; 12];
            area[0] = kind;
            area[1] = len;
            assert_eq!(
                collect(&area).0[0],
                Some(Err(Error::MalformedOption {
                    offset: 0,
                    kind,
                    len
                })),
                "kind {kind} len {len}"
            );
        }
    }
}
