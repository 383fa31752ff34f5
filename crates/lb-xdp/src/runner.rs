//! `lbd run`: start one loop per queue (each engine with the sessions the
//! last run saved), attach XDP once every socket is in place, and serve the
//! control plane from the main thread — health-check results, SIGHUP
//! reloads, the metrics snapshot, and a clean shutdown on SIGINT/SIGTERM
//! that stops the loops and saves their sessions. With a pin directory the
//! XDP program stays attached after `lbd` exits (see [`crate::xdp`]).
//!
//! The HTTP and HTTPS listeners are served by `lb_l7`'s server, started
//! before the XDP program is attached (their VIP and port are the host's
//! from its first packet), fed the health checks of their backends,
//! reloaded together with the engines (all or nothing), its counters
//! appended to the metrics, and stopped first at shutdown. Without TCP or
//! UDP listeners the XDP program and the sockets are set up all the same:
//! a reload may add such listeners, and a program an earlier `lbd` left
//! pinned (which drops its addresses' traffic while no socket serves it)
//! is replaced by one that hands the L7 traffic to the host.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lb_engine::rss::{RssConfig, RssSteering};
use lb_engine::{Engine, EngineConfig, PortShare};
use tracing::{error, info, warn};

use crate::config::Config;
use crate::datapath::{LoopCounters, Shared, Worker, engine_time, lock};
use crate::ethtool;
use crate::handoff;
use crate::health::{self, Checker, Target};
use crate::install::{self, Installed};
use crate::l2::L2;
use crate::metrics::{self, HealthState, NeighStats, RingStats, Snapshot};
use crate::netlink;
use crate::owner::Owners;
use crate::state;
use crate::xdp::{XdpProgram, XdpStats};
use crate::xsk;

use lb_l7::server::L7;

/// Why `lbd run` stopped before serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file is wrong.
    #[error("{path}: {errors}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Every error, one per line.
        errors: String,
    },
    /// Something the host refused (interface, XDP, AF_XDP, memory).
    #[error("{0}")]
    Setup(String),
}

/// A queue's loop and what the control thread keeps of it.
struct Queue {
    shared: Arc<Mutex<Shared>>,
    thread: Option<JoinHandle<()>>,
}

/// Everything `lbd run` holds.
struct Runner {
    path: PathBuf,
    config: Config,
    queues: Vec<Queue>,
    /// Whether the interface runs in RSS-aware mode.
    rss: bool,
    /// The steering its sessions are saved under (see [`saved_steering`]).
    saved_steering: String,
    program: XdpProgram,
    stop: Arc<AtomicBool>,
    checker: Option<Checker>,
    events: Receiver<health::Event>,
    events_tx: mpsc::Sender<health::Event>,
    snapshot: Arc<Mutex<Snapshot>>,
    /// The HTTP and HTTPS listeners' server; `None` without such listeners.
    l7: Option<L7>,
    /// The last health of each L7 listener's backend (one not here is
    /// up): the state a reload gives back to the server and to the checks.
    l7_up: HashMap<(String, SocketAddr), bool>,
    reloads_ok: u64,
    reloads_failed: u64,
    /// Sessions of the last run not restored (a changed queue count).
    sessions_not_restored: u64,
    /// The engines' clock starts here.
    epoch: Instant,
    /// Set by SIGHUP: reload.
    hup: Arc<AtomicBool>,
    /// Set by SIGINT and SIGTERM: stop.
    term: Arc<AtomicBool>,
}

