//! Runs every line of `tests/vectors/ttm.txt` (the vectors the C and Python
//! bindings test against too) through `ttm-core`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{IpAddr, SocketAddr};

use ttm_core::{Error, KindSet, PeerRecord, TtmOption, find};

const VECTORS: &str = include_str!("vectors/ttm.txt");

struct Vector<'a> {
    kind: &'a str,
    name: &'a str,
    accept: KindSet,
    input: Vec<u8>,
    expected: Vec<&'a str>,
}

fn vectors() -> impl Iterator<Item = Vector<'static>> {
    VECTORS
        .lines()
        .map(|line| line.split('#').next().unwrap().trim())
        .filter(|line| !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [kind, name, accept, hex, expected @ ..] = fields.as_slice() else {
                panic!("short vector line: {line}");
            };
            let accept = match *accept {
                "-" => KindSet::EMPTY,
                list => KindSet::new(
                    &list
                        .split(',')
                        .map(|k| k.parse().unwrap())
                        .collect::<Vec<u8>>(),
                )
                .unwrap(),
            };
            let mut input = match *hex {
                "-" => Vec::new(),
                hex => (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect(),
            };
            if *kind == "record" && cfg!(target_endian = "big") && input.len() >= 2 {
                input.swap(0, 1);
            }
            Vector {
                kind,
                name,
                accept,
                input,
                expected: expected.to_vec(),
            }
        })
}

/// The name the vector file gives each error.
fn error_name(error: &Error) -> &'static str {
    match error {
        Error::Truncated { .. } => "truncated",
        Error::BadLength { .. } => "bad_length",
        Error::KindNotAccepted { .. } => "kind_not_accepted",
        Error::TrailingBytes { .. } => "trailing_bytes",
        Error::MalformedOption { .. } => "malformed_option",
        Error::OptionOverrun { .. } => "option_overrun",
        Error::BadFamily { .. } => "bad_family",
        Error::NonZeroPadding { .. } => "nonzero_padding",
        other => panic!("error {other:?} has no name in the vector file"),
    }
}

/// The result as the vector file writes it.
fn render(result: Result<Option<(u16, SocketAddr)>, Error>) -> Vec<String> {
    match result {
        Ok(Some((k, addr))) => vec![
            "ok".into(),
            k.to_string(),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
        Ok(None) => vec!["none".into()],
        Err(e) => vec!["err".into(), error_name(&e).into()],
    }
}

/// Canonical form of the expected fields: addresses parsed, so that any
/// valid spelling of an address in the file compares equal.
fn canonical(expected: &[&str]) -> Vec<String> {
    expected
        .iter()
        .enumerate()
        .map(|(i, f)| match (expected.first(), i) {
            (Some(&"ok"), 2) => f.parse::<IpAddr>().unwrap().to_string(),
            _ => (*f).to_string(),
        })
        .collect()
}

#[test]
fn every_vector() {
    let mut counts = [0usize; 3];
    for v in vectors() {
        let result = match v.kind {
            "option" => {
                counts[0] += 1;
                TtmOption::decode(&v.input, &v.accept)
                    .map(|o| Some((u16::from(o.kind()), o.client())))
            }
            "find" => {
                counts[1] += 1;
                find(&v.input, &v.accept).map(|o| o.map(|o| (u16::from(o.kind()), o.client())))
            }
            "record" => {
                counts[2] += 1;
                PeerRecord::from_bytes(&v.input).map(|r| Some((r.family(), r.client())))
            }
            other => panic!("{}: unknown vector type {other}", v.name),
        };
        assert_eq!(
            render(result),
            canonical(&v.expected),
            "{} {}",
            v.kind,
            v.name
        );
    }
    assert!(counts.iter().sum::<usize>() >= 30, "{counts:?}");
    assert!(counts.iter().all(|&n| n >= 5), "{counts:?}");
}

/// Where a vector decodes, emitting the value gives back the same bytes.
#[test]
fn decoded_vectors_emit_the_same_bytes() {
    let mut checked = 0;
    for v in vectors().filter(|v| v.expected.first() == Some(&"ok")) {
        match v.kind {
            "option" => {
                let option = TtmOption::decode(&v.input, &v.accept).unwrap();
                let mut out = [0u8; 20];
                let rest = option.emit(&mut out).unwrap().len();
                assert_eq!(&out[..20 - rest], v.input.as_slice(), "{}", v.name);
                checked += 1;
            }
            "record" => {
                let record = PeerRecord::from_bytes(&v.input).unwrap();
                assert_eq!(
                    record.to_bytes().as_slice(),
                    v.input.as_slice(),
                    "{}",
                    v.name
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 10, "{checked}");
}
