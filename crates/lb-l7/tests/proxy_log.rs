//! The access log fed by the proxy: one line per request of a listener
//! with `access_log = true`, every field as the request happened, read
//! back from the gzip files after `stop`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod proxy_support;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use lb_l7::access_log::{Record, parse_line};
use lb_l7::config::{AccessLogConfig, Backend};
use lb_l7::server::L7;
use proxy_support::{Client, Mode, TestBackend, free_addr, listener};

/// Every line of every gzip file under `dir`, parsed, with the file's name.
fn read_logs(dir: &Path) -> Vec<(String, Record)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(std::fs::File::open(&path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            for line in text.lines() {
                out.push((name.clone(), parse_line(line).unwrap()));
            }
        }
    }
    out
}

#[test]
fn every_request_of_a_logged_listener_is_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = TestBackend::start("a", Mode::Echo);
    let silent = TestBackend::start("s", Mode::Silent);
    let logged = {
        let mut l = listener("logged", vec![a.backend(1)]);
        l.access_log = true;
        l
    };
    let quiet = listener("quiet", vec![a.backend(1)]);
    let failing = {
        let mut l = listener(
            "failing",
            vec![Backend {
                addr: free_addr(),
                weight: 1,
            }],
        );
        l.access_log = true;
        l
    };
    let slow = {
        let mut l = listener("slow", vec![silent.backend(1)]);
        l.access_log = true;
        l.timeouts.read = Duration::from_millis(300);
        l
    };
    let config = AccessLogConfig {
        dir: dir.path().to_path_buf(),
        queue: 1000,
        period: Duration::from_secs(3600),
        upload: None,
    };
    let all = [logged.clone(), quiet.clone(), failing.clone(), slow.clone()];
    let started = std::time::SystemTime::now();
    let l7 = L7::start(&all, Some(&config), 1, 0).unwrap();

    let mut c = Client::connect(logged.addr);
    let extra = "Referer: http://ref.example/x\r\nUser-Agent: test-agent/1.0\r\n";
    let r = c.get(extra).unwrap();
    assert_eq!(r.status, 200);
    let first_sent = c.sent;
    let first_body = r.body.len();
    assert_eq!(c.get("").unwrap().status, 200);
    let mut q = Client::connect(quiet.addr);
    assert_eq!(q.get("").unwrap().status, 200);
    let mut f = Client::connect(failing.addr);
    assert_eq!(f.get("").unwrap().status, 502);
    let mut s = Client::connect(slow.addr);
    let asked = std::time::SystemTime::now();
    assert_eq!(s.get("").unwrap().status, 504);
    drop((c, q, f, s));
    let mut out = String::new();
    l7.render_metrics(&mut out);
    l7.stop();

    let logs = read_logs(dir.path());
    assert_eq!(logs.len(), 4, "{logs:#?}");
    let of = |addr: SocketAddr| -> Vec<&Record> {
        logs.iter()
            .filter(|(_, r)| r.server == addr)
            .map(|(_, r)| r)
            .collect()
    };
    // The files are named after the listener's address.
    let port = logged.addr.port();
    assert!(
        logs.iter().any(|(name, r)| r.server == logged.addr
            && name.starts_with(&format!("lbd-127.0.0.1_{port}-acc.log-"))),
        "{logs:#?}"
    );
    let lines = of(logged.addr);
    assert_eq!(lines.len(), 2);
    let first = lines
        .iter()
        .find(|r| r.http_referer.is_some())
        .expect("the first request");
    assert_eq!(first.remote.ip(), std::net::Ipv4Addr::LOCALHOST);
    assert_eq!(first.upstream_addr, Some(a.addr));
    assert_eq!((first.status, first.upstream_status), (200, Some(200)));
    assert_eq!(first.request_length, first_sent as u64);
    assert_eq!(first.body_bytes_sent, first_body as u64);
    assert_eq!(first.request_method, "GET");
    assert_eq!(first.http_host.as_deref(), Some("test.example"));
    assert_eq!(first.request_uri, "/path?q=1");
    assert_eq!(first.server_protocol, "HTTP/1.1");
    assert_eq!(first.http_referer.as_deref(), Some("http://ref.example/x"));
    assert_eq!(first.http_user_agent.as_deref(), Some("test-agent/1.0"));
    assert!(first.upstream_response_time.unwrap() <= first.request_time);
    // Logged at the request's end (to the millisecond).
    assert!(
        first.time + Duration::from_millis(1) >= started,
        "{first:?}"
    );
    // Both requests of the keep-alive connection came from one port.
    assert_eq!(lines[0].remote, lines[1].remote);
    // A listener without access_log writes nothing.
    assert!(of(quiet.addr).is_empty());
    // The connect failed: the backend chosen, 502 as its status (nginx's
    // fields), and the time of the attempt.
    let failed = of(failing.addr);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, 502);
    assert_eq!(failed[0].upstream_addr, Some(failing.backends[0].addr));
    assert_eq!(failed[0].upstream_status, Some(502));
    assert!(failed[0].upstream_response_time.unwrap() <= failed[0].request_time);
    // A backend that never answered: 504 as its status, and the time
    // until the read timeout.
    let timed_out = of(slow.addr);
    assert_eq!(timed_out.len(), 1);
    assert_eq!(timed_out[0].status, 504);
    assert_eq!(timed_out[0].upstream_addr, Some(silent.addr));
    assert_eq!(timed_out[0].upstream_status, Some(504));
    let waited = timed_out[0].upstream_response_time.unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited <= timed_out[0].request_time);
    assert!(timed_out[0].request_time >= Duration::from_millis(250));
    // Logged when the request ended, after the read timeout: not when it
    // came.
    let logged_after = timed_out[0].time.duration_since(asked).unwrap_or_default();
    assert!(
        logged_after >= Duration::from_millis(250),
        "{logged_after:?}"
    );
    // The log's own counters are in the L7 metrics.
    assert!(
        out.contains("lbd_l7_access_log_lines_lost_total 0"),
        "{out}"
    );
}

#[test]
fn an_access_log_that_cannot_start_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let config = AccessLogConfig {
        dir: file,
        queue: 10,
        period: Duration::from_secs(3600),
        upload: None,
    };
    let l = listener("web", vec![]);
    let err = L7::start(&[l], Some(&config), 1, 0).unwrap_err();
    assert!(matches!(err, lb_l7::server::L7Error::AccessLog(_)), "{err}");
}
