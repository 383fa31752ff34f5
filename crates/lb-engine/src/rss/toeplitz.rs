//! The Toeplitz hash of receive-side scaling (RSS): the 32-bit hash a NIC
//! computes over a packet's addresses (and ports) to choose its receive
//! queue, as Microsoft's RSS specification defines it.
//!
//! For each bit of the input, from the first byte's most significant bit
//! on, the hash is XORed with the 32 key bits that start at that bit's
//! position in the key when the input bit is set. So the hash is linear
//! over GF(2): `hash(a ^ b) == hash(a) ^ hash(b)` for inputs of one
//! length, which [`crate::rss::steer`] uses to choose local ports.
//!
//! An input of `n` bytes reads `n + 4` key bytes; key bits past the end of
//! a shorter key count as zero (the configuration refuses such keys, see
//! [`crate::rss::RssConfig::new`]).
//!
//! [`toeplitz`] computes the hash bit by bit, without a table;
//! [`Toeplitz`] precomputes, for each input position, the hash of each of
//! its 256 byte values (36 KiB), so that a hash costs one load and one XOR
//! per input byte.

use alloc::vec::Vec;

/// The longest input a NIC hashes: two IPv6 addresses and two ports.
pub const MAX_INPUT: usize = 36;

/// The Toeplitz hash of `input` with `key`, computed bit by bit.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    // The 64 key bits that start at the current input byte's first bit,
    // that bit as the most significant.
    let mut window = (0..8).fold(0u64, |w, i| (w << 8) | key_byte(i));
    let mut result = 0;
    for (i, &byte) in input.iter().enumerate() {
        result ^= byte_hash(window, byte);
        window = (window << 8) | key_byte(i + 8);
    }
    result
}

/// The hash of one input byte whose first bit meets the most significant
/// bit of `window`.
fn byte_hash(window: u64, byte: u8) -> u32 {
    (0..8u32).fold(0, |acc, bit| {
        // All ones when the bit is set, so that no branch depends on data.
        let set = 0u32.wrapping_sub(u32::from(byte >> (7 - bit)) & 1);
        acc ^ ((window >> (32 - bit)) as u32 & set)
    })
}

/// The Toeplitz hash with one key, by table: the hash of every byte value
/// at every input position up to [`MAX_INPUT`].
#[derive(Clone)]
pub struct Toeplitz {
    /// `table[position][value]`: the hash of an input that is zero except
    /// for `value` at `position`.
    table: Vec<[u32; 256]>,
}

impl core::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Toeplitz").finish_non_exhaustive()
    }
}

impl Toeplitz {
    /// The tables of `key` (allocates 36 KiB).
    pub fn new(key: &[u8]) -> Toeplitz {
        let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
        let table = (0..MAX_INPUT)
            .map(|position| {
                let window = (0..8).fold(0u64, |w, i| (w << 8) | key_byte(position + i));
                let mut row = [0u32; 256];
                for (value, slot) in (0..=255u8).zip(row.iter_mut()) {
                    *slot = byte_hash(window, value);
                }
                row
            })
            .collect();
        Toeplitz { table }
    }

    /// The hash of `input`, of which at most the first [`MAX_INPUT`] bytes
    /// are read (every input this crate builds is at most that long).
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        self.table
            .iter()
            .zip(input)
            .fold(0, |acc, (row, &byte)| acc ^ row_get(row, byte))
    }

    /// The hash of `value` at `position`, the rest of the input zero: what
    /// one byte adds to a hash.
    #[inline]
    pub fn byte_at(&self, position: usize, value: u8) -> u32 {
        self.table
            .get(position)
            .map_or(0, |row| row_get(row, value))
    }

    /// The hash of a big-endian `u16` at `position` (a port).
    #[inline]
    pub fn u16_at(&self, position: usize, value: u16) -> u32 {
        let [high, low] = value.to_be_bytes();
        self.byte_at(position, high) ^ self.byte_at(position + 1, low)
    }
}

#[inline]
fn row_get(row: &[u32; 256], byte: u8) -> u32 {
    // A `u8` always indexes a 256-entry row.
    row.get(usize::from(byte)).copied().unwrap_or(0)
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;

    const KEY: [u8; 40] = crate::rss::MICROSOFT_KEY;

    /// The specification's pseudocode, literally: shift the key left one
    /// bit per input bit.
    fn by_the_book(key: &[u8], input: &[u8]) -> u32 {
        let mut k: u128 = 0;
        let mut key_bits = key
            .iter()
            .flat_map(|b| (0..8).map(move |i| (b >> (7 - i)) & 1));
        for _ in 0..128 {
            k = (k << 1) | u128::from(key_bits.next().unwrap_or(0));
        }
        let mut result = 0u32;
        for byte in input {
            for i in 0..8 {
                if (byte >> (7 - i)) & 1 == 1 {
                    result ^= (k >> 96) as u32;
                }
                k = (k << 1) | u128::from(key_bits.next().unwrap_or(0));
            }
        }
        result
    }

    #[test]
    fn matches_the_pseudocode_and_the_table() {
        let t = Toeplitz::new(&KEY);
        let mut rng = crate::test_rng::Rng(0x1234_5678_9abc_def1);
        for len in 0..=MAX_INPUT {
            for _ in 0..50 {
                let input: vec::Vec<u8> = (0..len).map(|_| rng.byte()).collect();
                let expected = by_the_book(&KEY, &input);
                assert_eq!(toeplitz(&KEY, &input), expected, "{input:?}");
                assert_eq!(t.hash(&input), expected, "{input:?}");
            }
        }
    }

    #[test]
    fn linear() {
        let t = Toeplitz::new(&KEY);
        let a = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        let b = [0xffu8, 0, 0x80, 7, 0, 0, 1, 0, 0x55, 0xaa, 0x12, 0x34];
        let ab: vec::Vec<u8> = a.iter().zip(&b).map(|(x, y)| x ^ y).collect();
        assert_eq!(t.hash(&ab), t.hash(&a) ^ t.hash(&b));
        assert_eq!(
            t.u16_at(10, 0x1234),
            t.hash(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34])
        );
    }

    #[test]
    fn short_keys_read_as_zero_past_their_end() {
        // A 4-byte key: only the first input bit's window is whole.
        let key = [0x80, 0, 0, 1];
        assert_eq!(toeplitz(&key, &[0x80]), 0x8000_0001);
        assert_eq!(toeplitz(&key, &[0x40]), 0x0000_0002);
        assert_eq!(toeplitz(&[], &[0xff; 36]), 0);
        assert_eq!(Toeplitz::new(&key).hash(&[0xc0]), 0x8000_0003);
    }
}
