//! The `lbd` configuration file: TOML, every key known, every error with its
//! line and column.
//!
//! `examples/lbd.toml` documents every key. [`Config::parse`] reads the
//! text in two passes:
//!
//! 1. serde, with unknown keys refused everywhere: a syntax error, an
//!    unknown key or a value of the wrong type stops here, as one error at
//!    its line and column;
//! 2. the values: addresses, durations, port ranges, health checks, and
//!    then every listener added, in file order, to a small engine made for
//!    the purpose, so that the engine's own rules (duplicate listeners,
//!    a backend with no local address of its family...) are the ones
//!    checked. Every error of this pass is reported, each where its value
//!    is written.
//!
//! The HTTP and HTTPS listeners, and the sections only they use, are read
//! by the submodule `l7` into `lb_l7`'s values.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_engine::{
    Affinity, BackendConfig, ChecksumPolicy, Engine, EngineConfig, ListenerConfig, LocalPool,
    LportError, MaglevKey, Protocol, SchedulerKind, Timeouts, TtmConfig,
};
use lb_l7::config::AccessLogConfig;
use serde::Deserialize;
use toml::Spanned;

mod l7;

pub use l7::L7ListenerCfg;

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The interfaces `lbd` attaches to (one today: the balancer is
    /// one-armed, packets leave by the interface they came in on).
    pub interfaces: Vec<Interface>,
    /// Engine-wide settings (session capacity, quarantine...).
    pub engine: lb_engine::EngineConfig,
    /// The TCP and UDP listeners (the engines'), in file order.
    pub listeners: Vec<Listener>,
    /// The HTTP and HTTPS listeners (`lb_l7`'s), in file order.
    pub l7: Vec<L7ListenerCfg>,
    /// The access log of the HTTP and HTTPS listeners (`[access_log]`).
    pub access_log: Option<AccessLogConfig>,
    /// The threads that serve the HTTP and HTTPS listeners (`[l7]`).
    pub l7_threads: usize,
    /// Where the Prometheus endpoint listens, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Packets held per unresolved next hop while its MAC address is being
    /// resolved; more are dropped and counted.
    pub neighbour_queue: usize,
    /// What survives a restart of `lbd`.
    pub restart: Restart,
    /// `[engine]` names no `hash_seed`: `engine.hash_seed` is random, and a
    /// restart may take the seed of the sessions it restores instead.
    pub random_seed: bool,
}

/// What survives a restart of `lbd` (the `[restart]` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    /// Where each engine's sessions are written at shutdown and read back
    /// at start; `None` when turned off.
    pub state_dir: Option<PathBuf>,
    /// The bpffs directory where the XDP program's link is pinned, so that
    /// the program (which drops the balancer's traffic while no socket
    /// serves it) outlives `lbd`; `None`: detached when `lbd` exits.
    pub pin_dir: Option<PathBuf>,
}

/// Where sessions are kept across a restart by default: tmpfs, so that a
/// reboot (which ends every connection anyway) forgets them.
pub const DEFAULT_STATE_DIR: &str = "/run/lbd";
/// Where the XDP link is pinned by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/lbd";

impl Default for Restart {
    fn default() -> Restart {
        Restart {
            state_dir: Some(PathBuf::from(DEFAULT_STATE_DIR)),
            pin_dir: Some(PathBuf::from(DEFAULT_PIN_DIR)),
        }
    }
}

/// An interface and how to attach to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name, e.g. `eth0`.
    pub name: String,
    /// Receive queues served, one AF_XDP socket, one engine and one
    /// thread each, starting at queue 0: every queue of the interface
    /// (see `examples/lbd.toml`).
    pub queues: Queues,
    /// How the XDP program is attached.
    pub xdp_mode: XdpMode,
}

/// The receive queues `lbd` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queues {
    /// Every receive queue of the interface (`queues = "all"`, the
    /// default).
    All,
    /// This many, which must be the interface's count (`queues = N`).
    Count(u32),
}

impl Queues {
    /// The number of queues to serve on an interface that has `rx_queues`
    /// receive queues, or why not: every queue needs a socket, since the
    /// XDP program drops the balancer's packets on a queue without one.
    ///
    /// # Errors
    /// A count other than the interface's.
    pub fn resolve(self, interface: &str, rx_queues: u32) -> Result<u32, String> {
        match self {
            Queues::All => Ok(rx_queues.max(1)),
            Queues::Count(n) if n == rx_queues => Ok(n),
            Queues::Count(n) => Err(format!(
                "{interface} has {rx_queues} receive queue(s) and lbd serves {n}: packets on \
                 the others would be lost; make them equal (ethtool -L {interface} combined \
                 {n}), or say queues = \"all\""
            )),
        }
    }
}

/// How the XDP program is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode: the XDP program runs in the driver.
    Driver,
    /// Generic (skb) mode: works on any interface, slower.
    Generic,
}

/// A listener: the engine's listener configuration plus what the runner
/// adds (a name, health checks).
#[derive(Debug, Clone)]
pub struct Listener {
    /// The listener's name, unique in the file (metrics label).
    pub name: String,
    /// VIP, port, protocol, scheduler, timeouts, LIP pool, TTM settings,
    /// ping, checksum policy, and the backends (each starting `up`).
    pub engine: lb_engine::ListenerConfig,
    /// The health check every backend gets, if any.
    pub health: Option<HealthCheck>,
}

