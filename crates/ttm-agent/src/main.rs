//! `ttm-agent`: `run` attaches the programs to a cgroup and stays in the
//! foreground until SIGINT or SIGTERM, then detaches; `status` prints a
//! running agent's counters and ranges; `check` says whether this host can
//! run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, Subcommand};
use ttm_agent::programs::{self, Agent, Options};
use ttm_agent::{cgroup, check, ranges};
use ttm_core::KindSet;

/// Where `run` pins its counters and ranges, and `status` reads them.
const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/ttm-agent";

#[derive(Parser)]
#[command(
    name = "ttm-agent",
    version,
    about = "The client's real address on the real server, from the TTM option, in eBPF"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to a cgroup and serve until SIGINT/SIGTERM.
    Run {
        /// The balancer's local-address ranges, comma-separated (e.g.
        /// 10.0.0.200/29,fd00::200/125): the option is believed only on
        /// connections from these.
        #[arg(long, value_name = "CIDR[,CIDR...]")]
        lb_ranges: String,
        /// The cgroup v2 whose processes (and descendants') sockets are
        /// served; default: the root of the hierarchy, from /proc/mounts.
        #[arg(long)]
        cgroup: Option<PathBuf>,
        /// The option kinds believed, comma-separated.
        #[arg(long, default_value = "254", value_delimiter = ',')]
        kinds: Vec<u8>,
        /// Where the counters and ranges are pinned (in bpffs).
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Print a running agent's counters and ranges.
    Status {
        /// The running agent's --pin-dir.
        #[arg(long, default_value = DEFAULT_PIN_DIR)]
        pin_dir: PathBuf,
    },
    /// Say whether this host can run the agent, and if not, why.
    Check,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run {
            lb_ranges,
            cgroup,
            kinds,
            pin_dir,
        } => run(&lb_ranges, cgroup, &kinds, pin_dir),
        Command::Status { pin_dir } => match programs::read_pinned(&pin_dir) {
            Ok((stats, ranges)) => {
                let ranges: Vec<String> = ranges.iter().map(ToString::to_string).collect();
                println!("lb_ranges {}", ranges.join(","));
                print!("{stats}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ttm-agent status: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Check => {
            let findings = check::run();
            for f in &findings {
                println!("{f}");
            }
            if findings.iter().all(|f| f.ok) {
                println!("this host can run ttm-agent");
                ExitCode::SUCCESS
            } else {
                println!("this host cannot run ttm-agent (see FAIL above)");
                ExitCode::FAILURE
            }
        }
    }
}

fn run(lb_ranges: &str, cgroup: Option<PathBuf>, kinds: &[u8], pin_dir: PathBuf) -> ExitCode {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("ttm-agent: {what}: {e}");
        ExitCode::FAILURE
    };
    let ranges = match ranges::parse_list(lb_ranges) {
        Ok(r) => r,
        Err(e) => return fail("--lb-ranges", &e),
    };
    let kinds = match KindSet::new(kinds) {
        Ok(k) if !k.is_empty() => k,
        Ok(_) => return fail("--kinds", &"no kind given"),
        Err(e) => return fail("--kinds", &e),
    };
    let cgroup = match cgroup.map_or_else(cgroup::find_root, Ok) {
        Ok(c) => c,
        Err(e) => return fail("cgroup", &e),
    };
    let options = Options {
        cgroup,
        ranges,
        kinds,
        pin_dir,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            return fail("signals", &e);
        }
    }
    let agent = match Agent::start(&options) {
        Ok(a) => a,
        Err(e) => return fail("start", &e),
    };
    let ranges: Vec<String> = options.ranges.iter().map(ToString::to_string).collect();
    tracing::info!(
        cgroup = %options.cgroup.display(),
        lb_ranges = %ranges.join(","),
        kinds = ?options.kinds.iter().collect::<Vec<_>>(),
        pin_dir = %options.pin_dir.display(),
        "ttm-agent is up"
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    match agent.stats() {
        Ok(s) => tracing::info!("stopping; counters:\n{s}"),
        Err(e) => tracing::warn!(error = %e, "stopping; counters unreadable"),
    }
    drop(agent);
    tracing::info!("detached; bye");
    ExitCode::SUCCESS
}
