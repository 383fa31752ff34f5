//! The access log (the FAQ's access-log section): one line per request,
//! written off the request path into one gzip file per listener and hour,
//! in a folder per day, optionally uploaded to an S3-compatible store.
//!
//! # Lines
//!
//! One line per request, the FAQ's sixteen fields in its order, separated
//! by one space:
//!
//! ```text
//! time_iso8601 remote_addr:remote_port server_addr:server_port upstream_addr request_time upstream_response_time status upstream_status request_length body_bytes_sent "request_method" "http_host" "request_uri" "server_protocol" "http_referer" "http_user_agent"
//! 2025-12-05T20:21:27.123Z 192.0.2.7:51234 10.77.0.10:443 10.77.1.2:8080 0.012 0.010 200 200 431 5120 "GET" "example.com" "/a?b=1" "HTTP/1.1" - "curl/8.5.0"
//! ```
//!
//! - `time_iso8601`: when the line is logged, at the request's end (as
//!   nginx's `$time_iso8601`), in UTC to the millisecond (RFC 3339, `Z`).
//! - Addresses are `ip:port`, IPv6 in brackets (`[fd77::1]:443`).
//! - `request_time` and `upstream_response_time` are seconds with three
//!   decimals (`0.012`). `request_time` runs from when the request's head
//!   has been read (Pingora gives no time of its first byte) to the
//!   response's last byte; `upstream_response_time` from the start of the
//!   connect attempt to the backend to the end of its response, or to its
//!   failure.
//! - `upstream_addr` is the backend chosen, also when connecting to it
//!   failed or it timed out; `upstream_status` its status, or 502 when the
//!   connect failed (or it closed without answering) and 504 when it timed
//!   out, as nginx writes them. The three `upstream_*` fields are `-` when
//!   no backend was chosen (a 503 for want of one, or a bad request);
//!   `upstream_status` is also `-` when the client left before the backend
//!   answered.
//! - The last six fields are strings in double quotes, in which `"`, `\`,
//!   the control characters and DEL are written `\xHH` (as nginx's default
//!   escaping: `"` is `\x22`, `\` is `\x5C`); other characters, UTF-8
//!   included, are written as they are. `http_host`, `http_referer` and
//!   `http_user_agent` are a bare `-` (no quotes) when the request had no
//!   such header, so an absent header and a header whose value is `-`
//!   (`"-"`) differ.
//!
//! A line therefore holds no unescaped `"` inside a string and no newline,
//! and splits unambiguously: [`format::parse_line`] reads it back.
//!
//! # Files
//!
//! `dir/YYYYMMDD/lbd-<ip>_<port>-acc.log-YYYYMMDD-<start>.gz`, where
//! `<ip>_<port>` is the listener's address (an IPv6 address's `:` written
//! `-`), `<start>` the Unix time at which the file's period (an hour)
//! starts, and `YYYYMMDD` that time's UTC day. Periods are aligned (an
//! hour's file starts on the hour); a line goes to the period in which the
//! writer takes it off the queue. A period without requests has no file.
//! Each file is one gzip stream, finished (trailer written, synced,
//! closed) when its period ends, whether or not a later request comes, and
//! at [`AccessLog::stop`]; only then is it uploaded. Should the process be
//! restarted within a period, the new lines are appended to the same file
//! as a second gzip member (`zcat` and `gzip -d` read both).
//!
//! # Upload
//!
//! With [`S3Config`], each finished file is put at
//! `<prefix>YYYYMMDD/<file name>` in the bucket, by its own thread, with
//! `object_store`'s retries (backoff doubling from 1 s, five retries); a
//! file that still fails is counted and stays on disk, as every uploaded
//! file does.
//!
//! # Never blocking a request
//!
//! [`AccessLog::log`] hands the line to a bounded queue (`queue` lines)
//! and returns; when the queue is full the line is dropped and counted
//! (`lbd_l7_access_log_lines_lost_total`).

pub mod format;
mod upload;
pub mod writer;

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

pub use format::{ParseError, Record, parse_line};

use crate::config::{AccessLogConfig, S3Config};
use writer::{Message, Writer};

/// The largest `queue` accepted: its slots are allocated up front.
pub const MAX_QUEUE: usize = 1 << 22;

/// Where the writer reads the time: the system clock, or a test's.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What [`AccessLog::start_with`] takes besides the configuration.
#[derive(Clone)]
pub struct Options {
    /// The writer's clock (which period a line is in, when a period ends).
    pub clock: Clock,
    /// Retries of an upload after its first attempt.
    pub upload_retries: usize,
    /// The wait before the first retry; each next one doubles (with
    /// jitter), up to 32 times this.
    pub upload_backoff: Duration,
    /// How long [`AccessLog::stop`] waits for uploads under way.
    pub upload_grace: Duration,
    /// A file of this many bytes or more is uploaded in parts of this size
    /// (a multipart upload; S3 wants at least 5 MiB), a smaller one in one
    /// request.
    pub upload_part: usize,
    /// The store's access key id and secret; `None`: from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), as in production.
    pub s3_credentials: Option<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemTime::now),
            upload_retries: 5,
            upload_backoff: Duration::from_secs(1),
            upload_grace: Duration::from_secs(5),
            upload_part: 8 << 20,
            s3_credentials: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("upload_retries", &self.upload_retries)
            .field("upload_backoff", &self.upload_backoff)
            .field("upload_grace", &self.upload_grace)
            .field("upload_part", &self.upload_part)
            .field(
                "s3_credentials",
                &self.s3_credentials.as_ref().map(|_| ".."),
            )
            .finish_non_exhaustive()
    }
}

