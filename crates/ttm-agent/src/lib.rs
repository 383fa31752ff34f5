//! The real server's side of the TTM option, without a kernel module: BPF
//! programs attached to a cgroup read the option from each passively
//! opened TCP connection's handshake and answer `getsockopt(SOL_IP, 1345,
//! 20)` (and `getpeername()`/`accept()`) with the client's address, as the
//! product's kernel module did; see `bpf/ttm_agent.bpf.c`.

pub mod cgroup;
pub mod check;
pub mod programs;
pub mod ranges;
pub mod stats;
