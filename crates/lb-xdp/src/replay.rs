//! `lbd replay`: the engine over a capture file, with no privileges.
//!
//! [`replay`] builds one engine from a configuration exactly as a queue of
//! the data path does ([`Installed::install`]), feeds it every frame of a
//! classic pcap file (microsecond or nanosecond timestamps, either byte
//! order, link type Ethernet), writes what the engine forwards to an
//! output pcap and returns a [`Summary`] of verdicts and drops by reason.
//!
//! How the capture drives the engine:
//!
//! - **Clock.** The engine's clock is the capture's: a record's
//!   [`Instant`] is its timestamp minus the first record's. A record
//!   stamped earlier than the one before it is processed at the earlier
//!   record's time (the engine's clock never goes back); it is written
//!   with its own timestamp.
//! - **Timers.** Before the first frame of each instant the engine's timer
//!   runs as the live loop's would between batches: while
//!   [`Engine::poll_timeout`] is due by the frame's time,
//!   [`Engine::handle_timeout`] is called at that deadline (or at the
//!   engine's latest time, if later), so that a long gap in the capture
//!   sweeps the table tick by tick, as an idle live loop would. Frames of
//!   one instant are simultaneous: no timer runs between them. The RSTs of idle expiry
//!   ([`Engine::poll_transmit`]) are written at the time of the sweep that
//!   made them, with zero MAC addresses. Timers do not run past the last
//!   record: the replay ends where the capture does.
//! - **Batches.** Consecutive records with the same engine time (up to
//!   [`BATCH`]) go through [`Engine::handle_batch`], which gives the same
//!   verdicts as [`Engine::handle_packet`] on each frame in order at one
//!   `now`; records at different times are never batched, so batching
//!   cannot change a result (the tests replay one capture at one instant
//!   and spread out, and compare).
//! - **Frames.** Each frame is copied into a buffer with [`HEADROOM`]
//!   bytes before it (the engine needs [`lb_engine::Frame::HEADROOM`] to
//!   insert the TTM option or translate IPv6 to IPv4) and [`TAILROOM`]
//!   after it.
//! - **Output.** Forwarded frames ([`Verdict::ToServer`],
//!   [`Verdict::ToClient`], [`Verdict::Reply`]) are written with their
//!   original timestamp, as the engine left them. Replay has no neighbour
//!   table, so layer 2 stays as it was in the capture, except that a
//!   reply's MAC addresses are swapped (the frame goes back where it came
//!   from). Dropped and passed frames are not written. The output has the
//!   input's timestamp resolution and byte order.
//! - **Bad records.** A record that is cut short (captured length below
//!   the wire length), longer than its wire length, shorter than an
//!   Ethernet header, longer than [`MAX_FRAME`], or whose timestamp
//!   fraction is out of range is counted in [`Summary::unreadable`] and
//!   skipped. A file that ends in the middle of a record counts that
//!   record as unreadable and ends the replay there.
//! - **Size.** The engine's session table, affinity table and quarantine
//!   are capped at [`REPLAY_CAPACITY`] entries each, to keep replay light
//!   whatever the configuration asks for. A capture with more sessions
//!   alive at once than that sees `table_full` drops (or quarantine
//!   overflows) that the live data path would not.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lb_engine::{DropReason, Engine, EngineConfig, Frame, Instant, Verdict};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter, RawPcapPacket};
use pcap_file::{DataLink, PcapError, TsResolution};

use crate::config::Config;
use crate::install::Installed;

/// Most entries of each engine table in a replay (sessions, source
/// affinity, quarantine): the configuration's figures are capped here.
pub const REPLAY_CAPACITY: u32 = 1 << 16;

/// Bytes before each frame in its buffer (the engine needs
/// [`lb_engine::Frame::HEADROOM`]).
pub const HEADROOM: usize = 256;

/// Bytes after each frame in its buffer.
pub const TAILROOM: usize = 64;

/// Most records handed to the engine in one [`Engine::handle_batch`].
pub const BATCH: usize = 32;

/// The longest record replayed: the largest IP packet behind an Ethernet
/// header with two VLAN tags. Longer records are unreadable.
pub const MAX_FRAME: usize = 65_535 + 14 + 8;

