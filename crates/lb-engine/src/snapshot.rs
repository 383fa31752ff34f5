//! The session snapshot's format: what [`Engine::export_state`] writes and
//! [`Engine::import_state`] reads, so that a runner can restart (even with
//! another engine configuration: capacity, timeouts, hash seed) without
//! losing a connection. This module reads and writes the bytes and checks
//! every field; the engine's side (which sessions, mapped how) is in
//! `engine/state.rs`.
//!
//! A snapshot names everything by address, never by an engine's internal
//! slots: small tables of the listeners, backends and local addresses, and
//! session records that point into those tables. The importing engine
//! finds each listener by VIP, port and protocol, each backend by address
//! and port within it, and each local address within its pool, then
//! computes the session's key hashes and checksum changes afresh.
//!
//! # Format, version 1
//!
//! Integers are little-endian. An address is 16 bytes in network order,
//! with an IPv4 address in the first 4 and the other 12 zero; a family byte
//! says which (4 or 6). Times are lifetimes left, in milliseconds: the
//! snapshot holds no clock reading.
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic, `LBSN` |
//! | 4..6 | version, 1 |
//! | 6..8 | zero |
//! | 8..16 | the exporting engine's hash seed |
//! | 16..20 | `L`, listener records |
//! | 20..24 | `B`, backend records |
//! | 24..28 | `A`, local address records |
//! | 28..32 | `S4`, session records of IPv4 clients (4to4 listeners) |
//! | 32..36 | `S6`, session records of IPv6 clients (6to4 and 6to6) |
//! | 36..40 | `Q`, quarantine records |
//! | 40.. | the records, each kind in that order, each of a fixed size |
//! | last 4 | CRC-32 (IEEE 802.3, as zlib's) of every byte before it |
//!
//! The length is therefore exactly `40 + 20 L + 23 B + 17 A + 37 S4 +
//! 49 S6 + 12 Q + 4`.
//!
//! A **listener** record (20 bytes): bytes 0 the VIP's family, 1..17 the
//! VIP, 17 the protocol (6 TCP or 17 UDP), 18..20 the port.
//!
//! A **backend** record (23 bytes): bytes 0..4 its listener, an index below
//! `L`; 4 the family (6 behind an IPv6 VIP only); 5..21 the address;
//! 21..23 the port.
//!
//! A **local address** record (17 bytes): byte 0 the family, 1..17 the
//! address.
//!
//! A **session** record (37 bytes for an IPv4 client, 49 for an IPv6 one):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | backend: an index below `B`, whose listener's VIP is of the section's family |
//! | 4..8 | local address: an index below `A`, of the backend's family |
//! | 8..10 | client port |
//! | 10..12 | local port, not 0 |
//! | 12..13 | TCP flags seen (below); 0 for UDP |
//! | 13..17 | lifetime left, ms, at most [`Timeouts::MAX`](crate::Timeouts::MAX); 0: past its deadline |
//! | 17..21 | TCP, client to server: next sequence number |
//! | 21..25 | TCP, client to server: last acknowledgment number |
//! | 25..29 | TCP, server to client: next sequence number |
//! | 29..33 | TCP, server to client: last acknowledgment number (all four 0 for UDP) |
//! | 33.. | client address: 4 bytes (`S4`) or 16 (`S6`) |
//!
//! Ports are what the engine accepts: a client's may be 0, as may a
//! listener's or a backend's (configuration does not refuse it); a local
//! port never is (a pool's range starts at 1).
//!
//! The flags, a bit each: 0 the server's SYN-ACK seen, 1 the server sent
//! data after it (needs bit 0), 2 the handshake completed (needs bit 0),
//! 3 the client's FIN, 4 the server's FIN, 5 the client's FIN acknowledged
//! (needs bit 3), 6 the server's FIN acknowledged (needs bit 4), 7 an RST.
//!
//! A **quarantine** record (12 bytes): bytes 0..8 the tuple's 64-bit
//! fingerprint, 8..12 the time it is still held in ms (1 to one hour and
//! two seconds).
//!
//! # The quarantine
//!
//! The quarantine keeps 64-bit fingerprints of closed tuples, not the
//! tuples. A fingerprint depends on the tuple alone (not on the hash seed,
//! not on the quarantine's size), and where it sits in the quarantine is
//! derived from it: so the records are restored into any quarantine,
//! whatever its seed and capacity, and keep answering for the same tuples.
//! Each is held for what was left of it, cut to the new engine's period
//! when that is shorter; a smaller quarantine takes what fits (the rest
//! counted as skipped); a quarantine that is off takes none.
//!
//! # Validation
//!
//! The whole input is checked before anything is restored, and a bad one
//! changes nothing: the magic, the version, the length against the
//! counts, the checksum, then every field of every record (families,
//! protocols, ports, flags, lifetimes, indices, the zero bytes of IPv4
//! addresses). Each failure has its own [`SnapshotError`]. What the new
//! configuration cannot take (a listener, backend or local address that is
//! gone, a full table, a tuple that is live already) is not an error: that
//! session is skipped and counted in the [`ImportReport`].
//!
//! The file holds the hash seed, which keeps clients from aiming collisions
//! at the session table: keep it as private as the configuration.
//!
//! [`Engine::export_state`]: crate::Engine::export_state
//! [`Engine::import_state`]: crate::Engine::import_state

