//! Walk arbitrary bytes as a TCP options area: the walk must end, never
//! panic, and `find` must agree with a naive scan written from RFC 9293
//! independently of the walker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ttm_core::{KindSet, TcpOptions, find};

#[path = "accept.rs"]
mod accept;

/// The naive scan: `Ok(Some(bytes of the option))`, `Ok(None)`, or
/// `Err(())` for a malformed area met before an option was found.
fn naive<'a>(area: &'a [u8], accept: &KindSet) -> Result<Option<&'a [u8]>, ()> {
    let mut i = 0;
    while i < area.len() {
        let kind = area[i];
        if kind == 0 {
            return Ok(None);
        }
        if kind == 1 {
            i += 1;
            continue;
        }
        if i + 1 >= area.len() {
            return Err(());
        }
        let len = area[i + 1] as usize;
        if len < 2 || i + len > area.len() {
            return Err(());
        }
        let standard_ok = match kind {
            2 => len == 4,
            3 => len == 3,
            4 => len == 2,
            5 => len > 2 && (len - 2).is_multiple_of(8),
            8 => len == 10,
            _ => true,
        };
        if !standard_ok {
            return Err(());
        }
        if accept.contains(kind) && (len == 8 || len == 20) {
            return Ok(Some(&area[i..i + len]));
        }
        i += len;
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    let Some((accept, area)) = accept::split(data) else {
        return;
    };
    let steps = TcpOptions::new(area).count();
    assert!(steps <= area.len() + 1);

    match (find(area, &accept), naive(area, &accept)) {
        (Ok(None), Ok(None)) | (Err(_), Err(())) => {}
        (Ok(Some(option)), Ok(Some(bytes))) => {
            let mut out = [0u8; 20];
            let rest = option.emit(&mut out).unwrap().len();
            assert_eq!(&out[..out.len() - rest], bytes);
        }
        (found, scanned) => panic!("find {found:?} but the naive scan {scanned:?}"),
    }
});
