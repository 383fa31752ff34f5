//! The sans-I/O packet engine: FULLNAT for TCP and UDP (4to4, 6to4 and
//! 6to6), the TTM option that carries the client's address to the real
//! server, session tables with idle timeouts, weighted schedulers, the
//! local address pool, ICMP errors and ping on the VIP, counters, and a
//! snapshot of the sessions that a restarted engine imports ([`snapshot`]).
//!
//! `no_std` with `alloc`, no `unsafe`, no clock, no I/O: the caller passes
//! time in and acts on what the engine returns, as quinn-proto's core does.
//! Memory is allocated when the engine is created or configured, never per
//! packet.
//!
//! ```text
//! caller                                   Engine
//!   frame from the NIC ──────────────────▶ handle_packet(now, &mut Frame) / handle_batch
//!   act on the Verdict ◀────────────────── ToServer / ToClient / Reply / Drop(reason) / Pass
//!   at poll_timeout() ───────────────────▶ handle_timeout(now)
//!   RSTs of idle expiry ◀───────────────── poll_transmit(buf)
//!   send where the Transmit says ◀──────── ToServer / ToClient
//!   before a restart ────────────────────▶ export_state(now, &mut bytes)
//!   after it, in the new engine ─────────▶ import_state(now, elapsed, &bytes)
//! ```
//!
//! # Example
//!
//! ```
//! use lb_engine::{BackendConfig, Engine, EngineConfig, ListenerConfig, LocalPool, Protocol};
//!
//! let mut engine = Engine::new(EngineConfig { capacity: 1024, ..EngineConfig::default() })?;
//! let local = LocalPool::new(vec!["10.0.0.100".parse().unwrap()]);
//! let mut web = ListenerConfig::new("198.51.100.1".parse().unwrap(), 80, Protocol::Tcp, local);
//! web.backends.push(BackendConfig::new("10.0.0.2".parse().unwrap(), 8080).weight(3));
//! web.backends.push(BackendConfig::new("10.0.0.3".parse().unwrap(), 8080));
//! let id = engine.add_listener(web)?;
//! engine.set_up(id, 1, false)?; // health check failed: no new sessions
//! # Ok::<(), lb_engine::ConfigError>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod config;
mod counters;
mod engine;
mod frame;
mod half_open;
mod hash;
mod lport;
mod owner;
mod quarantine;
pub mod rss;
pub mod sched;
mod session;
pub mod snapshot;
mod table;
mod tcp_edit;
#[cfg(test)]
mod test_rng;
pub mod time;
mod verdict;
mod wire;
mod xlat;

pub use config::{
    BackendConfig, ChecksumPolicy, ConfigError, EngineConfig, ListenerConfig, Protocol, Timeouts,
    TtmConfig,
};
pub use counters::{Counters, Traffic};
pub use engine::{BackendId, Engine, ListenerId};
pub use frame::Frame;
pub use lport::{LocalPool, LportError};
pub use owner::{PortShare, ShareError, client_owner};
pub use sched::{Affinity, MaglevKey, SchedError, SchedulerKind};
pub use snapshot::{ImportReport, SNAPSHOT_VERSION, Section, SnapshotError, snapshot_hash_seed};
pub use time::Instant;
pub use verdict::{DropReason, Transmit, Verdict};
