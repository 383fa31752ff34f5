//! The accepted kinds for one fuzz input: 254 always, plus the kind in the
//! input's first byte when it is not a standard option kind. Shared by the
//! targets through `#[path]`.

use ttm_core::KindSet;

/// Split `data` into the kind set its first byte selects and the rest.
pub fn split(data: &[u8]) -> Option<(KindSet, &[u8])> {
    let (&extra, rest) = data.split_first()?;
    let accept = KindSet::DEFAULT.with(extra).unwrap_or(KindSet::DEFAULT);
    Some((accept, rest))
}