use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Timeouts;
use crate::quarantine::MAX_PERIOD;
use crate::session::flag;
use crate::wire;

/// The first four bytes of a snapshot.
pub(crate) const MAGIC: [u8; 4] = *b"LBSN";

/// The format version this engine writes and reads.
pub const SNAPSHOT_VERSION: u16 = 1;

/// Header bytes.
pub(crate) const HEADER_LEN: usize = 40;
/// Trailer bytes (the checksum).
const CRC_LEN: usize = 4;
pub(crate) const LISTENER_LEN: usize = 20;
pub(crate) const BACKEND_LEN: usize = 23;
pub(crate) const LOCAL_LEN: usize = 17;
/// A session record without its client address.
const SESSION_BASE_LEN: usize = 33;
pub(crate) const SESSION4_LEN: usize = SESSION_BASE_LEN + 4;
pub(crate) const SESSION6_LEN: usize = SESSION_BASE_LEN + 16;
pub(crate) const QUARANTINE_LEN: usize = 12;

/// The longest lifetime a session record may carry, in ms (24 days).
pub(crate) const MAX_SESSION_MS: u32 = Timeouts::MAX.as_millis() as u32;
/// The longest a quarantine record may be held, in ms: the longest period
/// and the two seconds its rounding up can add.
pub(crate) const MAX_QUARANTINE_MS: u32 = MAX_PERIOD.as_millis() as u32 + 2000;

const _: () = assert!(
    Timeouts::MAX.as_millis() == MAX_SESSION_MS as u128
        && MAX_PERIOD.as_millis() + 2000 == MAX_QUARANTINE_MS as u128
);

// The flags byte is the session's own: a change there is a change of the
// format, and must be mapped here.
const _: () = assert!(
    flag::SYNACK == 1 << 0
        && flag::SERVER_SENT == 1 << 1
        && flag::ESTABLISHED == 1 << 2
        && flag::CLIENT_FIN == 1 << 3
        && flag::SERVER_FIN == 1 << 4
        && flag::CLIENT_FIN_ACKED == 1 << 5
        && flag::SERVER_FIN_ACKED == 1 << 6
        && flag::RST == 1 << 7
);

/// A part of a snapshot, to say where a field is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Section {
    /// The header.
    Header,
    /// The listener records.
    Listener,
    /// The backend records.
    Backend,
    /// The local address records.
    LocalAddress,
    /// The session records of IPv4 clients.
    Session4,
    /// The session records of IPv6 clients.
    Session6,
    /// The quarantine records.
    Quarantine,
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Listener => "listener record",
            Section::Backend => "backend record",
            Section::LocalAddress => "local address record",
            Section::Session4 => "IPv4 session record",
            Section::Session6 => "IPv6 session record",
            Section::Quarantine => "quarantine record",
        })
    }
}

/// Why a snapshot was refused. Nothing was restored from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// The input does not start with the magic `LBSN`: not a snapshot.
    #[error("not a session snapshot: bad magic")]
    BadMagic,
    /// A version this engine does not read.
    #[error("snapshot version {found} is not supported (this engine reads version {supported})")]
    UnsupportedVersion {
        /// The version in the input.
        found: u16,
        /// [`SNAPSHOT_VERSION`].
        supported: u16,
    },
    /// The input ends before the header does, or before the records its
    /// header counts.
    #[error("snapshot truncated at byte {len}: its header needs {expected} bytes")]
    Truncated {
        /// The input's length.
        len: usize,
        /// The length the header's counts give (the header's own length
        /// and checksum, when it is cut short).
        expected: u64,
    },
    /// The input goes on after the records its header counts.
    #[error("{len} bytes, but the snapshot's header counts {expected}: trailing bytes")]
    TrailingBytes {
        /// The input's length.
        len: usize,
        /// The length the header's counts give.
        expected: u64,
    },
    /// The checksum does not match: the file is damaged.
    #[error("snapshot checksum {stored:#010x} does not match its contents ({computed:#010x})")]
    BadChecksum {
        /// The checksum in the input.
        stored: u32,
        /// The checksum of the input's contents.
        computed: u32,
    },
    /// A field has a value the format does not allow.
    #[error("bad {field} in {section} {index} (byte {offset})")]
    BadField {
        /// Where the record is.
        section: Section,
        /// The record's number within its section, from 0.
        index: u32,
        /// The field.
        field: &'static str,
        /// The offset of the record in the input.
        offset: usize,
    },
}

