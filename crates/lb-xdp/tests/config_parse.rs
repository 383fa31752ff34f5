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
    // The HTTP listener shares `web`'s VIP: the address set is the same.
    assert_eq!(c.addresses(), addresses);

    assert_eq!(c.l7_threads, 1);
    let log = c.access_log.as_ref().unwrap();
    assert_eq!(log.dir, Path::new("/var/log/lbd"));
    assert!(log.upload.is_none());
    let names: Vec<&str> = c.l7.iter().map(|l| l.listener.name.as_str()).collect();
    assert_eq!(names, ["site"]);
    let site = &c.l7[0].listener;
    assert_eq!(site.addr, "192.0.2.1:8080".parse().unwrap());
    assert_eq!(site.scheme(), "http");
    assert!(site.access_log);
    assert_eq!(site.backends[1].weight, 3);
    assert_eq!(site.forwarded, lb_l7::config::Forwarded::default());
    assert_eq!(site.timeouts, lb_l7::config::HttpTimeouts::default());
    let cookie = site.cookie.as_ref().unwrap();
    assert_eq!(cookie.name, "LBD_SERVER");
    assert_eq!(cookie.max_age, Duration::from_secs(3600));
    assert!(c.l7[0].health.is_some());
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

// ----- HTTP and HTTPS listeners ---------------------------------------------

/// Lines 3-7: an HTTP listener `site` without backends.
const SITE: &str = r#"[[listener]]
name = "site"
vip = "192.0.2.1"
port = 80
protocol = "http"
"#;

#[test]
fn an_l7_config_parses_to_its_values() {
    use lb_l7::config::{SameSite, XffMode};
    let c = Config::parse(&fixture("l7.toml")).unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(c.l7_threads, 2);
    let log = c.access_log.as_ref().unwrap();
    // Without a file, relative paths stay as written.
    assert_eq!(log.dir, Path::new("logs"));
    assert_eq!(log.queue, 1000);
    assert_eq!(log.period, Duration::from_secs(10));
    let s3 = log.upload.as_ref().unwrap();
    assert_eq!(
        (
            s3.bucket.as_str(),
            s3.prefix.as_str(),
            s3.endpoint.as_deref(),
            s3.region.as_str()
        ),
        ("logs", "lbd/", Some("http://10.77.0.9:9000"), "us-east-1")
    );
    let names: Vec<&str> = c.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["tcp"]);
    let names: Vec<&str> = c.l7.iter().map(|l| l.listener.name.as_str()).collect();
    assert_eq!(names, ["web", "plain"]);

    let web = &c.l7[0];
    let l = &web.listener;
    assert_eq!(l.addr, "10.77.0.10:443".parse().unwrap());
    assert_eq!(l.scheme(), "https");
    assert_eq!(l.scheduler, SchedulerKind::LeastConnections);
    let backends: Vec<(std::net::SocketAddr, u16)> =
        l.backends.iter().map(|b| (b.addr, b.weight)).collect();
    assert_eq!(
        backends,
        [
            ("10.77.1.2:8080".parse().unwrap(), 1),
            ("[fd77::1:3]:8080".parse().unwrap(), 3)
        ]
    );
    assert_eq!(l.forwarded.xff, XffMode::Replace);
    assert!(!l.forwarded.real_ip && l.forwarded.proto && !l.forwarded.port);
    assert_eq!(l.timeouts.idle, Duration::from_secs(30));
    assert_eq!(l.timeouts.connect, Duration::from_secs(2));
    assert_eq!(l.timeouts.read, Duration::from_secs(10));
    assert_eq!(l.timeouts.websocket_idle, Duration::from_secs(5));
    assert!(l.access_log);
    let cookie = l.cookie.as_ref().unwrap();
    assert_eq!(cookie.name, "LBD_SERVER");
    assert_eq!(cookie.secret, b"0123456789abcdef");
    assert_eq!(cookie.max_age, Duration::from_secs(600));
    assert_eq!(cookie.same_site, SameSite::None);
    let tls = l.tls.as_ref().unwrap();
    let files: Vec<(&Path, &Path)> = tls
        .certificates
        .iter()
        .map(|c| (c.cert.as_path(), c.key.as_path()))
        .collect();
    assert_eq!(
        files,
        [
            (Path::new("a.pem"), Path::new("a.key")),
            (Path::new("/etc/lbd/b.pem"), Path::new("b.key"))
        ]
    );
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
    assert_eq!(
        web.health.as_ref().unwrap().kind,
        CheckKind::Http {
            path: "/healthz".into(),
            status: 200
        }
    );

    // Every default.
    let plain = &c.l7[1];
    let l = &plain.listener;
    assert_eq!(l.addr, "[fd77::10]:80".parse().unwrap());
    assert_eq!(l.scheme(), "http");
    assert_eq!(l.scheduler, SchedulerKind::RoundRobin);
    assert_eq!(l.backends[0].addr, "10.77.1.4:80".parse().unwrap());
    assert_eq!(l.backends[0].weight, 1);
    assert_eq!(l.forwarded, lb_l7::config::Forwarded::default());
    assert_eq!(l.timeouts, lb_l7::config::HttpTimeouts::default());
    assert_eq!(l.timeouts.idle, Duration::from_secs(300));
    assert!(l.cookie.is_none() && l.tls.is_none() && !l.access_log);
    assert!(plain.health.is_none());

    // The XDP program's addresses: the L4 listener's VIP and LIP; the
    // HTTP listener's VIP is the host's alone.
    let addresses: Vec<IpAddr> = ["10.77.0.10", "10.77.0.100"]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
    assert_eq!(c.addresses(), addresses);
    assert_eq!(
        c.l7_addresses(),
        [
            "10.77.0.10:443".parse().unwrap(),
            "[fd77::10]:80".parse().unwrap()
        ]
    );
    assert_eq!(c.l7_listeners()[1], c.l7[1].listener);
}

