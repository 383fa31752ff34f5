//! `Installed`: a configuration installed in real engines, then reloaded
//! while TCP sessions are open, driven with frames of the test kit (`lb-testkit`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use lb_engine::{Engine, Instant, Verdict};
use lb_testkit::frame::{Tcp, tcp};
use lb_testkit::sim::send_at;
use lb_xdp::config::Config;
use lb_xdp::install::{InstallError, Installed, ReloadReport};

const VIP: [u8; 4] = [192, 0, 2, 1];
const RS1: [u8; 4] = [10, 0, 0, 2];
const RS2: [u8; 4] = [10, 0, 0, 3];
const RS3: [u8; 4] = [10, 0, 0, 4];

type Ep = ([u8; 4], u16);

/// `tests/configs/small.toml` (an interface and small engine tables),
/// then `listeners`.
fn config(listeners: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/small.toml");
    let head = std::fs::read_to_string(path).unwrap();
    Config::parse(&format!("{head}\n{listeners}")).unwrap_or_else(|e| panic!("{e:#?}"))
}

/// Listener `web` on the VIP port 80 with `extra` lines, and a backend on
/// port 80 for each (address, weight).
fn web(extra: &str, backends: &[([u8; 4], u16)]) -> String {
    let mut s = format!(
        "[[listener]]\nname = \"web\"\nvip = \"192.0.2.1\"\nport = 80\n\
         local = {{ addresses = [\"10.0.0.100\"] }}\n{extra}\n"
    );
    for (addr, weight) in backends {
        s += &format!(
            "[[listener.backend]]\naddr = \"{}\"\nweight = {weight}\n",
            Ipv4Addr::from(*addr)
        );
    }
    s
}

/// Listener `dns` (UDP) with one backend.
const DNS: &str = "[[listener]]\nname = \"dns\"\nvip = \"192.0.2.53\"\nport = 53\n\
                   protocol = \"udp\"\nlocal = { addresses = [\"10.0.0.101\"] }\n\
                   [[listener.backend]]\naddr = \"10.0.0.5\"\n";