/// What [`Engine::import_state`](crate::Engine::import_state) restored and
/// what it skipped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReport {
    /// Session records in the snapshot.
    pub sessions: u32,
    /// Sessions restored.
    pub restored: u32,
    /// Of those restored, the ones past their deadline already: the next
    /// sweep ends them as the exporting engine would have (RSTs for an
    /// established TCP session, the tuple quarantined).
    pub overdue: u32,
    /// Skipped: no listener with that VIP, port and protocol.
    pub no_listener: u32,
    /// Skipped: the listener has no backend with that address and port.
    pub no_backend: u32,
    /// Skipped: the listener's pool has no such local address.
    pub no_local_address: u32,
    /// Skipped: the session table was full.
    pub table_full: u32,
    /// Skipped: a live session has the same client (listener, address,
    /// port) or the same outbound tuple (local address and port, server
    /// address and port).
    pub duplicate: u32,
    /// Quarantined tuples restored.
    pub quarantine_restored: u32,
    /// Quarantined tuples not restored: the quarantine is off or full.
    pub quarantine_skipped: u32,
}

impl ImportReport {
    /// Sessions skipped, for any reason.
    pub fn skipped(&self) -> u32 {
        self.no_listener
            .saturating_add(self.no_backend)
            .saturating_add(self.no_local_address)
            .saturating_add(self.table_full)
            .saturating_add(self.duplicate)
    }
}

impl core::fmt::Display for ImportReport {
    /// `restored 8 of 9 sessions (0 overdue); skipped 1: no listener 0,
    /// no backend 1, ...; quarantine 3 restored, 0 skipped`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "restored {} of {} sessions ({} overdue); skipped {}: no listener {}, \
             no backend {}, no local address {}, table full {}, duplicate {}; \
             quarantine {} restored, {} skipped",
            self.restored,
            self.sessions,
            self.overdue,
            self.skipped(),
            self.no_listener,
            self.no_backend,
            self.no_local_address,
            self.table_full,
            self.duplicate,
            self.quarantine_restored,
            self.quarantine_skipped
        )
    }
}

/// The hash seed of the engine that wrote a snapshot, from its header
/// alone (magic, version, seed; the rest is checked on import): a runner
/// whose configuration leaves the seed random builds its new engine with
/// it, so that local ports are searched from where the old engine searched.
/// The import itself works with any seed.
///
/// # Errors
/// [`SnapshotError::BadMagic`], [`SnapshotError::UnsupportedVersion`],
/// [`SnapshotError::Truncated`].
pub fn snapshot_hash_seed(bytes: &[u8]) -> Result<u64, SnapshotError> {
    Ok(read_header(bytes)?.seed)
}

/// An address of a record: a family byte and 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Addr {
    pub(crate) v6: bool,
    pub(crate) bytes: [u8; 16],
}

impl Addr {
    pub(crate) fn of(addr: IpAddr) -> Addr {
        match addr {
            IpAddr::V4(a) => {
                let mut bytes = [0; 16];
                let [b0, b1, b2, b3, ..] = &mut bytes;
                [*b0, *b1, *b2, *b3] = a.octets();
                Addr { v6: false, bytes }
            }
            IpAddr::V6(a) => Addr {
                v6: true,
                bytes: a.octets(),
            },
        }
    }

