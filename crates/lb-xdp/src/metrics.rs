//! The metrics endpoint: a [`Snapshot`] of every figure the data path
//! keeps, [`render`]ed in the Prometheus text exposition format (0.0.4) and
//! [`serve`]d over HTTP.
//!
//! ```text
//! data path (one engine per queue)          metrics thread
//!   Snapshot::default()
//!   add_engine(engine, installed) × queues
//!   rings, neigh, reloads, health
//!   *shared.lock() = snapshot  ───────────▶  GET /metrics: clone, render
//! ```
//!
//! The data path builds a fresh snapshot every so often (between batches)
//! and swaps it into the shared slot; the server only ever clones the
//! latest one, so a scrape costs the data path one lock of a mutex that is
//! held for a clone.
//!
//! Every metric is named `lbd_...`; counters end in `_total`. The families:
//!
//! | family | type | labels |
//! |---|---|---|
//! | `lbd_drops_total` | counter | `reason` (every [`DropReason`], zeros included) |
//! | `lbd_passed_total`, `lbd_sessions_created_total`, ... (every [`Counters`] field) | counter | |
//! | `lbd_sessions`, `lbd_quarantined`, `lbd_engines` | gauge | |
//! | `lbd_queue_sessions` | gauge | `queue` |
//! | `lbd_steering_info` (always 1) | gauge | `mode` (`single`, `hand-off`, `rss`) |
//! | `lbd_sessions_not_restored_total` | counter | |
//! | `lbd_listener_info` (always 1) | gauge | `listener`, `vip`, `port`, `protocol` |
//! | `lbd_listener_{packets,bytes}_{in,out}_total`, `lbd_listener_new_sessions_total` | counter | `listener` |
//! | `lbd_listener_active_sessions` | gauge | `listener` |
//! | `lbd_backend_{packets,bytes}_{in,out}_total`, `lbd_backend_new_sessions_total` | counter | `listener`, `address`, `port` |
//! | `lbd_backend_active_sessions`, `lbd_backend_up`, `lbd_backend_weight` | gauge | same |
//! | `lbd_frames_received_total`, `lbd_frames_own_total` | counter | `queue` |
//! | `lbd_frames_sent_total` | counter | `queue`, `origin` (`received`, `own`) |
//! | `lbd_frames_dropped_total` | counter | `queue`, `origin`, `reason` (every [`DropReason`] and every [`Loss`] for `received`, every [`Loss`] for `own`; zeros included) |
//! | `lbd_frames_handed_out_total`, `lbd_frames_handed_in_total` | counter | `queue` |
//! | `lbd_frames_held` | gauge | `queue`, `origin` |
//! | `lbd_xdp_packets_total` | counter | `queue`, `outcome` (`redirected`, `passed`, `no_socket`) |
//! | `lbd_ring_..._total` (every `u64` field of [`RingStats`]) | counter | `queue` |
//! | `lbd_neigh_..._total` (every [`NeighStats`] field) | counter | |
//! | `lbd_config_reloads_total` | counter | `result` (`ok`, `failed`) |
//! | `lbd_health_up` | gauge | `listener`, `address`, `port` |
//! | `lbd_health_checks_total` | counter | `listener`, `address`, `port`, `result` (`ok`, `failed`) |
//! | `lbd_l7_...` | | the HTTP and HTTPS listeners' families, rendered by `lb_l7` ([`Snapshot::l7`]) |
//!
//! The health families cover the backends of every listener, TCP, UDP,
//! HTTP and HTTPS.
//!
//! # Every frame accounted for
//!
//! Per queue, every frame `lbd` took from its RX ring was sent (put on the
//! TX ring), dropped for exactly one reason, or is held now (waiting for
//! its next hop's MAC address, or for room in the TX ring); the same holds
//! for the frames `lbd` makes itself (the RSTs of expiry), which are
//! counted apart (see [`crate::ledger`]):
//!
//! ```text
//! lbd_frames_received_total{queue=q} + lbd_frames_handed_in_total{queue=q}
//!   = lbd_frames_sent_total{queue=q,origin="received"}
//!   + Σ lbd_frames_dropped_total{queue=q,origin="received"}   (every reason)
//!   + lbd_frames_held{queue=q,origin="received"}
//!   + lbd_frames_handed_out_total{queue=q}
//! lbd_frames_own_total{queue=q}
//!   = the same three terms with origin="own"
//! ```
//!
//! exactly, in every scrape. The engine's reasons are those of
//! `lbd_drops_total` (summed over the queues, they are equal); `lbd`'s own
//! are the [`Loss`] labels: `for_host` (the engine passed the frame to
//! the host's stack, which `lbd` cannot do), `no_route`, `netlink_error`,
//! `neighbour_queue_full`, `no_neighbour`, `tx_full` (the TX ring and its
//! backlog were full) and `bookkeeping` (0 unless a bug).
//!
//! Before `lbd`, the XDP program counts every packet of a queue as
//! redirected to the queue's socket, passed to the kernel, or dropped for
//! want of a socket (`lbd_xdp_packets_total`); of the redirected ones, the
//! kernel drops some before `lbd` sees them and counts them in the
//! socket's statistics. So, up to the frames still in the RX ring:
//!
//! ```text
//! lbd_xdp_packets_total{queue=q,outcome="redirected"}
//!   = lbd_frames_received_total{queue=q}
//!   + lbd_ring_kernel_rx_dropped_total{queue=q}      (no room in the UMEM, too long)
//!   + lbd_ring_kernel_rx_ring_full_total{queue=q}    (the RX ring was full)
//! ```
//!
//! The kernel's figures are read every 100 ms, the rest with every pass
//! of the loop; the snapshot is taken every 500 ms.

