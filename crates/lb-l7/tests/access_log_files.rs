//! The access log's files, on a test clock: the day folder and name of
//! each, rotation at the period's end (with and without a later request),
//! no file for a period without requests, complete gzip streams whose
//! lines read back; and a full queue that loses lines without blocking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod access_log_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use access_log_support::{TestClock, TestDir, files, read_file, record, wait_for};
use lb_l7::access_log::writer::relative_path;
use lb_l7::access_log::{AccessLog, Options};
use lb_l7::config::AccessLogConfig;

/// 2019-01-21T23:59:00Z: a minute's period that ends with the day.
const T0: u64 = 1_548_115_140;

fn config(dir: &TestDir, queue: usize) -> AccessLogConfig {
    AccessLogConfig {
        dir: dir.0.clone(),
        queue,
        period: Duration::from_secs(60),
        upload: None,
    }
}

#[test]
fn files_rotate_per_period_in_day_folders() {
    let dir = TestDir::new("rotate");
    let clock = TestClock::at(T0 + 30);
    let options = Options {
        clock: clock.clock(),
        ..Options::default()
    };
    let log = AccessLog::start_with(&config(&dir, 1024), options).unwrap();
    let a: SocketAddr = "10.77.0.10:443".parse().unwrap();
    let b: SocketAddr = "[fd77::10]:80".parse().unwrap();

    // Period 1 (23:59): three lines for a, two for b.
    let mut sent_a1 = Vec::new();
    let mut sent_b1 = Vec::new();
    for n in 0..3 {
        let r = record(n, clock.now(), a);
        sent_a1.push(r.clone());
        log.log(a, r);
    }
    for n in 10..12 {
        let r = record(n, clock.now(), b);
        sent_b1.push(r.clone());
        log.log(b, r);
    }
    wait_for(&log, "five lines written", |s| s.lines_written == 5);
    assert_eq!(log.stats().files_finished, 0, "no period has ended yet");

    // Period 2 (00:00 the next day): two lines for a; b gets none.
    clock.set(T0 + 60);
    let mut sent_a2 = Vec::new();
    for n in 20..22 {
        let r = record(n, clock.now(), a);
        sent_a2.push(r.clone());
        log.log(a, r);
    }
    // Both period-1 files are finished: a's by its next line, b's by the
    // writer's timer.
    let s = wait_for(&log, "period 1 finished", |s| {
        s.files_finished == 2 && s.lines_written == 7
    });
    assert_eq!(s.write_errors, 0);
    let a1 = relative_path(a, T0);
    let b1 = relative_path(b, T0);
    let a2 = relative_path(a, T0 + 60);
    assert_eq!(
        a1,
        "20190121/lbd-10.77.0.10_443-acc.log-20190121-1548115140.gz"
    );
    assert_eq!(
        b1,
        "20190121/lbd-fd77--10_80-acc.log-20190121-1548115140.gz"
    );
    assert_eq!(
        a2,
        "20190122/lbd-10.77.0.10_443-acc.log-20190122-1548115200.gz"
    );
    assert_eq!(read_file(&dir.0.join(&a1)), sent_a1);
    assert_eq!(read_file(&dir.0.join(&b1)), sent_b1);
    assert_eq!(files(&dir.0), vec![a1.clone(), b1.clone(), a2.clone()]);

    // Period 2 ends with no further request: the timer finishes a's file.
    clock.set(T0 + 120);
    wait_for(&log, "period 2 finished", |s| s.files_finished == 3);
    assert_eq!(read_file(&dir.0.join(&a2)), sent_a2);

    // Ten periods without a request: no file.
    clock.set(T0 + 60 * 12);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(files(&dir.0), vec![a1.clone(), b1.clone(), a2.clone()]);

    // A line in period 13, finished by stop.
    let r = record(30, clock.now(), b);
    log.log(b, r.clone());
    let handle = log.clone();
    log.stop();
    let s = handle.stats();
    assert_eq!(s.files_finished, 4);
    assert_eq!(s.lines_written, 8);
    assert_eq!(s.lines_lost, 0);
    let b13 = relative_path(b, T0 + 60 * 12);
    assert_eq!(read_file(&dir.0.join(&b13)), vec![r.clone()]);
    assert_eq!(files(&dir.0).len(), 4);

    // After stop, lines are lost, not blocked on.
    handle.log(b, r);
    assert_eq!(handle.stats().lines_lost, 1);

    let mut metrics = String::new();
    handle.render_metrics(&mut metrics);
    assert!(metrics.contains("# TYPE lbd_l7_access_log_lines_written_total counter\n"));
    assert!(metrics.contains("\nlbd_l7_access_log_lines_written_total 8\n"));
    assert!(metrics.contains("\nlbd_l7_access_log_files_finished_total 4\n"));
    assert!(metrics.contains("\nlbd_l7_access_log_lines_lost_total 1\n"));
    assert_eq!(metrics.matches("# HELP lbd_l7_access_log_").count(), 6);
}