/// The snapshot length written in the output's header: room for any frame
/// the engine can make of a [`MAX_FRAME`] record.
const OUT_SNAPLEN: u32 = 262_144;

/// The shortest record replayed: an Ethernet header.
const ETH_HLEN: usize = 14;

/// What a replay did.
///
/// `frames` = `to_server` + `to_client` + `replies` + `passed` +
/// `dropped`; records read = `frames` + `unreadable`; frames written =
/// `to_server` + `to_client` + `replies` + `rsts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Frames handed to the engine.
    pub frames: u64,
    /// Frames forwarded toward a real server.
    pub to_server: u64,
    /// Frames forwarded toward a client.
    pub to_client: u64,
    /// Echo replies the engine made of echo requests to a VIP.
    pub replies: u64,
    /// Frames not for the engine (left to the host's stack; not written).
    pub passed: u64,
    /// Frames dropped (not written).
    pub dropped: u64,
    /// Drops by reason, in [`DropReason::ALL`] order, nonzero only.
    pub drops: Vec<(DropReason, u64)>,
    /// RSTs of idle expiry the engine sent (written).
    pub rsts: u64,
    /// Records that are not whole Ethernet frames (cut short, too short,
    /// too long, or with a bad timestamp): counted and skipped.
    pub unreadable: u64,
}

impl fmt::Display for Summary {
    /// One figure a line, drops by reason indented under `dropped`; every
    /// line ends in a newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "frames replayed  {}", self.frames)?;
        writeln!(f, "  to server      {}", self.to_server)?;
        writeln!(f, "  to client      {}", self.to_client)?;
        writeln!(f, "  replies        {}", self.replies)?;
        writeln!(f, "  passed         {}", self.passed)?;
        writeln!(f, "  dropped        {}", self.dropped)?;
        for (reason, n) in &self.drops {
            writeln!(f, "    {:<22} {n}", reason.label())?;
        }
        writeln!(f, "expiry RSTs      {}", self.rsts)?;
        writeln!(f, "unreadable       {}", self.unreadable)
    }
}

