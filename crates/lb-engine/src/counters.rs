//! Counters (FAQ Q15): traffic per listener and per backend, sessions, and
//! drops by reason.
//!
//! Plain integers updated by the one thread that owns the engine, and read
//! by reference between batches: reading costs nothing and stops nothing.
//! A runner with one engine per queue sums the engines' counters.

use crate::verdict::DropReason;

/// Traffic and sessions of one listener or one backend. "In" is client to
/// server, "out" is server to client; bytes are IP bytes (header included)
/// as received, before the engine adds or removes any TCP option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Packets from clients.
    pub packets_in: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Packets from servers.
    pub packets_out: u64,
    /// Bytes from servers.
    pub bytes_out: u64,
    /// Sessions created.
    pub new_sessions: u64,
    /// Sessions alive now.
    pub active_sessions: u64,
}

impl Traffic {
    #[inline]
    pub(crate) fn inbound(&mut self, bytes: usize) {
        self.packets_in += 1;
        self.bytes_in += bytes as u64;
    }

    #[inline]
    pub(crate) fn outbound(&mut self, bytes: usize) {
        self.packets_out += 1;
        self.bytes_out += bytes as u64;
    }
}

/// Engine-wide counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    /// Drops, indexed by [`DropReason::index`].
    pub drops: [u64; DropReason::COUNT],
    /// Frames passed to the host's stack.
    pub passed: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions that idled out.
    pub sessions_expired: u64,
    /// Sessions removed by configuration (a listener removed, a backend's
    /// sessions reset).
    pub sessions_reset: u64,
    /// Closing sessions (TIME_WAIT or CLOSE) that a new SYN from the same
    /// client port replaced.
    pub sessions_replaced: u64,
    /// Half-open TCP sessions (no SYN-ACK from the server yet) ended because
    /// the client's SYN came again while their backend could take no new
    /// session (down, removed or at weight 0): the SYN starts a new
    /// session, on another backend and from a new local port.
    pub sessions_rescheduled: u64,
    /// Half-open TCP sessions (the client had not acknowledged the server's
    /// SYN-ACK) ended, oldest first, to make room for a new SYN when the
    /// table was full.
    ///
    pub sessions_evicted: u64,
    /// Sessions restored from a snapshot ([`crate::Engine::import_state`]).
    ///
    /// Sessions alive = created + restored - expired - reset - replaced -
    /// rescheduled - evicted.
    pub sessions_restored: u64,
    /// RST segments emitted: to both sides when established TCP sessions
    /// idled out, and to the server of an evicted half-open session.
    pub rst_sent: u64,
    /// Echo requests answered.
    pub echo_replies: u64,
    /// Client segments that got the TTM option.
    pub ttm_inserted: u64,
    /// Segments that should have got the option but could not (the IP
    /// length would pass 65535, or the frame had too little headroom).
    pub ttm_missed: u64,
    /// Segments whose lesser options were pruned to make room for it.
    pub ttm_pruned: u64,
    /// TTM/TOA-kind options that clients sent and the engine removed.
    pub ttm_spoofed: u64,
    /// ICMP errors about a session (destination unreachable, time
    /// exceeded, packet too big) forwarded to its other side.
    pub icmp_errors_forwarded: u64,
    /// SYN-ACKs whose MSS was lowered to leave room for the option.
    pub mss_lowered: u64,
    /// Closed tuples the quarantine could not hold because it was full:
    /// each may be handed out again before the quarantine period ends.
    pub quarantine_overflow: u64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            drops: [0; DropReason::COUNT],
            passed: 0,
            sessions_created: 0,
            sessions_expired: 0,
            sessions_reset: 0,
            sessions_replaced: 0,
            sessions_rescheduled: 0,
            sessions_evicted: 0,
            sessions_restored: 0,
            rst_sent: 0,
            echo_replies: 0,
            quarantine_overflow: 0,
            ttm_inserted: 0,
            ttm_missed: 0,
            ttm_pruned: 0,
            ttm_spoofed: 0,
            mss_lowered: 0,
            icmp_errors_forwarded: 0,
        }
    }
}

impl Counters {
    /// The drops counted for `reason`.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.index()).copied().unwrap_or(0)
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    #[inline]
    pub(crate) fn drop(&mut self, reason: DropReason) {
        if let Some(n) = self.drops.get_mut(reason.index()) {
            *n += 1;
        }
    }
}
