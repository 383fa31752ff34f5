//! The AF_XDP runner (`lbd`): configuration, the XDP program, AF_XDP rings,
//! neighbour resolution, the accounting of frames, health checks, metrics
//! and replay.

pub mod config;
pub mod datapath;
pub mod ethtool;
pub mod handoff;
pub mod health;
pub mod install;
pub mod l2;
pub mod ledger;
pub mod metrics;
pub mod netlink;
pub mod owner;
pub mod reflect;
pub mod replay;
pub mod runner;
pub mod state;
pub mod xdp;
pub mod xsk;