#[test]
fn l7_defaults() {
    let c = Config::parse(&with_interface(SITE)).unwrap();
    assert_eq!(c.l7_threads, 1);
    assert!(c.access_log.is_none() && c.listeners.is_empty());
    assert!(c.addresses().is_empty());
    // A cookie table with only its secret; an access log with only its dir.
    let text = with_interface(&format!(
        "[access_log]\ndir = \"/var/log/lbd\"\n{SITE}[listener.cookie]\nsecret = \"sixteen bytes...\"\n"
    ));
    let c = Config::parse(&text).unwrap();
    let cookie = c.l7[0].listener.cookie.clone().unwrap();
    assert_eq!(cookie.name, "LBD_SERVER");
    assert_eq!(cookie.max_age, Duration::from_secs(3600));
    assert_eq!(cookie.same_site, lb_l7::config::SameSite::Lax);
    let log = c.access_log.unwrap();
    assert_eq!(log.dir, Path::new("/var/log/lbd"));
    assert_eq!(
        (log.queue, log.period, log.upload),
        (65536, Duration::from_secs(3600), None)
    );
}

#[test]
fn l4_keys_are_refused_on_an_l7_listener() {
    for (line, key, column) in [
        ("local = { addresses = [\"10.0.0.100\"] }", "`local`", 9),
        ("ttm = { enabled = true }", "`ttm`", 7),
        ("timeouts = { tcp_established = \"1s\" }", "`timeouts`", 12),
        ("verify_checksums = \"all\"", "`verify_checksums`", 20),
        ("ping = false", "`ping`", 8),
        ("affinity = { timeout = \"1s\" }", "`affinity`", 12),
    ] {
        let text = with_interface(&format!("{SITE}{line}\n"));
        assert_eq!(one_error(&text, key), (8, column), "{line}");
        let text = text.replace("\"http\"", "\"https\"");
        let text =
            format!("{text}[listener.tls]\ncertificates = [{{ cert = \"a\", key = \"b\" }}]\n");
        assert_eq!(one_error(&text, key), (8, column), "https: {line}");
    }
}