use std::fmt::Write as _;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lb_engine::{Counters, DropReason, Protocol, Traffic};

use crate::ledger::{Dropped, Ledger, Loss, Origin};
use crate::xdp::XdpStats;

/// Per-queue ring statistics (filled by the data path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RingStats {
    /// The receive queue (and AF_XDP socket) these figures are about.
    pub queue: u32,
    /// Frames taken from the RX ring.
    pub rx_packets: u64,
    /// Non-empty batches taken from the RX ring.
    pub rx_batches: u64,
    /// Frames put on the TX ring.
    pub tx_packets: u64,
    /// `sendto` calls made because the TX ring asked for a wakeup.
    pub tx_wakeups: u64,
    /// `poll`/`recvfrom` calls made because the fill ring asked for a wakeup.
    pub rx_wakeups: u64,
    /// Times the fill ring could not be refilled (no free frame).
    pub fill_ring_empty: u64,
    /// Frames that found the TX ring full and waited in the backlog (not
    /// dropped: see [`Loss::TxFull`] for those).
    pub tx_ring_full: u64,
    /// The kernel's `XDP_STATISTICS`: frames dropped for other reasons
    /// (no chunk in the fill ring, too long for a chunk).
    pub kernel_rx_dropped: u64,
    /// The kernel's `XDP_STATISTICS`: frames dropped because the RX ring
    /// was full.
    pub kernel_rx_ring_full: u64,
    /// The kernel's `XDP_STATISTICS`: times the fill ring was empty.
    pub kernel_fill_ring_empty: u64,
    /// The kernel's `XDP_STATISTICS`: times the TX ring was empty.
    pub kernel_tx_ring_empty: u64,
    /// The kernel's `XDP_STATISTICS`: invalid descriptors in the RX ring.
    pub kernel_rx_invalid_descs: u64,
    /// The kernel's `XDP_STATISTICS`: invalid descriptors in the TX ring
    /// (frames `lbd` sent that the kernel refused).
    pub kernel_tx_invalid_descs: u64,
    /// Times the loop slept in `poll` because its rings were idle.
    pub poll_sleeps: u64,
    /// TX wakeups the kernel refused (an error other than "again").
    pub tx_wakeup_errors: u64,
    /// Frames dropped because they broke the UMEM bookkeeping (stays 0
    /// unless something is wrong).
    pub bookkeeping_errors: u64,
    /// Frames the engine passed to the host: `lbd` cannot hand a frame
    /// back to the kernel, so they are dropped.
    pub pass_dropped: u64,
    /// What became of every frame of the queue.
    pub frames: Ledger,
    /// The XDP program's counters for the queue.
    pub xdp: XdpStats,
}

/// Neighbour resolution statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighStats {
    /// Next hops whose MAC address was learned.
    pub resolved: u64,
    /// Frames held while their next hop was being resolved.
    pub queued: u64,
    /// Frames dropped because the per-next-hop queue was full.
    pub queue_dropped: u64,
    /// Frames dropped because their next hop never resolved.
    pub unresolved_dropped: u64,
    /// Frames dropped because no route led out of the interface.
    pub unreachable: u64,
    /// Netlink requests (route, neighbour) that failed.
    pub netlink_errors: u64,
}

/// What a listener listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerAddr {
    /// Its VIP.
    pub vip: IpAddr,
    /// Its port.
    pub port: u16,
    /// Its protocol.
    pub protocol: Protocol,
}

/// One listener's figures, summed over the engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStats {
    /// The listener's name from the configuration.
    pub name: String,
    /// What it listens on, once known (see [`Snapshot::describe_listeners`]):
    /// shown as `lbd_listener_info`.
    pub addr: Option<ListenerAddr>,
    /// Its traffic and sessions.
    pub traffic: Traffic,
}

/// One backend's figures, summed over the engines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStats {
    /// The name of the listener whose pool it is in.
    pub listener: String,
    /// The server's address and port.
    pub addr: SocketAddr,
    /// Its weight (the first engine's: every engine has the same).
    pub weight: u16,
    /// Whether it is up (in the first engine: every engine has the same).
    pub up: bool,
    /// Its traffic and sessions.
    pub traffic: Traffic,
}

