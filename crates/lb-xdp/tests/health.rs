//! Health checks against real sockets on 127.0.0.1 (ephemeral ports, no
//! privileges).
//!
//! Most HTTP tests run the server in lockstep with the checker: the test
//! hands the server one action per check, then waits until the checker has
//! counted that check (`Checker::status().checks`). An event is in the
//! channel before its check is counted, so "no event yet" is decided per
//! check attempt, not by sleeping.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lb_xdp::config::{CheckKind, HealthCheck};
use lb_xdp::health::{Checker, Event, Target};

/// How long to wait for something that must happen.
const PATIENCE: Duration = Duration::from_secs(20);

fn check(kind: CheckKind, interval_ms: u64, timeout_ms: u64, rise: u32, fall: u32) -> HealthCheck {
    HealthCheck {
        kind,
        port: None,
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
        rise,
        fall,
    }
}

fn http(status: u16) -> CheckKind {
    CheckKind::Http {
        path: "/healthz".to_owned(),
        status,
    }
}

fn target(backend: SocketAddr, check: HealthCheck) -> Target {
    Target {
        listener: "web".to_owned(),
        backend,
        check,
        up: true,
    }
}

/// Wait until target `index` has completed at least `n` checks.
fn wait_checks(checker: &Checker, index: usize, n: u64) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let done = checker.status()[index].checks;
        if done >= n {
            return;
        }
        assert!(Instant::now() < deadline, "only {done} of {n} checks done");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Drop the checker and assert that it stops promptly.
fn stop(checker: Checker) {
    let t = Instant::now();
    drop(checker);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(2), "drop took {took:?}");
}

/// What the lockstep server does with the next connection.
enum Action {
    /// Read the request, write these bytes, close.
    Reply(Vec<u8>),
    /// Read the request, then write these bytes one every 100 ms (until
    /// the peer goes away), then close.
    Trickle(Vec<u8>),
    /// Read the request and never answer (the connection is held open until
    /// the server stops).
    Silent,
}

/// A one-connection-per-action HTTP server.
struct Server {
    addr: SocketAddr,
    actions: Option<Sender<Action>>,
    /// Per connection: the request received and when it was accepted.
    requests: Receiver<(Vec<u8>, Instant)>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (actions, todo) = mpsc::channel::<Action>();
        let (seen, requests) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for action in todo {
                let (mut s, _) = listener.accept().unwrap();
                let accepted = Instant::now();
                let request = read_request(&mut s);
                let _ = seen.send((request, accepted));
                match action {
                    Action::Reply(bytes) => {
                        let _ = s.write_all(&bytes);
                    }
                    Action::Trickle(bytes) => {
                        for b in bytes {
                            if s.write_all(&[b]).is_err() {
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                    Action::Silent => held.push(s),
                }
            }
            // Dropping the listener resets the connection waiting in its
            // backlog, so a checker waiting on it fails at once.
        });
        Server {
            addr,
            actions: Some(actions),
            requests,
            thread: Some(thread),
        }
    }

