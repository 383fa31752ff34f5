//! An engine on a simulated clock, driven as a runner drives it: frames in
//! through `handle_packet`, `handle_timeout` whenever `poll_timeout` asks,
//! frames out through `poll_transmit`.

use std::net::IpAddr;
use std::time::Duration;

use lb_engine::{DropReason, Engine, EngineConfig, Frame, Instant, Transmit, Verdict};

use crate::Ep;
use crate::frame::{C_ISN, S_ISN, Tcp, tcp};
use crate::parse::endpoints;

/// Room the kit leaves behind a frame in the buffer it hands the engine.
pub const TAILROOM: usize = 64;

/// `input` through `e.handle_packet` at `now`: the verdict and the frame
/// as it came out (with `Frame::HEADROOM` before it and [`TAILROOM`]
/// after).
pub fn send_at(e: &mut Engine, now: Instant, input: &[u8]) -> (Verdict, Vec<u8>) {
    let start = Frame::HEADROOM;
    let mut buf = vec![0u8; start + input.len() + TAILROOM];
    buf[start..start + input.len()].copy_from_slice(input);
    let mut frame = Frame::new(&mut buf, start, start + input.len())
        .unwrap_or_else(|| panic!("a frame of {} bytes", input.len()));
    let verdict = e.handle_packet(now, &mut frame);
    (verdict, frame.bytes().to_vec())
}

/// What `e` has to transmit (the RSTs of expired sessions), taken.
pub fn transmits(e: &mut Engine) -> Vec<(Transmit, Vec<u8>)> {
    let mut out = Vec::new();
    let mut buf = [0u8; Engine::TRANSMIT_LEN];
    while let Some((len, to)) = e.poll_transmit(&mut buf) {
        out.push((to, buf[..len].to_vec()));
    }
    out
}

/// Move an engine's clock from `from` to `to`, calling `handle_timeout`
/// whenever `poll_timeout` asks, and take what it transmits.
pub fn advance(e: &mut Engine, from: Instant, to: Instant) -> Vec<(Transmit, Vec<u8>)> {
    let mut sent = Vec::new();
    while let Some(t) = e.poll_timeout() {
        if t > to {
            break;
        }
        e.handle_timeout(t.max(from));
        sent.extend(transmits(e));
    }
    sent
}

/// The verdict of a frame for the server at `a`.
pub fn to_server(a: IpAddr) -> Verdict {
    Verdict::ToServer { next_hop: a }
}

/// The verdict of a frame for the client at `a`.
pub fn to_client(a: IpAddr) -> Verdict {
    Verdict::ToClient { next_hop: a }
}

/// Where a frame the engine writes itself goes, for the server at `a`.
pub fn sent_to_server(a: IpAddr) -> Transmit {
    Transmit::ToServer { next_hop: a }
}

/// Where a frame the engine writes itself goes, for the client at `a`.
pub fn sent_to_client(a: IpAddr) -> Transmit {
    Transmit::ToClient { next_hop: a }
}

/// The verdict of a frame dropped for `reason`.
pub fn dropped(reason: DropReason) -> Verdict {
    Verdict::Drop(reason)
}

/// Asserts that the sessions alive are what the counters say (created +
/// restored - expired - reset - replaced - rescheduled - evicted), and
/// what the traffic of the first eight listeners and their first eight
/// backends says.
pub fn check_counts(e: &Engine) {
    let c = e.counters();
    let alive = c.sessions_created + c.sessions_restored
        - c.sessions_expired
        - c.sessions_reset
        - c.sessions_replaced
        - c.sessions_rescheduled
        - c.sessions_evicted;
    assert_eq!(u64::from(e.session_count()), alive, "{c:#?}");
    let mut active = 0;
    for l in 0..8 {
        let Some(t) = e.listener_traffic(l) else {
            continue;
        };
        active += t.active_sessions;
        let backends: u64 = (0..8)
            .filter_map(|b| e.backend_traffic(l, b))
            .map(|t| t.active_sessions)
            .sum();
        assert_eq!(backends, t.active_sessions, "listener {l}");
    }
    assert_eq!(active, alive);
}

/// A TCP session through the engine: client, VIP, and the local and
/// server ends the engine chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conn {
    /// The client.
    pub c: Ep,
    /// The VIP and port.
    pub v: Ep,
    /// The local address and port the engine chose.
    pub l: Ep,
    /// The server.
    pub r: Ep,
}

impl Conn {
    /// A segment from the client to the VIP.
    pub fn client(&self, t: Tcp, payload: &[u8]) -> Vec<u8> {
        tcp(self.c, self.v, t, payload)
    }

    /// A segment from the server to the local end.
    pub fn server(&self, t: Tcp, payload: &[u8]) -> Vec<u8> {
        tcp(self.r, self.l, t, payload)
    }

    /// The outbound tuple (local end, server).
    pub fn tuple(&self) -> (Ep, Ep) {
        (self.l, self.r)
    }
}

/// An engine and its caller's clock.
pub struct Sim {
    /// The engine.
    pub e: Engine,
    /// The clock.
    pub now: Instant,
    /// Whether [`check_counts`] runs after every frame and every move of
    /// the clock.
    pub counted: bool,
}

