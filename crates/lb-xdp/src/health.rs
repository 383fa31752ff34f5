//! Health checks: TCP connect and HTTP GET probes of every backend, with
//! `rise`/`fall` hysteresis, reported as [`Event`]s on a channel.
//!
//! # Threads
//!
//! [`Checker::start`] spawns a small, bounded pool of worker threads —
//! one per target, at most [`MAX_WORKERS`] — sharing one schedule (a heap of
//! due times behind a mutex and a condvar). A worker takes the earliest due
//! target, runs its check with no lock held, records the result and puts the
//! target back with its next due time. So at most [`MAX_WORKERS`] checks are in
//! flight at once, a target is never checked twice concurrently, and when
//! every worker is stuck in a slow check the others' checks run late (never
//! skipped, never bunched up beyond one catch-up check).
//!
//! The first check of target `i` out of `n` is delayed by `interval * i / n`,
//! so that many targets do not all fire at start-up.
//!
//! Idle workers sleep on the condvar with a timeout, so dropping the
//! [`Checker`] wakes them at once; a worker in the middle of a check finishes
//! it first, which takes at most that check's `timeout` (the timeout is a
//! total deadline for connect, write and read).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{CheckKind, HealthCheck};

/// The most worker threads a [`Checker`] runs (and so the most checks in
/// flight at once).
pub const MAX_WORKERS: usize = 16;

/// The longest HTTP status line accepted; a longer one is a failure.
const MAX_STATUS_LINE: usize = 1024;

/// One backend to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The listener the backend belongs to (its name, as in the config).
    pub listener: String,
    /// The backend's address; the check connects to its IP and to
    /// `check.port`, or to this port when that is `None`.
    pub backend: SocketAddr,
    /// What to check and how often.
    pub check: HealthCheck,
    /// The state the backend starts in: up for a new one (as the engine
    /// starts it), the state the previous checker left for one that a
    /// reload keeps.
    pub up: bool,
}

/// A backend's state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The listener the backend belongs to.
    pub listener: String,
    /// The backend (as in its [`Target`], not the checked port).
    pub backend: SocketAddr,
    /// The new state: `true` when it came up, `false` when it went down.
    pub up: bool,
    /// The result of the check that made the change, e.g. `connect refused`,
    /// `status 503`, `read timeout` (down) or `connected`, `status 200` (up).
    pub reason: String,
}

/// The current state of one target, for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The listener the backend belongs to.
    pub listener: String,
    /// The backend.
    pub backend: SocketAddr,
    /// Whether it is up (every target starts up).
    pub up: bool,
    /// Checks completed so far.
    pub checks: u64,
    /// Of those, how many failed.
    pub failures: u64,
    /// The result of the last check, `None` before the first one.
    pub last: Option<String>,
}

/// Runs the checks on background threads until dropped.
///
/// Dropping it stops the threads and joins them: idle ones stop at once, one
/// in the middle of a check after that check (at most its `timeout`).
#[derive(Debug)]
#[must_use = "dropping the Checker stops the checks"]
pub struct Checker {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    wake: Condvar,
}

#[derive(Debug)]
struct Inner {
    stop: bool,
    /// `(due, target index)`, earliest first. A target being checked is
    /// not in the heap.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    slots: Vec<Slot>,
    events: Sender<Event>,
}

#[derive(Debug)]
struct Slot {
    target: Arc<Target>,
    hysteresis: Hysteresis,
    checks: u64,
    failures: u64,
    last: Option<String>,
}

/// The `rise`/`fall` state machine of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hysteresis {
    up: bool,
    /// Consecutive results contrary to `up` (failures while up, successes
    /// while down).
    run: u32,
}

impl Hysteresis {
    const fn new(up: bool) -> Hysteresis {
        Hysteresis { up, run: 0 }
    }

    /// Record one result; `true` when the state flipped. `rise` and `fall`
    /// of 0 count as 1.
    fn record(&mut self, ok: bool, rise: u32, fall: u32) -> bool {
        if ok == self.up {
            self.run = 0;
            return false;
        }
        self.run = self.run.saturating_add(1);
        let needed = if self.up { fall } else { rise }.max(1);
        if self.run >= needed {
            self.up = ok;
            self.run = 0;
            true
        } else {
            false
        }
    }
}