#[test]
fn l7_tables_are_refused_on_tcp_and_udp_listeners() {
    for protocol in ["tcp", "udp"] {
        let text = with_interface(&format!(
            "{WEB}protocol = \"{protocol}\"\n[listener.http]\nx_real_ip = false\n"
        ));
        assert_eq!(
            one_error(
                &text,
                "[listener.http] is for protocol = \"http\" or \"https\""
            ),
            (9, 1),
            "{protocol}"
        );
        let text = with_interface(&format!(
            "{WEB}protocol = \"{protocol}\"\ncookie = {{ secret = \"0123456789abcdef\" }}\n"
        ));
        assert_eq!(one_error(&text, "[listener.cookie] is for"), (9, 10));
        let text = with_interface(&format!(
            "{WEB}protocol = \"{protocol}\"\n\n[listener.tls]\ncertificates = []\n"
        ));
        assert_eq!(one_error(&text, "[listener.tls] is for"), (10, 1));
    }
    // Without `local`, a TCP listener names what it lacks.
    let text = with_interface("[[listener]]\nname = \"a\"\nvip = \"192.0.2.1\"\nport = 80\n");
    assert_eq!(one_error(&text, "missing field `local`"), (3, 1));
}

#[test]
fn tls_is_required_for_https_and_refused_for_http() {
    let https = SITE.replace("\"http\"", "\"https\"");
    let text = with_interface(&https);
    assert_eq!(one_error(&text, "needs a [listener.tls] table"), (7, 12));
    let text = with_interface(&format!(
        "{SITE}\n[listener.tls]\ncertificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]\n"
    ));
    assert_eq!(
        one_error(
            &text,
            "[listener.tls] is for protocol = \"https\" listeners only"
        ),
        (9, 1)
    );
    let text = with_interface(&format!("{https}[listener.tls]\ncertificates = []\n"));
    assert_eq!(one_error(&text, "at least one certificate"), (9, 16));
    let text = with_interface(&format!(
        "{https}[listener.tls]\ncertificates = [{{ cert = \"a.pem\", key = \"\" }}]\n"
    ));
    assert_eq!(one_error(&text, "must not be empty"), (9, 41));
    let text = with_interface(&format!(
        "{https}[listener.tls]\ncertificates = [{{ cert = \"a.pem\" }}]\n"
    ));
    assert_eq!(one_error(&text, "missing field `key`"), (9, 17));
}

#[test]
fn cookie_rules() {
    let cookie = |table: &str| with_interface(&format!("{SITE}[listener.cookie]\n{table}\n"));
    assert_eq!(
        one_error(
            &cookie("secret = \"fifteen bytes..\""),
            "15 bytes long: it must be at least 16"
        ),
        (9, 10)
    );
    // Bytes, not characters: 8 two-byte characters are 16 bytes.
    Config::parse(&cookie("secret = \"éééééééé\"")).unwrap();
    let secret = "secret = \"0123456789abcdef\"";
    assert_eq!(
        one_error(
            &cookie(&format!("{secret}\nsame_site = \"none\"")),
            "browsers refuse"
        ),
        (10, 13)
    );
    assert_eq!(
        one_error(
            &cookie(&format!("{secret}\nsame_site = \"loose\"")),
            "unknown variant `loose`"
        ),
        (10, 13)
    );
    assert_eq!(
        one_error(
            &cookie(&format!("{secret}\nname = \"a b\"")),
            "is not a cookie name"
        ),
        (10, 8)
    );
    assert_eq!(
        one_error(
            &cookie(&format!("{secret}\nmax_age = \"0s\"")),
            "at most a day"
        ),
        (10, 11)
    );
    assert_eq!(
        one_error(
            &cookie(&format!("{secret}\nmax_age = \"2 days\"")),
            "is not a duration"
        ),
        (10, 11)
    );
    assert_eq!(
        one_error(&cookie("max_age = \"1h\""), "missing field `secret`"),
        (8, 1)
    );
}

