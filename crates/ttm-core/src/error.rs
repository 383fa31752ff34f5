//! The one error type of this crate: what was wrong, and at which byte.
//!
//! Each variant is a distinct cause so that a caller can count it apart
//! (the engine's drop reasons, the C result codes and the Python exception
//! classes map onto these one-to-one). Byte offsets in the messages count
//! from the start of the slice that was given.

/// Why bytes could not be decoded, or a value could not be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before the structure it starts does.
    #[error("truncated: {needed} bytes needed, {available} given")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes there were.
        available: usize,
    },

    /// The TTM option's length byte is neither 8 (IPv4) nor 20 (IPv6).
    #[error("byte 1: option length {len} is neither 8 (IPv4 client) nor 20 (IPv6 client)")]
    BadLength {
        /// The option kind (byte 0).
        kind: u8,
        /// The length byte found.
        len: u8,
    },

    /// The option's kind is not in the set the decoder was given.
    #[error("byte 0: option kind {kind} is not an accepted TTM kind")]
    KindNotAccepted {
        /// The kind found.
        kind: u8,
    },

    /// The input is longer than the one structure it should hold.
    #[error("{available} bytes given where exactly {expected} were expected")]
    TrailingBytes {
        /// The length the structure has.
        expected: usize,
        /// The length given.
        available: usize,
    },

    /// In a TCP options area: a length byte below 2, or a standard option
    /// whose length differs from the one RFC 9293/7323/2018 fixes.
    #[error("byte {offset}: TCP option kind {kind} has invalid length {len}")]
    MalformedOption {
        /// Offset of the option's kind byte in the options area.
        offset: usize,
        /// The option kind.
        kind: u8,
        /// The length byte found.
        len: u8,
    },

    /// In a TCP options area: an option (or its length byte) runs past the
    /// end of the area.
    #[error("byte {offset}: TCP option kind {kind} needs {needed} bytes, {available} remain")]
    OptionOverrun {
        /// Offset of the option's kind byte in the options area.
        offset: usize,
        /// The option kind.
        kind: u8,
        /// Bytes the option claims (2 when its length byte is missing).
        needed: usize,
        /// Bytes left in the area from `offset`.
        available: usize,
    },

    /// A peer record's family is neither `AF_INET` (2) nor `AF_INET6` (10).
    #[error("bytes 0-1: address family {af} is neither 2 (AF_INET) nor 10 (AF_INET6)")]
    BadFamily {
        /// The family found (host byte order).
        af: u16,
    },

    /// An IPv4 peer record has a non-zero byte after the address.
    #[error("byte {offset}: IPv4 peer record has non-zero padding")]
    NonZeroPadding {
        /// Offset of the first non-zero padding byte.
        offset: usize,
    },

    /// A kind that the options walker reads as a standard option (0, 1, 2,
    /// 3, 4, 5 or 8) cannot name a TTM option.
    #[error("kind {kind} is a standard TCP option and cannot be a TTM kind")]
    ReservedKind {
        /// The kind refused.
        kind: u8,
    },

    /// The output buffer is smaller than what is to be written.
    #[error("output buffer too small: {needed} bytes needed, {available} given")]
    BufferTooSmall {
        /// Bytes to be written.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
}
