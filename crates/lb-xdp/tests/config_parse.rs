//! `Config::parse`: the example file, and every kind of error at its exact
//! line and column.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use lb_engine::{ChecksumPolicy, MaglevKey, Protocol, SchedulerKind};
use lb_xdp::config::{CheckKind, Config, ConfigError, Queues, Restart, XdpMode};

const EXAMPLE: &str = include_str!("../examples/lbd.toml");

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/configs")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

/// The errors of `text` as (line, column, message).
fn errors(text: &str) -> Vec<(usize, usize, String)> {
    Config::parse(text)
        .expect_err("the configuration should be refused")
        .into_iter()
        .map(|e| (e.line, e.column, e.message))
        .collect()
}

/// The one error of `text`, as (line, column), checking its message
/// contains `needle`.
fn one_error(text: &str, needle: &str) -> (usize, usize) {
    let errors = errors(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let (line, column, message) = &errors[0];
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    (*line, *column)
}

/// An interface (lines 1-2), then `rest` from line 3.
fn with_interface(rest: &str) -> String {
    format!("[[interface]]\nname = \"eth0\"\n{rest}")
}

/// Lines 3-7: a listener `web` without backends.
const WEB: &str = r#"[[listener]]
name = "web"
vip = "192.0.2.1"
port = 80
local = { addresses = ["10.0.0.100"] }
"#;

#[test]
fn the_example_parses() {
    let c = Config::parse(EXAMPLE).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(c.interfaces.len(), 1);
    assert_eq!(c.interfaces[0].name, "eth0");
    assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Driver);
    assert_eq!(c.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(c.neighbour_queue, 64);
    assert_eq!(c.engine.sweep_tick, Duration::from_millis(100));
    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["web", "dns"]);
    let web = &c.listeners[0];
    assert_eq!(web.engine.backends.len(), 2);
    assert_eq!(web.engine.backends[1].weight, 3);
    assert_eq!(web.engine.backends[1].port, 8080);
    assert_eq!(
        web.engine.affinity.unwrap().timeout,
        Duration::from_secs(300)
    );
    let health = web.health.as_ref().unwrap();
    assert_eq!(
        health.kind,
        CheckKind::Http {
            path: "/healthz".into(),
            status: 200
        }
    );
    assert_eq!((health.rise, health.fall), (2, 3));
    assert_eq!(web.engine.verify_checksums, ChecksumPolicy::New);
    let dns = &c.listeners[1];
    assert_eq!(dns.engine.protocol, Protocol::Udp);
    assert_eq!(
        dns.engine.scheduler,
        SchedulerKind::Maglev {
            table_size: 65537,
            key: MaglevKey::SourceAddress
        }
    );
    assert_eq!(dns.engine.timeouts.udp, Duration::from_secs(30));
    // A backend without a port takes the listener's.
    assert_eq!(dns.engine.backends[0].port, 53);
    let addresses: Vec<IpAddr> = [
        "192.0.2.1",
        "10.0.0.100",
        "10.0.0.101",
        "2001:db8::53",
        "10.0.0.102",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    assert_eq!(c.addresses(), addresses);
}

#[test]
fn defaults() {
    let c = Config::parse(&with_interface(WEB)).unwrap();
    assert_eq!(c.interfaces[0].queues, Queues::All);
    assert_eq!(c.interfaces[0].xdp_mode, XdpMode::Driver);
    assert_eq!(c.metrics, None);
    assert_eq!(c.neighbour_queue, 64);
    let l = &c.listeners[0];
    assert_eq!(l.engine.protocol, Protocol::Tcp);
    assert_eq!(l.engine.scheduler, SchedulerKind::RoundRobin);
    assert_eq!(l.engine.timeouts, lb_engine::Timeouts::default());
    assert_eq!(l.engine.ttm, lb_engine::TtmConfig::default());
    assert_eq!(l.engine.verify_checksums, ChecksumPolicy::New);
    assert_eq!(l.engine.local.ports, 1024..=65535);
    assert!(l.engine.ping && l.engine.affinity.is_none() && l.health.is_none());
    let e = lb_engine::EngineConfig::default();
    assert_eq!(
        (
            c.engine.capacity,
            c.engine.quarantine,
            c.engine.sweep_period
        ),
        (e.capacity, e.quarantine, e.sweep_period)
    );
    // A health table with nothing but its type.
    let c = Config::parse(&with_interface(&format!(
        "{WEB}health = {{ type = \"http\" }}\n"
    )))
    .unwrap();
    let h = c.listeners[0].health.clone().unwrap();
    assert_eq!(
        h.kind,
        CheckKind::Http {
            path: "/".into(),
            status: 200
        }
    );
    assert_eq!(
        (h.interval, h.timeout, h.port),
        (Duration::from_secs(2), Duration::from_secs(1), None)
    );
}

#[test]
fn durations_take_four_units() {
    let text = with_interface(&format!(
        "{WEB}timeouts = {{ tcp_established = \"2h\", syn_recv = \"3m\", fin_wait = \"45s\", close = \"1500ms\" }}\n"
    ));
    let t = Config::parse(&text).unwrap().listeners[0].engine.timeouts;
    assert_eq!(t.tcp_established, Duration::from_secs(7200));
    assert_eq!(t.syn_recv, Duration::from_secs(180));
    assert_eq!(t.fin_wait, Duration::from_secs(45));
    assert_eq!(t.close, Duration::from_millis(1500));
    for bad in [
        "10",
        "1.5s",
        "s",
        "-1s",
        "1 s",
        "1d",
        "1S",
        "99999999999999999999h",
        "",
    ] {
        let text = with_interface(&format!("{WEB}timeouts = {{ udp = \"{bad}\" }}\n"));
        // Line 8, at the value's opening quote.
        assert_eq!(one_error(&text, "is not a duration"), (8, 20), "{bad:?}");
    }
}

#[test]
fn unknown_key_at_top_level() {
    let text = "[[interface]]\nname = \"eth0\"\n\ncolour = \"blue\"\n";
    assert_eq!(one_error(text, "unknown field `colour`"), (4, 1));
}

#[test]
fn unknown_key_in_a_nested_table() {
    let text = fixture("unknown_nested.toml");
    assert_eq!(one_error(&text, "unknown field `wieght`"), (13, 3));
    // In an inline table, in the middle of a line.
    let text = with_interface(&format!(
        "{WEB}health = {{ type = \"tcp\", intervall = \"2s\" }}\n"
    ));
    assert_eq!(one_error(&text, "unknown field `intervall`"), (8, 26));
    // In a section.
    let text = with_interface("[engine]\ncapacity = 10\nsweep = \"1s\"\n");
    assert_eq!(one_error(&text, "unknown field `sweep`"), (5, 1));
}

#[test]
fn syntax_and_type_errors_have_a_position() {
    assert_eq!(
        one_error("[[interface]\nname = \"eth0\"\n", "expected"),
        (1, 13)
    );
    let text = with_interface("[engine]\ncapacity = \"many\"\n");
    assert_eq!(one_error(&text, "expected u32"), (4, 12));
    let text = with_interface(&WEB.replace("port = 80", "port = 70000"));
    assert_eq!(one_error(&text, "expected u16"), (6, 8));
    let text = with_interface(&format!("{WEB}protocol = \"sctp\"\n"));
    assert_eq!(one_error(&text, "unknown variant `sctp`"), (8, 12));
    let text = with_interface(&WEB.replace("port = 80\n", ""));
    assert_eq!(one_error(&text, "missing field `port`"), (3, 1));
}

#[test]
fn a_bad_address() {
    let text = with_interface(&WEB.replace("192.0.2.1", "192.0.2.300"));
    assert_eq!(
        one_error(&text, "`192.0.2.300` is not an IP address"),
        (5, 7)
    );
    let text = with_interface(&format!("{WEB}[[listener.backend]]\naddr = \"10.0.0.x\"\n"));
    assert_eq!(one_error(&text, "`10.0.0.x` is not an IP address"), (9, 8));
    let text = with_interface(&WEB.replace("\"10.0.0.100\"", "\"10.0.0.100\", \"nope\""));
    assert_eq!(one_error(&text, "`nope` is not an IP address"), (7, 38));
    let text = with_interface("[metrics]\nlisten = \"127.0.0.1\"\n");
    assert_eq!(one_error(&text, "is not an address and port"), (4, 10));
}

#[test]
fn a_bad_duration() {
    let text = with_interface(&format!("{WEB}health = {{ interval = \"2 seconds\" }}\n"));
    assert_eq!(one_error(&text, "`2 seconds` is not a duration"), (8, 23));
    let text = with_interface("[engine]\nquarantine = \"2h\"\n");
    assert_eq!(one_error(&text, "at most one hour"), (4, 14));
    let text = with_interface(&format!("{WEB}timeouts = {{ udp = \"0s\" }}\n"));
    assert_eq!(one_error(&text, "above zero"), (8, 20));
}

#[test]
fn a_duplicate_listener_name() {
    let second = WEB
        .replace("192.0.2.1", "192.0.2.2")
        .replace("10.0.0.100", "10.0.0.101");
    let text = with_interface(&format!("{WEB}\n{second}"));
    assert_eq!(
        one_error(&text, "listener name `web` is used already (line 4)"),
        (10, 8)
    );
}

#[test]
fn a_duplicate_listener_is_the_engines_error() {
    let second = WEB
        .replace("web", "web2")
        .replace("10.0.0.100", "10.0.0.101");
    let text = with_interface(&format!("{WEB}\n{second}"));
    let at = one_error(&text, "listener `web2`: a listener for 192.0.2.1 port 80");
    assert_eq!(at, (11, 7));
    assert!(errors(&text)[0].2.ends_with("(listener `web`)"));
    // The same VIP and port over UDP is another listener.
    let udp = format!("{second}protocol = \"udp\"\n");
    Config::parse(&with_interface(&format!("{WEB}\n{udp}"))).unwrap();
    // A VIP that is another listener's local address.
    let third = WEB
        .replace("web", "web3")
        .replace("192.0.2.1", "10.0.0.100");
    let text = with_interface(&format!(
        "{WEB}\n{}",
        third.replace("10.0.0.100\"]", "10.0.0.102\"]")
    ));
    assert_eq!(
        one_error(&text, "local address 10.0.0.100 is also a VIP"),
        (11, 7)
    );
}

#[test]
fn a_backend_of_the_wrong_family() {
    // An IPv6 backend, with only IPv4 local addresses.
    let v6 = WEB.replace("192.0.2.1", "2001:db8::1");
    let text = with_interface(&format!(
        "{v6}\n[[listener.backend]]\naddr = \"10.0.0.2\"\n\n[[listener.backend]]\naddr = \"2001:db8::2\"\n"
    ));
    let at = one_error(
        &text,
        "backend 2001:db8::2 has no local address of its family",
    );
    assert_eq!(at, (13, 8));
    // An IPv6 backend behind an IPv4 VIP.
    let both = WEB.replace("\"10.0.0.100\"", "\"10.0.0.100\", \"2001:db8::100\"");
    let text = with_interface(&format!(
        "{both}[[listener.backend]]\naddr = \"2001:db8::2\"\n"
    ));
    assert_eq!(one_error(&text, "4to6) is not supported"), (9, 8));
    // The same backend twice: the second is the one reported.
    let text = with_interface(&format!(
        "{WEB}[[listener.backend]]\naddr = \"10.0.0.2\"\n[[listener.backend]]\naddr = \"10.0.0.2\"\nport = 80\n"
    ));
    assert_eq!(one_error(&text, "is in the pool already"), (11, 8));
}

#[test]
fn listener_and_interface_rules() {
    let text = format!("{}\n[[interface]]\nname = \"eth1\"\n", with_interface(""));
    assert_eq!(one_error(&text, "the balancer is one-armed"), (4, 1));
    let text = with_interface("xdp_mode = \"generic\"\nqueues = 0\n");
    assert_eq!(one_error(&text, "queues must be in 1..=4096"), (4, 10));
    let text = with_interface("queues = \"some\"\n");
    assert_eq!(one_error(&text, "or \"all\""), (3, 10));
    let c = Config::parse(&with_interface("queues = 4\n")).unwrap();
    assert_eq!(c.interfaces[0].queues, Queues::Count(4));
    let c = Config::parse(&with_interface("queues = \"all\"\n")).unwrap();
    assert_eq!(c.interfaces[0].queues, Queues::All);
    assert_eq!(Queues::All.resolve("eth0", 4), Ok(4));
    assert_eq!(Queues::Count(4).resolve("eth0", 4), Ok(4));
    assert!(
        Queues::Count(2)
            .resolve("eth0", 4)
            .unwrap_err()
            .contains("ethtool -L eth0 combined 2")
    );
    let text = "[[interface]]\nname = \"a-very-long-interface\"\n";
    assert_eq!(one_error(text, "is not an interface name"), (2, 8));
    assert_eq!(one_error("", "no [[interface]]"), (0, 0));
    let text = with_interface(&format!(
        "{WEB}scheduler = \"maglev\"\nmaglev = {{ table_size = 1000 }}\n"
    ));
    assert_eq!(
        one_error(&text, "Maglev table size 1000 is not prime"),
        (9, 25)
    );
    let text = with_interface(&format!("{WEB}maglev = {{ table_size = 65537 }}\n"));
    assert_eq!(one_error(&text, "needs scheduler = \"maglev\""), (8, 10));
    let text = with_interface(&format!(
        "{WEB}protocol = \"udp\"\nttm = {{ enabled = false }}\n"
    ));
    assert_eq!(one_error(&text, "TCP listeners only"), (9, 7));
    let text = with_interface(&format!("{WEB}ttm = {{ kind = 2 }}\n"));
    assert_eq!(one_error(&text, "standard TCP option kind"), (8, 16));
    let text = with_interface(&format!("{WEB}ttm = {{ strip = [253, 8] }}\n"));
    assert_eq!(one_error(&text, "standard TCP option kind"), (8, 23));
    let text = with_interface(&WEB.replace("\"]", "\"], ports = \"0-100\""));
    assert_eq!(one_error(&text, "is empty or includes port 0"), (7, 47));
    let text = with_interface(&WEB.replace("[\"10.0.0.100\"]", "[]"));
    assert_eq!(one_error(&text, "has no addresses"), (7, 9));
    let text = with_interface(&WEB.replace("\"10.0.0.100\"", "\"10.0.0.100\", \"10.0.0.100\""));
    assert_eq!(one_error(&text, "listed twice"), (7, 38));
}

#[test]
fn verify_checksums_takes_three_values() {
    for (value, policy) in [
        ("new", ChecksumPolicy::New),
        ("all", ChecksumPolicy::All),
        ("off", ChecksumPolicy::Off),
    ] {
        for protocol in ["tcp", "udp"] {
            let text = with_interface(&format!(
                "{WEB}protocol = \"{protocol}\"\nverify_checksums = \"{value}\"\n"
            ));
            let c = Config::parse(&text).unwrap_or_else(|e| panic!("{value}: {e:#?}"));
            assert_eq!(c.listeners[0].engine.verify_checksums, policy, "{value}");
        }
    }
    // Line 8, at the value.
    let text = with_interface(&format!("{WEB}verify_checksums = \"syn\"\n"));
    let (line, column) = one_error(&text, "unknown variant `syn`");
    assert_eq!((line, column), (8, 20));
    assert!(errors(&text)[0].2.contains("`new`, `all`"));
    let text = with_interface(&format!("{WEB}verify_checksums = \"All\"\n"));
    assert_eq!(one_error(&text, "unknown variant `All`"), (8, 20));
    let text = with_interface(&format!("{WEB}verify_checksums = true\n"));
    assert_eq!(one_error(&text, "wanted string"), (8, 20));
    // A listener's key, not the engine's.
    let text = with_interface("[engine]\nverify_checksums = \"all\"\n");
    assert_eq!(one_error(&text, "unknown field `verify_checksums`"), (4, 1));
}

#[test]
fn health_check_rules() {
    let cases = [
        (
            "type = \"http\", path = \"healthz\"",
            "is not an HTTP path",
            34,
        ),
        (
            "type = \"tcp\", path = \"/\"",
            "for type = \"http\" checks only",
            33,
        ),
        (
            "interval = \"1s\", timeout = \"2s\"",
            "longer than its interval",
            39,
        ),
        ("interval = \"500ms\"", "longer than its interval", 23),
        ("rise = 0", "rise must be in 1..=1000", 19),
        ("fall = 0", "fall must be in 1..=1000", 19),
        (
            "type = \"http\", status = 99",
            "status must be in 100..=599",
            36,
        ),
        ("port = 0", "port must be above zero", 19),
    ];
    for (table, message, column) in cases {
        let text = with_interface(&format!("{WEB}health = {{ {table} }}\n"));
        assert_eq!(one_error(&text, message), (8, column), "{table}");
    }
}

#[test]
fn several_errors_are_all_reported() {
    let errors = errors(&fixture("many_errors.toml"));
    let at: Vec<(usize, usize)> = errors.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(
        at,
        [
            (5, 10),  // queues = 0
            (9, 14),  // sweep_tick above sweep_period
            (10, 14), // quarantine too long
            (13, 10), // metrics address without a port
            (19, 47), // port range
            (20, 32), // tcp_established
            (20, 52), // udp = "0s"
            (21, 34), // http path
            (21, 72), // timeout above interval
            (21, 85), // rise = 0
            (27, 8),  // bad backend address
            (30, 8),  // duplicate name
            (37, 7),  // duplicate listener (engine)
            (48, 8),  // backend family (engine)
        ],
        "{errors:#?}"
    );
}

#[test]
fn errors_display_as_line_column_message() {
    let e = Config::parse("[[interface]]\nname = \"eth0\"\nx = 1\n").unwrap_err();
    assert!(
        e[0].to_string().starts_with("3:1: unknown field `x`"),
        "{}",
        e[0]
    );
    let whole = ConfigError {
        line: 0,
        column: 0,
        message: "cannot read".into(),
    };
    assert_eq!(whole.to_string(), "cannot read");
    let e = Config::load(Path::new("/nonexistent/lbd.toml")).unwrap_err();
    assert_eq!((e[0].line, e[0].column), (0, 0));
}

#[test]
fn hash_seed_given_or_random() {
    let text = with_interface("[engine]\nhash_seed = 42\n");
    assert_eq!(Config::parse(&text).unwrap().engine.hash_seed, 42);
    let seeds: Vec<u64> = (0..3)
        .map(|_| Config::parse(&with_interface("")).unwrap().engine.hash_seed)
        .collect();
    assert!(seeds[0] != seeds[1] || seeds[1] != seeds[2], "{seeds:?}");
}

#[test]
fn restart_needed_names_the_fixed_sections() {
    let a = Config::parse(EXAMPLE).unwrap();
    let b = Config::parse(&EXAMPLE.replace("weight = 3", "weight = 4")).unwrap();
    assert!(
        a.restart_needed(&b).is_empty(),
        "a random seed is no change"
    );
    let c = Config::parse(
        &EXAMPLE
            .replace("queue = 64", "queue = 8")
            .replace("9100", "9101"),
    )
    .unwrap();
    assert_eq!(a.restart_needed(&c), ["metrics", "neighbour"]);
    let d = Config::parse(&EXAMPLE.replace("capacity = 1048576", "capacity = 1000")).unwrap();
    assert_eq!(a.restart_needed(&d), ["engine"]);
}

#[test]
fn restart_section_defaults_off_and_errors() {
    let c = Config::parse(&with_interface("")).unwrap();
    assert_eq!(c.restart, Restart::default());
    assert_eq!(c.restart.state_dir.as_deref(), Some(Path::new("/run/lbd")));
    assert_eq!(
        c.restart.pin_dir.as_deref(),
        Some(Path::new("/sys/fs/bpf/lbd"))
    );
    assert!(
        c.random_seed,
        "no hash_seed: random, a restart may take the snapshot's"
    );
    let fixed = Config::parse(&with_interface("[engine]\nhash_seed = 7\n")).unwrap();
    assert!(!fixed.random_seed);
    assert_eq!(fixed.engine.hash_seed, 7);

    let off = Config::parse(&with_interface(
        "[restart]\nstate_dir = \"\"\npin_dir = \"\"\n",
    ))
    .unwrap();
    assert_eq!(off.restart.state_dir, None);
    assert_eq!(off.restart.pin_dir, None);
    let custom =
        Config::parse(&with_interface("[restart]\nstate_dir = \"/var/lib/lbd\"\n")).unwrap();
    assert_eq!(
        custom.restart.state_dir.as_deref(),
        Some(Path::new("/var/lib/lbd"))
    );
    assert_eq!(custom.restart.pin_dir, Restart::default().pin_dir);

    assert_eq!(
        one_error(
            &with_interface("[restart]\npin_dir = \"lbd\"\n"),
            "pin_dir must be an absolute path"
        ),
        (4, 11)
    );
    assert_eq!(
        one_error(
            &with_interface("[restart]\nstate = \"/x\"\n"),
            "unknown field"
        ),
        (4, 1)
    );
    // A change of [restart] needs a restart, like the other fixed sections.
    assert_eq!(off.restart_needed(&c), ["restart"]);
}

/// Whatever the bytes, an answer and never a panic: every prefix of the
/// example, and the example with one byte replaced at many places.
#[test]
fn bad_input_never_panics() {
    let small = EXAMPLE.replace("table_size = 65537", "table_size = 257");
    for end in (0..small.len())
        .step_by(13)
        .filter(|&i| small.is_char_boundary(i))
    {
        let _ = Config::parse(&small[..end]);
    }
    for (i, c) in small.char_indices().step_by(29) {
        for with in ["\"", "=", "[", "0", "\n", "é"] {
            let mut text = small.clone();
            text.replace_range(i..i + c.len_utf8(), with);
            if let Err(errors) = Config::parse(&text) {
                assert!(
                    errors
                        .iter()
                        .all(|e| e.line > 0 || e.message.contains("interface")),
                    "{errors:?}"
                );
            }
        }
    }
}