fn format_errors(errors: &[crate::config::ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every local address of `config`'s listeners: a packet to one of them
/// is owned by its destination port (see [`crate::owner`]).
fn local_addresses(config: &Config) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for l in &config.listeners {
        for a in &l.engine.local.addresses {
            if !out.contains(a) {
                out.push(*a);
            }
        }
    }
    out
}

/// Engine `index` of `engines`'s configuration: its share of the local
/// ports (all of them in RSS-aware mode, with the NIC's configuration
/// `rss` and its queue instead), and its part of the session table and of
/// the quarantine (the configured figures are for the whole of `lbd`,
/// split evenly, rounded up).
fn engine_share(
    base: &EngineConfig,
    index: u16,
    engines: u16,
    rss: Option<&'static RssConfig>,
) -> EngineConfig {
    let mut c = *base;
    let n = u32::from(engines.max(1));
    c.capacity = base.capacity.div_ceil(n).max(1);
    c.quarantine_capacity = base.quarantine_capacity.div_ceil(n).max(1);
    match rss {
        Some(config) => {
            c.port_share = PortShare::ALL;
            c.rss = Some(RssSteering {
                config,
                queue: index,
            });
        }
        None => c.port_share = PortShare::new(index, engines).unwrap_or(PortShare::ALL),
    }
    c
}

/// How frames reach the engine that owns them on `queues` queues:
/// `single` (one engine owns everything), `rss` (the engines choose local
/// ports that the NIC's own RSS hash steers home: nothing but ICMP errors
/// is handed off) or `hand-off` (a frame that arrives on another queue
/// than its owner's is handed to it).
fn steering(queues: u32, rss: bool) -> &'static str {
    match (queues > 1, rss) {
        (false, _) => "single",
        (true, true) => "rss",
        (true, false) => "hand-off",
    }
}

/// The steering that sessions are saved under and restored only under
/// (see [`crate::state`]): [`steering`]'s name, and for RSS-aware mode the
/// NIC configuration's fingerprint.
fn saved_steering(queues: u32, rss: Option<u64>) -> String {
    match rss {
        Some(fingerprint) if queues > 1 => format!("rss:{fingerprint:016x}"),
        _ => steering(queues, false).to_owned(),
    }
}

/// The RSS configuration of interface `name` with `queues` queues, if
/// `lbd` can follow it (read once, kept for the process: every engine of
/// the interface refers to it); `None`, with the reason logged, otherwise.
fn read_rss(name: &str, queues: u16) -> Option<(&'static RssConfig, u64)> {
    if queues <= 1 {
        return None;
    }
    match ethtool::read(name, queues) {
        Ok(ethtool::Nic {
            config,
            fingerprint,
        }) => {
            info!(
                interface = name,
                indirection = config.indirection().len(),
                fields = ?config.fields(),
                "RSS is Toeplitz and readable: ports are chosen so that it steers every reply home"
            );
            Some((Box::leak(Box::new(config)), fingerprint))
        }
        Err(e) => {
            info!(interface = name, reason = %e, "RSS not followed: frames are handed to their owners");
            None
        }
    }
}

/// Every backend of `config`'s HTTP and HTTPS listeners that have a
/// health check, by listener name: the keys `l7_up` may hold.
fn l7_checked(config: &Config) -> Vec<(String, SocketAddr)> {
    config
        .l7
        .iter()
        .filter(|l| l.health.is_some())
        .flat_map(|l| {
            l.listener
                .backends
                .iter()
                .map(|b| (l.listener.name.clone(), b.addr))
        })
        .collect()
}

/// Give `l7`, just reloaded with `config`, the health of every backend:
/// a checked backend's last result (up when it has none yet, which is
/// what its checker starts from), and up for a backend that no check
/// watches. The L7 server keeps a backend's state by address, which a
/// renamed listener or a removed check would otherwise leave down with
/// nothing to bring it up.
fn push_l7_health(l7: &L7, up: &HashMap<(String, SocketAddr), bool>, config: &Config) {
    for l in &config.l7 {
        for b in &l.listener.backends {
            let key = (l.listener.name.clone(), b.addr);
            let is_up = l.health.is_none() || up.get(&key).copied().unwrap_or(true);
            l7.set_up(&key.0, key.1, is_up);
        }
    }
}

/// The HTTP and HTTPS listeners of `config` listening, or `None` when it
/// has none.
fn start_l7(config: &Config) -> Result<Option<L7>, RunError> {
    if config.l7.is_empty() {
        return Ok(None);
    }
    let l7 = L7::start(
        &config.l7_listeners(),
        config.access_log.as_ref(),
        config.l7_threads,
        // Maglev's client hash: the same backend for a client on every
        // node with the same `[engine] hash_seed`.
        config.engine.hash_seed,
    )
    .map_err(|e| RunError::Setup(format!("HTTP and HTTPS listeners: {e}")))?;
    info!(
        listeners = config.l7.len(),
        threads = config.l7_threads,
        "HTTP and HTTPS listeners up"
    );
    Ok(Some(l7))
}