impl Checker {
    /// Start checking every target.
    ///
    /// Each target starts in its `up` state, so an [`Event`] is sent only
    /// on a change: after `fall` consecutive failures
    /// an up backend goes down; after `rise` consecutive successes a down
    /// one comes up. Each change is also logged (`warn` down, `info` up).
    /// Events are sent while the schedule's lock is held, so an event is in
    /// `events` before [`Checker::status`] counts the check that caused it.
    /// A closed `events` channel is ignored (checks go on, states stay
    /// queryable).
    pub fn start(targets: Vec<Target>, events: Sender<Event>) -> Checker {
        let now = Instant::now();
        let n = targets.len();
        let mut queue = BinaryHeap::with_capacity(n);
        let mut slots = Vec::with_capacity(n);
        for (i, target) in targets.into_iter().enumerate() {
            queue.push(Reverse((now + spread(target.check.interval, i, n), i)));
            slots.push(Slot {
                hysteresis: Hysteresis::new(target.up),
                target: Arc::new(target),
                checks: 0,
                failures: 0,
                last: None,
            });
        }
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                stop: false,
                queue,
                slots,
                events,
            }),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for w in 0..n.min(MAX_WORKERS) {
            let shared = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("lbd-health-{w}"))
                .spawn(move || worker(&shared));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    // Fewer workers only means fewer checks in flight; with
                    // none at all nothing is checked, which is loud.
                    tracing::error!(error = %e, "cannot spawn a health-check thread");
                    break;
                }
            }
        }
        Checker { shared, workers }
    }

    /// Every target's `(listener, backend, up)`, in the order given to
    /// [`Checker::start`].
    #[must_use]
    pub fn states(&self) -> Vec<(String, SocketAddr, bool)> {
        let inner = self.shared.lock();
        inner
            .slots
            .iter()
            .map(|s| (s.target.listener.clone(), s.target.backend, s.hysteresis.up))
            .collect()
    }

    /// Every target's state with its check counters, in the order given to
    /// [`Checker::start`].
    #[must_use]
    pub fn status(&self) -> Vec<Status> {
        let inner = self.shared.lock();
        inner
            .slots
            .iter()
            .map(|s| Status {
                listener: s.target.listener.clone(),
                backend: s.target.backend,
                up: s.hysteresis.up,
                checks: s.checks,
                failures: s.failures,
                last: s.last.clone(),
            })
            .collect()
    }
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        for handle in self.workers.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a health-check thread panicked");
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The delay of target `i`'s first check out of `n`: `interval * i / n`.
fn spread(interval: Duration, i: usize, n: usize) -> Duration {
    if n == 0 {
        return Duration::ZERO;
    }
    let nanos = interval.as_nanos().saturating_mul(i as u128) / n as u128;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// One worker: take the earliest due target, check it, record, repeat.
fn worker(shared: &Shared) {
    let mut inner = shared.lock();
    loop {
        if inner.stop {
            return;
        }
        let now = Instant::now();
        let (due, index) = match inner.queue.peek() {
            None => {
                inner = shared
                    .wake
                    .wait(inner)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            Some(&Reverse((due, index))) if due <= now => (due, index),
            Some(&Reverse((due, _))) => {
                inner = shared
                    .wake
                    .wait_timeout(inner, due - now)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
        };
        inner.queue.pop();
        let Some(target) = inner.slots.get(index).map(|s| Arc::clone(&s.target)) else {
            continue;
        };
        drop(inner);

        let result = check(&target);

        inner = shared.lock();
        if inner.stop {
            return;
        }
        inner.record(index, result);
        // Next check one interval after this one was due, but not in the
        // past: a late check is followed by one at once, not by a burst.
        let next = (due + target.check.interval).max(Instant::now());
        inner.queue.push(Reverse((next, index)));
        // Another worker may be sleeping until a later due time.
        shared.wake.notify_one();
    }
}

impl Inner {
    /// Record one check's result; on a change, log it and send the event.
    fn record(&mut self, index: usize, result: Result<String, String>) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        slot.checks += 1;
        let ok = result.is_ok();
        if !ok {
            slot.failures += 1;
        }
        let reason = match result {
            Ok(r) | Err(r) => r,
        };
        let check = &slot.target.check;
        let changed = slot.hysteresis.record(ok, check.rise, check.fall);
        slot.last = Some(reason.clone());
        if !changed {
            return;
        }
        let t = &slot.target;
        if ok {
            tracing::info!(listener = %t.listener, backend = %t.backend, %reason, "backend up");
        } else {
            tracing::warn!(listener = %t.listener, backend = %t.backend, %reason, "backend down");
        }
        let event = Event {
            listener: t.listener.clone(),
            backend: t.backend,
            up: ok,
            reason,
        };
        // A closed channel: nobody listens any more, keep checking anyway.
        let _ = self.events.send(event);
    }
}

/// Run one check: `Ok(what succeeded)` or `Err(why it failed)`.
fn check(target: &Target) -> Result<String, String> {
    let c = &target.check;
    let addr = SocketAddr::new(
        target.backend.ip(),
        c.port.unwrap_or_else(|| target.backend.port()),
    );
    // `connect_timeout` refuses a zero timeout.
    let timeout = c.timeout.max(Duration::from_millis(1));
    let deadline = Instant::now() + timeout;
    let stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| io_reason("connect", &e))?;
    match &c.kind {
        CheckKind::Tcp => Ok("connected".to_owned()),
        CheckKind::Http { path, status } => http(stream, addr.ip(), path, *status, deadline),
    }
}

/// The HTTP part of a check, on a connected stream, all before `deadline`.
fn http(
    mut stream: TcpStream,
    ip: IpAddr,
    path: &str,
    expected: u16,
    deadline: Instant,
) -> Result<String, String> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: lbd-health\r\n\r\n"
    );
    stream
        .set_write_timeout(Some(remaining(deadline)?))
        .map_err(|e| io_reason("write", &e))?;
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_reason("write", &e))?;

    let mut line = Vec::with_capacity(128);
    let mut buf = [0_u8; 512];
    loop {
        stream
            .set_read_timeout(Some(remaining(deadline)?))
            .map_err(|e| io_reason("read", &e))?;
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_reason("read", &e)),
        };
        let Some(chunk) = buf.get(..n) else {
            return Err("read: bad length".to_owned());
        };
        if n == 0 {
            return Err(if line.is_empty() {
                "malformed response: connection closed before any byte".to_owned()
            } else {
                format!(
                    "malformed response: connection closed inside the status line {}",
                    quote(&line)
                )
            });
        }
        if let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(chunk.get(..end).unwrap_or_default());
            break;
        }
        line.extend_from_slice(chunk);
        if line.len() > MAX_STATUS_LINE {
            return Err(format!(
                "malformed response: status line longer than {MAX_STATUS_LINE} bytes"
            ));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let code = status_code(&line)
        .ok_or_else(|| format!("malformed response: bad status line {}", quote(&line)))?;
    if code == expected {
        Ok(format!("status {code}"))
    } else {
        Err(format!("status {code} (expected {expected})"))
    }
}