/// What the health checker last concluded about one backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    /// The listener's name.
    pub listener: String,
    /// The backend's address and port.
    pub addr: SocketAddr,
    /// Whether the checks say it is up.
    pub up: bool,
    /// Checks that passed.
    pub checks_ok: u64,
    /// Checks that failed.
    pub checks_failed: u64,
}

/// Everything the metrics endpoint shows, captured by the data path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The engine counters, summed over the queues' engines.
    pub counters: Counters,
    /// Engines added (one per queue).
    pub engines: u64,
    /// Sessions alive now, summed over the engines.
    pub sessions: u64,
    /// Tuples held in the engines' quarantines.
    pub quarantined: u64,
    /// Per listener, in configuration order.
    pub listeners: Vec<ListenerStats>,
    /// Per backend, grouped by listener, in configuration order.
    pub backends: Vec<BackendStats>,
    /// Per queue.
    pub rings: Vec<RingStats>,
    /// Neighbour resolution.
    pub neigh: NeighStats,
    /// Configuration reloads applied.
    pub config_reloads_ok: u64,
    /// Configuration reloads refused (the old configuration stayed).
    pub config_reloads_failed: u64,
    /// Sessions of the last run not restored at start: it served another
    /// number of queues (see [`crate::state`]).
    pub sessions_not_restored: u64,
    /// How frames reach their engine: `single`, `hand-off`, `rss` (empty
    /// before the first snapshot).
    pub steering: &'static str,
    /// Sessions alive now, per queue's engine: `(queue, sessions)`.
    pub queue_sessions: Vec<(u32, u64)>,
    /// Health check states, per checked backend.
    pub health: Vec<HealthState>,
    /// The families of the HTTP and HTTPS listeners (`lbd_l7_*`), in the
    /// text format already (`lb_l7`'s `render_metrics`); appended as they
    /// are. Empty without such listeners.
    pub l7: String,
}

/// `into += from`, field by field. The exhaustive pattern makes a new
/// engine counter a compile error here until it is summed.
fn add_counters(into: &mut Counters, from: &Counters) {
    let Counters {
        drops,
        passed,
        sessions_created,
        sessions_expired,
        sessions_reset,
        sessions_replaced,
        sessions_rescheduled,
        sessions_evicted,
        sessions_restored,
        rst_sent,
        echo_replies,
        ttm_inserted,
        ttm_missed,
        ttm_pruned,
        ttm_spoofed,
        icmp_errors_forwarded,
        mss_lowered,
        quarantine_overflow,
    } = *from;
    for (a, b) in into.drops.iter_mut().zip(drops) {
        *a += b;
    }
    into.passed += passed;
    into.sessions_created += sessions_created;
    into.sessions_expired += sessions_expired;
    into.sessions_reset += sessions_reset;
    into.sessions_replaced += sessions_replaced;
    into.sessions_rescheduled += sessions_rescheduled;
    into.sessions_evicted += sessions_evicted;
    into.sessions_restored += sessions_restored;
    into.rst_sent += rst_sent;
    into.echo_replies += echo_replies;
    into.ttm_inserted += ttm_inserted;
    into.ttm_missed += ttm_missed;
    into.ttm_pruned += ttm_pruned;
    into.ttm_spoofed += ttm_spoofed;
    into.icmp_errors_forwarded += icmp_errors_forwarded;
    into.mss_lowered += mss_lowered;
    into.quarantine_overflow += quarantine_overflow;
}

/// `into += from`, field by field.
fn add_traffic(into: &mut Traffic, from: &Traffic) {
    let Traffic {
        packets_in,
        bytes_in,
        packets_out,
        bytes_out,
        new_sessions,
        active_sessions,
    } = *from;
    into.packets_in += packets_in;
    into.bytes_in += bytes_in;
    into.packets_out += packets_out;
    into.bytes_out += bytes_out;
    into.new_sessions += new_sessions;
    into.active_sessions += active_sessions;
}

impl Snapshot {
    /// Add one engine's figures (called once per queue's engine; counters
    /// and traffic are summed across queues by listener name and by
    /// listener name and backend address). A listener or backend not seen
    /// before is appended; weight and up come from the first engine that
    /// has the backend.
    pub fn add_engine(
        &mut self,
        engine: &lb_engine::Engine,
        installed: &crate::install::Installed,
    ) {
        self.engines += 1;
        add_counters(&mut self.counters, engine.counters());
        self.sessions += u64::from(engine.session_count());
        self.quarantined += u64::from(engine.quarantined());
        for l in installed.listeners() {
            let traffic = engine.listener_traffic(l.id).copied().unwrap_or_default();
            match self.listeners.iter_mut().find(|s| s.name == l.name) {
                Some(s) => add_traffic(&mut s.traffic, &traffic),
                None => self.listeners.push(ListenerStats {
                    name: l.name.to_owned(),
                    addr: None,
                    traffic,
                }),
            }
            for b in l.backends {
                let traffic = engine
                    .backend_traffic(l.id, b.id)
                    .copied()
                    .unwrap_or_default();
                match self
                    .backends
                    .iter_mut()
                    .find(|s| s.listener == l.name && s.addr == b.addr)
                {
                    Some(s) => add_traffic(&mut s.traffic, &traffic),
                    None => self.backends.push(BackendStats {
                        listener: l.name.to_owned(),
                        addr: b.addr,
                        weight: b.weight,
                        up: b.up,
                        traffic,
                    }),
                }
            }
        }
    }
}