/// Why a replay could not run (a bad record is not an error: see
/// [`Summary::unreadable`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file could not be opened, created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A file is not a classic pcap file (a pcapng file is not read), or
    /// could not be read or written as one.
    #[error("{}: {}", path.display(), pcap_message(source))]
    Pcap {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: PcapError,
    },
    /// The input's link type is not Ethernet (1).
    #[error("the capture's link type is {0}, not Ethernet (1)")]
    NotEthernet(u32),
    /// The engine refused the configuration.
    #[error("configuration: {0}")]
    Config(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// A pcap error in words: pcap-file's own messages hide the I/O error and
/// do not say what a wrong magic number means.
fn pcap_message(e: &PcapError) -> String {
    match e {
        PcapError::IoError(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
            "the file ends in its pcap header or in a record".to_owned()
        }
        PcapError::IoError(io) => format!("pcap: {io}"),
        PcapError::InvalidField(field) if field.contains("magic") => {
            "not a classic pcap file (wrong magic number; convert a pcapng capture with \
             `editcap -F pcap IN OUT`)"
                .to_owned()
        }
        other => format!("pcap: {other}"),
    }
}

/// The engine settings of a replay: the configuration's, with every table
/// capped at [`REPLAY_CAPACITY`].
fn replay_engine_config(config: &EngineConfig) -> EngineConfig {
    EngineConfig {
        capacity: config.capacity.min(REPLAY_CAPACITY),
        affinity_capacity: config.affinity_capacity.min(REPLAY_CAPACITY),
        quarantine_capacity: config.quarantine_capacity.min(REPLAY_CAPACITY),
        ..*config
    }
}

/// Run the engine that `config` describes over the capture `input`, write
/// what it sends to `output` (created or truncated), and summarize. See
/// the module documentation for how the capture drives the engine.
///
/// # Errors
/// [`ReplayError::Config`] when the engine refuses the configuration,
/// [`ReplayError::Io`] or [`ReplayError::Pcap`] when a file cannot be
/// opened, read or written, [`ReplayError::NotEthernet`] for a capture of
/// another link type.
pub fn replay(config: &Config, input: &Path, output: &Path) -> Result<Summary, ReplayError> {
    let mut engine = Engine::new(replay_engine_config(&config.engine))
        .map_err(|e| ReplayError::Config(Box::new(e)))?;
    let _installed =
        Installed::install(&mut engine, config).map_err(|e| ReplayError::Config(Box::new(e)))?;

    let in_file = File::open(input).map_err(|source| ReplayError::Io {
        path: input.to_owned(),
        source,
    })?;
    let mut reader = PcapReader::new(in_file).map_err(|source| ReplayError::Pcap {
        path: input.to_owned(),
        source,
    })?;
    let header = reader.header();
    if header.datalink != DataLink::ETHERNET {
        return Err(ReplayError::NotEthernet(u32::from(header.datalink)));
    }

    let out_file = File::create(output).map_err(|source| ReplayError::Io {
        path: output.to_owned(),
        source,
    })?;
    let writer = PcapWriter::with_header(
        BufWriter::new(out_file),
        PcapHeader {
            snaplen: OUT_SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: header.ts_resolution,
            endianness: header.endianness,
            ..PcapHeader::default()
        },
    )
    .map_err(|source| ReplayError::Pcap {
        path: output.to_owned(),
        source,
    })?;

    let mut run = Run {
        engine,
        writer,
        output,
        summary: Summary::default(),
        drops: [0; DropReason::COUNT],
        first: None,
        clock: Instant::ZERO,
        batch: Batch::default(),
    };
    loop {
        let raw = match reader.next_raw_packet() {
            None => break,
            Some(Ok(raw)) => raw,
            Some(Err(PcapError::IoError(e))) if e.kind() == io::ErrorKind::UnexpectedEof => {
                tracing::warn!(file = %input.display(), "the capture ends in the middle of a record");
                run.summary.unreadable += 1;
                break;
            }
            Some(Err(source)) => {
                return Err(ReplayError::Pcap {
                    path: input.to_owned(),
                    source,
                });
            }
        };
        match readable(&raw, header.ts_resolution) {
            Some(ts) => run.record(ts, &raw.data)?,
            None => run.summary.unreadable += 1,
        }
    }
    run.flush_batch()?;
    run.finish()
}

/// A record's timestamp in nanoseconds since the Unix epoch, if it is a
/// whole Ethernet frame the replay takes.
fn readable(raw: &RawPcapPacket<'_>, resolution: TsResolution) -> Option<u64> {
    let len = raw.data.len();
    let whole = u32::try_from(len).is_ok_and(|l| l == raw.orig_len);
    if !whole || !(ETH_HLEN..=MAX_FRAME).contains(&len) {
        return None;
    }
    let frac_nanos = match resolution {
        TsResolution::MicroSecond if raw.ts_frac < 1_000_000 => u64::from(raw.ts_frac) * 1000,
        TsResolution::NanoSecond if raw.ts_frac < 1_000_000_000 => u64::from(raw.ts_frac),
        _ => return None,
    };
    Some(u64::from(raw.ts_sec) * 1_000_000_000 + frac_nanos)
}

/// Records waiting to go through the engine together: same engine time.
#[derive(Default)]
struct Batch {
    /// The engine time of every record here.
    now: Instant,
    /// Buffers, `HEADROOM + frame + TAILROOM` each; the first `len` are in
    /// use (the rest are kept for reuse).
    bufs: Vec<Vec<u8>>,
    /// Each record's frame length and original timestamp.
    records: Vec<(usize, Duration)>,
}

/// A replay in progress.
struct Run<'a> {
    engine: Engine,
    writer: PcapWriter<BufWriter<File>>,
    output: &'a Path,
    summary: Summary,
    drops: [u64; DropReason::COUNT],
    /// The first record's timestamp (ns since the epoch): engine time 0.
    first: Option<u64>,
    /// The engine's latest time.
    clock: Instant,
    batch: Batch,
}

