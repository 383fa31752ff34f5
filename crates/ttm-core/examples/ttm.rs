//! `ttm`: decode a TTM option given in hex and print the client address,
//! or encode one.
//!
//! ```text
//! cargo run -q -p ttm-core --example ttm -- decode fe081f90c0000201
//! cargo run -q -p ttm-core --example ttm -- decode fd14... --kinds 253,254
//! cargo run -q -p ttm-core --example ttm -- encode 192.0.2.1 8080 [--kind 254]
//! cargo run -q -p ttm-core --example ttm -- record 02001f90c0000201000000000000000000000000
//! ```
//!
//! `decode` also takes a whole TCP options area (as tcpdump prints it) and
//! finds the option in it. Exit status: 0 on success, 1 when the input does
//! not decode, 2 on a usage error.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use ttm_core::{DEFAULT_KIND, KindSet, PeerRecord, TtmOption};

const USAGE: &str = "usage:
  ttm decode HEX [--kinds K[,K...]]   the option (or a TCP options area) -> client address
  ttm encode IP PORT [--kind K]       client address -> the option in hex
  ttm record HEX                      a 20-byte getsockopt(SOL_IP, 1345) record -> client address";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("ttm: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Decode(msg)) => {
            eprintln!("ttm: {msg}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Decode(String),
}

fn run(args: &[String]) -> Result<String, Failure> {
    let usage = |m: &str| Failure::Usage(m.to_owned());
    let decode = |e: ttm_core::Error| Failure::Decode(e.to_string());
    match args {
        [cmd, hex, rest @ ..] if cmd == "decode" => {
            let accept = match rest {
                [] => KindSet::DEFAULT,
                [flag, list] if flag == "--kinds" => parse_kinds(list)?,
                _ => return Err(usage("decode takes HEX and an optional --kinds list")),
            };
            let bytes = parse_hex(hex)?;
            let option = match TtmOption::decode(&bytes, &accept) {
                Ok(option) => option,
                // Not one option: try it as a whole TCP options area.
                // When that fails too, the error of the first reading says
                // more: "byte 1: option length 9 ..." rather than an overrun.
                Err(first) => ttm_core::find(&bytes, &accept)
                    .ok()
                    .flatten()
                    .ok_or_else(|| decode(first))?,
            };
            Ok(format!("kind {} client {}", option.kind(), option.client()))
        }
        [cmd, ip, port, rest @ ..] if cmd == "encode" => {
            let kind = match rest {
                [] => DEFAULT_KIND,
                [flag, k] if flag == "--kind" => {
                    k.parse().map_err(|_| usage("--kind takes 0..=255"))?
                }
                _ => return Err(usage("encode takes IP PORT and an optional --kind")),
            };
            let ip: IpAddr = ip.parse().map_err(|_| usage("IP is not an address"))?;
            let port: u16 = port.parse().map_err(|_| usage("PORT is not 0..=65535"))?;
            let option = TtmOption::new(kind, SocketAddr::new(ip, port));
            let mut buf = [0u8; ttm_core::V6_LEN];
            let rest_len = option.emit(&mut buf).map_err(decode)?.len();
            Ok(to_hex(buf.get(..buf.len() - rest_len).unwrap_or_default()))
        }
        [cmd, hex] if cmd == "record" => {
            let record = PeerRecord::from_bytes(&parse_hex(hex)?).map_err(decode)?;
            Ok(format!("af {} client {}", record.family(), record.client()))
        }
        _ => Err(usage("unknown command")),
    }
}

fn parse_kinds(list: &str) -> Result<KindSet, Failure> {
    let kinds = list
        .split(',')
        .map(|k| k.trim().parse::<u8>())
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| Failure::Usage(format!("--kinds {list:?}: not a list of 0..=255")))?;
    KindSet::new(&kinds).map_err(|e| Failure::Usage(e.to_string()))
}

fn parse_hex(text: &str) -> Result<Vec<u8>, Failure> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b' ' | b':' | b'-'))
        .collect();
    if !digits.len().is_multiple_of(2) {
        return Err(Failure::Usage("HEX has an odd number of digits".into()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .ok_or_else(|| Failure::Usage(format!("HEX: {:?} is not a hex byte", pair)))
        })
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