    pub(crate) fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from(self.bytes))
        } else {
            let [a, b, c, d, ..] = self.bytes;
            IpAddr::V4(Ipv4Addr::from([a, b, c, d]))
        }
    }

    fn write(self, out: &mut Vec<u8>) {
        out.push(if self.v6 { 6 } else { 4 });
        out.extend_from_slice(&self.bytes);
    }

    /// A family byte and an address: `None` for an unknown family or an
    /// IPv4 address whose last 12 bytes are not zero.
    fn read(f: &mut Fields<'_>) -> Option<Result<Addr, &'static str>> {
        let family = f.u8()?;
        let bytes = f.take::<16>()?;
        Some(match family {
            4 if bytes
                .get(4..)
                .is_some_and(|tail| tail.iter().all(|&b| b == 0)) =>
            {
                Ok(Addr { v6: false, bytes })
            }
            4 => Err("IPv4 address (bytes 4..16 not zero)"),
            6 => Ok(Addr { v6: true, bytes }),
            _ => Err("address family"),
        })
    }
}

/// A listener record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerRec {
    pub(crate) vip: Addr,
    pub(crate) proto: u8,
    pub(crate) port: u16,
}

/// A backend record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackendRec {
    /// An index into the listener records.
    pub(crate) listener: u32,
    pub(crate) addr: Addr,
    pub(crate) port: u16,
}

/// A session record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SessionRec {
    /// An index into the backend records.
    pub(crate) backend: u32,
    /// An index into the local address records.
    pub(crate) lip: u32,
    pub(crate) cport: u16,
    pub(crate) lport: u16,
    pub(crate) flags: u8,
    /// Lifetime left, ms; 0 past its deadline.
    pub(crate) remaining_ms: u32,
    pub(crate) c_next: u32,
    pub(crate) c_ack: u32,
    pub(crate) s_next: u32,
    pub(crate) s_ack: u32,
    /// IPv4 in the first 4 bytes (the other 12 zero), or IPv6.
    pub(crate) client: [u8; 16],
}

/// A quarantine record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuarantineRec {
    pub(crate) fingerprint: u64,
    pub(crate) remaining_ms: u32,
}

/// The counts of a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) listeners: u32,
    pub(crate) backends: u32,
    pub(crate) locals: u32,
    pub(crate) sessions4: u32,
    pub(crate) sessions6: u32,
    pub(crate) quarantine: u32,
}

impl Counts {
    /// The length of a snapshot with these counts.
    pub(crate) fn snapshot_len(&self) -> u64 {
        let n = |count: u32, len: usize| u64::from(count) * len as u64;
        (HEADER_LEN + CRC_LEN) as u64
            + n(self.listeners, LISTENER_LEN)
            + n(self.backends, BACKEND_LEN)
            + n(self.locals, LOCAL_LEN)
            + n(self.sessions4, SESSION4_LEN)
            + n(self.sessions6, SESSION6_LEN)
            + n(self.quarantine, QUARANTINE_LEN)
    }
}

/// A header: the seed and the counts.
#[derive(Debug, Clone, Copy)]
struct Header {
    seed: u64,
    reserved: u16,
    counts: Counts,
}

/// Reads the header: the magic, then the version, then the rest.
fn read_header(bytes: &[u8]) -> Result<Header, SnapshotError> {
    let magic_len = bytes.len().min(MAGIC.len());
    if bytes.get(..magic_len) != MAGIC.get(..magic_len) {
        return Err(SnapshotError::BadMagic);
    }
    let truncated = SnapshotError::Truncated {
        len: bytes.len(),
        expected: (HEADER_LEN + CRC_LEN) as u64,
    };
    let mut f = Fields(bytes.get(MAGIC.len()..).unwrap_or_default());
    let version = f.u16().ok_or_else(|| truncated.clone())?;
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::UnsupportedVersion {
            found: version,
            supported: SNAPSHOT_VERSION,
        });
    }
    let mut header = || {
        Some(Header {
            reserved: f.u16()?,
            seed: f.u64()?,
            counts: Counts {
                listeners: f.u32()?,
                backends: f.u32()?,
                locals: f.u32()?,
                sessions4: f.u32()?,
                sessions6: f.u32()?,
                quarantine: f.u32()?,
            },
        })
    };
    match header() {
        Some(h) if bytes.len() >= HEADER_LEN + CRC_LEN => Ok(h),
        _ => Err(truncated),
    }
}

/// A snapshot whose every field has been checked: its tables decoded, its
/// sessions and quarantine records still bytes of exact lengths, read again
/// by [`Parsed::sessions`] and [`Parsed::quarantine`].
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) listeners: Vec<ListenerRec>,
    pub(crate) backends: Vec<BackendRec>,
    pub(crate) locals: Vec<Addr>,
    sessions4: &'a [u8],
    sessions6: &'a [u8],
    quarantine: &'a [u8],
}