/// A health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// What is checked.
    pub kind: CheckKind,
    /// The port checked; the backend's own port when `None`.
    pub port: Option<u16>,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes in a row that bring a down backend up.
    pub rise: u32,
    /// Failures in a row that bring an up backend down.
    pub fall: u32,
}

/// What a health check does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckKind {
    /// A TCP connect.
    Tcp,
    /// An HTTP/1.1 GET of `path`, expecting `status`.
    Http {
        /// The path requested, e.g. `/healthz`.
        path: String,
        /// The status expected, e.g. 200.
        status: u16,
    },
}

/// An error in a configuration file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line, 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based column, 0 when the error is about the file as a whole.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl Config {
    /// Every address the XDP program must hand to `lbd`: the VIPs and the
    /// LIPs of every TCP and UDP listener, each once. The VIP of an HTTP or
    /// HTTPS listener is the host's (its TCP stack accepts the
    /// connections), and is not here unless a TCP or UDP listener has it
    /// too (see [`Config::l7_addresses`]).
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for l in &self.listeners {
            for a in std::iter::once(&l.engine.vip).chain(l.engine.local.addresses.iter()) {
                if !out.contains(a) {
                    out.push(*a);
                }
            }
        }
        out
    }

    /// The VIP and port of every HTTP and HTTPS listener, in file order:
    /// the XDP program hands TCP to these to the host's stack even when
    /// the address is in [`Config::addresses`].
    pub fn l7_addresses(&self) -> Vec<SocketAddr> {
        self.l7.iter().map(|l| l.listener.addr).collect()
    }

    /// The HTTP and HTTPS listeners as `lb_l7` takes them.
    pub fn l7_listeners(&self) -> Vec<lb_l7::config::L7Listener> {
        self.l7.iter().map(|l| l.listener.clone()).collect()
    }

    /// Read and validate `path`: relative paths in it (certificates, the
    /// access log's directory) are taken from its directory, and the
    /// certificates are checked.
    ///
    /// # Errors
    /// Every error found, each with line and column.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            vec![ConfigError {
                line: 0,
                column: 0,
                message: format!("cannot read {}: {e}", path.display()),
            }]
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Config::parse_in(&text, dir)
    }

    /// Parse and validate the text of a configuration file, reading no
    /// other file: relative paths stay as written and certificates are not
    /// checked (see [`Config::parse_in`]).
    ///
    /// # Errors
    /// Every error found, each with line and column, in file order.
    pub fn parse(text: &str) -> Result<Config, Vec<ConfigError>> {
        Config::parse_with(text, None)
    }

    /// Parse and validate the text of a configuration file that is in
    /// directory `dir`: relative paths are taken from `dir`, and every
    /// HTTPS listener's certificates are checked (readable, unencrypted
    /// keys that match, not expired), an error at the key naming the file.
    ///
    /// # Errors
    /// Every error found, each with line and column, in file order.
    pub fn parse_in(text: &str, dir: &Path) -> Result<Config, Vec<ConfigError>> {
        Config::parse_with(text, Some(dir))
    }

    fn parse_with(text: &str, dir: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let doc: FileDoc = toml::from_str(text).map_err(|e| {
            // Without a span, the error is about the file as a whole.
            let (line, column) = e.span().map_or((0, 0), |s| position(text, s.start));
            vec![ConfigError {
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }]
        })?;
        let mut r = Report {
            text,
            errors: Vec::new(),
        };
        let interfaces = interfaces(&mut r, &doc.interface);
        let engine = engine(&mut r, doc.engine.as_ref());
        let metrics = doc
            .metrics
            .as_ref()
            .and_then(|m| parse_at(&mut r, &m.listen, "an address and port"));
        let neighbour_queue = neighbour_queue(&mut r, doc.neighbour.as_ref());
        let restart = restart(&mut r, doc.restart.as_ref());
        let random_seed = doc
            .engine
            .as_ref()
            .is_none_or(|e| e.get_ref().hash_seed.is_none());
        let access_log = l7::access_log(&mut r, doc.access_log.as_ref(), dir);
        let l7_threads = l7::threads(&mut r, doc.l7.as_ref());
        let (listeners, l7) = listeners(&mut r, &doc.listener, dir, access_log.is_some());
        if !r.errors.is_empty() {
            r.errors.sort_by_key(|e| (e.line, e.column));
            return Err(r.errors);
        }
        Ok(Config {
            interfaces,
            engine,
            listeners,
            l7,
            access_log,
            l7_threads,
            metrics,
            neighbour_queue,
            restart,
            random_seed,
        })
    }

    /// What differs between `self` and `new` that a reload cannot apply
    /// (the sections `[[interface]]`, `[engine]`, `[metrics]`,
    /// `[neighbour]`, `[restart]`, `[l7]` and `[access_log]`, fixed until
    /// `lbd` restarts), by section name; empty when only listeners differ.
    /// `l7` also names a change of the HTTP and HTTPS listeners' set of
    /// addresses and ports, or of one's protocol (the sockets Pingora
    /// listens on are made at start). A random `hash_seed` is not compared.
    pub fn restart_needed(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.interfaces != new.interfaces {
            out.push("interface");
        }
        let engine = EngineConfig {
            hash_seed: self.engine.hash_seed,
            ..new.engine
        };
        if self.engine != engine {
            out.push("engine");
        }
        if self.metrics != new.metrics {
            out.push("metrics");
        }
        if self.neighbour_queue != new.neighbour_queue {
            out.push("neighbour");
        }
        if self.restart != new.restart {
            out.push("restart");
        }
        let sockets = |c: &Config| {
            let mut v: Vec<(SocketAddr, &'static str)> =
                c.l7.iter()
                    .map(|l| (l.listener.addr, l.listener.scheme()))
                    .collect();
            v.sort_unstable();
            v
        };
        if self.l7_threads != new.l7_threads || sockets(self) != sockets(new) {
            out.push("l7");
        }
        if self.access_log != new.access_log {
            out.push("access_log");
        }
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "{}:{}: {}", self.line, self.column, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Adds every listener, in order, to a small engine made for the purpose,
/// so that the engine's own rules are checked without allocating a real
/// session table. Returns the index and error of each listener refused
/// (a refused listener is left out of the later checks).
pub(crate) fn engine_refusals<'a>(
    listeners: impl IntoIterator<Item = &'a ListenerConfig>,
) -> Vec<(usize, lb_engine::ConfigError)> {
    let mut engine = match scratch_engine(&EngineConfig::default()) {
        Ok(engine) => engine,
        Err(e) => return vec![(0, e)],
    };
    listeners
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| engine.add_listener(l.clone()).err().map(|e| (i, e)))
        .collect()
}