impl Run<'_> {
    /// Take one readable record stamped `ts` (ns since the epoch).
    fn record(&mut self, ts: u64, data: &[u8]) -> Result<(), ReplayError> {
        let first = *self.first.get_or_insert(ts);
        let now = Instant::from_nanos(ts.saturating_sub(first)).max(self.clock);
        if !self.batch.records.is_empty()
            && (self.batch.now != now || self.batch.records.len() >= BATCH)
        {
            self.flush_batch()?;
        }
        if self.batch.records.is_empty() {
            self.run_timers(now)?;
            self.batch.now = now;
        }
        let i = self.batch.records.len();
        if self.batch.bufs.len() <= i {
            self.batch.bufs.push(Vec::new());
        }
        if let Some(buf) = self.batch.bufs.get_mut(i) {
            buf.clear();
            buf.resize(HEADROOM, 0);
            buf.extend_from_slice(data);
            buf.resize(HEADROOM + data.len() + TAILROOM, 0);
            self.batch
                .records
                .push((data.len(), Duration::from_nanos(ts)));
        }
        Ok(())
    }

    /// Run the engine's timer up to `now`, writing the RSTs it makes.
    fn run_timers(&mut self, now: Instant) -> Result<(), ReplayError> {
        while let Some(deadline) = self.engine.poll_timeout()
            && deadline <= now
        {
            let at = deadline.max(self.clock);
            self.engine.handle_timeout(at);
            self.clock = at;
            let ts = Duration::from_nanos(self.first.unwrap_or(0).saturating_add(at.as_nanos()));
            let mut buf = [0u8; Engine::TRANSMIT_LEN];
            while let Some((len, _to)) = self.engine.poll_transmit(&mut buf) {
                self.summary.rsts += 1;
                write(
                    &mut self.writer,
                    self.output,
                    ts,
                    buf.get(..len).unwrap_or_default(),
                )?;
            }
        }
        Ok(())
    }

    /// Process the waiting records and write what the engine forwards.
    fn flush_batch(&mut self) -> Result<(), ReplayError> {
        let n = self.batch.records.len();
        if n == 0 {
            return Ok(());
        }
        let now = self.batch.now;
        self.clock = self.clock.max(now);
        let mut frames: Vec<Frame<'_>> = self
            .batch
            .bufs
            .iter_mut()
            .zip(&self.batch.records)
            .map(|(buf, &(len, _))| {
                let mut frame = Frame::whole(buf);
                // The buffer was sized for exactly this range.
                let _ = frame.set_range(HEADROOM, HEADROOM + len);
                frame
            })
            .collect();
        let mut verdicts = vec![Verdict::Pass; frames.len()];
        self.engine.handle_batch(now, &mut frames, &mut verdicts);
        for ((frame, verdict), &(_, ts)) in
            frames.iter_mut().zip(&verdicts).zip(&self.batch.records)
        {
            self.summary.frames += 1;
            match *verdict {
                Verdict::ToServer { .. } => self.summary.to_server += 1,
                Verdict::ToClient { .. } => self.summary.to_client += 1,
                Verdict::Reply { .. } => {
                    self.summary.replies += 1;
                    if let Some(macs) = frame.bytes_mut().get_mut(..12) {
                        let (dst, src) = macs.split_at_mut(6);
                        dst.swap_with_slice(src);
                    }
                }
                Verdict::Pass => {
                    self.summary.passed += 1;
                    continue;
                }
                Verdict::Drop(reason) => {
                    self.summary.dropped += 1;
                    if let Some(d) = self.drops.get_mut(reason.index()) {
                        *d += 1;
                    }
                    continue;
                }
            }
            write(&mut self.writer, self.output, ts, frame.bytes())?;
        }
        drop(frames);
        self.batch.records.clear();
        Ok(())
    }

    /// Flush the output and close the summary.
    fn finish(mut self) -> Result<Summary, ReplayError> {
        self.writer
            .into_writer()
            .flush()
            .map_err(|source| ReplayError::Io {
                path: self.output.to_owned(),
                source,
            })?;
        self.summary.drops = DropReason::ALL
            .iter()
            .filter_map(|r| {
                let n = self.drops.get(r.index()).copied().unwrap_or(0);
                (n > 0).then_some((*r, n))
            })
            .collect();
        Ok(self.summary)
    }
}

/// Write one frame to the output.
fn write(
    writer: &mut PcapWriter<BufWriter<File>>,
    path: &Path,
    ts: Duration,
    frame: &[u8],
) -> Result<(), ReplayError> {
    let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
    writer
        .write_packet(&PcapPacket::new(ts, len, frame))
        .map(|_| ())
        .map_err(|source| ReplayError::Pcap {
            path: path.to_owned(),
            source,
        })
}
