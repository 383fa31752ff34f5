//! `lbd`: the AF_XDP load balancer. `lbd run`, `lbd check`, `lbd replay`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lb_xdp::config::Config;

#[derive(Parser)]
#[command(name = "lbd", version, about = "FULLNAT L4 load balancer on AF_XDP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Attach to the configured interface and serve until SIGINT/SIGTERM;
    /// SIGHUP reloads the configuration.
    Run {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Detach the XDP program that a stopped `lbd` left attached (pinned in
    /// bpffs, see `[restart]`): the host's own stack answers for the VIPs
    /// again. Run it when the balancer is taken away, not for a restart.
    Detach {
        /// The configuration file (its interface and pin directory).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file; every error with its line and column.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Run the engine over a capture, without privileges.
    Replay {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The capture to read (pcap, Ethernet).
        #[arg(long = "in")]
        input: PathBuf,
        /// Where the forwarded frames are written (pcap).
        #[arg(long = "out")]
        output: PathBuf,
    },
    /// The benchmark's I/O ceiling: forward every frame for ADDRESSES to
    /// the given MAC addresses in turn, with no load balancing (see
    /// `scripts/bench-lbd`).
    #[command(hide = true)]
    Reflect {
        /// The interface.
        #[arg(long)]
        interface: String,
        /// A MAC address frames are sent to; repeat it for several (a
        /// MAC given twice gets twice the frames).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// Generic (skb) XDP instead of driver mode.
        #[arg(long)]
        generic: bool,
        /// The addresses whose frames are taken.
        addresses: Vec<std::net::IpAddr>,
    },
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
        Command::Check { file } => match Config::load(&file) {
            Ok(config) => {
                println!(
                    "{}: ok ({} TCP/UDP listener(s), {} HTTP/HTTPS listener(s), {} address(es))",
                    file.display(),
                    config.listeners.len(),
                    config.l7.len(),
                    config.addresses().len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => config_errors(&file, &errors),
        },
        Command::Detach { config } => {
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => return config_errors(&config, &errors),
            };
            let Some(pin_dir) = &loaded.restart.pin_dir else {
                eprintln!("lbd detach: [restart] pin_dir is off: lbd detaches when it exits");
                return ExitCode::FAILURE;
            };
            let mut status = ExitCode::SUCCESS;
            for interface in &loaded.interfaces {
                match lb_xdp::xdp::detach_pinned(pin_dir, &interface.name) {
                    Ok(true) => println!("{}: XDP detached", interface.name),
                    Ok(false) => println!("{}: no pinned XDP link", interface.name),
                    Err(e) => {
                        eprintln!("lbd detach: {e}");
                        status = ExitCode::FAILURE;
                    }
                }
            }
            status
        }
        Command::Run { config } => match lb_xdp::runner::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lbd: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Reflect {
            interface,
            to,
            generic,
            addresses,
        } => {
            let mut macs = Vec::new();
            for t in &to {
                let Some(mac) = lb_xdp::netlink::parse_mac(t) else {
                    eprintln!("lbd reflect: bad MAC address {t:?}");
                    return ExitCode::FAILURE;
                };
                macs.push(mac);
            }
            let mode = if generic {
                lb_xdp::config::XdpMode::Generic
            } else {
                lb_xdp::config::XdpMode::Driver
            };
            match lb_xdp::reflect::reflect(&interface, mode, &addresses, &macs) {
                Ok(c) => {
                    println!("forwarded {} poll_sleeps {}", c.forwarded, c.poll_sleeps);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lbd reflect: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Replay {
            config,
            input,
            output,
        } => {
            let loaded = match Config::load(&config) {
                Ok(c) => c,
                Err(errors) => return config_errors(&config, &errors),
            };
            match lb_xdp::replay::replay(&loaded, &input, &output) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("lbd replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Print a configuration file's errors, each with its line and column.
fn config_errors(file: &std::path::Path, errors: &[lb_xdp::config::ConfigError]) -> ExitCode {
    for e in errors {
        eprintln!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
    }
    ExitCode::FAILURE
}
