//! The HTTP, HTTPS and WebSocket listeners of `lbd` (layer 7), on
//! Cloudflare's Pingora with rustls.
//!
//! The L4 listeners are served by the engine on AF_XDP; an L7 listener's
//! VIP:port is left by the XDP program to the host's TCP stack, where
//! Pingora accepts it. The balancer's behaviour is written in Pingora's
//! hooks: the backend (the engine's schedulers, cookie persistence), the
//! request headers (`X-Forwarded-For` and friends), the response headers
//! (the inserted cookie), and the access log.

pub mod access_log;
pub mod config;
pub mod cookie;
pub mod forwarded;
mod metrics;
mod pool;
mod proxy;
pub mod server;
pub mod tls;