/// Load `path`, attach, and serve until SIGINT or SIGTERM.
///
/// # Errors
/// A bad configuration, or a host that refuses the interface, XDP or
/// AF_XDP.
pub fn run(path: &Path) -> Result<(), RunError> {
    let config = Config::load(path).map_err(|errors| RunError::Config {
        path: path.to_owned(),
        errors: format_errors(&errors),
    })?;
    let setup = |what: &str, e: &dyn std::fmt::Display| RunError::Setup(format!("{what}: {e}"));
    let interface = config
        .interfaces
        .first()
        .ok_or_else(|| RunError::Setup("no interface configured".into()))?
        .clone();
    let ifindex = netlink::ifindex(&interface.name).map_err(|e| setup(&interface.name, &e))?;
    let mac = netlink::mac_address(&interface.name).map_err(|e| setup(&interface.name, &e))?;
    // The XDP program drops what is for the balancer on a queue with no
    // socket (the host must not answer for a VIP): every queue needs one.
    let rx_queues = netlink::rx_queues(&interface.name).map_err(|e| setup(&interface.name, &e))?;
    let queue_count = interface
        .queues
        .resolve(&interface.name, rx_queues)
        .map_err(RunError::Setup)?;
    let engines = u16::try_from(queue_count)
        .map_err(|_| RunError::Setup(format!("{queue_count} queues: too many")))?;
    // Caught from here on: a SIGTERM while lbd starts stops it once it
    // serves, with its sessions saved.
    let hup = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    for (signal, flag) in [
        (signal_hook::consts::SIGHUP, &hup),
        (signal_hook::consts::SIGINT, &term),
        (signal_hook::consts::SIGTERM, &term),
    ] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(flag)) {
            warn!(signal, error = %e, "cannot catch signal");
        }
    }
    // Before anything is attached: a metrics address in use stops lbd
    // while the host (or the last lbd's program) still has the VIPs.
    let snapshot = Arc::new(Mutex::new(Snapshot::default()));
    let _metrics = match config.metrics {
        Some(addr) => {
            let server = metrics::serve(addr, Arc::clone(&snapshot))
                .map_err(|e| setup(&format!("metrics on {addr}"), &e))?;
            info!(addr = %server.local_addr(), "metrics at /metrics");
            Some(server)
        }
        None => None,
    };
    // Listening before the XDP program hands their traffic to the host.
    let l7 = start_l7(&config)?;
    // Loaded, given its addresses and every queue's socket, and only then
    // attached: nothing it steers finds no socket.
    let mut program = XdpProgram::load().map_err(|e| setup("XDP", &e))?;
    program
        .set_addresses(&config.addresses())
        .map_err(|e| setup("XDP address map", &e))?;
    program
        .set_l7(&config.l7_addresses())
        .map_err(|e| setup("XDP L7 map", &e))?;

    let stop = Arc::new(AtomicBool::new(false));
    let epoch = Instant::now();
    let mut queues = Vec::new();
    let mut restored = Vec::new();
    // The last run's sessions, if it served as many queues: a session's
    // client packets are owned by a hash over the number of engines and
    // its replies by its local port's share, so with another count the
    // two would point at different engines.
    let mut saved_all = Vec::new();
    let mut sessions_not_restored = 0u64;
    let rss_nic = read_rss(&interface.name, engines);
    let rss = rss_nic.map(|(config, _)| config);
    let steering_now = saved_steering(queue_count, rss_nic.map(|(_, f)| f));
    if let Some(dir) = &config.restart.state_dir {
        let saved_count = state::saved_queues(dir).unwrap_or(1);
        // Older files name no steering: theirs was hand-off (or single).
        let saved_steering =
            state::saved_steering(dir).unwrap_or_else(|| saved_steering(saved_count, None));
        for queue in 0..saved_count.max(queue_count) {
            let saved = state::read(dir, queue).unwrap_or_else(|e| {
                warn!(queue, error = %e, "sessions of the last run not read");
                None
            });
            saved_all.push(saved);
        }
        let other_count = saved_count != queue_count;
        if (other_count || saved_steering != steering_now) && saved_all.iter().any(Option::is_some)
        {
            let lost = state::count_sessions(&saved_all, &config, epoch);
            sessions_not_restored = lost;
            if other_count {
                error!(
                    saved_queues = saved_count,
                    queues = queue_count,
                    sessions = lost,
                    "sessions of the last run not restored: it served another number of queues, \
                     and a session's client and its server's replies would reach different engines"
                );
            } else {
                error!(
                    saved_steering = %saved_steering,
                    steering = %steering_now,
                    sessions = lost,
                    "sessions of the last run not restored: it steered frames otherwise (another \
                     mode or another RSS configuration), and its local ports would not bring the \
                     servers' replies to the engines that hold them"
                );
            }
            for queue in 0..u32::try_from(saved_all.len()).unwrap_or(0) {
                if let Err(e) = state::discard(dir, queue) {
                    warn!(queue, error = %e, "refused sessions' file not removed");
                }
            }
            saved_all.clear();
        }
    }
    // Sessions keep their hash seed unless the file fixes one; every
    // engine, and the owner of every frame, uses the same.
    let mut base = config.engine;
    if config.random_seed
        && let Some(seed) = saved_all.iter().flatten().find_map(state::Saved::hash_seed)
    {
        base.hash_seed = seed;
    }
    let owners = Owners::new(engines, base.hash_seed, local_addresses(&config)).with_rss(rss);
    let xsks = xsk::bind_all(ifindex, queue_count)
        .map_err(|e| setup(&format!("AF_XDP sockets on {queue_count} queue(s)"), &e))?;
    let links = handoff::mesh(queue_count as usize).map_err(|e| setup("eventfd", &e))?;
    for (((queue, xsk), links), share) in (0u32..).zip(xsks).zip(links).zip(0u16..) {
        let saved = saved_all.get_mut(queue as usize).and_then(Option::take);
        let engine_config = engine_share(&base, share, engines, rss);
        let mut engine = Engine::new(engine_config).map_err(|e| setup("engine", &e))?;
        let installed =
            Installed::install(&mut engine, &config).map_err(|e| setup("listener", &e))?;
        if let Some(saved) = &saved {
            match saved.restore(&mut engine, engine_time(epoch, Instant::now())) {
                Ok(report) => info!(queue, age = ?saved.age, "sessions restored: {report}"),
                Err(e) => warn!(queue, error = %e, "sessions of the last run refused"),
            }
            restored.push(queue);
        }
        let shared = Arc::new(Mutex::new(Shared {
            engine,
            installed,
            counters: LoopCounters::default(),
            xsk: Default::default(),
            kernel: None,
            l2: Default::default(),
            ledger: Default::default(),
            owners: owners.clone(),
        }));
        let l2 = L2::new(ifindex, mac, config.neighbour_queue).map_err(|e| setup("netlink", &e))?;
        program
            .set_socket(queue, &xsk.fd())
            .map_err(|e| setup("XSK map", &e))?;
        let worker_shared = Arc::clone(&shared);
        let worker_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("lbd-q{queue}"))
            .spawn(move || {
                Worker {
                    queue,
                    xsk,
                    l2,
                    shared: worker_shared,
                    stop: worker_stop,
                    epoch,
                    links,
                }
                .run();
            })
            .map_err(|e| setup("thread", &e))?;
        queues.push(Queue {
            shared,
            thread: Some(thread),
        });
    }
    let attached = program
        .attach(
            &interface.name,
            interface.xdp_mode,
            config.restart.pin_dir.as_deref(),
        )
        .map_err(|e| setup("XDP", &e))?;
    info!(
        interface = %interface.name,
        queues = queue_count,
        steering = steering(queue_count, rss.is_some()),
        listeners = config.listeners.len(),
        l7_listeners = config.l7.len(),
        xdp = ?attached,
        "lbd is up"
    );

    // Restored and serving: the snapshots are spent (until then a failed
    // start leaves them for the next one).
    if let Some(dir) = &config.restart.state_dir {
        for queue in restored {
            if let Err(e) = state::discard(dir, queue) {
                warn!(queue, error = %e, "restored sessions' file not removed");
            }
        }
    }
    let (events_tx, events) = mpsc::channel();
    let mut runner = Runner {
        path: path.to_owned(),
        checker: None,
        config,
        queues,
        rss: rss.is_some(),
        saved_steering: steering_now,
        program,
        stop,
        events,
        events_tx,
        snapshot,
        l7,
        l7_up: HashMap::new(),
        reloads_ok: 0,
        reloads_failed: 0,
        sessions_not_restored,
        epoch,
        hup,
        term,
    };
    runner.start_checks();
    // systemd (Type=notify): the sockets serve from here on.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "cannot tell systemd that lbd is ready");
    }
    runner.serve();
    runner.shutdown();
    Ok(())
}