fn sock(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn tcp_frame(src: Ep, dst: Ep, syn: bool, seq: u32, ack: Option<u32>, payload: &[u8]) -> Vec<u8> {
    let t = Tcp {
        syn,
        seq,
        ack,
        ..Tcp::default()
    };
    tcp(src, dst, t, payload)
}

fn send(e: &mut Engine, input: &[u8]) -> (Verdict, Vec<u8>) {
    send_at(e, Instant::from_secs(1), input)
}

fn endpoints(frame: &[u8]) -> (Ep, Ep) {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let Some(NetSlice::Ipv4(v4)) = &p.net else {
        panic!("not IPv4");
    };
    let Some(TransportSlice::Tcp(t)) = &p.transport else {
        panic!("not TCP");
    };
    (
        (v4.header().source(), t.source_port()),
        (v4.header().destination(), t.destination_port()),
    )
}

/// An established connection through the engine.
#[derive(Debug, Clone, Copy)]
struct Conn {
    client: Ep,
    local: Ep,
    server: Ep,
}

/// A three-way handshake from client port `port`; the server it reached.
fn connect(e: &mut Engine, port: u16) -> Conn {
    let client = ([198, 51, 100, 7], port);
    let (v, out) = send(e, &tcp_frame(client, (VIP, 80), true, 1000, None, b""));
    let (local, server) = endpoints(&out);
    assert_eq!(
        v,
        Verdict::ToServer {
            next_hop: IpAddr::V4(Ipv4Addr::from(server.0))
        }
    );
    let (v, _) = send(e, &tcp_frame(server, local, true, 5000, Some(1001), b""));
    assert!(matches!(v, Verdict::ToClient { .. }), "{v:?}");
    let (v, _) = send(
        e,
        &tcp_frame(client, (VIP, 80), false, 1001, Some(5001), b""),
    );
    assert!(matches!(v, Verdict::ToServer { .. }), "{v:?}");
    Conn {
        client,
        local,
        server,
    }
}

/// Data from the client on `c`: where the engine sends it (`None` when it
/// does not forward it).
fn client_data(e: &mut Engine, c: &Conn) -> Option<[u8; 4]> {
    let (v, out) = send(
        e,
        &tcp_frame(c.client, (VIP, 80), false, 1001, Some(5001), b"GET /"),
    );
    match v {
        Verdict::ToServer { .. } => {
            let (local, server) = endpoints(&out);
            assert_eq!((local, server), (c.local, c.server));
            Some(server.0)
        }
        _ => None,
    }
}

/// The servers of `n` new connections, from client ports `first..`.
fn servers(e: &mut Engine, first: u16, n: u16) -> Vec<[u8; 4]> {
    (first..first + n).map(|p| connect(e, p).server.0).collect()
}

fn count(list: &[[u8; 4]], a: [u8; 4]) -> usize {
    list.iter().filter(|&&x| x == a).count()
}

/// A fresh engine with `config` installed.
fn installed(config: &Config) -> (Engine, Installed) {
    let mut e = Engine::new(config.engine).unwrap();
    let i = Installed::install(&mut e, config).unwrap();
    (e, i)
}

fn up_of(i: &Installed, listener: &str, addr: SocketAddr) -> Option<bool> {
    i.listeners()
        .find(|l| l.name == listener)?
        .backends
        .iter()
        .find(|b| b.addr == addr)
        .map(|b| b.up)
}

#[test]
fn install_lists_listeners_and_backends() {
    let c = config(&format!("{}\n{DNS}", web("", &[(RS1, 1), (RS2, 3)])));
    let (_, i) = installed(&c);
    let all: Vec<_> = i.listeners().collect();
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].name, all[1].name), ("web", "dns"));
    assert_ne!(all[0].id, all[1].id);
    let web = &all[0].backends;
    assert_eq!(web.len(), 2);
    assert_eq!(
        (web[0].addr, web[0].weight, web[0].up),
        (sock(RS1, 80), 1, true)
    );
    assert_eq!((web[1].addr, web[1].weight), (sock(RS2, 80), 3));
    assert_ne!(web[0].id, web[1].id);
}

#[test]
fn one_installed_per_engine() {
    let c = config(&web("", &[(RS1, 1)]));
    let (mut e1, mut i1) = installed(&c);
    let (mut e2, mut i2) = installed(&c);
    let grown = config(&web("", &[(RS1, 1), (RS2, 1)]));
    i1.reload(&mut e1, &grown).unwrap();
    i2.reload(&mut e2, &grown).unwrap();
    for (e, i) in [(&mut e1, &i1), (&mut e2, &i2)] {
        assert_eq!(i.listeners().next().unwrap().backends.len(), 2);
        let s = servers(e, 1000, 4);
        assert_eq!((count(&s, RS1), count(&s, RS2)), (2, 2));
    }
}

#[test]
fn open_sessions_survive_adding_a_backend() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1)])));
    let conns: Vec<Conn> = (1000..1004).map(|p| connect(&mut e, p)).collect();
    let report = i
        .reload(&mut e, &config(&web("", &[(RS1, 1), (RS2, 1)])))
        .unwrap();
    assert_eq!(report.backends_added, [("web".to_owned(), sock(RS2, 80))]);
    assert!(report.listeners_recreated.is_empty() && report.backends_removed.is_empty());
    assert_eq!(report.to_string(), "1 backend(s) added: web 10.0.0.3:80");
    assert_eq!(e.session_count(), 4);
    for c in &conns {
        assert_eq!(client_data(&mut e, c), Some(RS1));
    }
    let s = servers(&mut e, 2000, 10);
    assert_eq!((count(&s, RS1), count(&s, RS2)), (5, 5));
}

