//! The writer thread: takes lines off the queue, writes each listener's
//! gzip file of the current period, finishes files when their period ends,
//! and hands finished files to the uploader.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::DateTime;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::format::{Record, write_line};
use super::{Clock, Counters};

/// What the writer thread is sent.
pub(super) enum Message {
    /// A request's line, for the file of its listener.
    Line(SocketAddr, Box<Record>),
    /// Finish every file and end.
    Stop,
}

/// A finished file for the uploader: where it is, and its name relative
/// to the log directory (`YYYYMMDD/lbd-...gz`).
pub(super) struct Finished {
    pub(super) path: PathBuf,
    pub(super) relative: String,
}

/// The day folder of a period (`YYYYMMDD`, the UTC day of its start).
pub fn day(period_start: u64) -> String {
    i64::try_from(period_start)
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .map_or_else(|| "99991231".to_owned(), |t| t.format("%Y%m%d").to_string())
}

/// The file of `listener` for the period starting at `period_start`
/// (Unix seconds), relative to the log directory:
/// `YYYYMMDD/lbd-<addr>_<port>-acc.log-YYYYMMDD-<period_start>.gz`, with an
/// IPv6 address's `:` written `-` (`[fd77::1]:443` gives `fd77--1_443`).
pub fn relative_path(listener: SocketAddr, period_start: u64) -> String {
    let day = day(period_start);
    let addr = listener.ip().to_string().replace(':', "-");
    format!(
        "{day}/lbd-{addr}_{port}-acc.log-{day}-{period_start}.gz",
        port = listener.port()
    )
}

/// The start (Unix seconds) of the period `now` is in: periods are aligned
/// to multiples of their length since the epoch (an hour: on the hour).
pub(super) fn period_start(now: SystemTime, period_secs: u64) -> u64 {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    secs - secs % period_secs.max(1)
}

/// A file being written.
struct Open {
    period_start: u64,
    path: PathBuf,
    relative: String,
    gz: GzEncoder<BufWriter<File>>,
}

/// The writer thread's state.
pub(super) struct Writer {
    dir: PathBuf,
    period_secs: u64,
    clock: Clock,
    counters: Arc<Counters>,
    /// Finished files go here, when uploading.
    uploads: Option<tokio::sync::mpsc::UnboundedSender<Finished>>,
    open: HashMap<SocketAddr, Open>,
    /// One line's text, reused.
    line: String,
    /// The start of the period last seen.
    period: u64,
}

impl Writer {
    /// A writer of files under `dir`, rotated every `period_secs`.
    pub(super) fn new(
        dir: PathBuf,
        period_secs: u64,
        clock: Clock,
        counters: Arc<Counters>,
        uploads: Option<tokio::sync::mpsc::UnboundedSender<Finished>>,
    ) -> Writer {
        Writer {
            dir,
            period_secs,
            clock,
            counters,
            uploads,
            open: HashMap::new(),
            line: String::new(),
            period: 0,
        }
    }

    /// Runs until [`Message::Stop`] or every sender is gone; wakes every
    /// `tick` to finish the files of a period that has ended.
    pub(super) fn run(mut self, queue: Receiver<Message>, tick: Duration) {
        loop {
            match queue.recv_timeout(tick) {
                Ok(Message::Line(listener, record)) => self.write(listener, &record),
                Ok(Message::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.now();
                }
            }
        }
        self.finish_before(u64::MAX);
    }

    /// The current period's start; when it differs from the last one
    /// seen, every file of an earlier period is finished first.
    fn now(&mut self) -> u64 {
        let current = period_start((self.clock)(), self.period_secs);
        if current != self.period {
            self.period = current;
            self.finish_before(current);
        }
        current
    }

