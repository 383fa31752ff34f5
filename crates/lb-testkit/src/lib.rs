//! The test kit of the load balancer: what the engine's integration tests,
//! the benches and the fuzz targets used to copy from file to file.
//!
//! - [`frame`]: Ethernet frames carrying TCP, UDP and ICMP over IPv4 and
//!   IPv6, built by etherparse, right or deliberately wrong;
//! - [`parse`]: a forwarded frame read back into its endpoints, flags,
//!   numbers and options;
//! - [`checksum`]: an oracle for IP and transport checksums, written apart
//!   from the engine's own checksum code (it was the fuzz target's);
//! - [`golden`]: golden-packet fixtures and their runner;
//! - [`sim`]: an engine on a simulated clock, driven as a runner drives it;
//! - [`rng`]: a small seeded generator.
//!
//! The kit uses only `lb-engine`'s public API. It panics on what a test
//! must not meet (a frame it cannot build or parse): that is a failed
//! test, not an input to survive.

#![warn(missing_docs)]

pub mod checksum;
pub mod frame;
pub mod golden;
pub mod parse;
pub mod rng;
pub mod sim;

use std::net::IpAddr;

/// An endpoint: address and port.
pub type Ep = (IpAddr, u16);