/// The log's counters, shared by the handle and its threads.
#[derive(Debug, Default)]
struct Counters {
    lines_written: AtomicU64,
    lines_lost: AtomicU64,
    write_errors: AtomicU64,
    files_finished: AtomicU64,
    uploads_ok: AtomicU64,
    uploads_failed: AtomicU64,
}

/// A reading of the log's counters (all since start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Lines written into a file.
    pub lines_written: u64,
    /// Lines dropped because the queue was full (or the log stopped).
    pub lines_lost: u64,
    /// Lines and files that could not be written (each failed open,
    /// write or finish).
    pub write_errors: u64,
    /// Files finished (complete gzip, closed).
    pub files_finished: u64,
    /// Files uploaded.
    pub uploads_ok: u64,
    /// Files whose upload failed after every retry (kept on disk).
    pub uploads_failed: u64,
}

/// The running access log: a cheap handle, cloned into every listener.
#[derive(Clone)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

struct Inner {
    queue: SyncSender<Message>,
    counters: Arc<Counters>,
    threads: Mutex<Option<Threads>>,
}

struct Threads {
    writer: JoinHandle<()>,
    uploader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Starts the writer (and the uploader, with `config.upload`) on the
    /// system clock. Fails when `dir` cannot be written, `queue` is 0 or
    /// over [`MAX_QUEUE`], `period` is under a second, or the upload's
    /// endpoint or prefix is not valid.
    pub fn start(config: &AccessLogConfig) -> io::Result<AccessLog> {
        AccessLog::start_with(config, Options::default())
    }

    /// [`AccessLog::start`] with a clock and upload settings of one's own
    /// (tests: a test clock and a short `period`).
    pub fn start_with(config: &AccessLogConfig, options: Options) -> io::Result<AccessLog> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        if config.queue == 0 || config.queue > MAX_QUEUE {
            return Err(invalid(format!(
                "access log: queue {} is not within 1..={MAX_QUEUE}",
                config.queue
            )));
        }
        let period_secs = config.period.as_secs();
        if period_secs == 0 {
            return Err(invalid(format!(
                "access log: period {:?} is under a second",
                config.period
            )));
        }
        writer::check_dir(&config.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("access log: directory {}: {e}", config.dir.display()),
            )
        })?;
        let counters = Arc::new(Counters::default());
        let uploader = config
            .upload
            .as_ref()
            .map(|s3: &S3Config| upload::start(s3, &options, Arc::clone(&counters)))
            .transpose()?;
        let (uploads, uploader_thread) = match uploader {
            Some(u) => (Some(u.files), Some(u.thread)),
            None => (None, None),
        };
        let (queue, lines) = mpsc::sync_channel(config.queue);
        let writer = Writer::new(
            config.dir.clone(),
            period_secs,
            options.clock,
            Arc::clone(&counters),
            uploads,
        );
        let tick = (config.period / 8).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let writer = std::thread::Builder::new()
            .name("lbd-access-log".into())
            .spawn(move || writer.run(lines, tick))?;
        Ok(AccessLog {
            inner: Arc::new(Inner {
                queue,
                counters,
                threads: Mutex::new(Some(Threads {
                    writer,
                    uploader: uploader_thread,
                })),
            }),
        })
    }

    /// Queues `record` for the file of `listener` (the listener's
    /// address); never blocks: with the queue full, the line is counted as
    /// lost.
    pub fn log(&self, listener: SocketAddr, record: Record) {
        let line = Message::Line(listener, Box::new(record));
        if self.inner.queue.try_send(line).is_err() {
            self.inner
                .counters
                .lines_lost
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The counters now.
    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        Stats {
            lines_written: c.lines_written.load(Ordering::Relaxed),
            lines_lost: c.lines_lost.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            files_finished: c.files_finished.load(Ordering::Relaxed),
            uploads_ok: c.uploads_ok.load(Ordering::Relaxed),
            uploads_failed: c.uploads_failed.load(Ordering::Relaxed),
        }
    }

    /// Appends the counters in the Prometheus text format
    /// (`lbd_l7_access_log_*`, each with `# HELP` and `# TYPE`).
    pub fn render_metrics(&self, out: &mut String) {
        let s = self.stats();
        for (name, help, value) in [
            (
                "lines_written_total",
                "Access-log lines written to a file.",
                s.lines_written,
            ),
            (
                "lines_lost_total",
                "Access-log lines dropped because the queue was full.",
                s.lines_lost,
            ),
            (
                "write_errors_total",
                "Access-log files that could not be opened, written or finished.",
                s.write_errors,
            ),
            (
                "files_finished_total",
                "Access-log files finished (complete gzip, closed).",
                s.files_finished,
            ),
            (
                "uploads_ok_total",
                "Access-log files uploaded to the object store.",
                s.uploads_ok,
            ),
            (
                "uploads_failed_total",
                "Access-log files whose upload failed after every retry (kept on disk).",
                s.uploads_failed,
            ),
        ] {
            let _ = writeln!(out, "# HELP lbd_l7_access_log_{name} {help}");
            let _ = writeln!(out, "# TYPE lbd_l7_access_log_{name} counter");
            let _ = writeln!(out, "lbd_l7_access_log_{name} {value}");
        }
    }

    /// Writes every queued line, finishes every open file, and waits for
    /// the uploads under way (up to [`Options::upload_grace`]). Lines
    /// logged through other handles afterwards are counted as lost.
    pub fn stop(self) {
        let threads = match self.inner.threads.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let Some(threads) = threads else {
            return;
        };
        // Behind every queued line; blocks only while the queue is full.
        let _ = self.inner.queue.send(Message::Stop);
        let _ = threads.writer.join();
        if let Some(uploader) = threads.uploader {
            let _ = uploader.join();
        }
    }
}
