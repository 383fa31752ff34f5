//! [`Session`]: one FULLNAT connection, in one 64-byte cache line, and the
//! TCP state it tracks from the flags seen in both directions.
//!
//! What a packet needs of its session is here: the client's address and
//! port, the local port, and indices of the listener, backend and local
//! address (whose addresses live in small, hot configuration arrays), the
//! deadline, and the last sequence and acknowledgment numbers each way
//! (for the RSTs sent when an established session idles out, FAQ CASE 5).
//!
//! TCP state is derived from flags, as IPVS's state table does for a
//! director that sees both directions:
//!
//! | seen | state |
//! |---|---|
//! | an RST either way | `Close` |
//! | both FINs, each acknowledged | `TimeWait` |
//! | both FINs | `LastAck` |
//! | the client's FIN | `FinWait` |
//! | the server's FIN | `CloseWait` |
//! | the client's ACK after the server's SYN-ACK, or data | `Established` |
//! | the client's SYN (and maybe the SYN-ACK) | `SynRecv` |

/// Protocol-independent per-session flags.
pub(crate) mod flag {
    /// TCP: the server's SYN-ACK has been seen.
    pub(crate) const SYNACK: u8 = 1 << 0;
    /// TCP: the server sent a byte (or FIN) after its SYN-ACK. Until then
    /// `s_next` is the server's initial sequence number + 1, and the
    /// client's segments that acknowledge exactly that carry the TTM
    /// option.
    pub(crate) const SERVER_SENT: u8 = 1 << 1;
    /// TCP: the handshake completed.
    pub(crate) const ESTABLISHED: u8 = 1 << 2;
    /// TCP: the client sent FIN.
    pub(crate) const CLIENT_FIN: u8 = 1 << 3;
    /// TCP: the server sent FIN.
    pub(crate) const SERVER_FIN: u8 = 1 << 4;
    /// TCP: the server acknowledged the client's FIN.
    pub(crate) const CLIENT_FIN_ACKED: u8 = 1 << 5;
    /// TCP: the client acknowledged the server's FIN.
    pub(crate) const SERVER_FIN_ACKED: u8 = 1 << 6;
    /// TCP: an RST was seen.
    pub(crate) const RST: u8 = 1 << 7;
}

/// A session's TCP state, for its timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TcpState {
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
}

/// How a session's packets cross the engine: the client's address family
/// and the server's. Chosen once, when the session is made (from its
/// listener's VIP and its backend's address, which never change while the
/// session lives), and read by every step that differs by family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Path {
    /// IPv4 client, IPv4 server: addresses and ports rewritten in place.
    #[default]
    FourToFour,
    /// IPv6 client, IPv4 server: headers translated (RFC 7915).
    SixToFour,
    /// IPv6 client, IPv6 server: addresses and ports rewritten in place.
    SixToSix,
}

impl Path {
    /// Whether the client side is IPv6.
    #[inline]
    pub(crate) fn client_v6(self) -> bool {
        self != Path::FourToFour
    }

    /// Whether the server side is IPv6.
    #[inline]
    pub(crate) fn server_v6(self) -> bool {
        self == Path::SixToSix
    }
}

/// One session: 64 bytes, aligned to a cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub(crate) struct Session {
    /// Client address: IPv4 in the first 4 bytes (IPv6 arrives later).
    pub(crate) client: [u8; 16],
    pub(crate) cport: u16,
    pub(crate) lport: u16,
    /// Listener slot.
    pub(crate) listener: u16,
    /// Local address, an index into the listener's pool.
    pub(crate) lip: u16,
    /// Backend slot in the listener's pool.
    pub(crate) backend: u32,
    /// Deadline, in engine ticks (milliseconds, wrapping).
    pub(crate) expires: u32,
    pub(crate) proto: u8,
    pub(crate) flags: u8,
    /// The checksum changes of the inbound rewrite (client side to server
    /// side), folded: the IPv4 header's (both addresses) and the
    /// transport's (addresses and ports). The outbound rewrite is the exact
    /// inverse, so its changes are these complemented (RFC 1624). Computed
    /// once when the session starts.
    pub(crate) ip_delta: u16,
    pub(crate) l4_delta: u16,
    /// 4to4, 6to4 or 6to6, set when the session is made.
    pub(crate) path: Path,
    /// Free: the session is one cache line.
    pub(crate) _pad: u8,
    /// TCP, client to server: next sequence number, last acknowledgment.
    pub(crate) c_next: u32,
    pub(crate) c_ack: u32,
    /// TCP, server to client: next sequence number, last acknowledgment.
    pub(crate) s_next: u32,
    pub(crate) s_ack: u32,
}

const _: () = assert!(core::mem::size_of::<Session>() == 64);