#[test]
fn removing_a_backend_keeps_its_open_sessions() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1), (RS2, 1)])));
    let conns: Vec<Conn> = (1000..1004).map(|p| connect(&mut e, p)).collect();
    assert_eq!(conns.iter().filter(|c| c.server.0 == RS2).count(), 2);
    let report = i.reload(&mut e, &config(&web("", &[(RS1, 1)]))).unwrap();
    assert_eq!(report.backends_removed, [("web".to_owned(), sock(RS2, 80))]);
    assert_eq!(e.session_count(), 4);
    for c in &conns {
        assert_eq!(client_data(&mut e, c), Some(c.server.0));
    }
    assert_eq!(count(&servers(&mut e, 2000, 10), RS2), 0);
    // Added back while its old sessions are open: a backend again.
    let report = i
        .reload(&mut e, &config(&web("", &[(RS1, 1), (RS2, 1)])))
        .unwrap();
    assert_eq!(report.backends_added.len(), 1);
    assert_eq!(count(&servers(&mut e, 3000, 10), RS2), 5);
    for c in &conns {
        assert_eq!(client_data(&mut e, c), Some(c.server.0));
    }
}

#[test]
fn a_weight_change_applies() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1), (RS2, 3)])));
    let s = servers(&mut e, 1000, 40);
    assert_eq!((count(&s, RS1), count(&s, RS2)), (10, 30));
    let report = i
        .reload(&mut e, &config(&web("", &[(RS1, 3), (RS2, 1)])))
        .unwrap();
    assert_eq!(
        report.backends_reweighted,
        [
            ("web".to_owned(), sock(RS1, 80), 1, 3),
            ("web".to_owned(), sock(RS2, 80), 3, 1)
        ]
    );
    let weights: Vec<u16> = i
        .listeners()
        .next()
        .unwrap()
        .backends
        .iter()
        .map(|b| b.weight)
        .collect();
    assert_eq!(weights, [3, 1]);
    let s = servers(&mut e, 2000, 40);
    assert_eq!((count(&s, RS1), count(&s, RS2)), (30, 10));
}

#[test]
fn health_state_survives_reload() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1), (RS2, 1)])));
    assert!(i.set_up(&mut e, "web", sock(RS1, 80), false));
    assert_eq!(count(&servers(&mut e, 1000, 6), RS1), 0);
    // A backend added: RS1 stays down, the new one starts up.
    i.reload(&mut e, &config(&web("", &[(RS1, 1), (RS2, 1), (RS3, 1)])))
        .unwrap();
    assert_eq!(up_of(&i, "web", sock(RS1, 80)), Some(false));
    assert_eq!(up_of(&i, "web", sock(RS3, 80)), Some(true));
    let s = servers(&mut e, 2000, 6);
    assert_eq!((count(&s, RS1), count(&s, RS2), count(&s, RS3)), (0, 3, 3));
    // The listener recreated: still down.
    let report = i
        .reload(
            &mut e,
            &config(&web("ping = false", &[(RS1, 1), (RS2, 1), (RS3, 1)])),
        )
        .unwrap();
    assert_eq!(report.listeners_recreated, ["web"]);
    assert_eq!(up_of(&i, "web", sock(RS1, 80)), Some(false));
    assert_eq!(count(&servers(&mut e, 3000, 6), RS1), 0);
    // And up again.
    assert!(i.set_up(&mut e, "web", sock(RS1, 80), true));
    assert_eq!(count(&servers(&mut e, 4000, 6), RS1), 2);
}

#[test]
fn a_changed_listener_is_recreated_and_reported() {
    let (mut e, mut i) = installed(&config(&format!("{}\n{DNS}", web("", &[(RS1, 1)]))));
    let conn = connect(&mut e, 1000);
    let changed = web("timeouts = { tcp_established = \"60s\" }", &[(RS1, 1)]);
    let report = i
        .reload(&mut e, &config(&format!("{changed}\n{DNS}")))
        .unwrap();
    assert_eq!(
        report,
        ReloadReport {
            listeners_recreated: vec!["web".into()],
            ..ReloadReport::default()
        }
    );
    assert_eq!(
        report.to_string(),
        "1 listener(s) recreated, their sessions ended: web"
    );
    // Its sessions ended; new ones work.
    assert_eq!(e.session_count(), 0);
    assert_eq!(client_data(&mut e, &conn), None);
    connect(&mut e, 1001);
    let names: Vec<&str> = i.listeners().map(|l| l.name).collect();
    assert_eq!(names, ["web", "dns"]);
    // Health checks and backend lists alone do not recreate it.
    let checked = web(
        "timeouts = { tcp_established = \"60s\" }\nhealth = { type = \"tcp\" }",
        &[(RS1, 1)],
    );
    let report = i
        .reload(&mut e, &config(&format!("{checked}\n{DNS}")))
        .unwrap();
    assert!(report.is_empty(), "{report}");
    assert_eq!(report.to_string(), "no change");
    assert_eq!(e.session_count(), 1);
}

