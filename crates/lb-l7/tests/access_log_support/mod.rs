//! What the access-log tests share: a directory removed at the end, a
//! test clock, records, and reading a finished file back.
#![allow(dead_code, unreachable_pub)]

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::read::GzDecoder;
use lb_l7::access_log::{AccessLog, Clock, Record, Stats, parse_line};

/// A fresh directory under the system's temporary one, removed on drop
/// (failed tests included).
pub struct TestDir(pub PathBuf);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = std::env::temp_dir().join(format!(
            "lbd-access-log-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TestDir(dir)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A clock the test sets (Unix milliseconds).
#[derive(Clone)]
pub struct TestClock(pub Arc<AtomicU64>);

impl TestClock {
    pub fn at(unix_secs: u64) -> TestClock {
        TestClock(Arc::new(AtomicU64::new(unix_secs * 1000)))
    }
    pub fn set(&self, unix_secs: u64) {
        self.0.store(unix_secs * 1000, Ordering::SeqCst);
    }
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
    pub fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

/// A request's record, made different by `n`, at `time`.
pub fn record(n: u64, time: SystemTime, server: SocketAddr) -> Record {
    Record {
        time,
        remote: SocketAddr::new([192, 0, 2, 7].into(), 40_000 + (n % 20_000) as u16),
        server,
        upstream_addr: (!n.is_multiple_of(3)).then(|| "10.77.1.2:8080".parse().unwrap()),
        request_time: Duration::from_millis(n * 7),
        upstream_response_time: (!n.is_multiple_of(3)).then(|| Duration::from_millis(n * 5)),
        status: if n.is_multiple_of(3) { 502 } else { 200 },
        upstream_status: (!n.is_multiple_of(3)).then_some(200),
        request_length: 100 + n,
        body_bytes_sent: 1000 * n,
        request_method: "GET".into(),
        http_host: Some("example.com".into()),
        request_uri: format!("/item/{n}?q=\"a b\"\\"),
        server_protocol: "HTTP/1.1".into(),
        http_referer: n.is_multiple_of(2).then(|| "https://example.com/ré".into()),
        http_user_agent: Some(format!("test\t{n}")),
    }
}

/// The lines of a finished file: it must be one complete gzip stream
/// (trailer and CRC checked) of valid lines.
pub fn read_file(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut gz = GzDecoder::new(&bytes[..]);
    let mut text = String::new();
    gz.read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{} is not a complete gzip stream: {e}", path.display()));
    let rest = gz.into_inner();
    assert!(
        rest.is_empty(),
        "{}: bytes after the gzip stream",
        path.display()
    );
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|l| parse_line(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Every file under `dir` (relative paths, sorted), probe files aside.
pub fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for day in std::fs::read_dir(dir).unwrap() {
        let day = day.unwrap().path();
        if day.is_dir() {
            for f in std::fs::read_dir(&day).unwrap() {
                let f = f.unwrap().path();
                out.push(f.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// Waits (up to 20 s) until `done` holds for the log's counters.
pub fn wait_for(log: &AccessLog, what: &str, done: impl Fn(&Stats) -> bool) -> Stats {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let s = log.stats();
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
