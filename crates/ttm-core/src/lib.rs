//! The TTM wire format: the TCP option that carries a client's real address
//! from the load balancer to the real server (RS), and the 20-byte record in
//! which the RS reads it back with `getsockopt(SOL_IP, 1345)`.
//!
//! `no_std`, no allocation, no `unsafe`. Every function that reads bytes
//! takes a slice of any length and answers with a value or an [`Error`];
//! none panics, none loops without consuming input.
//!
//! # The option
//!
//! Sent by the balancer in the client-to-RS packets of the TCP handshake
//! (see the engine). Compatible with the TOA family of options that RS-side
//! modules already parse (DPVS, Alibaba LVS). All numbers in network order.
//!
//! IPv4 client ("4to4"), 8 bytes:
//!
//! | byte | 0 | 1 | 2..4 | 4..8 |
//! |---|---|---|---|---|
//! | field | kind (254) | length = 8 | client port | client IPv4 address |
//!
//! IPv6 client ("6to4", "6to6"), 20 bytes:
//!
//! | byte | 0 | 1 | 2..4 | 4..20 |
//! |---|---|---|---|---|
//! | field | kind (254) | length = 20 | client port | client IPv6 address |
//!
//! The kind is configurable ([`DEFAULT_KIND`] is 254; 253 is Alibaba's IPv6
//! kind, 200 and 252 appear in other vendors' modules); a decoder is given
//! the [`KindSet`] it accepts. See [`TtmOption`].
//!
//! # The peer record
//!
//! What `getsockopt(fd, SOL_IP, TTM_SO_GET_PEER, buf, 20)` writes on the RS,
//! the layout that the product FAQ's Python example unpacks with
//! `struct.unpack('!bbH4s12s', ...)`:
//!
//! | byte | 0..2 | 2..4 | 4..20 |
//! |---|---|---|---|
//! | field | `af`: u16, **host** order (2 = AF_INET, 10 = AF_INET6) | port, network order | address: IPv6, or IPv4 in bytes 4..8 and zeros in 8..20 |
//!
//! See [`PeerRecord`].
//!
//! # TCP options
//!
//! [`TcpOptions`] walks a TCP header's options area (RFC 9293 §3.1):
//! end of list, no-operation, and length-checked options, with an
//! [`TcpOption::Unknown`] arm for the rest. [`find`] returns the first TTM
//! option of an accepted kind.
//!
//! # Example
//!
//! ```
//! use core::net::{Ipv4Addr, SocketAddr};
//! use ttm_core::{KindSet, TtmOption, DEFAULT_KIND};
//!
//! let client = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 1), 8080));
//! let mut buf = [0u8; 40];
//! let option = TtmOption::new(DEFAULT_KIND, client);
//! let rest = option.emit(&mut buf)?;
//! assert_eq!(rest.len(), 32);
//! assert_eq!(buf[..8], [254, 8, 0x1f, 0x90, 192, 0, 2, 1]);
//!
//! let decoded = TtmOption::decode(&buf[..8], &KindSet::DEFAULT)?;
//! assert_eq!(decoded.client(), client);
//! # Ok::<(), ttm_core::Error>(())
//! ```
#![no_std]
#![forbid(unsafe_code)]

mod error;
mod kinds;
mod option;
mod peer;
mod tcp_options;

pub use error::Error;
pub use kinds::KindSet;
pub use option::{TtmOption, V4_LEN, V6_LEN, option_len};
pub use peer::PeerRecord;
pub use tcp_options::{TcpOption, TcpOptions, find};

/// The socket level of the peer query: `IPPROTO_IP`, which Linux calls
/// `SOL_IP`.
pub const SOL_IP: i32 = 0;

/// The socket option number of the peer query, as the FAQ's RS module
/// defines it: `TTM_BASE_CTL (64+1024+64+64+64+64) + 1`.
pub const TTM_SO_GET_PEER: i32 = 1345;

/// The length of the record that the peer query returns.
pub const PEER_RECORD_LEN: usize = 20;

/// The option kind used unless configured otherwise (the TOA kind that
/// DPVS and Alibaba LVS use).
pub const DEFAULT_KIND: u8 = 254;

/// `AF_INET` on Linux, the record's family for an IPv4 client.
pub const AF_INET: u16 = 2;

/// `AF_INET6` on Linux, the record's family for an IPv6 client.
pub const AF_INET6: u16 = 10;