#[test]
fn listeners_added_and_removed() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1)])));
    let conn = connect(&mut e, 1000);
    let report = i
        .reload(&mut e, &config(&format!("{DNS}\n{}", web("", &[(RS1, 1)]))))
        .unwrap();
    assert_eq!(report.listeners_added, ["dns"]);
    let names: Vec<&str> = i.listeners().map(|l| l.name).collect();
    assert_eq!(names, ["dns", "web"], "configuration order");
    assert_eq!(client_data(&mut e, &conn), Some(RS1));
    let report = i.reload(&mut e, &config(DNS)).unwrap();
    assert_eq!(report.listeners_removed, ["web"]);
    assert_eq!(client_data(&mut e, &conn), None);
    assert!(
        !i.set_up(&mut e, "web", sock(RS1, 80), false),
        "removed meanwhile"
    );
    assert!(
        !i.set_up(&mut e, "dns", sock(RS1, 53), false),
        "no such backend"
    );
    assert!(i.set_up(&mut e, "dns", sock([10, 0, 0, 5], 53), false));
    // A listener renamed is another listener; its VIP is free again first.
    let renamed = web("", &[(RS1, 1)]).replace("\"web\"", "\"www\"");
    let report = i
        .reload(&mut e, &config(&format!("{DNS}\n{renamed}")))
        .unwrap();
    assert_eq!(report.listeners_added, ["www"]);
    let report = i
        .reload(
            &mut e,
            &config(&web("", &[(RS1, 1)]).replace("\"web\"", "\"dns\"")),
        )
        .unwrap();
    assert_eq!(
        (
            report.listeners_recreated.clone(),
            report.listeners_removed.clone()
        ),
        (vec!["dns".to_owned()], vec!["www".to_owned()])
    );
}

#[test]
fn a_refused_reload_changes_nothing() {
    let (mut e, mut i) = installed(&config(&web("", &[(RS1, 1)])));
    let conn = connect(&mut e, 1000);
    let mut bad = config(&format!("{DNS}\n{}", web("", &[(RS1, 1), (RS2, 1)])));
    // A configuration built in code, with what a file cannot have.
    bad.listeners[1].name = "dns".into();
    assert_eq!(
        i.reload(&mut e, &bad).unwrap_err(),
        InstallError::DuplicateName("dns".into())
    );
    let mut bad = config(&format!("{DNS}\n{}", web("", &[(RS1, 1), (RS2, 1)])));
    bad.listeners[1].engine.backends[1].addr = "2001:db8::1".parse().unwrap();
    let err = i.reload(&mut e, &bad).unwrap_err();
    assert!(
        matches!(&err, InstallError::Engine { listener, .. } if listener == "web"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("listener `web`: backend 2001:db8::1"),
        "{err}"
    );
    let names: Vec<&str> = i.listeners().map(|l| l.name).collect();
    assert_eq!(names, ["web"]);
    assert_eq!(i.listeners().next().unwrap().backends.len(), 1);
    assert_eq!(client_data(&mut e, &conn), Some(RS1));
    // install refuses the same, and leaves the engine empty.
    let mut fresh = Engine::new(bad.engine).unwrap();
    assert!(Installed::install(&mut fresh, &bad).is_err());
    let (v, _) = send(
        &mut fresh,
        &tcp_frame(([198, 51, 100, 7], 9), (VIP, 80), true, 1, None, b""),
    );
    assert_eq!(v, Verdict::Pass);
}