/// Whether sequence number `a` is after `b` (RFC 1982 serial arithmetic).
#[inline]
pub(crate) fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

impl Session {
    /// Whether this is the session of `client`:`cport` on listener
    /// `listener`: the inbound key, which the table's candidates for a
    /// client packet's hash are checked with.
    #[inline(always)]
    pub(crate) fn of_client(&self, listener: u16, client: &[u8; 16], cport: u16) -> bool {
        self.listener == listener && self.cport == cport && self.client == *client
    }

    /// The TCP state its flags give.
    pub(crate) fn tcp_state(&self) -> TcpState {
        let f = self.flags;
        let both_fins = flag::CLIENT_FIN | flag::SERVER_FIN;
        let both_acked = flag::CLIENT_FIN_ACKED | flag::SERVER_FIN_ACKED;
        // The common case of a new session first: with none of these
        // flags, every test below fails.
        let closing_or_open = flag::RST | both_acked | both_fins | flag::ESTABLISHED;
        if f & closing_or_open == 0 {
            return TcpState::SynRecv;
        }
        if f & flag::RST != 0 {
            TcpState::Close
        } else if f & both_acked == both_acked {
            TcpState::TimeWait
        } else if f & both_fins == both_fins {
            TcpState::LastAck
        } else if f & flag::CLIENT_FIN != 0 {
            TcpState::FinWait
        } else if f & flag::SERVER_FIN != 0 {
            TcpState::CloseWait
        } else if f & flag::ESTABLISHED != 0 {
            TcpState::Established
        } else {
            TcpState::SynRecv
        }
    }

    /// Track a segment from the client: `seq`, `ack`, its flags and its
    /// length in sequence space. True when this segment completed the
    /// handshake (the session is no longer half-open).
    #[inline(always)]
    pub(crate) fn track_client(&mut self, flags: u8, seq: u32, ack: u32, seq_len: u32) -> bool {
        use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
        let end = seq.wrapping_add(seq_len);
        if flags & SYN != 0 || seq_after(end, self.c_next) {
            self.c_next = end;
        }
        if flags & RST != 0 {
            self.flags |= flag::RST;
            return false;
        }
        let mut established = false;
        if flags & ACK != 0 {
            self.c_ack = ack;
            if self.flags & (flag::SYNACK | flag::ESTABLISHED) == flag::SYNACK
                && flags & SYN == 0
                && self.acks_syn(ack)
            {
                self.flags |= flag::ESTABLISHED;
                established = true;
            }
            if self.flags & flag::SERVER_FIN != 0 && !seq_after(self.s_next, ack) {
                self.flags |= flag::SERVER_FIN_ACKED;
            }
        }
        if flags & FIN != 0 {
            self.flags |= flag::CLIENT_FIN;
        }
        established
    }

    /// Whether this is a TCP session whose handshake completed and which
    /// has seen no FIN and no RST: the sessions whose plain ACKs the fast
    /// path takes, with [`Session::track_client_ack`] and
    /// [`Session::track_server_ack`].
    #[inline(always)]
    pub(crate) fn tcp_open(&self) -> bool {
        let open = flag::SYNACK | flag::SERVER_SENT | flag::ESTABLISHED;
        self.proto == crate::wire::PROTO_TCP
            && self.flags & !open == 0
            && self.flags & flag::ESTABLISHED != 0
    }

    /// [`Session::track_client`] of an ACK without SYN, RST or FIN in a
    /// session that is [`Session::tcp_open`]: the same changes (it cannot
    /// complete the handshake, which is complete, nor acknowledge a FIN,
    /// since none was seen), and the session stays open.
    #[inline(always)]
    pub(crate) fn track_client_ack(&mut self, seq: u32, ack: u32, seq_len: u32) {
        let end = seq.wrapping_add(seq_len);
        if seq_after(end, self.c_next) {
            self.c_next = end;
        }
        self.c_ack = ack;
    }

    /// [`Session::track_server`] of an ACK without SYN, RST or FIN in a
    /// session that is [`Session::tcp_open`]: the same changes, and the
    /// session stays open.
    #[inline(always)]
    pub(crate) fn track_server_ack(&mut self, seq: u32, ack: u32, seq_len: u32) {
        let end = seq.wrapping_add(seq_len);
        if seq_after(end, self.s_next) {
            self.s_next = end;
        }
        if seq_len > 0 && self.flags & flag::SYNACK != 0 {
            self.flags |= flag::SERVER_SENT;
        }
        self.s_ack = ack;
    }