impl Runner {
    /// The control loop: health events, signals, metrics.
    fn serve(&mut self) {
        let (hup, term) = (Arc::clone(&self.hup), Arc::clone(&self.term));
        let mut last_snapshot = Instant::now() - Duration::from_secs(2);
        while !term.load(Ordering::Relaxed) {
            match self.events.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => self.apply_health(&event),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
            }
            if hup.swap(false, Ordering::Relaxed) {
                self.reload();
            }
            if last_snapshot.elapsed() >= Duration::from_millis(500) {
                self.publish();
                last_snapshot = Instant::now();
            }
            if self
                .queues
                .iter()
                .any(|q| q.thread.as_ref().is_some_and(|t| t.is_finished()))
            {
                error!("a queue's loop ended; stopping");
                break;
            }
        }
    }

    /// (Re)start the health checks for the running configuration. The old
    /// checker stops first and the events it had sent are applied, so that
    /// none arrives after the new one starts; each backend then starts in
    /// the state the engines have for it (up for a new one), so a reload
    /// neither revives a backend that is down nor loses one that came up.
    fn start_checks(&mut self) {
        self.checker = None;
        while let Ok(event) = self.events.try_recv() {
            self.apply_health(&event);
        }
        let mut targets = Vec::new();
        {
            let first = self.queues.first().map(|q| lock(&q.shared));
            for l in &self.config.listeners {
                let Some(check) = &l.health else { continue };
                for b in &l.engine.backends {
                    let backend = std::net::SocketAddr::new(b.addr, b.port);
                    let up = first
                        .as_ref()
                        .and_then(|s| s.installed.is_up(&l.name, backend))
                        .unwrap_or(true);
                    targets.push(Target {
                        listener: l.name.clone(),
                        backend,
                        check: check.clone(),
                        up,
                    });
                }
            }
        }
        for l in &self.config.l7 {
            let Some(check) = &l.health else { continue };
            for b in &l.listener.backends {
                let key = (l.listener.name.clone(), b.addr);
                targets.push(Target {
                    up: self.l7_up.get(&key).copied().unwrap_or(true),
                    listener: key.0,
                    backend: b.addr,
                    check: check.clone(),
                });
            }
        }
        self.checker = Some(Checker::start(targets, self.events_tx.clone()));
    }

    fn apply_health(&mut self, event: &health::Event) {
        if event.up {
            info!(listener = %event.listener, backend = %event.backend, reason = %event.reason, "backend up");
        } else {
            warn!(listener = %event.listener, backend = %event.backend, reason = %event.reason, "backend down");
        }
        // Names are unique across both kinds, and a reload does not move a
        // name from one kind to the other (that changes the L7 addresses,
        // which needs a restart).
        if self
            .config
            .l7
            .iter()
            .any(|l| l.listener.name == event.listener)
        {
            if let Some(l7) = &self.l7 {
                l7.set_up(&event.listener, event.backend, event.up);
            }
            self.l7_up
                .insert((event.listener.clone(), event.backend), event.up);
            return;
        }
        for q in &self.queues {
            let mut s = lock(&q.shared);
            let Shared {
                engine, installed, ..
            } = &mut *s;
            installed.set_up(engine, &event.listener, event.backend, event.up);
        }
    }

    fn reload(&mut self) {
        let new = match Config::load(&self.path) {
            Ok(c) => c,
            Err(errors) => {
                self.reloads_failed += 1;
                error!(
                    path = %self.path.display(),
                    "reload refused, the running configuration stays:\n{}",
                    format_errors(&errors)
                );
                return;
            }
        };
        // Checked once for every engine before any changes: the engines
        // take the same listeners, so a configuration one refuses, all do.
        if let Err(e) = install::check(&new) {
            self.reloads_failed += 1;
            error!(error = %e, "reload refused, the running configuration stays");
            return;
        }
        let restart = self.config.restart_needed(&new);
        if !restart.is_empty() {
            self.reloads_failed += 1;
            error!(
                sections = %restart.join(", "),
                "reload refused, the running configuration stays: these sections change only with a restart"
            );
            return;
        }
        // The HTTP and HTTPS listeners first: their reload re-reads the
        // certificates and may fail, and changes nothing when it does; the
        // engines then follow, and should they fail, the L7 listeners go
        // back too.
        if let Some(l7) = &self.l7 {
            if let Err(e) = l7.reload(&new.l7_listeners()) {
                self.reloads_failed += 1;
                error!(error = %e, "reload refused, the running configuration stays: HTTP and HTTPS listeners");
                return;
            }
            push_l7_health(l7, &self.l7_up, &new);
        }
        // The XDP program steers only what the engines know: before they
        // reload, the addresses in both configurations (an address going
        // away is the host's again at once); after, the new ones (an
        // address coming is the host's until the engines know it). An
        // address in both never misses a packet.
        let new_addresses = new.addresses();
        let addresses: Vec<_> = self
            .config
            .addresses()
            .into_iter()
            .filter(|a| new_addresses.contains(a))
            .collect();
        if let Err(e) = self.program.set_addresses(&addresses) {
            self.reloads_failed += 1;
            error!(error = %e, "reload refused: XDP address map");
            self.l7_back();
            return;
        }
        let mut failed = false;
        self.reload_engines(&new, |i, result| match result {
            Ok(report) if i == 0 => info!("reloaded: {report}"),
            Ok(_) => {}
            Err(e) => {
                failed = true;
                error!(queue = i, error = %e, "reload failed in the engine");
            }
        });
        if failed {
            // `install::check` passed, so no configuration reaches this;
            // should an engine still refuse a step, the engines would
            // disagree (those before it changed, it half-changed). Put
            // every engine back on the running configuration, which each
            // took before, so that they agree again and the reload changes
            // none; the XDP map and the health checks stay as they are.
            self.reload_engines(&self.config, |i, result| {
                if let Err(e) = result {
                    error!(queue = i, error = %e, "engine not back on the running configuration");
                }
            });
            if let Err(e) = self.program.set_addresses(&self.config.addresses()) {
                warn!(error = %e, "XDP address map: running addresses not restored");
            }
            self.l7_back();
            self.reloads_failed += 1;
            error!("reload failed in an engine: every engine is back on the running configuration");
            return;
        }
        if let Err(e) = self.program.set_addresses(&new_addresses) {
            warn!(error = %e, "XDP address map: new addresses not added");
        }
        // The same set as before (another needs a restart), written anew.
        if let Err(e) = self.program.set_l7(&new.l7_addresses()) {
            warn!(error = %e, "XDP L7 map not rewritten");
        }
        if self.l7.is_some() {
            info!(
                listeners = new.l7.len(),
                "HTTP and HTTPS listeners reloaded (certificates read again)"
            );
        }
        self.reloads_ok += 1;
        self.config = new;
        let kept = l7_checked(&self.config);
        self.l7_up.retain(|k, _| kept.contains(k));
        self.start_checks();
    }

    /// Put the L7 server back on the running configuration, after it took
    /// a new one that the rest of the reload then failed on: from memory
    /// (`L7::revert`), not by reading the certificate files again, which
    /// may have been replaced in place since.
    fn l7_back(&self) {
        let Some(l7) = &self.l7 else { return };
        if l7.revert() {
            push_l7_health(l7, &self.l7_up, &self.config);
        } else {
            error!("HTTP and HTTPS listeners not back on the running configuration");
        }
    }

    /// Make every queue's engine and owner function follow `config`, one
    /// queue after the other, telling `each` how each engine's reload went.
    fn reload_engines(
        &self,
        config: &Config,
        mut each: impl FnMut(usize, Result<install::ReloadReport, install::InstallError>),
    ) {
        for (i, q) in self.queues.iter().enumerate() {
            let mut s = lock(&q.shared);
            let Shared {
                engine,
                installed,
                owners,
                ..
            } = &mut *s;
            owners.set_local(local_addresses(config));
            each(i, installed.reload(engine, config));
        }
    }

    /// Fill the metrics snapshot from every queue.
    fn publish(&mut self) {
        let mut snap = Snapshot::default();
        let mut neigh = NeighStats::default();
        for (i, q) in self.queues.iter().enumerate() {
            let queue = u32::try_from(i).unwrap_or(u32::MAX);
            // Read before the queue's lock: the loop waits for it.
            let xdp = self.program.stats(queue).unwrap_or_else(|e| {
                warn!(queue, error = %e, "XDP counters unreadable");
                XdpStats::default()
            });
            let s = lock(&q.shared);
            snap.add_engine(&s.engine, &s.installed);
            snap.queue_sessions
                .push((queue, u64::from(s.engine.session_count())));
            let k = s.kernel.unwrap_or_default();
            snap.rings.push(RingStats {
                queue,
                rx_packets: s.counters.rx_packets,
                rx_batches: s.counters.rx_batches,
                tx_packets: s.counters.tx_packets,
                tx_wakeups: s.xsk.tx_wakeups,
                rx_wakeups: s.xsk.rx_wakeups,
                fill_ring_empty: s.xsk.fill_starved,
                tx_ring_full: s.xsk.tx_ring_full,
                kernel_rx_dropped: k.rx_dropped,
                kernel_rx_ring_full: k.rx_ring_full,
                kernel_fill_ring_empty: k.rx_fill_ring_empty_descs,
                kernel_tx_ring_empty: k.tx_ring_empty_descs,
                kernel_rx_invalid_descs: k.rx_invalid_descs,
                kernel_tx_invalid_descs: k.tx_invalid_descs,
                poll_sleeps: s.counters.poll_sleeps,
                tx_wakeup_errors: s.xsk.tx_wakeup_errors,
                bookkeeping_errors: s.xsk.bookkeeping_errors + s.counters.batch_errors,
                pass_dropped: s.counters.pass_dropped,
                frames: s.ledger,
                xdp,
            });
            neigh.resolved += s.l2.resolved;
            neigh.queued += s.l2.queued;
            neigh.queue_dropped += s.l2.queue_dropped;
            neigh.unresolved_dropped += s.l2.unresolved_dropped;
            neigh.unreachable += s.l2.unreachable;
            neigh.netlink_errors += s.l2.netlink_errors;
        }
        snap.describe_listeners(&self.config);
        if let Some(l7) = &self.l7 {
            l7.render_metrics(&mut snap.l7);
        }
        snap.neigh = neigh;
        snap.config_reloads_ok = self.reloads_ok;
        snap.config_reloads_failed = self.reloads_failed;
        snap.sessions_not_restored = self.sessions_not_restored;
        snap.steering = steering(
            u32::try_from(self.queues.len()).unwrap_or(u32::MAX),
            self.rss,
        );
        if let Some(checker) = &self.checker {
            snap.health = checker
                .status()
                .into_iter()
                .map(|s| HealthState {
                    listener: s.listener,
                    addr: s.backend,
                    up: s.up,
                    checks_ok: s.checks.saturating_sub(s.failures),
                    checks_failed: s.failures,
                })
                .collect();
        }
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = snap;
    }

    fn shutdown(mut self) {
        info!("stopping");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        self.checker = None;
        if let Some(l7) = self.l7.take() {
            l7.stop();
            info!("HTTP and HTTPS listeners stopped");
        }
        self.stop.store(true, Ordering::Relaxed);
        for q in &mut self.queues {
            if let Some(t) = q.thread.take()
                && t.join().is_err()
            {
                error!("a queue's loop panicked");
            }
        }
        if let Some(dir) = &self.config.restart.state_dir {
            let now = engine_time(self.epoch, Instant::now());
            let count = u32::try_from(self.queues.len()).unwrap_or(u32::MAX);
            if let Err(e) = state::save_queues(dir, count, &self.saved_steering) {
                error!(error = %e, "the number of queues not saved: the next start restores no session");
            }
            for (queue, q) in (0u32..).zip(&self.queues) {
                let s = lock(&q.shared);
                match state::save(dir, queue, &s.engine, now) {
                    Ok(bytes) => info!(
                        queue,
                        sessions = s.engine.session_count(),
                        bytes,
                        path = %state::path(dir, queue).display(),
                        "sessions saved"
                    ),
                    Err(e) => error!(queue, error = %e, "sessions not saved"),
                }
            }
        }
        drop(self.program);
        if self.config.restart.pin_dir.is_some() {
            info!(
                "XDP stays attached (pinned): the balancer's traffic waits for the next lbd; `lbd detach` removes it; bye"
            );
        } else {
            info!("XDP detached; bye");
        }
    }
}