/// Checks a whole snapshot, field by field; see the module documentation.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, SnapshotError> {
    let header = read_header(bytes)?;
    let expected = header.counts.snapshot_len();
    let len = bytes.len();
    if (len as u64) < expected {
        return Err(SnapshotError::Truncated { len, expected });
    }
    if (len as u64) > expected {
        return Err(SnapshotError::TrailingBytes { len, expected });
    }
    let (body, crc) = bytes
        .split_last_chunk::<CRC_LEN>()
        .ok_or(SnapshotError::Truncated { len, expected })?;
    let (stored, computed) = (u32::from_le_bytes(*crc), crc32fast::hash(body));
    if stored != computed {
        return Err(SnapshotError::BadChecksum { stored, computed });
    }
    if header.reserved != 0 {
        return Err(bad(Section::Header, 0, "reserved bytes 6..8", 6));
    }
    let c = header.counts;
    // The length matched the counts: every section is there, whole.
    let mut rest = body.get(HEADER_LEN..).unwrap_or_default();
    let mut offset = HEADER_LEN;
    let mut section = |count: u32, record: usize| {
        let size = usize::try_from(u64::from(count) * record as u64).unwrap_or(usize::MAX);
        let (part, after) = rest.split_at_checked(size).unwrap_or((rest, &[]));
        rest = after;
        let at = offset;
        offset = offset.saturating_add(size);
        (part, at)
    };
    let (listener_bytes, listeners_at) = section(c.listeners, LISTENER_LEN);
    let (backend_bytes, backends_at) = section(c.backends, BACKEND_LEN);
    let (local_bytes, locals_at) = section(c.locals, LOCAL_LEN);
    let (sessions4, sessions4_at) = section(c.sessions4, SESSION4_LEN);
    let (sessions6, sessions6_at) = section(c.sessions6, SESSION6_LEN);
    let (quarantine, quarantine_at) = section(c.quarantine, QUARANTINE_LEN);

    let listeners = records(
        listener_bytes,
        LISTENER_LEN,
        listeners_at,
        Section::Listener,
        |f| {
            let vip = Addr::read(f)?;
            let (proto, port) = (f.u8()?, f.u16()?);
            Some((|| {
                let vip = vip?;
                if proto != wire::PROTO_TCP && proto != wire::PROTO_UDP {
                    return Err("protocol");
                }
                Ok(ListenerRec { vip, proto, port })
            })())
        },
    )?;
    let backends = records(
        backend_bytes,
        BACKEND_LEN,
        backends_at,
        Section::Backend,
        |f| {
            let listener = f.u32()?;
            let addr = Addr::read(f)?;
            let port = f.u16()?;
            Some((|| {
                let addr = addr?;
                let l = listeners.get(listener as usize).ok_or("listener index")?;
                if addr.v6 && !l.vip.v6 {
                    return Err("address family (an IPv6 backend behind an IPv4 VIP)");
                }
                Ok(BackendRec {
                    listener,
                    addr,
                    port,
                })
            })())
        },
    )?;
    let locals = records(
        local_bytes,
        LOCAL_LEN,
        locals_at,
        Section::LocalAddress,
        Addr::read,
    )?;
    let parsed = Parsed {
        listeners,
        backends,
        locals,
        sessions4,
        sessions6,
        quarantine,
    };
    for (v6, at, section) in [
        (false, sessions4_at, Section::Session4),
        (true, sessions6_at, Section::Session6),
    ] {
        let (bytes, len) = parsed.session_bytes(v6);
        let mut offset = at;
        for (index, record) in (0u32..).zip(bytes.chunks_exact(len)) {
            parsed
                .check_session(record, v6)
                .map_err(|field| bad(section, index, field, offset))?;
            offset += len;
        }
    }
    let mut offset = quarantine_at;
    for (index, record) in (0u32..).zip(parsed.quarantine.chunks_exact(QUARANTINE_LEN)) {
        let held = read_quarantine(record).map(|q| q.remaining_ms);
        if !held.is_some_and(|ms| (1..=MAX_QUARANTINE_MS).contains(&ms)) {
            return Err(bad(Section::Quarantine, index, "time held", offset));
        }
        offset += QUARANTINE_LEN;
    }
    Ok(parsed)
}

fn bad(section: Section, index: u32, field: &'static str, offset: usize) -> SnapshotError {
    SnapshotError::BadField {
        section,
        index,
        field,
        offset,
    }
}