    /// Whether a client's `ack` acknowledges the server's SYN-ACK, as a
    /// server in SYN_RECV checks it (Linux: `ack_seq == snt_isn + 1`):
    /// exactly the server's initial sequence number + 1, or, once the
    /// server has sent data (TCP Fast Open), at most what it sent and not
    /// more than 1 MiB before. So a spoofed client, which never sees the
    /// SYN-ACK, cannot turn its session into an established one (which is
    /// never evicted) by sending an ACK after its SYN.
    fn acks_syn(&self, ack: u32) -> bool {
        if self.flags & flag::SERVER_SENT == 0 {
            ack == self.s_next
        } else {
            !seq_after(ack, self.s_next) && seq_after(ack, self.s_next.wrapping_sub(1 << 20))
        }
    }

    /// Whether a client segment with these flags and acknowledgment number
    /// gets the TTM option: it acknowledges exactly the server's SYN-ACK
    /// (initial sequence number + 1) and the server has sent nothing since
    /// — the third handshake ACK, and anything the client sends before the
    /// server's first byte, FIN included — and it is neither SYN nor RST.
    pub(crate) fn wants_ttm(&self, flags: u8, ack: u32) -> bool {
        use crate::wire::tcp_flags::{ACK, RST, SYN};
        self.flags & (flag::SYNACK | flag::SERVER_SENT) == flag::SYNACK
            && flags & (ACK | SYN | RST) == ACK
            && ack == self.s_next
    }

