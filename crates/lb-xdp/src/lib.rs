//! The AF_XDP runner (`lbd`): configuration, the XDP program, AF_XDP rings,
//! neighbour resolution, health checks, metrics and replay.

pub mod config;
pub mod health;
pub mod install;
pub mod metrics;
pub mod replay;