#[test]
fn cookies_on_one_host_agree() {
    // Line 3 on: `name`, port `port`, a cookie with `secret`, one backend
    // (port 8000: by default a backend's port is the listener's).
    let listener = |name: &str, port: u16, secret: &str, backend: &str| {
        format!(
            "[[listener]]\nname = \"{name}\"\nvip = \"192.0.2.1\"\nport = {port}\n\
             protocol = \"http\"\n[listener.cookie]\nsecret = \"{secret}\"\n\
             [[listener.backend]]\naddr = \"{backend}\"\nport = 8000\n"
        )
    };
    let a = listener("a", 80, "0123456789abcdef", "10.0.0.2");
    // The same secret and backends on another port: one cookie for both.
    let same = listener("b", 8080, "0123456789abcdef", "10.0.0.2");
    Config::parse(&with_interface(&format!("{a}{same}"))).unwrap();
    // Another secret, or other backends: each would replace the other's.
    let secret = listener("b", 8080, "fedcba9876543210", "10.0.0.2");
    assert_eq!(
        one_error(
            &with_interface(&format!("{a}{secret}")),
            "has the name of listener `a`'s on the same VIP"
        ),
        (15, 7)
    );
    let backends = listener("b", 8080, "0123456789abcdef", "10.0.0.3");
    assert_eq!(
        one_error(
            &with_interface(&format!("{a}{backends}")),
            "another secret or other backends"
        ),
        (15, 7)
    );
    // Another name, or another VIP: no clash.
    let named = secret.replace("[listener.cookie]\n", "[listener.cookie]\nname = \"B\"\n");
    Config::parse(&with_interface(&format!("{a}{named}"))).unwrap();
    let elsewhere = secret.replace("192.0.2.1", "192.0.2.2");
    Config::parse(&with_interface(&format!("{a}{elsewhere}"))).unwrap();
}

#[test]
fn at_most_1024_l7_listeners() {
    let listeners = |n: u16| -> String {
        (0..n)
            .map(|i| {
                format!(
                    "[[listener]]\nname = \"l{i}\"\nvip = \"192.0.2.1\"\nport = {}\nprotocol = \"http\"\n",
                    i + 1
                )
            })
            .collect()
    };
    Config::parse(&with_interface(&listeners(1024))).unwrap();
    // The 1025th listener starts at line 3 + 1024 * 5; its VIP is line 3.
    assert_eq!(
        one_error(
            &with_interface(&listeners(1025)),
            "more than 1024 HTTP and HTTPS listeners"
        ),
        (3 + 1024 * 5 + 2, 7)
    );
}

#[test]
fn http_table_rules() {
    let http = |table: &str| with_interface(&format!("{SITE}[listener.http]\n{table}\n"));
    assert_eq!(
        one_error(
            &http("idle_timeout = \"5 min\""),
            "`5 min` is not a duration"
        ),
        (9, 16)
    );
    assert_eq!(
        one_error(&http("read_timeout = \"0s\""), "above zero"),
        (9, 16)
    );
    assert_eq!(
        one_error(
            &http("x_forwarded_for = \"keep\""),
            "unknown variant `keep`"
        ),
        (9, 19)
    );
    assert_eq!(
        one_error(&http("access_log = true"), "needs an [access_log] section"),
        (9, 14)
    );
    assert_eq!(
        one_error(&http("x_real_ip = 1"), "expected a boolean"),
        (9, 13)
    );
    assert_eq!(
        one_error(&http("colour = 1"), "unknown field `colour`"),
        (9, 1)
    );
}

