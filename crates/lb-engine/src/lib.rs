//! The sans-I/O packet engine: FULLNAT for TCP and UDP, session tables with
//! idle timeouts, weighted schedulers, the local address pool, insertion of
//! the TTM option, ICMP, and counters.
//!
//! **Not built yet.** This crate is a placeholder in the workspace so that
//! the crate boundaries of `ARCHITECTURE.md` hold from the start; it exports
//! nothing. The engine arrives with the issue "`lb-engine`: FULLNAT for
//! IPv4 TCP and UDP, sessions, timeouts, schedulers, counters".
#![no_std]
#![forbid(unsafe_code)]
