//! Sessions across a restart: at shutdown each queue's engine writes its
//! sessions and quarantine (the engine's snapshot format, see
//! `lb_engine::snapshot`) to `STATE_DIR/queue-N.sessions`; at start the
//! new engine of that queue reads them back, keeping every session that
//! fits the new configuration; the file is removed once the new `lbd`
//! serves, so that it is never restored twice, and a start that fails
//! leaves it for the next one.
//!
//! With several queues, each queue's engine writes its own file, and
//! `STATE_DIR/queues` says how many queues there were. A start with
//! another number of queues restores nothing (a session's client packets
//! and its server's replies would be owned by different engines, see
//! [`crate::owner`]): it logs and counts the sessions lost, and removes
//! the files. A directory without `queues` is a single queue's.
//! `STATE_DIR/steering` names the steering the sessions were made under
//! (`single`, `hand-off`, or `rss:` and a fingerprint of the NIC's RSS
//! configuration, see [`crate::ethtool::Nic::fingerprint`]); a start under
//! another restores nothing either (each engine chose its local ports for
//! that steering). A directory without it was written in hand-off (or
//! single) mode.
//!
//! A snapshot carries each session's remaining lifetime; the time the file
//! spent on disk is taken off it at import (from the file's modification
//! time), so a session that idled out while `lbd` was down stays gone.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use lb_engine::{Engine, ImportReport, Instant};

/// The file that says how many queues saved their sessions in `dir`.
fn queues_path(dir: &Path) -> PathBuf {
    dir.join("queues")
}

/// How many queues saved their sessions in `dir`: `None` if it does not
/// say (a single queue's, or nothing saved).
pub fn saved_queues(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(queues_path(dir))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The file that names the steering the sessions in `dir` were made
/// under.
fn steering_path(dir: &Path) -> PathBuf {
    dir.join("steering")
}

/// The steering the saved sessions were made under: `None` if `dir` does
/// not say.
pub fn saved_steering(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(steering_path(dir)).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Record that `queues` queues save their sessions in `dir` (made if
/// missing), made under `steering`.
///
/// # Errors
/// The directory or a file cannot be written.
pub fn save_queues(dir: &Path, queues: u32, steering: &str) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(queues_path(dir), format!("{queues}\n"))?;
    std::fs::write(steering_path(dir), format!("{steering}\n"))
}

/// The sessions the snapshots in `saved` hold (read into a scratch engine
/// of `config`'s listeners, which keeps none of them): the loss to log
/// and count when they cannot be restored.
pub fn count_sessions(
    saved: &[Option<Saved>],
    config: &crate::config::Config,
    epoch: std::time::Instant,
) -> u64 {
    let mut total = 0u64;
    for s in saved.iter().flatten() {
        let mut c = config.engine;
        c.capacity = 1;
        c.quarantine_capacity = 1;
        c.affinity_capacity = 1;
        let Ok(mut engine) = Engine::new(c) else {
            continue;
        };
        let now = crate::datapath::engine_time(epoch, std::time::Instant::now());
        if let Ok(report) = s.restore(&mut engine, now) {
            total += u64::from(report.sessions);
        }
    }
    total
}

/// The file of `queue`'s sessions in `dir`.
pub fn path(dir: &Path, queue: u32) -> PathBuf {
    dir.join(format!("queue-{queue}.sessions"))
}

/// A snapshot read back at start.
#[derive(Debug)]
pub struct Saved {
    /// The engine's snapshot.
    pub bytes: Vec<u8>,
    /// How long ago it was written.
    pub age: Duration,
}

impl Saved {
    /// The hash seed the sessions were made with, when the snapshot's
    /// header is readable.
    pub fn hash_seed(&self) -> Option<u64> {
        lb_engine::snapshot_hash_seed(&self.bytes).ok()
    }

    /// Import into `engine` at `now`.
    ///
    /// # Errors
    /// The snapshot is malformed: nothing is imported.
    pub fn restore(
        &self,
        engine: &mut Engine,
        now: Instant,
    ) -> Result<ImportReport, lb_engine::SnapshotError> {
        engine.import_state(now, self.age, &self.bytes)
    }
}

/// Read `queue`'s snapshot from `dir`; `Ok(None)` when there is none.
///
/// # Errors
/// The file exists but cannot be read.
pub fn read(dir: &Path, queue: u32) -> io::Result<Option<Saved>> {
    let path = path(dir, queue);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let age = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    Ok(Some(Saved { bytes, age }))
}

/// Remove `queue`'s snapshot from `dir`, once restored and serving.
///
/// # Errors
/// It cannot be removed.
pub fn discard(dir: &Path, queue: u32) -> io::Result<()> {
    match std::fs::remove_file(path(dir, queue)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Write `engine`'s sessions for `queue` into `dir` (made if missing),
/// whole or not at all (a temporary file renamed into place), readable by
/// root alone (it holds the flow hash's seed). Returns the bytes written.
///
/// # Errors
/// The directory or the file cannot be written.
pub fn save(dir: &Path, queue: u32, engine: &Engine, now: Instant) -> io::Result<usize> {
    let mut bytes = Vec::new();
    engine.export_state(now, &mut bytes);
    std::fs::create_dir_all(dir)?;
    let path = path(dir, queue);
    let tmp = path.with_extension("sessions.tmp");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(bytes.len())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_queues_file_names_the_count_and_the_steering() {
        let dir = std::env::temp_dir().join(format!("lbd-state-test-{}", std::process::id()));
        assert_eq!(saved_queues(&dir), None);
        assert_eq!(saved_steering(&dir), None);
        save_queues(&dir, 4, "rss:00112233deadbeef").unwrap();
        assert_eq!(saved_queues(&dir), Some(4));
        assert_eq!(
            saved_steering(&dir).as_deref(),
            Some("rss:00112233deadbeef")
        );
        assert_eq!(std::fs::read_to_string(queues_path(&dir)).unwrap(), "4\n");
        // As an older lbd left it: the count only.
        std::fs::remove_file(steering_path(&dir)).unwrap();
        assert_eq!(saved_queues(&dir), Some(4));
        assert_eq!(saved_steering(&dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