#[test]
fn l7_listener_rules() {
    let text = with_interface(&SITE.replace("80", "0"));
    assert_eq!(one_error(&text, "port must be above zero"), (6, 8));
    let text = with_interface(&SITE.replace("192.0.2.1", "0.0.0.0"));
    assert_eq!(one_error(&text, "is not a VIP"), (5, 7));
    let text = with_interface(&SITE.replace("192.0.2.1", "192.0.2"));
    assert_eq!(one_error(&text, "is not an IP address"), (5, 7));
    // The same backend twice: the second is refused.
    let text = with_interface(&format!(
        "{SITE}[[listener.backend]]\naddr = \"10.0.0.2\"\n[[listener.backend]]\naddr = \"10.0.0.2\"\nport = 80\n"
    ));
    assert_eq!(one_error(&text, "is in the pool already"), (11, 8));
    let text = with_interface(&format!("{SITE}maglev = {{ table_size = 65537 }}\n"));
    assert_eq!(one_error(&text, "needs scheduler = \"maglev\""), (8, 10));
    let text = with_interface(&format!("{SITE}health = {{ rise = 0 }}\n"));
    assert_eq!(one_error(&text, "rise must be in"), (8, 19));
    let text = with_interface(&format!(
        "{SITE}[[listener.backend]]\naddr = \"10.0.0.2\"\nport = 0\n"
    ));
    assert_eq!(one_error(&text, "port must be above zero"), (10, 8));
}

#[test]
fn l7_names_and_addresses_are_unique() {
    // A name an L4 listener has.
    let text = with_interface(&format!(
        "{WEB}\n{}",
        SITE.replace("site", "web").replace("80", "8080")
    ));
    assert_eq!(
        one_error(&text, "listener name `web` is used already (line 4)"),
        (10, 8)
    );
    // An L7 listener after an L4 one on the same VIP, port, TCP.
    let text = with_interface(&format!("{WEB}\n{SITE}"));
    let at = one_error(
        &text,
        "listener `site`: a listener for 192.0.2.1 port 80 (Tcp) exists already (listener `web`)",
    );
    assert_eq!(at, (11, 7));
    // ...and before one: the later is refused.
    let text = with_interface(&format!("{SITE}\n{WEB}"));
    assert_eq!(
        one_error(&text, "listener `web`: a listener for 192.0.2.1 port 80"),
        (11, 7)
    );
    // Two L7 listeners.
    let https = SITE
        .replace("site", "secure")
        .replace("\"http\"", "\"https\"");
    let text = with_interface(&format!(
        "{SITE}\n{https}[listener.tls]\ncertificates = [{{ cert = \"a\", key = \"b\" }}]\n"
    ));
    assert_eq!(one_error(&text, "(listener `site`)"), (11, 7));
    // A UDP listener on the same VIP and port, and an L4 listener on the
    // same VIP and another port, are other listeners.
    let udp = format!("{WEB}protocol = \"udp\"\n");
    Config::parse(&with_interface(&format!("{udp}\n{SITE}"))).unwrap();
    Config::parse(&with_interface(&format!(
        "{}\n{SITE}",
        WEB.replace("80", "81")
    )))
    .unwrap();
    // An L7 VIP that is a local address, of an L4 listener before or after.
    let lip = SITE.replace("192.0.2.1", "10.0.0.100");
    let text = with_interface(&format!("{WEB}\n{lip}"));
    assert_eq!(
        one_error(&text, "10.0.0.100 is a local address of listener `web`"),
        (11, 7)
    );
    let text = with_interface(&format!("{lip}\n{WEB}"));
    assert_eq!(
        one_error(&text, "10.0.0.100 is a local address of listener `web`"),
        (5, 7)
    );
}