    /// Track a segment from the server.
    #[inline(always)]
    pub(crate) fn track_server(&mut self, flags: u8, seq: u32, ack: u32, seq_len: u32) {
        use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
        let end = seq.wrapping_add(seq_len);
        if flags & SYN != 0 || seq_after(end, self.s_next) {
            self.s_next = end;
        }
        if flags & RST != 0 {
            self.flags |= flag::RST;
            return;
        }
        if flags & SYN != 0 && flags & ACK != 0 {
            self.flags |= flag::SYNACK;
        } else if seq_len > 0 && self.flags & flag::SYNACK != 0 {
            self.flags |= flag::SERVER_SENT;
        }
        if flags & ACK != 0 {
            self.s_ack = ack;
            if self.flags & flag::CLIENT_FIN != 0 && !seq_after(self.c_next, ack) {
                self.flags |= flag::CLIENT_FIN_ACKED;
            }
        }
        if flags & FIN != 0 {
            self.flags |= flag::SERVER_FIN;
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};

    /// `tcp_state` follows the table in the module's documentation, in
    /// its order, for every set of flags.
    #[test]
    fn tcp_state_of_every_flag_set() {
        let table = |f: u8| {
            let has = |bits: u8| f & bits == bits;
            if has(flag::RST) {
                TcpState::Close
            } else if has(flag::CLIENT_FIN_ACKED | flag::SERVER_FIN_ACKED) {
                TcpState::TimeWait
            } else if has(flag::CLIENT_FIN | flag::SERVER_FIN) {
                TcpState::LastAck
            } else if has(flag::CLIENT_FIN) {
                TcpState::FinWait
            } else if has(flag::SERVER_FIN) {
                TcpState::CloseWait
            } else if has(flag::ESTABLISHED) {
                TcpState::Established
            } else {
                TcpState::SynRecv
            }
        };
        for flags in 0..=u8::MAX {
            let s = Session {
                flags,
                ..Session::default()
            };
            assert_eq!(s.tcp_state(), table(flags), "{flags:#010b}");
        }
    }

    #[test]
    fn handshake_data_and_close() {
        let mut s = Session::default();
        s.track_client(SYN, 1000, 0, 1);
        assert_eq!(s.tcp_state(), TcpState::SynRecv);
        s.track_server(SYN | ACK, 5000, 1001, 1);
        assert_eq!(s.tcp_state(), TcpState::SynRecv);
        s.track_client(ACK, 1001, 5001, 0);
        assert_eq!(s.tcp_state(), TcpState::Established);
        s.track_client(ACK, 1001, 5001, 100);
        assert_eq!((s.c_next, s.c_ack), (1101, 5001));
        s.track_server(ACK, 5001, 1101, 0);
        s.track_client(FIN | ACK, 1101, 5001, 1);
        assert_eq!(s.tcp_state(), TcpState::FinWait);
        s.track_server(FIN | ACK, 5001, 1102, 1);
        assert_eq!(s.tcp_state(), TcpState::LastAck);
        s.track_client(ACK, 1102, 5002, 0);
        assert_eq!(s.tcp_state(), TcpState::TimeWait);
    }

    #[test]
    fn only_an_ack_of_the_syn_ack_establishes() {
        let mut s = Session::default();
        s.track_client(SYN, 1000, 0, 1);
        s.track_server(SYN | ACK, 5000, 1001, 1);
        // A spoofed client guesses: any other number leaves it half-open.
        for wrong in [0, 5000, 5002, 77_777] {
            s.track_client(ACK, 1001, wrong, 0);
            assert_eq!(s.tcp_state(), TcpState::SynRecv, "ack {wrong}");
        }
        s.track_client(ACK, 1001, 5001, 0);
        assert_eq!(s.tcp_state(), TcpState::Established);
        // After server data (Fast Open), an ACK of part of it establishes.
        let mut s = Session::default();
        s.track_client(SYN, 1000, 0, 1);
        s.track_server(SYN | ACK, 5000, 1001, 1);
        s.track_server(ACK, 5001, 1001, 100);
        s.track_client(ACK, 1001, 5200, 0);
        assert_eq!(s.tcp_state(), TcpState::SynRecv, "beyond what was sent");
        s.track_client(ACK, 1001, 5051, 0);
        assert_eq!(s.tcp_state(), TcpState::Established);
    }

    #[test]
    fn ttm_until_the_server_sends() {
        let mut s = Session::default();
        s.track_client(SYN, 1000, 0, 1);
        assert!(!s.wants_ttm(ACK, 5001), "no SYN-ACK yet");
        s.track_server(SYN | ACK, 5000, 1001, 1);
        assert!(!s.wants_ttm(SYN, 5001));
        assert!(!s.wants_ttm(RST | ACK, 5001));
        assert!(!s.wants_ttm(ACK, 5002));
        assert!(s.wants_ttm(ACK, 5001), "third ACK");
        s.track_client(ACK, 1001, 5001, 0);
        assert!(s.wants_ttm(ACK, 5001), "client data before the server's");
        assert!(s.wants_ttm(FIN | ACK, 5001), "FIN before the server's");
        s.track_server(SYN | ACK, 5000, 1001, 1); // a retransmitted SYN-ACK
        assert!(s.wants_ttm(ACK, 5001));
        s.track_server(ACK, 5001, 1001, 10);
        assert!(!s.wants_ttm(ACK, 5001), "the server has sent data");
        assert!(!s.wants_ttm(ACK, 5011));
    }

    #[test]
    fn server_closes_first_and_rst() {
        let mut s = Session::default();
        s.track_client(SYN, u32::MAX, 0, 1); // wraps
        s.track_server(SYN | ACK, 7, 0, 1);
        s.track_client(ACK, 0, 8, 0);
        s.track_server(FIN | ACK, 8, 0, 1);
        assert_eq!(s.tcp_state(), TcpState::CloseWait);
        s.track_client(RST, 0, 0, 0);
        assert_eq!(s.tcp_state(), TcpState::Close);
    }

    /// Every field of a session.
    #[allow(clippy::type_complexity)]
    fn all(
        s: &Session,
    ) -> (
        ([u8; 16], u16, u16, u16, u16, u32),
        (u32, u8, u8, u16, u16, Path),
        [u32; 4],
    ) {
        (
            (s.client, s.cport, s.lport, s.listener, s.lip, s.backend),
            (s.expires, s.proto, s.flags, s.ip_delta, s.l4_delta, s.path),
            [s.c_next, s.c_ack, s.s_next, s.s_ack],
        )
    }

    /// The open-session trackers change what the general ones change, on
    /// every open session.
    #[test]
    fn open_session_trackers_are_the_general_ones() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut open = 0;
        for _ in 0..100_000 {
            let r = next();
            let s = Session {
                proto: if r & 0x100 == 0 { 6 } else { 17 },
                // Mostly the handshake's flags, sometimes any.
                flags: if r & 0x200 == 0 { r as u8 & 7 } else { r as u8 },
                c_next: (r >> 8) as u32 & 0xffff,
                c_ack: (r >> 24) as u32,
                s_next: (r >> 40) as u32 & 0xffff,
                ..Session::default()
            };
            if !s.tcp_open() {
                continue;
            }
            open += 1;
            let r = next();
            let (seq, ack, len) = (r as u32 & 0x1_ffff, (r >> 32) as u32, (r >> 50) as u32 & 3);
            let (mut a, mut b) = (s, s);
            assert!(!a.track_client(ACK, seq, ack, len));
            b.track_client_ack(seq, ack, len);
            assert_eq!(all(&a), all(&b), "client");
            assert!(b.tcp_open());
            let (mut a, mut b) = (s, s);
            a.track_server(ACK, seq, ack, len);
            b.track_server_ack(seq, ack, len);
            assert_eq!(all(&a), all(&b), "server");
            assert!(b.tcp_open());
        }
        assert!(open > 10_000, "{open}");
    }

    #[test]
    fn old_segments_do_not_move_next_back() {
        let mut s = Session::default();
        s.track_client(SYN, 100, 0, 1);
        s.track_client(ACK, 101, 0, 50);
        s.track_client(ACK, 101, 0, 10); // a retransmission
        assert_eq!(s.c_next, 151);
        assert!(seq_after(1, u32::MAX) && !seq_after(u32::MAX, 1));
    }
}
