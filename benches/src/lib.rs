//! Inputs shared by the criterion benchmarks in this directory.
//!
//! The benchmarks themselves are the `[[bench]]` targets beside this crate
//! (`ttm.rs`: group `ttm`). Run them with `cargo bench -p benches`.

/// The options area of a typical third handshake ACK leaving the balancer:
/// NOP, NOP, timestamps (TSval 1, TSecr 2), then the TTM option for
/// 203.0.113.9:51234 (20 bytes, data offset 10).
pub const THIRD_ACK_OPTIONS: [u8; 20] = [
    0x01, 0x01, 0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0xfe, 0x08, 0xc8, 0x22,
    0xcb, 0x00, 0x71, 0x09,
];