/// Decodes and checks the fixed-size records of one table: `read` returns
/// `None` if the record is too short (it never is: the lengths were
/// checked), or the record or the name of its bad field.
fn records<T>(
    bytes: &[u8],
    len: usize,
    at: usize,
    section: Section,
    mut read: impl FnMut(&mut Fields<'_>) -> Option<Result<T, &'static str>>,
) -> Result<Vec<T>, SnapshotError> {
    let mut out = Vec::with_capacity(bytes.len() / len.max(1));
    for (index, record) in (0u32..).zip(bytes.chunks_exact(len)) {
        let offset = at + index as usize * len;
        let value = read(&mut Fields(record))
            .unwrap_or(Err("length"))
            .map_err(|field| bad(section, index, field, offset))?;
        out.push(value);
    }
    Ok(out)
}

impl Parsed<'_> {
    /// The session records of IPv4 clients or IPv6 ones, and their length.
    fn session_bytes(&self, v6: bool) -> (&[u8], usize) {
        if v6 {
            (self.sessions6, SESSION6_LEN)
        } else {
            (self.sessions4, SESSION4_LEN)
        }
    }

    /// Every session record, IPv4 clients first. Only valid records are
    /// here: [`parse`] checked them all.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = SessionRec> + '_ {
        [false, true].into_iter().flat_map(move |v6| {
            let (bytes, len) = self.session_bytes(v6);
            bytes
                .chunks_exact(len)
                .filter_map(move |r| read_session(r, v6))
        })
    }

    /// Every quarantine record.
    pub(crate) fn quarantine(&self) -> impl Iterator<Item = QuarantineRec> + '_ {
        self.quarantine
            .chunks_exact(QUARANTINE_LEN)
            .filter_map(read_quarantine)
    }

    /// The number of session records.
    pub(crate) fn session_count(&self) -> u32 {
        let n = self.sessions4.len() / SESSION4_LEN + self.sessions6.len() / SESSION6_LEN;
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// The protocol of a session record's listener, through its backend.
    pub(crate) fn protocol(&self, s: &SessionRec) -> Option<u8> {
        let b = self.backends.get(s.backend as usize)?;
        Some(self.listeners.get(b.listener as usize)?.proto)
    }

    /// Checks one session record: the name of its bad field, if any.
    fn check_session(&self, record: &[u8], v6: bool) -> Result<(), &'static str> {
        let s = read_session(record, v6).ok_or("length")?;
        let b = self
            .backends
            .get(s.backend as usize)
            .ok_or("backend index")?;
        let l = self
            .listeners
            .get(b.listener as usize)
            .ok_or("backend index")?;
        if l.vip.v6 != v6 {
            return Err("backend index (a listener of the other client family)");
        }
        let lip = self
            .locals
            .get(s.lip as usize)
            .ok_or("local address index")?;
        if lip.v6 != b.addr.v6 {
            return Err("local address index (not of the backend's family)");
        }
        if s.lport == 0 {
            return Err("local port");
        }
        if s.remaining_ms > MAX_SESSION_MS {
            return Err("lifetime");
        }
        if l.proto == wire::PROTO_UDP {
            if s.flags != 0 {
                return Err("flags (UDP)");
            }
            if (s.c_next, s.c_ack, s.s_next, s.s_ack) != (0, 0, 0, 0) {
                return Err("sequence numbers (UDP)");
            }
        } else if !tcp_flags_valid(s.flags) {
            return Err("flags");
        }
        Ok(())
    }
}

/// Whether a session's TCP flags are a combination that tracking can
/// reach: data after the SYN-ACK and an established handshake need the
/// SYN-ACK, an acknowledged FIN needs that FIN.
fn tcp_flags_valid(flags: u8) -> bool {
    let needs = [
        (flag::SERVER_SENT, flag::SYNACK),
        (flag::ESTABLISHED, flag::SYNACK),
        (flag::CLIENT_FIN_ACKED, flag::CLIENT_FIN),
        (flag::SERVER_FIN_ACKED, flag::SERVER_FIN),
    ];
    needs
        .iter()
        .all(|&(bit, needed)| flags & bit == 0 || flags & needed != 0)
}

fn read_session(record: &[u8], v6: bool) -> Option<SessionRec> {
    let mut f = Fields(record);
    let mut s = SessionRec {
        backend: f.u32()?,
        lip: f.u32()?,
        cport: f.u16()?,
        lport: f.u16()?,
        flags: f.u8()?,
        remaining_ms: f.u32()?,
        c_next: f.u32()?,
        c_ack: f.u32()?,
        s_next: f.u32()?,
        s_ack: f.u32()?,
        client: [0; 16],
    };
    if v6 {
        s.client = f.take::<16>()?;
    } else {
        let [c0, c1, c2, c3, ..] = &mut s.client;
        [*c0, *c1, *c2, *c3] = f.take::<4>()?;
    }
    f.0.is_empty().then_some(s)
}