#[test]
fn l7_and_access_log_sections() {
    let text = with_interface("[l7]\nthreads = 0\n");
    assert_eq!(one_error(&text, "threads must be in 1..=256"), (4, 11));
    let text = with_interface("[l7]\nworkers = 2\n");
    assert_eq!(one_error(&text, "unknown field `workers`"), (4, 1));
    let log =
        |rest: &str| with_interface(&format!("[access_log]\ndir = \"/var/log/lbd\"\n{rest}\n"));
    assert_eq!(
        one_error(&log("period = \"500ms\""), "at least \"1s\""),
        (5, 10)
    );
    assert_eq!(
        one_error(&log("period = \"2h\""), "at most \"1h\""),
        (5, 10)
    );
    assert_eq!(one_error(&log("queue = 0"), "queue must be in"), (5, 9));
    // The access log's own bound, so that what `lbd check` passes starts.
    let max = lb_l7::access_log::MAX_QUEUE;
    Config::parse(&log(&format!("queue = {max}"))).unwrap();
    assert_eq!(
        one_error(&log(&format!("queue = {}", max + 1)), "queue must be in"),
        (5, 9)
    );
    assert_eq!(
        one_error(
            &log("[access_log.s3]\nbucket = \"b\"\nendpoint = \"10.77.0.9:9000\""),
            "is not an endpoint URL"
        ),
        (7, 12)
    );
    assert_eq!(
        one_error(
            &log("[access_log.s3]\nbucket = \"\""),
            "bucket must not be empty"
        ),
        (6, 10)
    );
    assert_eq!(
        one_error(
            &log("[access_log.s3]\nprefix = \"x\""),
            "missing field `bucket`"
        ),
        (5, 1)
    );
    let text = with_interface("[access_log]\ndir = \"\"\n");
    assert_eq!(one_error(&text, "dir must name a directory"), (4, 7));
}

#[test]
fn restart_needed_names_l7_and_access_log() {
    let text = fixture("l7.toml");
    let a = Config::parse(&text).unwrap();
    let same = |t: String| a.restart_needed(&Config::parse(&t).unwrap());
    // Backends, weights, headers, cookies, certificates: a reload.
    assert!(same(text.replace("weight = 3", "weight = 4")).is_empty());
    assert!(same(text.replace("\"replace\"", "\"append\"")).is_empty());
    assert!(same(text.replace("a.pem", "c.pem")).is_empty());
    assert!(same(text.replace("max_age = \"10m\"", "max_age = \"20m\"")).is_empty());
    // Another port, another protocol, the threads: a restart.
    assert_eq!(same(text.replace("port = 80\n", "port = 8080\n")), ["l7"]);
    assert_eq!(same(text.replace("threads = 2", "threads = 3")), ["l7"]);
    let http = text
        .replace("protocol = \"https\"", "protocol = \"http\"")
        .replace("same_site = \"none\"", "")
        .replace("[listener.tls]", "")
        .replace("certificates = [", "# [")
        .replace("client_ca", "# client_ca");
    assert_eq!(same(http), ["l7"]);
    // An L7 listener added: a restart; the order does not matter.
    assert_eq!(
        same(format!("{text}\n{}", SITE.replace("site", "more"))),
        ["l7"]
    );
    assert_eq!(
        same(text.replace("queue = 1000", "queue = 2000")),
        ["access_log"]
    );
    assert_eq!(same(text.replace("lbd/", "lbd2/")), ["access_log"]);
}

/// The certificate files, relative to the configuration file's
/// directory, each made here by the `openssl` command.
fn certificates_in(dir: &Path) {
    for (name, ca) in [("a", false), ("b", false), ("ca", true)] {
        let mut cmd = std::process::Command::new("openssl");
        cmd.current_dir(dir).args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}.test"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ]);
        if ca {
            cmd.args(["-addext", "basicConstraints=critical,CA:TRUE"]);
        } else {
            cmd.args(["-addext", &format!("subjectAltName=DNS:{name}.test")]);
        }
        let out = cmd.output().expect("the openssl command");
        assert!(out.status.success(), "{out:?}");
    }
}

/// A fresh directory for one test, removed when dropped.
fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("lbd-config")
        .tempdir()
        .unwrap()
}