impl Sim {
    /// An engine made from `config`, its clock at `now`.
    ///
    /// # Panics
    ///
    /// If the engine refuses the configuration.
    pub fn new(config: EngineConfig, now: Instant) -> Sim {
        Sim {
            e: Engine::new(config).unwrap_or_else(|e| panic!("config: {e}")),
            now,
            counted: false,
        }
    }

    /// The same, with [`check_counts`] after every frame and clock move.
    pub fn counted(config: EngineConfig, now: Instant) -> Sim {
        Sim {
            counted: true,
            ..Sim::new(config, now)
        }
    }

    /// A frame through the engine now: its verdict and the frame as it
    /// came out.
    pub fn send(&mut self, input: &[u8]) -> (Verdict, Vec<u8>) {
        let out = send_at(&mut self.e, self.now, input);
        if self.counted {
            check_counts(&self.e);
        }
        out
    }

    /// A frame's verdict.
    pub fn verdict(&mut self, input: &[u8]) -> Verdict {
        self.send(input).0
    }

    /// Move the clock to `to`, calling `handle_timeout` whenever
    /// `poll_timeout` asks, as a runner does (what is transmitted stays in
    /// the engine: see [`Sim::take_transmits`]).
    ///
    /// # Panics
    ///
    /// If `to` is before now.
    pub fn advance_to(&mut self, to: Instant) {
        assert!(to >= self.now, "the clock goes forward");
        while let Some(t) = self.e.poll_timeout() {
            if t > to {
                break;
            }
            let t = t.max(self.now);
            self.e.handle_timeout(t);
            self.now = t;
        }
        self.now = to;
        if self.counted {
            check_counts(&self.e);
        }
    }

    /// Move the clock on by `d`.
    pub fn advance(&mut self, d: Duration) {
        self.advance_to(self.now + d);
    }

    /// What the engine has to transmit, taken.
    pub fn take_transmits(&mut self) -> Vec<(Transmit, Vec<u8>)> {
        transmits(&mut self.e)
    }

    /// A client's SYN (sequence [`C_ISN`]) from `c` to `v`, which the
    /// engine must forward: the session.
    pub fn open(&mut self, c: Ep, v: Ep) -> Conn {
        let (verdict, out) = self.send(&tcp(c, v, Tcp::syn(C_ISN), b""));
        let (l, r) = endpoints(&out);
        assert_eq!(verdict, to_server(r.0), "SYN from {c:?} to {v:?}");
        Conn { c, v, l, r }
    }

    /// A segment of `conn` from the client (`true`) or the server; when
    /// forwarded, checks the ends it was rewritten to.
    pub fn client_or_server(&mut self, conn: &Conn, client: bool, t: Tcp, data: &[u8]) -> Verdict {
        let input = if client {
            conn.client(t, data)
        } else {
            conn.server(t, data)
        };
        let (verdict, out) = self.send(&input);
        match verdict {
            Verdict::ToServer { .. } => assert_eq!(endpoints(&out), (conn.l, conn.r), "{conn:?}"),
            Verdict::ToClient { .. } => assert_eq!(endpoints(&out), (conn.v, conn.c), "{conn:?}"),
            _ => {}
        }
        verdict
    }

    /// A segment of `conn` from the client.
    pub fn client(&mut self, conn: &Conn, t: Tcp, data: &[u8]) -> Verdict {
        self.client_or_server(conn, true, t, data)
    }

    /// A segment of `conn` from the server.
    pub fn server(&mut self, conn: &Conn, t: Tcp, data: &[u8]) -> Verdict {
        self.client_or_server(conn, false, t, data)
    }

    /// The server's SYN-ACK, which the engine must forward to the client.
    pub fn answer(&mut self, conn: &Conn) {
        let verdict = self.server(conn, Tcp::synack(S_ISN, C_ISN + 1), b"");
        assert_eq!(verdict, to_client(conn.c.0), "SYN-ACK of {conn:?}");
    }

    /// The client's third ACK, which the engine must forward.
    pub fn third_ack(&mut self, conn: &Conn) {
        let verdict = self.client(conn, Tcp::ack(C_ISN + 1, S_ISN + 1), b"");
        assert_eq!(verdict, to_server(conn.r.0), "third ACK of {conn:?}");
    }

    /// The three-way handshake through the engine.
    pub fn establish(&mut self, c: Ep, v: Ep) -> Conn {
        let conn = self.open(c, v);
        self.answer(&conn);
        self.third_ack(&conn);
        conn
    }

    /// The session of `conn` is gone: its server's SYN-ACK matches
    /// nothing.
    pub fn gone(&mut self, conn: &Conn, what: &str) {
        assert_eq!(
            self.verdict(&conn.server(Tcp::synack(S_ISN, C_ISN + 1), b"")),
            dropped(DropReason::NoSession),
            "{what}: {conn:?} should be gone"
        );
    }

    /// Data both ways on an established `conn` is still forwarded, between
    /// the same ends.
    pub fn still_flows(&mut self, conn: &Conn, what: &str) {
        assert_eq!(
            self.client(conn, Tcp::ack(C_ISN + 1, S_ISN + 1), b"more"),
            to_server(conn.r.0),
            "{what}: client to server"
        );
        assert_eq!(
            self.server(conn, Tcp::ack(S_ISN + 1, C_ISN + 5), b"back"),
            to_client(conn.c.0),
            "{what}: server to client"
        );
    }
}
