//! Decode arbitrary bytes as a TTM option and as a peer record; where
//! either succeeds, encoding the value must give back the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ttm_core::{PeerRecord, TtmOption};

#[path = "accept.rs"]
mod accept;

fuzz_target!(|data: &[u8]| {
    let Some((accept, bytes)) = accept::split(data) else {
        return;
    };
    if let Ok(option) = TtmOption::decode(bytes, &accept) {
        assert!(accept.contains(option.kind()));
        let mut out = [0u8; 20];
        let rest = option.emit(&mut out).unwrap().len();
        assert_eq!(&out[..out.len() - rest], bytes);
    }
    if let Ok(record) = PeerRecord::from_bytes(bytes) {
        assert_eq!(record.to_bytes().as_slice(), bytes);
    }
});