    /// Serve the next check with `action`, wait until the checker has
    /// counted it (it is its `n`th), and return the event it caused, if any.
    fn step(
        &self,
        checker: &Checker,
        events: &Receiver<Event>,
        n: u64,
        action: Action,
    ) -> Option<Event> {
        self.actions.as_ref().unwrap().send(action).unwrap();
        wait_checks(checker, 0, n);
        let event = events.try_recv().ok();
        assert!(events.try_recv().is_err(), "two events from one check");
        event
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.actions = None;
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn read_request(s: &mut TcpStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0_u8; 256];
    while !out.ends_with(b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn reply(status: &str) -> Action {
    Action::Reply(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(),
    )
}

/// A TCP listener that accepts (and closes) everything on a thread until
/// dropped; dropping it closes the port.
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    fn new(listener: TcpListener) -> Acceptor {
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => drop(s),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Acceptor {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn tcp_goes_down_when_the_port_closes_and_up_when_it_reopens() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = Acceptor::new(listener);
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(
        vec![target(addr, check(CheckKind::Tcp, 50, 1000, 2, 3))],
        tx,
    );
    assert_eq!(checker.states(), vec![("web".to_owned(), addr, true)]);

    // Five successful checks: no event, still up.
    wait_checks(&checker, 0, 5);
    assert!(events.try_recv().is_err());
    let s = &checker.status()[0];
    assert!(s.up);
    assert_eq!(s.failures, 0);
    assert_eq!(s.last.as_deref(), Some("connected"));

    // Close the port: connects are refused; down after 3 failures.
    drop(acceptor);
    let down = events.recv_timeout(PATIENCE).expect("no down event");
    assert_eq!(down.listener, "web");
    assert_eq!(down.backend, addr);
    assert!(!down.up);
    assert!(down.reason.contains("refused"), "reason: {}", down.reason);
    assert!(checker.status()[0].failures >= 3);
    assert_eq!(checker.states(), vec![("web".to_owned(), addr, false)]);

    // Reopen the same port (SO_REUSEADDR is set by std on Unix; retry in
    // case a check's own connection holds it for a moment).
    let deadline = Instant::now() + PATIENCE;
    let listener = loop {
        match TcpListener::bind(addr) {
            Ok(l) => break l,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot rebind {addr}: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    let acceptor = Acceptor::new(listener);
    let up = events.recv_timeout(PATIENCE).expect("no up event");
    assert!(up.up);
    assert_eq!(up.backend, addr);
    assert_eq!(up.reason, "connected");
    assert_eq!(checker.states(), vec![("web".to_owned(), addr, true)]);
    assert!(events.try_recv().is_err());

    stop(checker);
    drop(acceptor);
}

#[test]
fn tcp_checks_the_check_port_when_given() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap();
    let _acceptor = Acceptor::new(listener);
    // A port that is surely closed: bound once, then released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();

    let mut via_port = check(CheckKind::Tcp, 50, 1000, 1, 1);
    via_port.port = Some(open.port());
    let direct = check(CheckKind::Tcp, 50, 1000, 1, 1);
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(vec![target(closed, via_port), target(closed, direct)], tx);
    // The second target (checked on the backend's closed port) goes down...
    let down = events.recv_timeout(PATIENCE).expect("no down event");
    assert_eq!(down.backend, closed);
    assert!(!down.up);
    // ...while the first (checked on the open check port) stays up over
    // several checks with fall = 1.
    wait_checks(&checker, 0, 5);
    let s = &checker.status()[0];
    assert!(s.up);
    assert_eq!(s.failures, 0);
    assert!(events.try_recv().is_err());
    stop(checker);
}

#[test]
fn http_200_then_503_goes_down_with_the_status() {
    let server = Server::start();
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(
        vec![target(server.addr, check(http(200), 50, 10_000, 1, 2))],
        tx,
    );
    let mut n = 0;
    let mut step = |a| {
        n += 1;
        server.step(&checker, &events, n, a)
    };
    for _ in 0..4 {
        assert_eq!(step(reply("200 OK")), None);
    }
    // One 503 is below fall = 2; the second brings it down.
    assert_eq!(step(reply("503 Service Unavailable")), None);
    let down = step(reply("503 Service Unavailable")).expect("no down event");
    assert!(!down.up);
    assert_eq!(down.backend, server.addr);
    assert!(down.reason.contains("503"), "reason: {}", down.reason);
    assert!(!checker.states()[0].2);
    // rise = 1: one 200 brings it back.
    let up = step(reply("200 OK")).expect("no up event");
    assert!(up.up);
    assert_eq!(up.reason, "status 200");

    // The request is the documented one.
    let (request, _) = server.requests.recv().unwrap();
    let text = String::from_utf8(request).unwrap();
    assert_eq!(
        text,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nUser-Agent: lbd-health\r\n\r\n"
    );
    drop(server);
    stop(checker);
}

#[test]
fn rise_and_fall_count_consecutive_checks_exactly() {
    let server = Server::start();
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(
        vec![target(server.addr, check(http(200), 50, 10_000, 2, 3))],
        tx,
    );
    let mut n = 0;
    let mut step = |a| {
        n += 1;
        server.step(&checker, &events, n, a)
    };
    let (ok, bad) = (|| reply("200 OK"), || reply("503 Service Unavailable"));
    // Two failures then a success, three times: never down with fall = 3.
    for _ in 0..3 {
        assert_eq!(step(bad()), None);
        assert_eq!(step(bad()), None);
        assert_eq!(step(ok()), None);
    }
    assert!(checker.states()[0].2);
    // The third failure in a row, exactly, brings it down.
    assert_eq!(step(bad()), None);
    assert_eq!(step(bad()), None);
    let down = step(bad()).expect("not down after 3 failures");
    assert!(!down.up);
    // More failures while down: no event.
    assert_eq!(step(bad()), None);
    // One success then a failure: rise = 2 not reached, and the run resets.
    assert_eq!(step(ok()), None);
    assert_eq!(step(bad()), None);
    assert_eq!(step(ok()), None);
    assert!(!checker.states()[0].2);
    // The second success in a row, exactly, brings it up.
    let up = step(ok()).expect("not up after 2 successes");
    assert!(up.up);
    assert_eq!(step(ok()), None);
    let s = &checker.status()[0];
    assert_eq!((s.checks, s.failures), (18, 11));
    drop(server);
    stop(checker);
}

#[test]
fn a_silent_server_fails_by_timeout_within_the_timeout() {
    let server = Server::start();
    let (tx, events) = mpsc::channel();
    let timeout = Duration::from_millis(500);
    let checker = Checker::start(
        vec![target(server.addr, check(http(200), 50, 500, 1, 1))],
        tx,
    );
    let down = server
        .step(&checker, &events, 1, Action::Silent)
        .expect("no down event");
    let done = Instant::now();
    let (_, accepted) = server.requests.recv().unwrap();
    assert!(!down.up);
    assert!(down.reason.contains("timeout"), "reason: {}", down.reason);
    // The check began before the accept, so it ended at most `timeout`
    // after it (plus scheduling slack on a loaded machine).
    let took = done - accepted;
    assert!(
        took < timeout + Duration::from_millis(1500),
        "took {took:?}"
    );
    drop(server);
    stop(checker);
}

#[test]
fn the_timeout_covers_the_whole_check_not_each_read() {
    let server = Server::start();
    let (tx, events) = mpsc::channel();
    let timeout = Duration::from_millis(500);
    let checker = Checker::start(
        vec![target(server.addr, check(http(200), 50, 500, 1, 1))],
        tx,
    );
    // A byte every 100 ms, 60 bytes and no line end: each read is well
    // within the timeout, the whole status line takes 6 s.
    let mut slow = b"HTTP/1.1 200 OK".to_vec();
    slow.resize(60, b' ');
    let down = server
        .step(&checker, &events, 1, Action::Trickle(slow))
        .expect("no down event");
    let done = Instant::now();
    let (_, accepted) = server.requests.recv().unwrap();
    assert!(down.reason.contains("timeout"), "reason: {}", down.reason);
    let took = done - accepted;
    assert!(
        took < timeout + Duration::from_millis(1500),
        "took {took:?}"
    );
    drop(server);
    stop(checker);
}

#[test]
fn malformed_responses_are_failures() {
    let server = Server::start();
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(
        vec![target(server.addr, check(http(200), 50, 10_000, 1, 1))],
        tx,
    );
    let mut n = 0;
    let mut step = |a| {
        n += 1;
        server.step(&checker, &events, n, a)
    };
    let bad: [&[u8]; 5] = [
        b"hello\r\n\r\n",
        b"HTTP/1.1 2xx OK\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"",
        b"HTTP/1.1 200 OK",
    ];
    for bytes in bad {
        let down = step(Action::Reply(bytes.to_vec())).expect("no down event");
        assert!(!down.up);
        assert!(
            down.reason.starts_with("malformed response"),
            "{:?} gave reason {}",
            bytes.escape_ascii().to_string(),
            down.reason
        );
        let up = step(reply("200 OK")).expect("no up event");
        assert!(up.up);
    }
    // An over-long status line is cut off, not buffered for ever.
    let mut long = b"HTTP/1.1 200 ".to_vec();
    long.resize(5000, b'x');
    long.extend_from_slice(b"\r\n\r\n");
    let down = step(Action::Reply(long)).expect("no down event");
    assert!(
        down.reason.contains("longer than"),
        "reason: {}",
        down.reason
    );
    drop(server);
    stop(checker);
}

#[test]
fn many_idle_targets_stop_promptly() {
    // 40 targets (more than the worker pool), a long interval: every worker
    // sleeps, and dropping must wake them rather than wait out the sleep.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _acceptor = Acceptor::new(listener);
    let targets = (0..40)
        .map(|i| Target {
            listener: format!("l{i}"),
            backend: addr,
            check: check(CheckKind::Tcp, 60_000, 1000, 1, 1),
            up: true,
        })
        .collect();
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(targets, tx);
    // Target 0's first check is not delayed; the others are spread over
    // the minute.
    wait_checks(&checker, 0, 1);
    let states = checker.states();
    assert_eq!(states.len(), 40);
    assert!(states.iter().all(|s| s.2));
    assert!(events.try_recv().is_err());
    stop(checker);
}

#[test]
fn no_targets_is_fine() {
    let (tx, _events) = mpsc::channel();
    let checker = Checker::start(Vec::new(), tx);
    assert!(checker.states().is_empty());
    stop(checker);
}

#[test]
fn a_target_that_starts_down_comes_up_after_rise_successes() {
    // What a reload does for a backend the previous checker had marked
    // down: the new checker starts it down, so it is not sent sessions
    // again before it has passed `rise` checks.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _acceptor = Acceptor::new(listener);
    let mut t = target(addr, check(CheckKind::Tcp, 50, 1000, 3, 2));
    t.up = false;
    let (tx, events) = mpsc::channel();
    let checker = Checker::start(vec![t], tx);
    assert_eq!(checker.states(), vec![("web".to_owned(), addr, false)]);
    let up = events.recv_timeout(PATIENCE).expect("no up event");
    assert!(up.up);
    assert_eq!(up.reason, "connected");
    // `rise` successes made the change (the first check was not enough).
    assert!(checker.status()[0].checks >= 3);
    assert!(events.try_recv().is_err());
    stop(checker);
}
