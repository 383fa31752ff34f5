//! [`KindSet`]: which option kinds a decoder takes for a TTM option.
//!
//! A 256-bit bitmap (two `u128` halves), so that a membership test is one shift and one mask
//! whatever the number of kinds. The standard kinds that the options walker
//! parses itself (0, 1, 2, 3, 4, 5, 8) are refused at construction, so a set
//! can never claim a kind that [`crate::find`] would not see as unknown.

use crate::Error;

/// Kinds the options walker reads as standard options.
const RESERVED: [u8; 7] = [0, 1, 2, 3, 4, 5, 8];

/// A set of TCP option kinds accepted as TTM options.
///
/// ```
/// use ttm_core::KindSet;
///
/// let set = KindSet::new(&[254, 253])?;
/// assert!(set.contains(253) && set.contains(254) && !set.contains(200));
/// assert!(KindSet::new(&[2]).is_err()); // MSS is not a TTM kind
/// # Ok::<(), ttm_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KindSet {
    /// Kinds 0..=127, bit `k` for kind `k`.
    low: u128,
    /// Kinds 128..=255, bit `k - 128` for kind `k`.
    high: u128,
}

impl KindSet {
    /// The default set: [`crate::DEFAULT_KIND`] (254) alone.
    pub const DEFAULT: KindSet = KindSet::EMPTY.with_unchecked(crate::DEFAULT_KIND);

    /// The set that accepts nothing.
    pub const EMPTY: KindSet = KindSet { low: 0, high: 0 };

    /// The set of the given kinds; an empty slice gives the empty set.
    ///
    /// # Errors
    /// [`Error::ReservedKind`] for a kind that the options walker parses
    /// as a standard option (0, 1, 2, 3, 4, 5, 8).
    pub fn new(kinds: &[u8]) -> Result<KindSet, Error> {
        kinds
            .iter()
            .try_fold(KindSet::EMPTY, |set, &kind| set.with(kind))
    }

    /// This set with `kind` added.
    ///
    /// # Errors
    /// [`Error::ReservedKind`] as for [`KindSet::new`].
    pub fn with(self, kind: u8) -> Result<KindSet, Error> {
        if RESERVED.contains(&kind) {
            return Err(Error::ReservedKind { kind });
        }
        Ok(self.with_unchecked(kind))
    }

    const fn with_unchecked(mut self, kind: u8) -> KindSet {
        let bit = 1u128 << (kind & 127);
        if kind < 128 {
            self.low |= bit;
        } else {
            self.high |= bit;
        }
        self
    }

    /// Whether `kind` is in the set.
    #[inline]
    pub const fn contains(&self, kind: u8) -> bool {
        let half = if kind < 128 { self.low } else { self.high };
        half & (1u128 << (kind & 127)) != 0
    }

    /// Whether the set accepts no kind at all.
    pub const fn is_empty(&self) -> bool {
        self.low | self.high == 0
    }

    /// The kinds in the set, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=u8::MAX).filter(|&kind| self.contains(kind))
    }
}

impl Default for KindSet {
    fn default() -> Self {
        KindSet::DEFAULT
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn default_is_254_alone() {
        let kinds: heapless_vec::Kinds = KindSet::DEFAULT.iter().collect();
        assert_eq!(kinds.as_slice(), &[254]);
        assert_eq!(KindSet::default(), KindSet::DEFAULT);
    }

    #[test]
    fn both_halves_of_the_bitmap() {
        let set = KindSet::new(&[6, 127, 128, 255]).unwrap();
        let kinds: heapless_vec::Kinds = set.iter().collect();
        assert_eq!(kinds.as_slice(), &[6, 127, 128, 255]);
        assert!(!set.contains(7) && !set.contains(126) && !set.contains(129) && !set.contains(254));
    }

    #[test]
    fn reserved_kinds_are_refused() {
        for kind in RESERVED {
            assert_eq!(
                KindSet::new(&[254, kind]),
                Err(Error::ReservedKind { kind })
            );
        }
        assert!(KindSet::new(&[]).unwrap().is_empty());
        assert!(!KindSet::DEFAULT.is_empty());
    }

    /// A fixed-capacity collector: this crate has no `alloc`.
    mod heapless_vec {
        pub(super) struct Kinds {
            buf: [u8; 256],
            len: usize,
        }
        impl Kinds {
            pub(super) fn as_slice(&self) -> &[u8] {
                &self.buf[..self.len]
            }
        }
        impl FromIterator<u8> for Kinds {
            fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
                let mut out = Kinds {
                    buf: [0; 256],
                    len: 0,
                };
                for kind in iter {
                    out.buf[out.len] = kind;
                    out.len += 1;
                }
                out
            }
        }
    }
}