fn read_quarantine(record: &[u8]) -> Option<QuarantineRec> {
    let mut f = Fields(record);
    let q = QuarantineRec {
        fingerprint: f.u64()?,
        remaining_ms: f.u32()?,
    };
    f.0.is_empty().then_some(q)
}

/// A cursor over a record's bytes.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

/// Writes a snapshot: the header first, the records in order, then
/// [`Writer::finish`] for the checksum.
pub(crate) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> Writer<'a> {
    /// Starts a snapshot at the end of `out`, with room reserved for all
    /// of it.
    pub(crate) fn new(out: &'a mut Vec<u8>, seed: u64, counts: &Counts) -> Writer<'a> {
        let start = out.len();
        out.reserve(usize::try_from(counts.snapshot_len()).unwrap_or(0));
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&seed.to_le_bytes());
        for count in [
            counts.listeners,
            counts.backends,
            counts.locals,
            counts.sessions4,
            counts.sessions6,
            counts.quarantine,
        ] {
            out.extend_from_slice(&count.to_le_bytes());
        }
        Writer { out, start }
    }

    pub(crate) fn listener(&mut self, l: &ListenerRec) {
        l.vip.write(self.out);
        self.out.push(l.proto);
        self.out.extend_from_slice(&l.port.to_le_bytes());
    }

    pub(crate) fn backend(&mut self, b: &BackendRec) {
        self.out.extend_from_slice(&b.listener.to_le_bytes());
        b.addr.write(self.out);
        self.out.extend_from_slice(&b.port.to_le_bytes());
    }

    pub(crate) fn local(&mut self, a: Addr) {
        a.write(self.out);
    }

    /// A session record of the section `v6` says.
    pub(crate) fn session(&mut self, s: &SessionRec, v6: bool) {
        let out = &mut *self.out;
        out.extend_from_slice(&s.backend.to_le_bytes());
        out.extend_from_slice(&s.lip.to_le_bytes());
        out.extend_from_slice(&s.cport.to_le_bytes());
        out.extend_from_slice(&s.lport.to_le_bytes());
        out.push(s.flags);
        for word in [s.remaining_ms, s.c_next, s.c_ack, s.s_next, s.s_ack] {
            out.extend_from_slice(&word.to_le_bytes());
        }
        let [c0, c1, c2, c3, ..] = s.client;
        if v6 {
            out.extend_from_slice(&s.client);
        } else {
            out.extend_from_slice(&[c0, c1, c2, c3]);
        }
    }

    pub(crate) fn quarantine(&mut self, q: &QuarantineRec) {
        self.out.extend_from_slice(&q.fingerprint.to_le_bytes());
        self.out.extend_from_slice(&q.remaining_ms.to_le_bytes());
    }

    /// Appends the checksum.
    pub(crate) fn finish(self) {
        let crc = crc32fast::hash(self.out.get(self.start..).unwrap_or_default());
        self.out.extend_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use alloc::vec;

    const SEED: u64 = 0x0102_0304_0506_0708;

    /// The header of an empty snapshot, and its checksum (computed apart,
    /// with Python's `zlib.crc32`).
    const EMPTY: [u8; 44] = [
        b'L', b'B', b'S', b'N', 1, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, //
        114, 77, 52, 235,
    ];

    fn v4(a: [u8; 4]) -> Addr {
        Addr::of(IpAddr::V4(Ipv4Addr::from(a)))
    }

    #[test]
    fn an_empty_snapshot_is_these_bytes() {
        let mut out = vec![0xAA]; // written after what is there
        Writer::new(&mut out, SEED, &Counts::default()).finish();
        assert_eq!(out.get(1..), Some(&EMPTY[..]));
        let p = parse(&EMPTY).unwrap();
        assert!(p.listeners.is_empty() && p.backends.is_empty() && p.locals.is_empty());
        assert_eq!((p.sessions().count(), p.quarantine().count()), (0, 0));
        assert_eq!(snapshot_hash_seed(&EMPTY), Ok(SEED));
        assert_eq!(
            snapshot_hash_seed(&EMPTY[..15]),
            Err(SnapshotError::Truncated {
                len: 15,
                expected: 44
            })
        );
    }

    #[test]
    fn records_are_written_as_documented_and_read_back() {
        let counts = Counts {
            listeners: 1,
            backends: 1,
            locals: 1,
            sessions4: 1,
            quarantine: 1,
            ..Counts::default()
        };
        let listener = ListenerRec {
            vip: v4([198, 51, 100, 1]),
            proto: wire::PROTO_TCP,
            port: 80,
        };
        let backend = BackendRec {
            listener: 0,
            addr: v4([10, 0, 0, 2]),
            port: 8080,
        };
        let session = SessionRec {
            backend: 0,
            lip: 0,
            cport: 40000,
            lport: 50000,
            flags: flag::SYNACK | flag::ESTABLISHED,
            remaining_ms: 60000,
            c_next: 1,
            c_ack: 2,
            s_next: 3,
            s_ack: 4,
            client: [192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        let q = QuarantineRec {
            fingerprint: 0xdead_beef,
            remaining_ms: 1000,
        };
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out, SEED, &counts);
        w.listener(&listener);
        w.backend(&backend);
        w.local(v4([10, 0, 0, 100]));
        w.session(&session, false);
        w.quarantine(&q);
        w.finish();
        assert_eq!(out.len() as u64, counts.snapshot_len());
        // The same record built apart from the format's table (Python's
        // struct and zlib.crc32) ends in the same checksum.
        assert_eq!(
            out.get(out.len() - 4..),
            Some(&0x9611_3bdfu32.to_le_bytes()[..])
        );
        // Fields where the module documentation says: the listener's
        // protocol and port, the backend's port, the session's lifetime.
        let le16 = |v: u16| v.to_le_bytes();
        assert_eq!(out.get(HEADER_LEN + 17), Some(&wire::PROTO_TCP));
        assert_eq!(
            out.get(HEADER_LEN + 18..HEADER_LEN + 20),
            Some(&le16(80)[..])
        );
        let at = HEADER_LEN + LISTENER_LEN;
        assert_eq!(out.get(at + 21..at + 23), Some(&le16(8080)[..]));
        let at = HEADER_LEN + LISTENER_LEN + BACKEND_LEN + LOCAL_LEN;
        assert_eq!(out.get(at + 13..at + 17), Some(&60000u32.to_le_bytes()[..]));

        let p = parse(&out).unwrap();
        assert_eq!(p.listeners, [listener]);
        assert_eq!(p.backends, [backend]);
        assert_eq!(p.locals, [v4([10, 0, 0, 100])]);
        assert_eq!(p.sessions().collect::<Vec<_>>(), [session]);
        assert_eq!(p.quarantine().collect::<Vec<_>>(), [q]);
        assert_eq!(p.session_count(), 1);
        assert_eq!(p.protocol(&session), Some(wire::PROTO_TCP));
    }

    /// Exactly the flag combinations that tracking can reach are valid:
    /// every combination reached by any sequence of segments.
    #[test]
    fn valid_flags_are_the_reachable_ones() {
        use crate::session::Session;
        use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
        let segments = [SYN, SYN | ACK, ACK, FIN | ACK, RST, RST | ACK, FIN];
        let mut reached = [false; 256];
        let mut frontier = vec![0u8];
        reached[0] = true;
        while let Some(flags) = frontier.pop() {
            for &seg in &segments {
                for client in [true, false] {
                    for len in [0, 1] {
                        let mut s = Session {
                            flags,
                            ..Session::default()
                        };
                        if client {
                            s.track_client(seg, 0, 0, len);
                        } else {
                            s.track_server(seg, 0, 0, len);
                        }
                        if !reached[usize::from(s.flags)] {
                            reached[usize::from(s.flags)] = true;
                            frontier.push(s.flags);
                        }
                    }
                }
            }
        }
        for flags in 0..=255u8 {
            assert_eq!(
                tcp_flags_valid(flags),
                reached[usize::from(flags)],
                "{flags:#010b}"
            );
        }
    }

    #[test]
    fn addresses_and_their_zero_bytes() {
        let v6 = Addr::of(IpAddr::V6(Ipv6Addr::LOCALHOST));
        for a in [v4([10, 0, 0, 1]), v6] {
            let mut out = Vec::new();
            a.write(&mut out);
            assert_eq!(Addr::read(&mut Fields(&out)), Some(Ok(a)));
            assert_eq!(Addr::ip(a), Addr::of(a.ip()).ip());
        }
        let mut bytes = [0u8; 17];
        bytes[0] = 4;
        bytes[16] = 1;
        assert!(matches!(Addr::read(&mut Fields(&bytes)), Some(Err(_))));
        assert_eq!(Addr::read(&mut Fields(&bytes[..16])), None);
    }
}