impl Snapshot {
    /// Record what each listener listens on (VIP, port, protocol), by
    /// name, from the configuration the engines were installed from.
    /// Listeners the snapshot does not have yet are left out.
    pub fn describe_listeners(&mut self, config: &crate::config::Config) {
        for l in &config.listeners {
            if let Some(s) = self.listeners.iter_mut().find(|s| s.name == l.name) {
                s.addr = Some(ListenerAddr {
                    vip: l.engine.vip,
                    port: l.engine.port,
                    protocol: l.engine.protocol,
                });
            }
        }
    }
}

// ----- rendering -------------------------------------------------------------

/// A label value escaped for the text format: backslash, double quote and
/// newline.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text escaped for the text format: backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// The text being built: one family at a time.
struct Out {
    text: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Out {
    /// HELP and TYPE of a family.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// One sample: `name{labels} value`.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The per-listener and per-backend traffic families: (suffix, kind, help,
/// field).
type TrafficFamily = (&'static str, Kind, &'static str, fn(&Traffic) -> u64);

const TRAFFIC_FAMILIES: [TrafficFamily; 6] = [
    (
        "packets_in_total",
        Kind::Counter,
        "Packets from clients.",
        |t| t.packets_in,
    ),
    (
        "bytes_in_total",
        Kind::Counter,
        "IP bytes from clients, as received.",
        |t| t.bytes_in,
    ),
    (
        "packets_out_total",
        Kind::Counter,
        "Packets from servers.",
        |t| t.packets_out,
    ),
    (
        "bytes_out_total",
        Kind::Counter,
        "IP bytes from servers, as received.",
        |t| t.bytes_out,
    ),
    (
        "new_sessions_total",
        Kind::Counter,
        "Sessions created.",
        |t| t.new_sessions,
    ),
    ("active_sessions", Kind::Gauge, "Sessions alive now.", |t| {
        t.active_sessions
    }),
];

/// The ring families: (name suffix, help, field).
type RingFamily = (&'static str, &'static str, fn(&RingStats) -> u64);

const RING_FAMILIES: [RingFamily; 17] = [
    ("rx_packets_total", "Frames taken from the RX ring.", |r| {
        r.rx_packets
    }),
    (
        "rx_batches_total",
        "Non-empty batches taken from the RX ring.",
        |r| r.rx_batches,
    ),
    ("tx_packets_total", "Frames put on the TX ring.", |r| {
        r.tx_packets
    }),
    (
        "tx_wakeups_total",
        "Syscalls made because the TX ring asked for a wakeup.",
        |r| r.tx_wakeups,
    ),
    (
        "rx_wakeups_total",
        "Syscalls made because the fill ring asked for a wakeup.",
        |r| r.rx_wakeups,
    ),
    (
        "fill_ring_empty_total",
        "Times the fill ring could not be refilled.",
        |r| r.fill_ring_empty,
    ),
    (
        "tx_ring_full_total",
        "Frames that found the TX ring full and waited for room.",
        |r| r.tx_ring_full,
    ),
    (
        "kernel_rx_dropped_total",
        "Frames the kernel dropped (XDP_STATISTICS rx_dropped).",
        |r| r.kernel_rx_dropped,
    ),
    (
        "kernel_rx_ring_full_total",
        "Frames the kernel dropped because the RX ring was full.",
        |r| r.kernel_rx_ring_full,
    ),
    (
        "kernel_fill_ring_empty_total",
        "Times the kernel found the fill ring empty.",
        |r| r.kernel_fill_ring_empty,
    ),
    (
        "kernel_tx_ring_empty_total",
        "Times the kernel found the TX ring empty.",
        |r| r.kernel_tx_ring_empty,
    ),
    (
        "kernel_rx_invalid_descs_total",
        "Invalid descriptors in the RX ring (XDP_STATISTICS).",
        |r| r.kernel_rx_invalid_descs,
    ),
    (
        "kernel_tx_invalid_descs_total",
        "Frames sent that the kernel refused as invalid (XDP_STATISTICS).",
        |r| r.kernel_tx_invalid_descs,
    ),
    (
        "poll_sleeps_total",
        "Times the loop slept in poll on idle rings.",
        |r| r.poll_sleeps,
    ),
    (
        "tx_wakeup_errors_total",
        "TX wakeups the kernel refused.",
        |r| r.tx_wakeup_errors,
    ),
    (
        "bookkeeping_errors_total",
        "Frames dropped for breaking the UMEM bookkeeping (0 unless a bug).",
        |r| r.bookkeeping_errors,
    ),
    (
        "pass_dropped_total",
        "Frames the engine passed to the host, dropped (lbd cannot hand them back).",
        |r| r.pass_dropped,
    ),
];

/// Render in the Prometheus text exposition format (version 0.0.4): HELP
/// and TYPE lines once per family, counters with the `_total` suffix,
/// label values escaped. See the module documentation for the families.
pub fn render(s: &Snapshot) -> String {
    let mut out = Out {
        text: String::with_capacity(8192),
    };
    let o = &mut out;

    // Engine-wide counters; the exhaustive pattern makes a new counter a
    // compile error here until it is shown.
    let Counters {
        drops: _,
        passed,
        sessions_created,
        sessions_expired,
        sessions_reset,
        sessions_replaced,
        sessions_rescheduled,
        sessions_evicted,
        sessions_restored,
        rst_sent,
        echo_replies,
        ttm_inserted,
        ttm_missed,
        ttm_pruned,
        ttm_spoofed,
        icmp_errors_forwarded,
        mss_lowered,
        quarantine_overflow,
    } = s.counters;
    o.family(
        "lbd_drops_total",
        Kind::Counter,
        "Frames dropped by the engine, by reason.",
    );
    for reason in DropReason::ALL {
        o.sample(
            "lbd_drops_total",
            &[("reason", reason.label())],
            s.counters.dropped(*reason),
        );
    }
    let c = Kind::Counter;
    o.single(
        "lbd_passed_total",
        c,
        "Frames passed to the host's stack.",
        passed,
    );
    o.single(
        "lbd_sessions_created_total",
        c,
        "Sessions created.",
        sessions_created,
    );
    o.single(
        "lbd_sessions_expired_total",
        c,
        "Sessions that idled out.",
        sessions_expired,
    );
    o.single(
        "lbd_sessions_reset_total",
        c,
        "Sessions removed by configuration.",
        sessions_reset,
    );
    o.single(
        "lbd_sessions_replaced_total",
        c,
        "Closing sessions replaced by a new SYN from the same client port.",
        sessions_replaced,
    );
    o.single(
        "lbd_sessions_rescheduled_total",
        c,
        "Half-open sessions whose client's SYN came again while their backend could take no new session, started again on another.",
        sessions_rescheduled,
    );
    o.single(
        "lbd_sessions_evicted_total",
        c,
        "Half-open sessions ended, oldest first, to make room for a new SYN in a full table.",
        sessions_evicted,
    );
    o.single(
        "lbd_sessions_restored_total",
        c,
        "Sessions restored at start from the last run's snapshot.",
        sessions_restored,
    );
    o.single(
        "lbd_rst_sent_total",
        c,
        "RST segments sent: to both sides when established TCP sessions idled out, to the server of an evicted half-open session.",
        rst_sent,
    );
    o.single(
        "lbd_echo_replies_total",
        c,
        "Echo requests to a VIP answered.",
        echo_replies,
    );
    o.single(
        "lbd_ttm_inserted_total",
        c,
        "Client segments that got the TTM option.",
        ttm_inserted,
    );
    o.single(
        "lbd_ttm_missed_total",
        c,
        "Client segments that should have got the TTM option but could not.",
        ttm_missed,
    );
    o.single(
        "lbd_ttm_pruned_total",
        c,
        "Segments whose lesser options were pruned to make room for the TTM option.",
        ttm_pruned,
    );
    o.single(
        "lbd_ttm_spoofed_total",
        c,
        "TTM-kind options sent by clients and removed.",
        ttm_spoofed,
    );
    o.single(
        "lbd_icmp_errors_forwarded_total",
        c,
        "ICMP errors about a session forwarded to its other side.",
        icmp_errors_forwarded,
    );
    o.single(
        "lbd_mss_lowered_total",
        c,
        "SYN-ACKs whose MSS was lowered to leave room for the TTM option.",
        mss_lowered,
    );
    o.single(
        "lbd_quarantine_overflow_total",
        c,
        "Closed tuples the full quarantine could not hold.",
        quarantine_overflow,
    );
    let g = Kind::Gauge;
    o.single("lbd_engines", g, "Engines (one per queue).", s.engines);
    o.family(
        "lbd_steering_info",
        g,
        "How frames reach the engine that owns them (value always 1): single (one engine), hand-off (between queues, through rings), rss (the NIC's RSS steers each reply home).",
    );
    if !s.steering.is_empty() {
        o.sample("lbd_steering_info", &[("mode", s.steering)], 1);
    }
    o.single("lbd_sessions", g, "Sessions alive now.", s.sessions);
    o.family(
        "lbd_queue_sessions",
        g,
        "Sessions alive now in each queue's engine.",
    );
    for (queue, n) in &s.queue_sessions {
        o.sample("lbd_queue_sessions", &[("queue", &queue.to_string())], *n);
    }
    o.single(
        "lbd_sessions_not_restored_total",
        Kind::Counter,
        "Sessions of the last run not restored at start, because it served another number of queues.",
        s.sessions_not_restored,
    );
    o.single(
        "lbd_quarantined",
        g,
        "Closed tuples held in the quarantine.",
        s.quarantined,
    );

    // Per listener: what it listens on as an info metric, its figures by
    // name alone.
    o.family(
        "lbd_listener_info",
        g,
        "A listener's VIP, port and protocol (value always 1).",
    );
    for l in &s.listeners {
        if let Some(a) = l.addr {
            let vip = a.vip.to_string();
            let port = a.port.to_string();
            let labels = [
                ("listener", l.name.as_str()),
                ("vip", vip.as_str()),
                ("port", port.as_str()),
                ("protocol", protocol_label(a.protocol)),
            ];
            o.sample("lbd_listener_info", &labels, 1);
        }
    }
    for (suffix, kind, help, field) in TRAFFIC_FAMILIES {
        let name = format!("lbd_listener_{suffix}");
        o.family(&name, kind, &format!("{help} Per listener."));
        for l in &s.listeners {
            o.sample(&name, &[("listener", l.name.as_str())], field(&l.traffic));
        }
    }

    // Per backend.
    let backend_labels = |b: &BackendStats| (b.addr.ip().to_string(), b.addr.port().to_string());
    for (suffix, kind, help, field) in TRAFFIC_FAMILIES {
        let name = format!("lbd_backend_{suffix}");
        o.family(&name, kind, &format!("{help} Per backend."));
        for b in &s.backends {
            let (addr, port) = backend_labels(b);
            let labels = [
                ("listener", b.listener.as_str()),
                ("address", addr.as_str()),
                ("port", port.as_str()),
            ];
            o.sample(&name, &labels, field(&b.traffic));
        }
    }
    type BackendGauge = (&'static str, &'static str, fn(&BackendStats) -> u64);
    let gauges: [BackendGauge; 2] = [
        (
            "lbd_backend_up",
            "Whether the backend is up (1) or down (0).",
            |b| u64::from(b.up),
        ),
        ("lbd_backend_weight", "The backend's weight.", |b| {
            u64::from(b.weight)
        }),
    ];
    for (name, help, field) in gauges {
        o.family(name, g, help);
        for b in &s.backends {
            let (addr, port) = backend_labels(b);
            let labels = [
                ("listener", b.listener.as_str()),
                ("address", addr.as_str()),
                ("port", port.as_str()),
            ];
            o.sample(name, &labels, field(b));
        }
    }

    // Per queue.
    for (suffix, help, field) in RING_FAMILIES {
        let name = format!("lbd_ring_{suffix}");
        o.family(&name, c, help);
        for r in &s.rings {
            let queue = r.queue.to_string();
            o.sample(&name, &[("queue", queue.as_str())], field(r));
        }
    }

    render_frames(o, &s.rings);

    // Neighbours.
    let NeighStats {
        resolved,
        queued,
        queue_dropped,
        unresolved_dropped,
        unreachable,
        netlink_errors,
    } = s.neigh;
    o.single(
        "lbd_neigh_resolved_total",
        c,
        "Next hops whose MAC address was learned.",
        resolved,
    );
    o.single(
        "lbd_neigh_queued_total",
        c,
        "Frames held while their next hop was resolved.",
        queued,
    );
    o.single(
        "lbd_neigh_queue_dropped_total",
        c,
        "Frames dropped because a next hop's queue was full.",
        queue_dropped,
    );
    o.single(
        "lbd_neigh_unresolved_dropped_total",
        c,
        "Frames dropped because their next hop did not resolve.",
        unresolved_dropped,
    );
    o.single(
        "lbd_neigh_unreachable_total",
        c,
        "Frames dropped because no route leads out of the interface.",
        unreachable,
    );
    o.single(
        "lbd_neigh_netlink_errors_total",
        c,
        "Route and neighbour requests to the kernel that failed.",
        netlink_errors,
    );

    // Reloads.
    o.family(
        "lbd_config_reloads_total",
        c,
        "Configuration reloads, applied (ok) or refused (failed).",
    );
    o.sample(
        "lbd_config_reloads_total",
        &[("result", "ok")],
        s.config_reloads_ok,
    );
    o.sample(
        "lbd_config_reloads_total",
        &[("result", "failed")],
        s.config_reloads_failed,
    );

    // Health checks.
    o.family(
        "lbd_health_up",
        g,
        "Whether health checks find the backend up (1) or down (0).",
    );
    for h in &s.health {
        let (addr, port) = (h.addr.ip().to_string(), h.addr.port().to_string());
        let labels = [
            ("listener", h.listener.as_str()),
            ("address", addr.as_str()),
            ("port", port.as_str()),
        ];
        o.sample("lbd_health_up", &labels, u64::from(h.up));
    }
    o.family(
        "lbd_health_checks_total",
        c,
        "Health checks run, by result.",
    );
    for h in &s.health {
        let (addr, port) = (h.addr.ip().to_string(), h.addr.port().to_string());
        for (result, n) in [("ok", h.checks_ok), ("failed", h.checks_failed)] {
            let labels = [
                ("listener", h.listener.as_str()),
                ("address", addr.as_str()),
                ("port", port.as_str()),
                ("result", result),
            ];
            o.sample("lbd_health_checks_total", &labels, n);
        }
    }

    out.text.push_str(&s.l7);
    out.text
}

/// The accounting of every frame, per queue (see the module
/// documentation), and the XDP program's counters.
fn render_frames(o: &mut Out, rings: &[RingStats]) {
    let c = Kind::Counter;
    let queues: Vec<String> = rings.iter().map(|r| r.queue.to_string()).collect();
    let each = || rings.iter().zip(queues.iter().map(String::as_str));
    o.family(
        "lbd_frames_received_total",
        c,
        "Frames taken from the RX ring.",
    );
    for (r, q) in each() {
        o.sample(
            "lbd_frames_received_total",
            &[("queue", q)],
            r.frames.received,
        );
    }
    o.family(
        "lbd_frames_own_total",
        c,
        "Frames lbd made itself (the RSTs of expiry).",
    );
    for (r, q) in each() {
        o.sample("lbd_frames_own_total", &[("queue", q)], r.frames.own);
    }
    o.family(
        "lbd_frames_sent_total",
        c,
        "Frames put on the TX ring, by origin (received or own).",
    );
    for (r, q) in each() {
        for origin in Origin::ALL {
            o.sample(
                "lbd_frames_sent_total",
                &[("queue", q), ("origin", origin.label())],
                r.frames.tally(origin).sent,
            );
        }
    }
    o.family(
        "lbd_frames_dropped_total",
        c,
        "Frames dropped, by origin and reason: the engine's reasons and lbd's own.",
    );
    for (r, q) in each() {
        for origin in Origin::ALL {
            let tally = r.frames.tally(origin);
            for reason in DropReason::ALL {
                let n = tally.dropped_for(Dropped::Engine(*reason));
                // Own frames are made by the engine, never judged by it:
                // their engine reasons are shown only if ever counted.
                if origin == Origin::Received || n > 0 {
                    let labels = [
                        ("queue", q),
                        ("origin", origin.label()),
                        ("reason", reason.label()),
                    ];
                    o.sample("lbd_frames_dropped_total", &labels, n);
                }
            }
            for loss in Loss::ALL {
                let labels = [
                    ("queue", q),
                    ("origin", origin.label()),
                    ("reason", loss.label()),
                ];
                let n = tally.dropped_for(Dropped::Lbd(*loss));
                o.sample("lbd_frames_dropped_total", &labels, n);
            }
        }
    }
    o.family(
        "lbd_frames_handed_out_total",
        c,
        "Received frames handed to the queue whose engine owns them.",
    );
    for (r, q) in each() {
        o.sample(
            "lbd_frames_handed_out_total",
            &[("queue", q)],
            r.frames.tally(Origin::Received).handed_out,
        );
    }
    o.family(
        "lbd_frames_handed_in_total",
        c,
        "Frames another queue received and handed to this one, their owner.",
    );
    for (r, q) in each() {
        o.sample(
            "lbd_frames_handed_in_total",
            &[("queue", q)],
            r.frames.handed_in,
        );
    }
    o.family(
        "lbd_frames_held",
        Kind::Gauge,
        "Frames held now: waiting for a next hop, or for room in the TX ring.",
    );
    for (r, q) in each() {
        for origin in Origin::ALL {
            o.sample(
                "lbd_frames_held",
                &[("queue", q), ("origin", origin.label())],
                r.frames.tally(origin).held,
            );
        }
    }
    o.family(
        "lbd_xdp_packets_total",
        c,
        "Packets the XDP program saw, by outcome: redirected to lbd's socket, passed to the kernel, or dropped for want of a socket.",
    );
    for (r, q) in each() {
        for (outcome, n) in [
            ("redirected", r.xdp.redirected),
            ("passed", r.xdp.passed),
            ("no_socket", r.xdp.no_socket),
        ] {
            o.sample(
                "lbd_xdp_packets_total",
                &[("queue", q), ("outcome", outcome)],
                n,
            );
        }
    }
}

// ----- the HTTP server -------------------------------------------------------

/// Longest request (line and headers) read; a longer one is answered 431.
const MAX_REQUEST: usize = 8 * 1024;

/// Time a client has to send its whole request, and to take the response:
/// the server answers one connection at a time, so this bounds how long a
/// slow client holds it up.
const CLIENT_DEADLINE: Duration = Duration::from_secs(2);

/// The running metrics server. Dropping it stops the server.
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The address the server is bound to (with the port chosen when the
    /// requested one was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection of our own.
        let ip = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let woken =
            TcpStream::connect_timeout(&SocketAddr::new(ip, self.addr.port()), CLIENT_DEADLINE)
                .is_ok();
        if let Some(t) = self.thread.take()
            && woken
        {
            // When the wake-up could not connect, the thread is left to end
            // at its next connection rather than blocking the caller.
            let _ = t.join();
        }
    }
}

/// Serve `GET /metrics` (and 404 for any other path) on `addr` from a
/// background thread, rendering the latest snapshot in `shared`.
///
/// HTTP/1.1, one request per connection (`Connection: close`, with
/// `Content-Length`). Connections are answered one at a time; a request
/// longer than 8 KiB is answered 431, and a client gets 2 seconds in all
/// to send its request, so that a slow or broken client cannot stall the
/// server. A request that is not HTTP is answered 400, a method other than
/// GET on `/metrics` 405.
///
/// # Errors
/// Binding `addr` failed.
pub fn serve(addr: SocketAddr, shared: Arc<Mutex<Snapshot>>) -> io::Result<MetricsServer> {
    let listener = TcpListener::bind(addr)?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("lbd-metrics".into())
            .spawn(move || accept_loop(&listener, &stop, &shared))?
    };
    tracing::info!(%addr, "metrics endpoint listening");
    Ok(MetricsServer {
        addr,
        stop,
        thread: Some(thread),
    })
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, shared: &Mutex<Snapshot>) {
    loop {
        let conn = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match conn {
            Ok((stream, peer)) => {
                if let Err(e) = handle_connection(stream, shared) {
                    tracing::debug!(%peer, error = %e, "metrics connection");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept");
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    Metrics,
    NotFound,
    MethodNotAllowed,
    Bad,
    TooLarge,
}

/// Read the request head (up to the blank line) within the deadline and
/// the size bound.
fn read_request(stream: &mut TcpStream) -> io::Result<Request> {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        let Some(free) = buf.get_mut(len..) else {
            return Ok(Request::TooLarge);
        };
        if free.is_empty() {
            return Ok(Request::TooLarge);
        }
        let n = stream.read(free)?;
        if n == 0 {
            // The client closed before finishing its head: answer what
            // we have, if it has a request line.
            let head = buf.get(..len).unwrap_or_default();
            return Ok(if head.contains(&b'\n') {
                parse_request(head)
            } else {
                Request::Bad
            });
        }
        len += n;
        let head = buf.get(..len).unwrap_or_default();
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(parse_request(head));
        }
    }
}

/// The request line's method and target.
fn parse_request(head: &[u8]) -> Request {
    let Some(line) = head.split(|&b| b == b'\n').next() else {
        return Request::Bad;
    };
    let Ok(line) = std::str::from_utf8(line) else {
        return Request::Bad;
    };
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Bad;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Request::Bad;
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => Request::Metrics,
        (_, "/metrics") => Request::MethodNotAllowed,
        _ => Request::NotFound,
    }
}

fn handle_connection(mut stream: TcpStream, shared: &Mutex<Snapshot>) -> io::Result<()> {
    stream.set_write_timeout(Some(CLIENT_DEADLINE))?;
    let request = match read_request(&mut stream) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock => {
            Request::Bad
        }
        Err(e) => return Err(e),
    };
    let (status, extra, body) = match request {
        Request::Metrics => {
            // Clone under the lock, render outside it: the data path waits
            // for a clone at most.
            let snapshot = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ("200 OK", "", render(&snapshot))
        }
        Request::NotFound => ("404 Not Found", "", "not found\n".to_owned()),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            "method not allowed\n".to_owned(),
        ),
        Request::Bad => ("400 Bad Request", "", "bad request\n".to_owned()),
        Request::TooLarge => (
            "431 Request Header Fields Too Large",
            "",
            "request too large\n".to_owned(),
        ),
    };
    let content_type = if request == Request::Metrics {
        "text/plain; version=0.0.4; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    // Half-close, so that the client sees the end even when it sent more
    // than we read (a reset would otherwise discard the response).
    let _ = stream.shutdown(Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("x\\y\nz"), "x\\\\y\\nz");
    }

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            parse_request(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        assert_eq!(
            parse_request(b"GET /other HTTP/1.1\r\n\r\n"),
            Request::NotFound
        );
        assert_eq!(parse_request(b"\xff\xfe\r\n\r\n"), Request::Bad);
        assert_eq!(parse_request(b"GET /metrics\r\n\r\n"), Request::Bad);
        assert_eq!(parse_request(b""), Request::Bad);
    }
}