    fn write(&mut self, listener: SocketAddr, record: &Record) {
        let current = self.now();
        // A clock stepped back: the listener's file is of a later period.
        if self
            .open
            .get(&listener)
            .is_some_and(|f| f.period_start != current)
            && let Some(ended) = self.open.remove(&listener)
        {
            self.finish(ended);
        }
        if !self.open.contains_key(&listener) {
            match self.create(listener, current) {
                Ok(file) => {
                    self.open.insert(listener, file);
                }
                Err(e) => {
                    self.error(format_args!("cannot open the file for {listener}: {e}"));
                    return;
                }
            }
        }
        self.line.clear();
        write_line(record, &mut self.line);
        let Some(file) = self.open.get_mut(&listener) else {
            return;
        };
        match file.gz.write_all(self.line.as_bytes()) {
            Ok(()) => {
                self.counters.lines_written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let path = file.path.display().to_string();
                self.error(format_args!("cannot write {path}: {e}"));
                // Closed as it is; the next line appends a new gzip member.
                self.open.remove(&listener);
            }
        }
    }

    /// Opens (appending, should the process have written it before in
    /// this period: a second gzip member) the file of `listener` for the
    /// period starting at `start`.
    fn create(&self, listener: SocketAddr, start: u64) -> io::Result<Open> {
        let relative = relative_path(listener, start);
        let path = self.dir.join(&relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Open {
            period_start: start,
            path,
            relative,
            gz: GzEncoder::new(BufWriter::new(file), Compression::default()),
        })
    }

    /// Counts a write error; logs the 1st, 2nd, 4th, 8th... (a full disk
    /// must not flood the log with one warning per request).
    fn error(&self, what: std::fmt::Arguments<'_>) {
        let n = self.counters.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!("access log: {what} ({n} write errors so far)");
        }
    }

    /// Finishes every file of a period that started before `current`.
    fn finish_before(&mut self, current: u64) {
        let ended: Vec<SocketAddr> = self
            .open
            .iter()
            .filter(|(_, f)| f.period_start < current)
            .map(|(l, _)| *l)
            .collect();
        for listener in ended {
            if let Some(file) = self.open.remove(&listener) {
                self.finish(file);
            }
        }
    }

    /// Writes the gzip trailer, flushes and closes; then queues the upload.
    fn finish(&mut self, file: Open) {
        let Open {
            path, relative, gz, ..
        } = file;
        let closed = gz
            .finish()
            .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
            .and_then(|f| f.sync_all());
        if let Err(e) = closed {
            self.error(format_args!("cannot finish {}: {e}", path.display()));
            return;
        }
        self.counters.files_finished.fetch_add(1, Ordering::Relaxed);
        if let Some(uploads) = &self.uploads
            && uploads.send(Finished { path, relative }).is_err()
        {
            self.counters.uploads_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The log directory must be writable: checked once at start so that a
/// bad `dir` is an error rather than every line a write error.
pub(super) fn check_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(".lbd-access-log-probe");
    File::create(&probe)?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_listener_and_the_period() {
        let v4: SocketAddr = "10.77.0.10:443".parse().unwrap();
        assert_eq!(
            relative_path(v4, 1_548_086_400),
            "20190121/lbd-10.77.0.10_443-acc.log-20190121-1548086400.gz"
        );
        let v6: SocketAddr = "[fd77::1]:80".parse().unwrap();
        assert_eq!(
            relative_path(v6, 1_548_115_200),
            "20190122/lbd-fd77--1_80-acc.log-20190122-1548115200.gz"
        );
    }

    #[test]
    fn periods_are_aligned() {
        let t = UNIX_EPOCH + Duration::from_secs(1_548_089_999);
        assert_eq!(period_start(t, 3600), 1_548_086_400);
        assert_eq!(
            period_start(t + Duration::from_secs(1), 3600),
            1_548_090_000
        );
        assert_eq!(period_start(t, 1), 1_548_089_999);
        assert_eq!(period_start(UNIX_EPOCH - Duration::from_secs(1), 60), 0);
    }
}
