//! The AF_XDP runner (`lbd`): configuration, the XDP program, AF_XDP rings,
//! neighbour resolution, health checks, metrics and replay.
//!
//! **Not built yet.** A placeholder in the workspace that exports nothing;
//! the runner arrives with the issue "`lbd`: the AF_XDP runner".
