//! The unit tests' random numbers: SplitMix64, seeded, so that every run
//! draws the same values (the integration tests, benches and fuzz target
//! use `lb-testkit`'s `Rng`, which the engine's own unit tests cannot
//! depend on).

/// SplitMix64 (Steele, Lea and Flood): a 64-bit state, a good mixer, any
/// seed (0 included).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next 64 random bits.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A random byte.
    pub(crate) fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}
