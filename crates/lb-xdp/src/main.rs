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
                    "{}: ok ({} listener(s), {} address(es))",
                    file.display(),
                    config.listeners.len(),
                    config.addresses().len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for e in &errors {
                    eprintln!("{}:{}:{}: {}", file.display(), e.line, e.column, e.message);
                }
                ExitCode::FAILURE
            }
        },
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
                Err(errors) => {
                    for e in &errors {
                        eprintln!(
                            "{}:{}:{}: {}",
                            config.display(),
                            e.line,
                            e.column,
                            e.message
                        );
                    }
                    return ExitCode::FAILURE;
                }
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