#[test]
fn certificate_paths_are_taken_from_the_files_directory() {
    let tmp = scratch();
    let dir = tmp.path().to_owned();
    certificates_in(&dir);
    let text = fixture("l7.toml").replace("/etc/lbd/b.pem", "b.pem");
    let file = dir.join("lbd.toml");
    std::fs::write(&file, &text).unwrap();
    let c = Config::load(&file).unwrap_or_else(|e| panic!("{e:#?}"));
    let tls = c.l7[0].listener.tls.clone().unwrap();
    assert_eq!(tls.certificates[0].cert, dir.join("a.pem"));
    assert_eq!(tls.certificates[1].key, dir.join("b.key"));
    assert_eq!(tls.client_ca, Some(dir.join("ca.pem")));
    assert_eq!(c.access_log.unwrap().dir, dir.join("logs"));
    // An absolute path stays.
    let text = text.replace(
        "\"ca.pem\"",
        &format!("\"{}\"", dir.join("ca.pem").display()),
    );
    let c = Config::parse_in(&text, Path::new("/nonexistent")).unwrap_err();
    // ... and only the relative ones are looked for there.
    assert_eq!(c.len(), 1, "{c:#?}");
    assert!(c[0].message.contains("/nonexistent/a.pem"), "{c:#?}");
}

#[test]
fn a_certificate_error_is_at_the_key_naming_the_file() {
    let tmp = scratch();
    let dir = tmp.path().to_owned();
    certificates_in(&dir);
    let text = fixture("l7.toml").replace("/etc/lbd/b.pem", "b.pem");
    // Line 51: certificates = [ { cert = "a.pem", key = "a.key" }, { cert = "b.pem", key = "b.key" } ]
    for (file, column) in [("a.pem", 27), ("a.key", 42), ("b.key", 77), ("ca.pem", 0)] {
        std::fs::rename(dir.join(file), dir.join("gone")).unwrap();
        let errors = Config::parse_in(&text, &dir).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert!(e.message.starts_with("listener `web`: "), "{e:?}");
        assert!(
            e.message.contains(&dir.join(file).display().to_string()),
            "{e:?}"
        );
        if file == "ca.pem" {
            assert_eq!((e.line, e.column), (52, 13));
        } else {
            assert_eq!((e.line, e.column), (51, column), "{file}");
        }
        std::fs::rename(dir.join("gone"), dir.join(file)).unwrap();
    }
    Config::parse_in(&text, &dir).unwrap();
}

#[test]
fn bad_certificates_are_refused_at_their_key() {
    let tmp = scratch();
    let dir = tmp.path().to_owned();
    certificates_in(&dir);
    let text = fixture("l7.toml").replace("/etc/lbd/b.pem", "b.pem");
    let one = |text: &str| {
        let errors = Config::parse_in(text, &dir).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    };
    // Line 51 as in the test above: a.pem at 27, a.key at 42, b.key at 77.
    // A key that is not the certificate's.
    let e = one(&text.replace("key = \"a.key\"", "key = \"b.key\""));
    assert_eq!((e.line, e.column), (51, 42), "{e:?}");
    assert!(e.message.contains("does not match"), "{e:?}");
    // A key protected by a passphrase.
    let out = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args([
            "pkey",
            "-in",
            "b.key",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "b.enc",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::rename(dir.join("b.enc"), dir.join("b.key")).unwrap();
    let e = one(&text);
    assert_eq!((e.line, e.column), (51, 77), "{e:?}");
    assert!(e.message.contains("passphrase"), "{e:?}");
    certificates_in(&dir);
    // An expired certificate.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2000, 1, 1);
    params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("a.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("a.key"), key.serialize_pem()).unwrap();
    let e = one(&text);
    assert_eq!((e.line, e.column), (51, 27), "{e:?}");
    assert!(e.message.contains("expired"), "{e:?}");
    // Not PEM at all, as the client CA.
    certificates_in(&dir);
    std::fs::write(dir.join("ca.pem"), "hello").unwrap();
    let e = one(&text);
    assert_eq!((e.line, e.column), (52, 13), "{e:?}");
}