/// An engine with `config`'s periods and tiny tables: cheap to make.
fn scratch_engine(config: &EngineConfig) -> Result<Engine, lb_engine::ConfigError> {
    Engine::new(EngineConfig {
        capacity: 16,
        affinity_capacity: 16,
        quarantine_capacity: 16,
        ..*config
    })
}

// ----- the file as serde reads it ------------------------------------------

type Span = Range<usize>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    interface: Vec<Spanned<InterfaceDoc>>,
    engine: Option<Spanned<EngineDoc>>,
    metrics: Option<MetricsDoc>,
    neighbour: Option<NeighbourDoc>,
    restart: Option<RestartDoc>,
    #[serde(default)]
    listener: Vec<Spanned<ListenerDoc>>,
    l7: Option<l7::L7Doc>,
    access_log: Option<Spanned<l7::AccessLogDoc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InterfaceDoc {
    name: Spanned<String>,
    queues: Option<Spanned<QueuesDoc>>,
    xdp_mode: Option<XdpMode>,
}

/// `queues = "all"` or `queues = N`.
#[derive(Deserialize)]
#[serde(untagged)]
enum QueuesDoc {
    Count(i64),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EngineDoc {
    capacity: Option<Spanned<u32>>,
    affinity_capacity: Option<Spanned<u32>>,
    quarantine: Option<Spanned<String>>,
    quarantine_capacity: Option<Spanned<u32>>,
    hash_seed: Option<u64>,
    sweep_period: Option<Spanned<String>>,
    sweep_tick: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsDoc {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NeighbourDoc {
    queue: Option<Spanned<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestartDoc {
    state_dir: Option<Spanned<String>>,
    pin_dir: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerDoc {
    name: Spanned<String>,
    vip: Spanned<String>,
    port: Spanned<u16>,
    protocol: Option<Spanned<ProtocolDoc>>,
    #[serde(default)]
    scheduler: SchedulerDoc,
    maglev: Option<Spanned<MaglevDoc>>,
    affinity: Option<Spanned<AffinityDoc>>,
    ping: Option<Spanned<bool>>,
    local: Option<Spanned<LocalDoc>>,
    timeouts: Option<Spanned<TimeoutsDoc>>,
    ttm: Option<Spanned<TtmDoc>>,
    verify_checksums: Option<Spanned<ChecksumsDoc>>,
    health: Option<Spanned<HealthDoc>>,
    #[serde(default)]
    backend: Vec<Spanned<BackendDoc>>,
    http: Option<Spanned<l7::HttpDoc>>,
    cookie: Option<Spanned<l7::CookieDoc>>,
    tls: Option<Spanned<l7::TlsDoc>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ProtocolDoc {
    Tcp,
    Udp,
    Http,
    Https,
}

/// `verify_checksums`: see [`ChecksumPolicy`].
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum ChecksumsDoc {
    New,
    All,
    Off,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SchedulerDoc {
    #[default]
    Rr,
    Wlc,
    Maglev,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaglevDoc {
    table_size: Option<Spanned<u32>>,
    #[serde(default)]
    key: MaglevKeyDoc,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MaglevKeyDoc {
    #[default]
    Flow,
    Source,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AffinityDoc {
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalDoc {
    addresses: Vec<Spanned<String>>,
    ports: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimeoutsDoc {
    tcp_established: Option<Spanned<String>>,
    syn_recv: Option<Spanned<String>>,
    fin_wait: Option<Spanned<String>>,
    close_wait: Option<Spanned<String>>,
    last_ack: Option<Spanned<String>>,
    time_wait: Option<Spanned<String>>,
    close: Option<Spanned<String>>,
    udp: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TtmDoc {
    enabled: Option<bool>,
    kind: Option<Spanned<u8>>,
    strip: Option<Vec<Spanned<u8>>>,
    strip_timestamps: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthDoc {
    #[serde(rename = "type", default)]
    kind: CheckDoc,
    path: Option<Spanned<String>>,
    status: Option<Spanned<u16>>,
    port: Option<Spanned<u16>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    rise: Option<Spanned<u32>>,
    fall: Option<Spanned<u32>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum CheckDoc {
    #[default]
    Tcp,
    Http,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendDoc {
    addr: Spanned<String>,
    port: Option<Spanned<u16>>,
    weight: Option<u16>,
}

// ----- errors and values ---------------------------------------------------

/// The errors found so far, and the text they point into.
struct Report<'t> {
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl Report<'_> {
    /// An error at the start of `span`.
    fn at(&mut self, span: &Span, message: impl Into<String>) {
        let (line, column) = position(self.text, span.start);
        self.errors.push(ConfigError {
            line,
            column,
            message: message.into(),
        });
    }

    /// An error about the file as a whole.
    fn whole(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError {
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

/// The 1-based line and column (in characters) of byte `offset`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// `value` parsed as a `T` (an address...), or an error naming `what` it
/// should have been.
fn parse_at<T: std::str::FromStr>(
    r: &mut Report<'_>,
    value: &Spanned<String>,
    what: &str,
) -> Option<T> {
    let parsed = value.get_ref().parse().ok();
    if parsed.is_none() {
        r.at(
            &value.span(),
            format!("`{}` is not {what}", value.get_ref()),
        );
    }
    parsed
}

/// A duration written as a whole number and a unit: `500ms`, `900s`, `2m`,
/// `1h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// The duration at `value`, `default` when absent; an error (and `None`)
/// when it cannot be read or lies outside `range`, which `bounds` names.
fn duration(
    r: &mut Report<'_>,
    value: Option<&Spanned<String>>,
    default: Duration,
    range: (Duration, Duration),
    bounds: &str,
) -> Option<Duration> {
    let Some(value) = value else {
        return Some(default);
    };
    let Some(d) = parse_duration(value.get_ref()) else {
        r.at(
            &value.span(),
            format!(
                "`{}` is not a duration: write a whole number and a unit, \
                 e.g. \"500ms\", \"900s\", \"2m\" or \"1h\"",
                value.get_ref()
            ),
        );
        return None;
    };
    if d < range.0 || d > range.1 {
        r.at(&value.span(), format!("`{}`: {bounds}", value.get_ref()));
        return None;
    }
    Some(d)
}

/// Above zero and at most the engine's longest timeout (24 days).
const TIMEOUT_RANGE: (Duration, Duration) = (Duration::from_millis(1), Timeouts::MAX);
const TIMEOUT_BOUNDS: &str = "a timeout must be above zero and at most 24 days (\"576h\")";

/// A port range: `"1024-65535"`, or one port `"8080"`.
fn parse_ports(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (start, end) = text.split_once('-').unwrap_or((text, text));
    Some(start.trim().parse().ok()?..=end.trim().parse().ok()?)
}

/// A number in `min..=max` (when given), else an error naming the key.
fn bounded<T: Copy + PartialOrd + fmt::Display>(
    r: &mut Report<'_>,
    value: Option<&Spanned<T>>,
    default: T,
    (min, max): (T, T),
    key: &str,
) -> T {
    match value {
        None => default,
        Some(v) if *v.get_ref() >= min && *v.get_ref() <= max => *v.get_ref(),
        Some(v) => {
            r.at(&v.span(), format!("{key} must be in {min}..={max}"));
            default
        }
    }
}

/// 8 bytes from the kernel's random source; the seed of a map's hasher
/// (itself random per process) when that cannot be read.
fn random_seed() -> u64 {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    match read {
        Ok(()) => u64::from_ne_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.finish()
        }
    }
}

// ----- sections ------------------------------------------------------------

fn interfaces(r: &mut Report<'_>, docs: &[Spanned<InterfaceDoc>]) -> Vec<Interface> {
    if docs.is_empty() {
        r.whole("no [[interface]]: name the interface lbd serves");
    }
    for extra in docs.iter().skip(1) {
        r.at(
            &extra.span(),
            "only one [[interface]] is supported: the balancer is one-armed \
             (packets leave by the interface they came in on)",
        );
    }
    docs.iter()
        .map(|doc| {
            let d = doc.get_ref();
            let name = d.name.get_ref();
            // IFNAMSIZ is 16 with the terminating NUL.
            if name.is_empty()
                || name.len() > 15
                || name.contains(|c: char| c == '/' || c.is_whitespace())
            {
                r.at(
                    &d.name.span(),
                    format!(
                        "`{name}` is not an interface name (1 to 15 characters, no '/' or space)"
                    ),
                );
            }
            let queues = match &d.queues {
                None => Queues::All,
                Some(q) => match q.get_ref() {
                    QueuesDoc::Word(w) if w == "all" => Queues::All,
                    QueuesDoc::Count(n) => match u32::try_from(*n) {
                        Ok(n) if (1..=MAX_QUEUES).contains(&n) => Queues::Count(n),
                        _ => {
                            r.at(
                                &q.span(),
                                format!("queues must be in 1..={MAX_QUEUES} or \"all\""),
                            );
                            Queues::All
                        }
                    },
                    QueuesDoc::Word(_) => {
                        r.at(
                            &q.span(),
                            format!("queues must be in 1..={MAX_QUEUES} or \"all\""),
                        );
                        Queues::All
                    }
                },
            };
            let xdp_mode = d.xdp_mode.unwrap_or(XdpMode::Driver);
            Interface {
                name: name.clone(),
                queues,
                xdp_mode,
            }
        })
        .collect()
}

/// The most receive queues `lbd` serves (a port share's count is a `u16`;
/// far more than any NIC has).
const MAX_QUEUES: u32 = 4096;

/// The largest session capacity the engine's table can index.
const MAX_CAPACITY: u32 = (1 << 28) - 1;
/// The largest affinity table the engine honours.
const MAX_AFFINITY_CAPACITY: u32 = 1 << 24;
/// The longest quarantine the engine takes.
const MAX_QUARANTINE: Duration = Duration::from_secs(3600);

fn engine(r: &mut Report<'_>, doc: Option<&Spanned<EngineDoc>>) -> EngineConfig {
    let default = EngineConfig::default();
    let Some(doc) = doc else {
        return EngineConfig {
            hash_seed: random_seed(),
            ..default
        };
    };
    let d = doc.get_ref();
    let before = r.errors.len();
    let capacity = bounded(
        r,
        d.capacity.as_ref(),
        default.capacity,
        (1, MAX_CAPACITY),
        "capacity",
    );
    let affinity_capacity = bounded(
        r,
        d.affinity_capacity.as_ref(),
        default.affinity_capacity,
        (1, MAX_AFFINITY_CAPACITY),
        "affinity_capacity",
    );
    let quarantine = duration(
        r,
        d.quarantine.as_ref(),
        default.quarantine,
        (Duration::ZERO, MAX_QUARANTINE),
        "the quarantine is at most one hour (\"0s\" turns it off)",
    )
    .unwrap_or(default.quarantine);
    let quarantine_capacity = match &d.quarantine_capacity {
        Some(c) if *c.get_ref() == 0 && !quarantine.is_zero() => {
            r.at(
                &c.span(),
                "quarantine_capacity must be above zero while the quarantine is on",
            );
            default.quarantine_capacity
        }
        Some(c) => *c.get_ref(),
        None => default.quarantine_capacity,
    };
    let long = (Duration::from_millis(1), Duration::from_secs(3600));
    let sweep_period = duration(
        r,
        d.sweep_period.as_ref(),
        default.sweep_period,
        long,
        "sweep_period must be above zero and at most one hour",
    );
    let sweep_tick = duration(
        r,
        d.sweep_tick.as_ref(),
        default.sweep_tick,
        long,
        "sweep_tick must be above zero and at most one hour",
    );
    let (sweep_period, sweep_tick) = match (sweep_period, sweep_tick) {
        (Some(period), Some(tick)) if tick > period => {
            let span = d
                .sweep_tick
                .as_ref()
                .or(d.sweep_period.as_ref())
                .map_or(doc.span(), Spanned::span);
            r.at(&span, "sweep_tick must be at most sweep_period");
            (default.sweep_period, default.sweep_tick)
        }
        (period, tick) => (
            period.unwrap_or(default.sweep_period),
            tick.unwrap_or(default.sweep_tick),
        ),
    };
    let config = EngineConfig {
        capacity,
        affinity_capacity,
        hash_seed: d.hash_seed.unwrap_or_else(random_seed),
        sweep_period,
        sweep_tick,
        quarantine,
        quarantine_capacity,
        // Set per engine by `lbd run` (one engine per queue).
        port_share: lb_engine::PortShare::ALL,
        rss: None,
    };
    // The engine's own check, in case it knows more than the above.
    if r.errors.len() == before
        && let Err(e) = scratch_engine(&config)
    {
        r.at(&doc.span(), format!("[engine]: {e}"));
    }
    config
}

fn restart(r: &mut Report<'_>, doc: Option<&RestartDoc>) -> Restart {
    let default = Restart::default();
    let Some(d) = doc else {
        return default;
    };
    // An absolute directory, or "" for off.
    let mut dir = |value: Option<&Spanned<String>>, fallback: Option<PathBuf>, what: &str| {
        let Some(v) = value else {
            return fallback;
        };
        let text = v.get_ref();
        if text.is_empty() {
            return None;
        }
        let path = PathBuf::from(text);
        if !path.is_absolute() {
            r.at(
                &v.span(),
                format!("{what} must be an absolute path, or \"\" to turn it off"),
            );
        }
        Some(path)
    };
    let state_dir = dir(d.state_dir.as_ref(), default.state_dir, "state_dir");
    let pin_dir = dir(d.pin_dir.as_ref(), default.pin_dir, "pin_dir");
    Restart { state_dir, pin_dir }
}

fn neighbour_queue(r: &mut Report<'_>, doc: Option<&NeighbourDoc>) -> usize {
    let queue = doc.and_then(|d| d.queue.as_ref());
    bounded(r, queue, 64, (1, 1 << 20), "queue")
}

// ----- listeners -----------------------------------------------------------

/// Where a listener's values are written, to place the engine's errors.
struct ListenerSpans {
    header: Span,
    vip: Span,
    local: Span,
    addresses: Vec<Span>,
    ports: Option<Span>,
    maglev: Option<Span>,
    ttm_kind: Option<Span>,
    /// Each backend's `addr`.
    backends: Vec<Span>,
}

/// The TCP and UDP listeners, and the HTTP and HTTPS ones, each in file
/// order. `dir`: as for [`l7::listener`]; `access_log`: whether the file
/// has an `[access_log]` section.
fn listeners(
    r: &mut Report<'_>,
    docs: &[Spanned<ListenerDoc>],
    dir: Option<&Path>,
    access_log: bool,
) -> (Vec<Listener>, Vec<L7ListenerCfg>) {
    let mut built: Vec<(Listener, ListenerSpans)> = Vec::new();
    let mut built_l7: Vec<(L7ListenerCfg, l7::L7Spans)> = Vec::new();
    // Each listener's place in the file: (index in `built` or `built_l7`, L7).
    let mut order: Vec<(usize, bool)> = Vec::new();
    let mut names: Vec<(&str, Span)> = Vec::new();
    for doc in docs {
        let name = &doc.get_ref().name;
        if let Some((_, first)) = names.iter().find(|(n, _)| *n == name.get_ref()) {
            let (line, _) = position(r.text, first.start);
            r.at(
                &name.span(),
                format!(
                    "listener name `{}` is used already (line {line})",
                    name.get_ref()
                ),
            );
        } else {
            names.push((name.get_ref(), name.span()));
        }
        if let Some(https) = l7::protocol(doc.get_ref()) {
            if let Some(l) = l7::listener(r, doc, https, dir, access_log) {
                order.push((built_l7.len(), true));
                built_l7.push(l);
            }
        } else if let Some(l) = listener(r, doc) {
            order.push((built.len(), false));
            built.push(l);
        }
    }
    let refusals = engine_refusals(built.iter().map(|(l, _)| &l.engine));
    for (i, error) in refusals {
        let Some((l, spans)) = built.get(i) else {
            continue;
        };
        let mut message = format!("listener `{}`: {error}", l.name);
        if let lb_engine::ConfigError::DuplicateListener { .. } = error
            && let Some((other, _)) = built.iter().take(i).find(|(o, _)| {
                (o.engine.vip, o.engine.port, o.engine.protocol)
                    == (l.engine.vip, l.engine.port, l.engine.protocol)
            })
        {
            message = format!("{message} (listener `{}`)", other.name);
        }
        r.at(&locate(&error, &l.engine, spans), message);
    }
    l7::shared_addresses(r, &order, &built, &built_l7);
    (
        built.into_iter().map(|(l, _)| l).collect(),
        built_l7.into_iter().map(|(l, _)| l).collect(),
    )
}

/// Where the engine's `error` about listener `l` is written.
fn locate(error: &lb_engine::ConfigError, l: &ListenerConfig, spans: &ListenerSpans) -> Span {
    use lb_engine::ConfigError as E;
    let backend = |matches: &dyn Fn(&BackendConfig) -> bool, nth: usize| {
        l.backends
            .iter()
            .zip(&spans.backends)
            .filter(|(b, _)| matches(b))
            .nth(nth)
            .map(|(_, s)| s.clone())
    };
    let address = |a: &IpAddr, nth: usize| {
        l.local
            .addresses
            .iter()
            .zip(&spans.addresses)
            .filter(|(x, _)| *x == a)
            .nth(nth)
            .map(|(_, s)| s.clone())
    };
    let found = match error {
        E::DuplicateListener { .. } => Some(spans.vip.clone()),
        E::LocalIsVip(a) => address(a, 0).or(Some(spans.vip.clone())),
        E::DuplicateBackend { addr, port } => backend(&|b| b.addr == *addr && b.port == *port, 1),
        E::NoLocalAddressFor(a) | E::Ipv6Unsupported(a) => backend(&|b| b.addr == *a, 0),
        E::BadTtmKind(_) => spans.ttm_kind.clone(),
        E::Scheduler(_) => spans.maglev.clone(),
        E::LocalPool(LportError::DuplicateAddress(a)) => address(a, 1),
        E::LocalPool(LportError::UnusableAddress(a)) => address(a, 0),
        E::LocalPool(LportError::EmptyPortRange { .. }) => spans.ports.clone(),
        E::LocalPool(_) => Some(spans.local.clone()),
        _ => None,
    };
    found.unwrap_or_else(|| spans.header.clone())
}

/// One listener's values, or `None` (with errors reported) if any is wrong.
fn listener(r: &mut Report<'_>, doc: &Spanned<ListenerDoc>) -> Option<(Listener, ListenerSpans)> {
    let before = r.errors.len();
    let d = doc.get_ref();
    l7::refuse_l7_tables(r, d);
    let Some(local) = &d.local else {
        r.at(&doc.span(), "missing field `local`");
        return None;
    };
    let local_doc = local.get_ref();
    let spans = ListenerSpans {
        header: doc.span(),
        vip: d.vip.span(),
        local: local.span(),
        addresses: local_doc.addresses.iter().map(Spanned::span).collect(),
        ports: local_doc.ports.as_ref().map(Spanned::span),
        maglev: d.maglev.as_ref().map(|m| {
            m.get_ref()
                .table_size
                .as_ref()
                .map_or(m.span(), Spanned::span)
        }),
        ttm_kind: d
            .ttm
            .as_ref()
            .map(|t| t.get_ref().kind.as_ref().map_or(t.span(), Spanned::span)),
        backends: d.backend.iter().map(|b| b.get_ref().addr.span()).collect(),
    };
    let name = d.name.get_ref().clone();
    if name.is_empty() {
        r.at(&d.name.span(), "a listener's name must not be empty");
    }
    let vip = parse_at(r, &d.vip, "an IP address").unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let port = *d.port.get_ref();
    if port == 0 {
        r.at(&d.port.span(), "port must be above zero");
    }
    let protocol = match d.protocol.as_ref().map(|p| *p.get_ref()) {
        Some(ProtocolDoc::Udp) => Protocol::Udp,
        _ => Protocol::Tcp,
    };
    let scheduler = scheduler(r, d);
    let affinity = d.affinity.as_ref().map(|a| Affinity {
        timeout: duration(
            r,
            a.get_ref().timeout.as_ref(),
            Affinity::default().timeout,
            TIMEOUT_RANGE,
            TIMEOUT_BOUNDS,
        )
        .unwrap_or_default(),
    });
    let addresses = local_doc
        .addresses
        .iter()
        .map(|a| parse_at(r, a, "an IP address").unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))
        .collect();
    let mut local = LocalPool::new(addresses);
    if let Some(ports) = &local_doc.ports {
        match parse_ports(ports.get_ref()) {
            Some(range) if range.is_empty() || *range.start() == 0 => r.at(
                &ports.span(),
                format!(
                    "`{}`: {}",
                    ports.get_ref(),
                    LportError::EmptyPortRange {
                        start: *range.start(),
                        end: *range.end()
                    }
                ),
            ),
            Some(range) => local.ports = range,
            None => r.at(
                &ports.span(),
                format!(
                    "`{}` is not a port range such as \"1024-65535\"",
                    ports.get_ref()
                ),
            ),
        }
    }
    let mut config = ListenerConfig::new(vip, port, protocol, local);
    // The pool's own check, here so that it is reported along with the
    // listener's other errors (the engine's checks need them all right).
    if r.errors.len() == before
        && let Err(e) = config.local.validate()
    {
        let error = lb_engine::ConfigError::LocalPool(e);
        r.at(
            &locate(&error, &config, &spans),
            format!("listener `{name}`: {error}"),
        );
    }
    let timeouts = d
        .timeouts
        .as_ref()
        .map_or_else(Timeouts::default, |t| timeouts(r, t.get_ref()));
    let ttm = d.ttm.as_ref().map_or_else(TtmConfig::default, |t| {
        if protocol == Protocol::Udp {
            r.at(&t.span(), "ttm is for TCP listeners only");
        }
        ttm(r, t.get_ref())
    });
    let health = d.health.as_ref().map(|h| health(r, h));
    config.scheduler = scheduler;
    config.affinity = affinity;
    config.timeouts = timeouts;
    config.ping = d.ping.as_ref().is_none_or(|p| *p.get_ref());
    config.ttm = ttm;
    config.verify_checksums = match d.verify_checksums.as_ref().map(|v| *v.get_ref()) {
        None | Some(ChecksumsDoc::New) => ChecksumPolicy::New,
        Some(ChecksumsDoc::All) => ChecksumPolicy::All,
        Some(ChecksumsDoc::Off) => ChecksumPolicy::Off,
    };
    for b in &d.backend {
        let b = b.get_ref();
        let addr =
            parse_at(r, &b.addr, "an IP address").unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let backend_port = b.port.as_ref().map_or(port, |p| *p.get_ref());
        if let Some(p) = b.port.as_ref().filter(|p| *p.get_ref() == 0) {
            r.at(&p.span(), "port must be above zero");
        }
        config
            .backends
            .push(BackendConfig::new(addr, backend_port).weight(b.weight.unwrap_or(1)));
    }
    if r.errors.len() > before {
        return None;
    }
    let listener = Listener {
        name,
        engine: config,
        health,
    };
    Some((listener, spans))
}

fn scheduler(r: &mut Report<'_>, d: &ListenerDoc) -> SchedulerKind {
    match (d.scheduler, &d.maglev) {
        (SchedulerDoc::Rr, None) => SchedulerKind::RoundRobin,
        (SchedulerDoc::Wlc, None) => SchedulerKind::LeastConnections,
        (SchedulerDoc::Maglev, None) => SchedulerKind::maglev(),
        (SchedulerDoc::Maglev, Some(m)) => {
            let m = m.get_ref();
            let default = SchedulerKind::maglev();
            let kind = SchedulerKind::Maglev {
                table_size: m.table_size.as_ref().map_or(65537, |t| *t.get_ref()),
                key: match m.key {
                    MaglevKeyDoc::Flow => MaglevKey::FiveTuple,
                    MaglevKeyDoc::Source => MaglevKey::SourceAddress,
                },
            };
            if let (Err(e), Some(t)) = (kind.validate(), &m.table_size) {
                r.at(&t.span(), format!("table_size: {e}"));
                return default;
            }
            kind
        }
        (_, Some(m)) => {
            r.at(&m.span(), "a maglev table needs scheduler = \"maglev\"");
            SchedulerKind::default()
        }
    }
}

fn timeouts(r: &mut Report<'_>, d: &TimeoutsDoc) -> Timeouts {
    let t = Timeouts::default();
    let mut one = |value: &Option<Spanned<String>>, default: Duration| {
        duration(r, value.as_ref(), default, TIMEOUT_RANGE, TIMEOUT_BOUNDS).unwrap_or(default)
    };
    Timeouts {
        tcp_established: one(&d.tcp_established, t.tcp_established),
        syn_recv: one(&d.syn_recv, t.syn_recv),
        fin_wait: one(&d.fin_wait, t.fin_wait),
        close_wait: one(&d.close_wait, t.close_wait),
        last_ack: one(&d.last_ack, t.last_ack),
        time_wait: one(&d.time_wait, t.time_wait),
        close: one(&d.close, t.close),
        udp: one(&d.udp, t.udp),
    }
}

fn ttm(r: &mut Report<'_>, d: &TtmDoc) -> TtmConfig {
    let default = TtmConfig::default();
    let mut kind_ok = |k: &Spanned<u8>| {
        let ok = ttm_core::KindSet::EMPTY.with(*k.get_ref()).is_ok();
        if !ok {
            r.at(
                &k.span(),
                format!(
                    "{} is a standard TCP option kind (0-5 and 8 are refused)",
                    k.get_ref()
                ),
            );
        }
        ok
    };
    let kind = d
        .kind
        .as_ref()
        .filter(|k| kind_ok(k))
        .map_or(default.kind, |k| *k.get_ref());
    let strip = d.strip.as_ref().map_or(default.strip, |kinds| {
        kinds
            .iter()
            .filter(|k| kind_ok(k))
            .fold(ttm_core::KindSet::EMPTY, |set, k| {
                set.with(*k.get_ref()).unwrap_or(set)
            })
    });
    TtmConfig {
        enabled: d.enabled.unwrap_or(default.enabled),
        kind,
        strip,
        strip_timestamps: d.strip_timestamps.unwrap_or(default.strip_timestamps),
    }
}

fn health(r: &mut Report<'_>, doc: &Spanned<HealthDoc>) -> HealthCheck {
    let d = doc.get_ref();
    let kind = match d.kind {
        CheckDoc::Tcp => {
            for span in [
                d.path.as_ref().map(Spanned::span),
                d.status.as_ref().map(Spanned::span),
            ]
            .into_iter()
            .flatten()
            {
                r.at(&span, "path and status are for type = \"http\" checks only");
            }
            CheckKind::Tcp
        }
        CheckDoc::Http => {
            let path = d.path.as_ref().map_or("/", |p| p.get_ref().as_str());
            if let Some(p) = &d.path
                && (!path.starts_with('/')
                    || path.contains(|c: char| c.is_whitespace() || c.is_control()))
            {
                r.at(
                    &p.span(),
                    format!("`{path}` is not an HTTP path: it starts with '/' and has no spaces"),
                );
            }
            CheckKind::Http {
                path: path.to_owned(),
                status: bounded(r, d.status.as_ref(), 200, (100, 599), "status"),
            }
        }
    };
    let port = d.port.as_ref().map(|p| {
        if *p.get_ref() == 0 {
            r.at(&p.span(), "port must be above zero");
        }
        *p.get_ref()
    });
    let interval = duration(
        r,
        d.interval.as_ref(),
        Duration::from_secs(2),
        TIMEOUT_RANGE,
        TIMEOUT_BOUNDS,
    );
    let timeout = duration(
        r,
        d.timeout.as_ref(),
        Duration::from_secs(1),
        TIMEOUT_RANGE,
        TIMEOUT_BOUNDS,
    );
    if let (Some(interval), Some(timeout)) = (interval, timeout)
        && timeout > interval
    {
        let span = d
            .timeout
            .as_ref()
            .or(d.interval.as_ref())
            .map_or(doc.span(), Spanned::span);
        r.at(
            &span,
            format!("the check's timeout ({timeout:?}) is longer than its interval ({interval:?})"),
        );
    }
    HealthCheck {
        kind,
        port,
        interval: interval.unwrap_or_default(),
        timeout: timeout.unwrap_or_default(),
        rise: bounded(r, d.rise.as_ref(), 2, (1, 1000), "rise"),
        fall: bounded(r, d.fall.as_ref(), 3, (1, 1000), "fall"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_characters() {
        let text = "a = 1\n# é\nbé = 2\n";
        assert_eq!(position(text, 0), (1, 1));
        assert_eq!(position(text, 4), (1, 5));
        assert_eq!(position(text, 6), (2, 1));
        let b = text.find("= 2").unwrap();
        assert_eq!(position(text, b), (3, 4));
        // Inside a character, or past the end: no panic.
        assert_eq!(position(text, 9), (2, 3));
        assert_eq!(position(text, 999), (4, 1));
    }

    #[test]
    fn durations_and_port_ranges() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in [
            "",
            "5",
            "s",
            "1.5s",
            "1 s",
            "+1s",
            "1sec",
            "18446744073709551615h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_ports("1024-65535"), Some(1024..=65535));
        assert_eq!(parse_ports("8080"), Some(8080..=8080));
        for bad in ["", "1024-", "-5", "1-65536", "a-b", "1-2-3"] {
            assert_eq!(parse_ports(bad), None, "{bad:?}");
        }
    }
}