/// The status code of an HTTP/1.x status line (without its line end):
/// `HTTP/1.x SP 3DIGIT [SP reason]`.
fn status_code(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let (code, tail) = rest.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !(tail.is_empty() || tail.starts_with(b" ")) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Time left before `deadline`, or the timeout failure.
fn remaining(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err("timeout".to_owned())
    } else {
        Ok(left)
    }
}

/// A short failure reason for an I/O error during `step`.
fn io_reason(step: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => format!("{step} refused"),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!("{step} timeout"),
        ErrorKind::ConnectionReset => format!("{step}: connection reset"),
        _ => format!("{step}: {e}"),
    }
}

/// Bytes from the wire, quoted and escaped, cut at 64 bytes.
fn quote(bytes: &[u8]) -> String {
    let shown = bytes.get(..64).unwrap_or(bytes);
    let mut s = format!("\"{}\"", shown.escape_ascii());
    if shown.len() < bytes.len() {
        s.push_str("...");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed results; return the indices (1-based) where the state flipped.
    fn flips(results: &[bool], rise: u32, fall: u32) -> Vec<(usize, bool)> {
        let mut h = Hysteresis::new(true);
        let mut out = Vec::new();
        for (i, &ok) in results.iter().enumerate() {
            if h.record(ok, rise, fall) {
                out.push((i + 1, h.up));
            }
        }
        out
    }

    #[test]
    fn fall_counts_consecutive_failures_exactly() {
        let (t, f) = (true, false);
        // Two failures then a success, repeatedly: never down with fall 3.
        assert_eq!(flips(&[f, f, t, f, f, t, f, f, t], 2, 3), vec![]);
        // The third failure in a row brings it down, not the second.
        assert_eq!(flips(&[f, f, t, f, f, f], 2, 3), vec![(6, false)]);
        // Further failures while down change nothing.
        assert_eq!(flips(&[f, f, f, f, f], 2, 3), vec![(3, false)]);
    }

    #[test]
    fn rise_counts_consecutive_successes_exactly() {
        let (t, f) = (true, false);
        assert_eq!(
            flips(&[f, t, f, t, t, t], 2, 1),
            vec![(1, false), (5, true)]
        );
        assert_eq!(
            flips(&[f, t, t, t, f], 3, 1),
            vec![(1, false), (4, true), (5, false)]
        );
        // Zero counts as one.
        assert_eq!(flips(&[f, t], 0, 0), vec![(1, false), (2, true)]);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code(b"HTTP/1.1 204"), Some(204));
        assert_eq!(status_code(b"HTTP/1.1 200 "), Some(200));
        assert_eq!(status_code(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(status_code(b"HTTP/1.1 20 OK"), None);
        assert_eq!(status_code(b"HTTP/1.1 abc OK"), None);
        assert_eq!(status_code(b"HTTP/2 200"), None);
        assert_eq!(status_code(b"hello"), None);
        assert_eq!(status_code(b""), None);
        assert_eq!(status_code(b"HTTP/1.1  200 OK"), None);
    }

    #[test]
    fn first_checks_are_spread() {
        let i = Duration::from_millis(100);
        assert_eq!(spread(i, 0, 4), Duration::ZERO);
        assert_eq!(spread(i, 1, 4), Duration::from_millis(25));
        assert_eq!(spread(i, 3, 4), Duration::from_millis(75));
        assert_eq!(spread(i, 0, 0), Duration::ZERO);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(b"a\x01b"), "\"a\\x01b\"");
        assert!(quote(&[b'x'; 100]).ends_with("\"..."));
    }
}
