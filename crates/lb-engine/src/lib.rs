//! The sans-I/O packet engine: FULLNAT for TCP and UDP, session tables with
//! idle timeouts, weighted schedulers, the local address pool, and counters.
//!
//! `no_std` with `alloc`, no `unsafe`, no clock, no I/O: the caller passes
//! time in and acts on what the engine returns, as quinn-proto's core does.
//! Memory is allocated when the engine is configured, never per packet.
//!
//! **Being built.** This crate grows module by module under the issue
//! "`lb-engine`: FULLNAT for IPv4 TCP and UDP, sessions, timeouts,
//! schedulers, counters"; the packet API is not here yet.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod sched;
pub mod time;

// Internal building blocks of the engine; until `engine.rs` uses them only
// their own tests do.
#[cfg_attr(not(test), allow(dead_code))]
mod lport;
#[cfg_attr(not(test), allow(dead_code))]
mod quarantine;
#[cfg_attr(not(test), allow(dead_code))]
mod table;

pub use time::Instant;