#[test]
fn a_full_queue_loses_lines_and_never_blocks() {
    let dir = TestDir::new("full");
    let clock = TestClock::at(T0);
    // The writer reads the clock for every line and every tick: while the
    // test holds `gate`, the writer is stuck in it.
    let gate = Arc::new(Mutex::new(()));
    let stuck = Arc::new(AtomicUsize::new(0));
    let inner = clock.clock();
    let (g, s) = (Arc::clone(&gate), Arc::clone(&stuck));
    let options = Options {
        clock: Arc::new(move || {
            s.fetch_add(1, Ordering::SeqCst);
            drop(g.lock());
            s.fetch_sub(1, Ordering::SeqCst);
            inner()
        }),
        ..Options::default()
    };
    let held = gate.lock().unwrap();
    let log = AccessLog::start_with(&config(&dir, 4), options).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while stuck.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < until, "the writer never read the clock");
        std::thread::sleep(Duration::from_millis(10));
    }

    // 4 lines fill the queue; 10 more are lost; none of the calls waits.
    let a: SocketAddr = "10.77.0.10:80".parse().unwrap();
    let (done, finished) = mpsc::channel();
    let logger = log.clone();
    let now = clock.now();
    std::thread::spawn(move || {
        for n in 0..14 {
            logger.log(a, record(n, now, a));
        }
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(10))
        .expect("log() blocked on a full queue");
    let s = log.stats();
    assert_eq!(s.lines_lost, 10);
    assert_eq!(s.lines_written, 0);

    drop(held);
    let handle = log.clone();
    log.stop();
    let s = handle.stats();
    assert_eq!(s.lines_written, 4);
    assert_eq!(s.lines_lost, 10);
    let lines = read_file(&dir.0.join(relative_path(a, T0)));
    assert_eq!(lines, (0..4).map(|n| record(n, now, a)).collect::<Vec<_>>());
}

#[test]
fn bad_settings_are_refused() {
    let dir = TestDir::new("bad");
    let mut c = config(&dir, 0);
    assert!(
        AccessLog::start(&c)
            .unwrap_err()
            .to_string()
            .contains("queue 0")
    );
    c.queue = 8;
    c.period = Duration::from_millis(500);
    assert!(
        AccessLog::start(&c)
            .unwrap_err()
            .to_string()
            .contains("period")
    );
    c.period = Duration::from_secs(60);
    let file = dir.0.join("a-file");
    std::fs::write(&file, b"").unwrap();
    c.dir = file.join("logs");
    let e = AccessLog::start(&c).unwrap_err();
    assert!(e.to_string().contains("a-file"), "{e}");
}

#[test]
fn lines_that_cannot_be_written_are_counted() {
    let dir = TestDir::new("errors");
    let clock = TestClock::at(T0);
    let options = Options {
        clock: clock.clock(),
        ..Options::default()
    };
    let log = AccessLog::start_with(&config(&dir, 64), options).unwrap();
    // A file where the day's folder should be.
    std::fs::write(dir.0.join("20190121"), b"in the way").unwrap();
    let a: SocketAddr = "10.77.0.10:80".parse().unwrap();
    for n in 0..3 {
        log.log(a, record(n, clock.now(), a));
    }
    let s = wait_for(&log, "three write errors", |s| s.write_errors == 3);
    assert_eq!((s.lines_written, s.files_finished), (0, 0));

    // Once the way is clear, lines land again.
    std::fs::remove_file(dir.0.join("20190121")).unwrap();
    log.log(a, record(9, clock.now(), a));
    let handle = log.clone();
    log.stop();
    let s = handle.stats();
    assert_eq!(
        (s.lines_written, s.files_finished, s.write_errors),
        (1, 1, 3)
    );
    let lines = read_file(&dir.0.join(relative_path(a, T0)));
    assert_eq!(lines, vec![record(9, clock.now(), a)]);
}

/// The handle goes into Pingora's service, shared by every worker thread.
#[test]
fn the_handle_is_send_and_sync() {
    fn shared<T: Send + Sync + Clone + 'static>() {}
    shared::<AccessLog>();
}
