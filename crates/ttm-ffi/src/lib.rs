//! The C ABI over `ttm-core` and `lb-engine`: `libttm.a`, `libttm.so` and
//! the header `include/ttm.h`, generated from this file by cbindgen (pinned
//! in `scripts/setup`, configured by `crates/ttm-ffi/cbindgen.toml`).
//!
//! Conventions, in the manner of rustls-ffi, the same in every function:
//! - every function returns a [`ttm_result`] (except the few that return
//!   static text or a count) and writes its outputs, through the `*_out`
//!   pointers, only when it returns `TTM_RESULT_OK`;
//! - a NULL pointer where one is needed gives `TTM_RESULT_NULL_PARAMETER`,
//!   an out-of-range number `TTM_RESULT_INVALID_ARGUMENT`; a (pointer,
//!   length) pair may be NULL when the length is 0;
//! - opaque handles come from `ttm_<type>_new` and go back with
//!   `ttm_<type>_free`, which does nothing with NULL;
//! - every body runs behind a panic boundary: a panic becomes
//!   `TTM_RESULT_PANIC`, never an unwind into C;
//! - nothing keeps a pointer it was given after it returns, except the
//!   handle itself.
//!
//! The decoding is `ttm-core`'s and the packet work `lb-engine`'s; this
//! crate converts arguments and results only. Its one error mapping from
//! `ttm-core` is `core_error`, the same causes as the Python binding's
//! exception classes.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;
use std::ffi::{CString, c_char, c_int};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;

use lb_engine::{
    Affinity, BackendConfig, ChecksumPolicy, ConfigError, DropReason, Engine, EngineConfig, Frame,
    Instant, ListenerConfig, LocalPool, Protocol, SchedulerKind, Timeouts, Traffic, TtmConfig,
    Verdict,
};
use ttm_core::{Error, KindSet, PeerRecord, TtmOption};

// ----- results -----------------------------------------------------------

/// The result of every function of the library. The numbers are stable:
/// new causes get new numbers, none is ever renumbered.
///
/// 0 is success; 1-99 are the caller's mistakes and states of the call;
/// 100-199 are `ttm-core` decoding errors (one per cause); 200-299 are
/// engine configuration errors (one per cause).
/// `ttm_result_message(code)` gives a static description of each.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ttm_result {
    /// Success; the outputs were written.
    Ok = 0,
    /// A pointer that must not be NULL was NULL.
    NullParameter = 1,
    /// A number was out of range (family, protocol, scheduler, range in a
    /// buffer, ...).
    InvalidArgument = 2,
    /// The output buffer is too small for what is to be written.
    BufferTooSmall = 3,
    /// The library panicked (a bug); the call had no effect on outputs.
    Panic = 4,
    /// `ttm_getpeer`: this host has no TTM decoder (the kernel answered
    /// `ENOPROTOOPT`); fall back to `getpeername`.
    NotAvailable = 5,
    /// `ttm_getpeer`: `getsockopt` failed otherwise; see `errno`.
    OsError = 6,
    /// `ttm_options_find`: the area holds no TTM option of an accepted kind.
    NotFound = 7,
    /// `ttm_engine_poll_timeout`: no deadline (the engine has no session).
    NoDeadline = 8,
    /// `ttm_engine_poll_transmit`: no packet is waiting.
    Empty = 9,

    /// The input ends before the structure it starts does.
    Truncated = 100,
    /// The option's length byte is neither 8 (IPv4) nor 20 (IPv6).
    BadLength = 101,
    /// The option's kind is not one of the accepted kinds.
    KindNotAccepted = 102,
    /// The input is longer than the one option or record it should hold.
    TrailingBytes = 103,
    /// A TCP options area has an option of invalid length.
    MalformedOption = 104,
    /// A TCP option (or its length byte) runs past the end of the area.
    OptionOverrun = 105,
    /// A peer record's family is neither 2 (AF_INET) nor 10 (AF_INET6).
    BadFamily = 106,
    /// An IPv4 peer record has non-zero bytes after the address.
    NonZeroPadding = 107,
    /// A standard TCP option kind (0-5, 8) was given as a TTM kind.
    ReservedKind = 108,
    /// Another decoding error of `ttm-core`.
    CodecError = 199,

    /// Engine: a capacity is zero.
    ZeroCapacity = 200,
    /// Engine: the capacity is more than the session table can index.
    CapacityTooLarge = 201,
    /// Engine: the quarantine is longer than one hour.
    QuarantineTooLong = 202,
    /// Engine: not enough memory for the configured capacities.
    OutOfMemory = 203,
    /// Engine: sweep tick zero or above the sweep period.
    BadSweep = 204,
    /// A listener for this VIP, port and protocol exists already.
    DuplicateListener = 205,
    /// A local address is also a VIP.
    LocalIsVip = 206,
    /// The backend (address and port) is in the pool already.
    DuplicateBackend = 207,
    /// The backend has no local address of its family.
    NoLocalAddressFor = 208,
    /// An IPv6 backend behind an IPv4 VIP is not supported.
    Ipv6Unsupported = 209,
    /// A timeout is zero or above 24 days.
    BadTimeout = 210,
    /// No listener of this id.
    NoSuchListener = 211,
    /// No backend of this id in the listener.
    NoSuchBackend = 212,
    /// Too many listeners.
    TooManyListeners = 213,
    /// The listener's TTM option kind is a standard TCP option kind.
    BadTtmKind = 214,
    /// The scheduler settings cannot be used (Maglev table size).
    Scheduler = 215,
    /// The local address pool is invalid (no address, duplicate, unusable
    /// address, empty port range).
    LocalPool = 216,
    /// Another configuration error of the engine.
    ConfigError = 299,
}

impl ttm_result {
    const ALL: &'static [ttm_result] = &[
        ttm_result::Ok,
        ttm_result::NullParameter,
        ttm_result::InvalidArgument,
        ttm_result::BufferTooSmall,
        ttm_result::Panic,
        ttm_result::NotAvailable,
        ttm_result::OsError,
        ttm_result::NotFound,
        ttm_result::NoDeadline,
        ttm_result::Empty,
        ttm_result::Truncated,
        ttm_result::BadLength,
        ttm_result::KindNotAccepted,
        ttm_result::TrailingBytes,
        ttm_result::MalformedOption,
        ttm_result::OptionOverrun,
        ttm_result::BadFamily,
        ttm_result::NonZeroPadding,
        ttm_result::ReservedKind,
        ttm_result::CodecError,
        ttm_result::ZeroCapacity,
        ttm_result::CapacityTooLarge,
        ttm_result::QuarantineTooLong,
        ttm_result::OutOfMemory,
        ttm_result::BadSweep,
        ttm_result::DuplicateListener,
        ttm_result::LocalIsVip,
        ttm_result::DuplicateBackend,
        ttm_result::NoLocalAddressFor,
        ttm_result::Ipv6Unsupported,
        ttm_result::BadTimeout,
        ttm_result::NoSuchListener,
        ttm_result::NoSuchBackend,
        ttm_result::TooManyListeners,
        ttm_result::BadTtmKind,
        ttm_result::Scheduler,
        ttm_result::LocalPool,
        ttm_result::ConfigError,
    ];

    fn message(self) -> &'static core::ffi::CStr {
        match self {
            ttm_result::Ok => c"success",
            ttm_result::NullParameter => c"a required pointer was NULL",
            ttm_result::InvalidArgument => c"an argument is out of range",
            ttm_result::BufferTooSmall => c"output buffer too small",
            ttm_result::Panic => c"internal error: the library panicked",
            ttm_result::NotAvailable => {
                c"no TTM decoder on this host (getsockopt(SOL_IP, 1345): ENOPROTOOPT); use getpeername"
            }
            ttm_result::OsError => c"getsockopt failed; see errno",
            ttm_result::NotFound => c"no TTM option of an accepted kind",
            ttm_result::NoDeadline => c"no deadline: the engine has no session",
            ttm_result::Empty => c"no packet waiting",
            ttm_result::Truncated => c"truncated: the input ends before the structure does",
            ttm_result::BadLength => {
                c"option length is neither 8 (IPv4 client) nor 20 (IPv6 client)"
            }
            ttm_result::KindNotAccepted => c"option kind is not an accepted TTM kind",
            ttm_result::TrailingBytes => c"input longer than the one structure it should hold",
            ttm_result::MalformedOption => c"TCP option of invalid length",
            ttm_result::OptionOverrun => c"TCP option runs past the end of the options area",
            ttm_result::BadFamily => {
                c"address family is neither 2 (AF_INET) nor 10 (AF_INET6)"
            }
            ttm_result::NonZeroPadding => c"IPv4 peer record has non-zero padding",
            ttm_result::ReservedKind => {
                c"a standard TCP option kind (0-5, 8) cannot be a TTM kind"
            }
            ttm_result::CodecError => c"invalid TTM bytes",
            ttm_result::ZeroCapacity => c"capacity must be above zero",
            ttm_result::CapacityTooLarge => {
                c"capacity is more than the session table can index"
            }
            ttm_result::QuarantineTooLong => c"quarantine longer than one hour",
            ttm_result::OutOfMemory => c"not enough memory for the configured capacities",
            ttm_result::BadSweep => {
                c"sweep tick must be above zero and at most the sweep period"
            }
            ttm_result::DuplicateListener => c"a listener for this VIP, port and protocol exists",
            ttm_result::LocalIsVip => c"a local address is also a VIP",
            ttm_result::DuplicateBackend => c"backend is in the pool already",
            ttm_result::NoLocalAddressFor => c"backend has no local address of its family",
            ttm_result::Ipv6Unsupported => c"an IPv6 backend behind an IPv4 VIP is not supported",
            ttm_result::BadTimeout => c"timeouts must be above zero and at most 24 days",
            ttm_result::NoSuchListener => c"no such listener",
            ttm_result::NoSuchBackend => c"no such backend",
            ttm_result::TooManyListeners => c"too many listeners",
            ttm_result::BadTtmKind => c"TTM option kind is a standard TCP option kind",
            ttm_result::Scheduler => c"invalid scheduler settings (Maglev table size)",
            ttm_result::LocalPool => c"invalid local address pool",
            ttm_result::ConfigError => c"invalid engine configuration",
        }
    }
}

/// The one place where a `ttm-core` error becomes a result code: one code
/// per cause.
fn core_error(error: Error) -> ttm_result {
    match error {
        Error::Truncated { .. } => ttm_result::Truncated,
        Error::BadLength { .. } => ttm_result::BadLength,
        Error::KindNotAccepted { .. } => ttm_result::KindNotAccepted,
        Error::TrailingBytes { .. } => ttm_result::TrailingBytes,
        Error::MalformedOption { .. } => ttm_result::MalformedOption,
        Error::OptionOverrun { .. } => ttm_result::OptionOverrun,
        Error::BadFamily { .. } => ttm_result::BadFamily,
        Error::NonZeroPadding { .. } => ttm_result::NonZeroPadding,
        Error::ReservedKind { .. } => ttm_result::ReservedKind,
        Error::BufferTooSmall { .. } => ttm_result::BufferTooSmall,
        _ => ttm_result::CodecError,
    }
}

/// The one place where an engine configuration error becomes a result code.
fn config_error(error: ConfigError) -> ttm_result {
    match error {
        ConfigError::ZeroCapacity => ttm_result::ZeroCapacity,
        ConfigError::CapacityTooLarge(_) => ttm_result::CapacityTooLarge,
        ConfigError::QuarantineTooLong(_) => ttm_result::QuarantineTooLong,
        ConfigError::OutOfMemory => ttm_result::OutOfMemory,
        ConfigError::BadSweep => ttm_result::BadSweep,
        ConfigError::DuplicateListener { .. } => ttm_result::DuplicateListener,
        ConfigError::LocalIsVip(_) => ttm_result::LocalIsVip,
        ConfigError::DuplicateBackend { .. } => ttm_result::DuplicateBackend,
        ConfigError::NoLocalAddressFor(_) => ttm_result::NoLocalAddressFor,
        ConfigError::Ipv6Unsupported(_) => ttm_result::Ipv6Unsupported,
        ConfigError::BadTimeout => ttm_result::BadTimeout,
        ConfigError::NoSuchListener(_) => ttm_result::NoSuchListener,
        ConfigError::NoSuchBackend { .. } => ttm_result::NoSuchBackend,
        ConfigError::TooManyListeners => ttm_result::TooManyListeners,
        ConfigError::BadTtmKind(_) => ttm_result::BadTtmKind,
        ConfigError::Scheduler(_) => ttm_result::Scheduler,
        ConfigError::LocalPool(_) => ttm_result::LocalPool,
        _ => ttm_result::ConfigError,
    }
}

/// Static text describing a result code: never NULL, owned by the library
/// (do not free). Unknown codes give "unknown result code".
#[unsafe(no_mangle)]
pub extern "C" fn ttm_result_message(code: u32) -> *const c_char {
    catch_unwind(|| {
        ttm_result::ALL
            .iter()
            .find(|r| **r as u32 == code)
            .map_or(c"unknown result code", |r| r.message())
            .as_ptr()
    })
    .unwrap_or(c"internal error: the library panicked".as_ptr())
}

/// Run `body` behind the panic boundary.
fn guard(body: impl FnOnce() -> Result<(), ttm_result>) -> ttm_result {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => ttm_result::Ok,
        Ok(Err(code)) => code,
        Err(_) => ttm_result::Panic,
    }
}

// ----- pointer helpers ----------------------------------------------------

/// `p` as a shared reference, or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `p` is NULL or valid for reads of a `T` for `'a`.
unsafe fn in_ref<'a, T>(p: *const T) -> Result<&'a T, ttm_result> {
    // SAFETY: the caller's contract: NULL or valid and aligned.
    unsafe { p.as_ref() }.ok_or(ttm_result::NullParameter)
}

/// `p` as an exclusive reference, or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `p` is NULL or valid for reads and writes of a `T` for `'a`, unaliased.
unsafe fn in_mut<'a, T>(p: *mut T) -> Result<&'a mut T, ttm_result> {
    // SAFETY: the caller's contract: NULL or valid, aligned and unaliased.
    unsafe { p.as_mut() }.ok_or(ttm_result::NullParameter)
}

/// Checks that an output pointer is not NULL, before any work is done.
fn out_ptr<T>(p: *mut T) -> Result<*mut T, ttm_result> {
    if p.is_null() {
        Err(ttm_result::NullParameter)
    } else {
        Ok(p)
    }
}

/// Write `value` through an output pointer checked by [`out_ptr`].
///
/// # Safety
/// `p` is non-NULL, aligned and valid for writes of a `T`.
unsafe fn put<T>(p: *mut T, value: T) {
    // SAFETY: the caller's contract; `write` does not read or drop the old
    // (possibly uninitialised) value.
    unsafe { p.write(value) }
}

/// A (pointer, length) pair as a slice; NULL is allowed when `len` is 0.
///
/// # Safety
/// When `len > 0`, `p` is NULL or valid for reads of `len` bytes for `'a`.
unsafe fn in_slice<'a, T>(p: *const T, len: usize) -> Result<&'a [T], ttm_result> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(ttm_result::NullParameter);
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(ttm_result::InvalidArgument);
    }
    // SAFETY: non-NULL, and the caller's contract says valid for `len`.
    Ok(unsafe { core::slice::from_raw_parts(p, len) })
}

/// A (pointer, length) pair as a mutable byte slice; NULL is allowed when
/// `len` is 0.
///
/// # Safety
/// When `len > 0`, `p` is NULL or valid for reads and writes of `len` bytes
/// for `'a`, and no other reference to them exists.
unsafe fn out_slice<'a>(p: *mut u8, len: usize) -> Result<&'a mut [u8], ttm_result> {
    if len == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(ttm_result::NullParameter);
    }
    if len > isize::MAX as usize {
        return Err(ttm_result::InvalidArgument);
    }
    // SAFETY: non-NULL, and the caller's contract says valid and unaliased.
    Ok(unsafe { core::slice::from_raw_parts_mut(p, len) })
}

// ----- addresses -----------------------------------------------------------

/// `AF_INET` on Linux: an IPv4 address in `addr[0..4]`.
pub const TTM_AF_INET: u16 = 2;
/// `AF_INET6` on Linux: an IPv6 address in `addr[0..16]`.
pub const TTM_AF_INET6: u16 = 10;

/// An IP address: `family` is `TTM_AF_INET` (address in `addr[0..4]`, the
/// rest zero) or `TTM_AF_INET6`; network byte order. A plain value, owned
/// by whoever holds it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ttm_addr {
    /// `TTM_AF_INET` (2) or `TTM_AF_INET6` (10).
    pub family: u16,
    /// The address bytes, network order.
    pub addr: [u8; 16],
}

/// A client's address and port, as a TTM option or a peer record carries
/// it: `family` is `TTM_AF_INET` or `TTM_AF_INET6`, `port` in **host**
/// byte order, `addr` as in `ttm_addr`. A plain value.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ttm_peer {
    /// `TTM_AF_INET` (2) or `TTM_AF_INET6` (10).
    pub family: u16,
    /// The port, host byte order.
    pub port: u16,
    /// The address bytes, network order; IPv4 in `addr[0..4]`, zeros after.
    pub addr: [u8; 16],
}

fn addr_to_c(ip: IpAddr) -> ttm_addr {
    let mut addr = [0u8; 16];
    let family = match ip {
        IpAddr::V4(v4) => {
            if let Some(head) = addr.get_mut(..4) {
                head.copy_from_slice(&v4.octets());
            }
            TTM_AF_INET
        }
        IpAddr::V6(v6) => {
            addr = v6.octets();
            TTM_AF_INET6
        }
    };
    ttm_addr { family, addr }
}

fn addr_from_c(family: u16, addr: &[u8; 16]) -> Result<IpAddr, ttm_result> {
    match family {
        TTM_AF_INET => {
            let [a, b, c, d, ..] = *addr;
            Ok(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
        }
        TTM_AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(*addr))),
        _ => Err(ttm_result::InvalidArgument),
    }
}

fn peer_to_c(client: SocketAddr) -> ttm_peer {
    let a = addr_to_c(client.ip());
    ttm_peer {
        family: a.family,
        port: client.port(),
        addr: a.addr,
    }
}

fn peer_from_c(peer: &ttm_peer) -> Result<SocketAddr, ttm_result> {
    Ok(SocketAddr::new(
        addr_from_c(peer.family, &peer.addr)?,
        peer.port,
    ))
}

// ----- codec ----------------------------------------------------------------

/// The option kind used unless configured otherwise (254).
pub const TTM_DEFAULT_KIND: u8 = 254;
/// The length of a TTM option for an IPv4 client.
pub const TTM_OPTION_V4_LEN: usize = 8;
/// The length of a TTM option for an IPv6 client.
pub const TTM_OPTION_V6_LEN: usize = 20;
/// The length of the peer record of `getsockopt(SOL_IP, TTM_SO_GET_PEER)`.
pub const TTM_PEER_RECORD_LEN: usize = 20;
/// The socket level of the peer query (`IPPROTO_IP`).
pub const TTM_SOL_IP: c_int = 0;
/// The socket option number of the peer query.
pub const TTM_SO_GET_PEER: c_int = 1345;

const _: () = {
    assert!(TTM_DEFAULT_KIND == ttm_core::DEFAULT_KIND);
    assert!(TTM_OPTION_V4_LEN == ttm_core::V4_LEN);
    assert!(TTM_OPTION_V6_LEN == ttm_core::V6_LEN);
    assert!(TTM_PEER_RECORD_LEN == ttm_core::PEER_RECORD_LEN);
    assert!(TTM_SOL_IP == ttm_core::SOL_IP);
    assert!(TTM_SO_GET_PEER == ttm_core::TTM_SO_GET_PEER);
    assert!(TTM_AF_INET == ttm_core::AF_INET);
    assert!(TTM_AF_INET6 == ttm_core::AF_INET6);
};

/// The accepted kinds from a (pointer, length) pair.
///
/// # Safety
/// As [`in_slice`].
unsafe fn kinds(kinds: *const u8, kinds_len: usize) -> Result<KindSet, ttm_result> {
    // SAFETY: the caller's contract, passed on.
    let kinds = unsafe { in_slice(kinds, kinds_len) }?;
    KindSet::new(kinds).map_err(core_error)
}

/// Write the TTM option of `kind` carrying `client` at the start of `buf`.
///
/// `client` is read only (borrowed for the call); `buf` (`buf_len` bytes,
/// owned by the caller) receives 8 bytes for an IPv4 client, 20 for IPv6,
/// and `*written_out` their number.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` (client family); `TTM_RESULT_RESERVED_KIND`
/// (kind 0-5 or 8); `TTM_RESULT_BUFFER_TOO_SMALL` (nothing written).
///
/// # Safety
/// Pointers NULL or valid as described.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_option_encode(
    kind: u8,
    client: *const ttm_peer,
    buf: *mut u8,
    buf_len: usize,
    written_out: *mut usize,
) -> ttm_result {
    guard(|| {
        // SAFETY: `client` is NULL or valid, by the function's contract.
        let client = peer_from_c(unsafe { in_ref(client) }?)?;
        let written_out = out_ptr(written_out)?;
        KindSet::new(&[kind]).map_err(core_error)?;
        // SAFETY: `buf` is NULL or valid for `buf_len` bytes.
        let buf = unsafe { out_slice(buf, buf_len) }?;
        let option = TtmOption::new(kind, client);
        option.emit(buf).map_err(core_error)?;
        // SAFETY: checked non-NULL above; valid by contract.
        unsafe { put(written_out, option.buffer_len()) };
        Ok(())
    })
}

/// Decode `buf` (`buf_len` bytes), which must hold exactly one TTM option
/// of a kind among `kinds` (`kinds_len` bytes; NULL allowed when 0, the
/// empty set, which accepts nothing).
///
/// On success writes the client to `*out` and the option's kind to
/// `*kind_out` (which may be NULL when not wanted). Inputs are borrowed for
/// the call only.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_RESERVED_KIND` (a standard kind among `kinds`); or the
/// decoding error: `TTM_RESULT_TRUNCATED`, `TTM_RESULT_KIND_NOT_ACCEPTED`,
/// `TTM_RESULT_BAD_LENGTH`, `TTM_RESULT_TRAILING_BYTES`.
///
/// # Safety
/// Pointers NULL or valid as described.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_option_decode(
    buf: *const u8,
    buf_len: usize,
    kinds: *const u8,
    kinds_len: usize,
    kind_out: *mut u8,
    out: *mut ttm_peer,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let bytes = unsafe { in_slice(buf, buf_len) }?;
        // SAFETY: by the function's contract.
        let accept = unsafe { self::kinds(kinds, kinds_len) }?;
        let out = out_ptr(out)?;
        let option = TtmOption::decode(bytes, &accept).map_err(core_error)?;
        // SAFETY: `out` checked non-NULL; `kind_out` written only when not
        // NULL; both valid by contract.
        unsafe {
            put(out, peer_to_c(option.client()));
            if !kind_out.is_null() {
                put(kind_out, option.kind());
            }
        }
        Ok(())
    })
}

/// Find the first TTM option of a kind among `kinds` in a TCP header's
/// options area (`area`, `area_len` bytes: what follows the 20 fixed
/// bytes). Writes the client to `*out` and the kind to `*kind_out` (may be
/// NULL) when found.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NOT_FOUND` when the area holds no
/// accepted TTM option (nothing written); `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_RESERVED_KIND`; or the decoding error of the walk
/// (`TTM_RESULT_MALFORMED_OPTION`, `TTM_RESULT_OPTION_OVERRUN`, ...).
///
/// # Safety
/// Pointers NULL or valid as described.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_options_find(
    area: *const u8,
    area_len: usize,
    kinds: *const u8,
    kinds_len: usize,
    kind_out: *mut u8,
    out: *mut ttm_peer,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let area = unsafe { in_slice(area, area_len) }?;
        // SAFETY: by the function's contract.
        let accept = unsafe { self::kinds(kinds, kinds_len) }?;
        let out = out_ptr(out)?;
        let option = ttm_core::find(area, &accept)
            .map_err(core_error)?
            .ok_or(ttm_result::NotFound)?;
        // SAFETY: `out` checked non-NULL; `kind_out` written only when not
        // NULL; both valid by contract.
        unsafe {
            put(out, peer_to_c(option.client()));
            if !kind_out.is_null() {
                put(kind_out, option.kind());
            }
        }
        Ok(())
    })
}

/// Write the 20-byte peer record of `peer` (what the RS's
/// `getsockopt(SOL_IP, 1345)` returns) at the start of `buf`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` (family); `TTM_RESULT_BUFFER_TOO_SMALL`
/// when `buf_len < TTM_PEER_RECORD_LEN` (nothing written).
///
/// # Safety
/// Pointers NULL or valid as described.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_peer_record_encode(
    peer: *const ttm_peer,
    buf: *mut u8,
    buf_len: usize,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let client = peer_from_c(unsafe { in_ref(peer) }?)?;
        // SAFETY: by the function's contract.
        let buf = unsafe { out_slice(buf, buf_len) }?;
        let out = buf
            .get_mut(..TTM_PEER_RECORD_LEN)
            .ok_or(ttm_result::BufferTooSmall)?;
        out.copy_from_slice(&PeerRecord::new(client).to_bytes());
        Ok(())
    })
}

/// Decode `buf`, which must hold exactly one 20-byte peer record, into
/// `*out`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`; or
/// `TTM_RESULT_TRUNCATED`, `TTM_RESULT_TRAILING_BYTES`,
/// `TTM_RESULT_BAD_FAMILY`, `TTM_RESULT_NON_ZERO_PADDING`.
///
/// # Safety
/// Pointers NULL or valid as described.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_peer_record_decode(
    buf: *const u8,
    buf_len: usize,
    out: *mut ttm_peer,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let bytes = unsafe { in_slice(buf, buf_len) }?;
        let out = out_ptr(out)?;
        let record = PeerRecord::from_bytes(bytes).map_err(core_error)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, peer_to_c(record.client())) };
        Ok(())
    })
}

/// On the real server: the client's address of the accepted TCP socket
/// `fd`, from `getsockopt(fd, SOL_IP, TTM_SO_GET_PEER)` decoded as a peer
/// record, into `*out`. `fd` stays the caller's.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NOT_AVAILABLE` when the host has no
/// TTM decoder (`ENOPROTOOPT`: fall back to `getpeername`);
/// `TTM_RESULT_OS_ERROR` when `getsockopt` fails otherwise (`errno` is
/// left as it set it); `TTM_RESULT_NULL_PARAMETER`; or a record decoding
/// error.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_getpeer(fd: c_int, out: *mut ttm_peer) -> ttm_result {
    guard(|| {
        let out = out_ptr(out)?;
        let mut buf = [0u8; TTM_PEER_RECORD_LEN];
        let mut len = TTM_PEER_RECORD_LEN as libc::socklen_t;
        // SAFETY: `buf` and `len` are live locals; the kernel writes at most
        // `len` bytes.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                TTM_SOL_IP,
                TTM_SO_GET_PEER,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            let errno = std::io::Error::last_os_error().raw_os_error();
            return Err(if errno == Some(libc::ENOPROTOOPT) {
                ttm_result::NotAvailable
            } else {
                ttm_result::OsError
            });
        }
        let got = buf.get(..len as usize).ok_or(ttm_result::Truncated)?;
        let record = PeerRecord::from_bytes(got).map_err(core_error)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, peer_to_c(record.client())) };
        Ok(())
    })
}

// ----- engine configuration -----------------------------------------------

/// `ttm_listener_config.protocol`: TCP (the IP protocol number).
pub const TTM_PROTOCOL_TCP: u8 = 6;
/// `ttm_listener_config.protocol`: UDP (the IP protocol number).
pub const TTM_PROTOCOL_UDP: u8 = 17;
/// `ttm_listener_config.scheduler`: smooth weighted round robin.
pub const TTM_SCHEDULER_ROUND_ROBIN: u8 = 0;
/// `ttm_listener_config.scheduler`: weighted least connections.
pub const TTM_SCHEDULER_LEAST_CONNECTIONS: u8 = 1;
/// `ttm_listener_config.scheduler`: weighted Maglev consistent hashing.
pub const TTM_SCHEDULER_MAGLEV: u8 = 2;
/// `ttm_listener_config.maglev_key`: hash the 5-tuple.
pub const TTM_MAGLEV_KEY_FIVE_TUPLE: u8 = 0;
/// `ttm_listener_config.maglev_key`: hash the client address only.
pub const TTM_MAGLEV_KEY_SOURCE_ADDRESS: u8 = 1;
/// `ttm_listener_config.verify_checksums`: the TCP or UDP checksum of each
/// packet that would start a session (the default).
pub const TTM_VERIFY_CHECKSUMS_NEW: u8 = 0;
/// `ttm_listener_config.verify_checksums`: of every packet, both ways.
pub const TTM_VERIFY_CHECKSUMS_ALL: u8 = 1;
/// `ttm_listener_config.verify_checksums`: of none.
pub const TTM_VERIFY_CHECKSUMS_OFF: u8 = 2;

/// The engine's settings, mirroring `lb_engine::EngineConfig`; durations in
/// milliseconds. Fill it with `ttm_engine_config_default`, then change what
/// you need. A plain value, read by `ttm_engine_new` during the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_engine_config {
    /// The most sessions at once (above zero).
    pub capacity: u32,
    /// The most client-to-backend affinity entries (above zero).
    pub affinity_capacity: u32,
    /// The seed of the table's hash.
    pub hash_seed: u64,
    /// The time over which the whole table is swept for idle sessions.
    pub sweep_period_ms: u64,
    /// The time between two `ttm_engine_handle_timeout` deadlines.
    pub sweep_tick_ms: u64,
    /// How long an ended session's tuple is kept from reuse (0: none).
    pub quarantine_ms: u64,
    /// The most quarantined tuples.
    pub quarantine_capacity: u32,
}

/// A listener's idle timeouts in milliseconds, mirroring
/// `lb_engine::Timeouts`; each above zero and at most 24 days.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_timeouts {
    /// An established TCP session.
    pub tcp_established_ms: u64,
    /// A TCP session whose handshake is not complete.
    pub syn_recv_ms: u64,
    /// After the first FIN.
    pub fin_wait_ms: u64,
    /// After the server's FIN only.
    pub close_wait_ms: u64,
    /// After both FINs, before the last ACK.
    pub last_ack_ms: u64,
    /// After the last ACK.
    pub time_wait_ms: u64,
    /// After an RST.
    pub close_ms: u64,
    /// A UDP session.
    pub udp_ms: u64,
}

/// A backend (real server), mirroring `lb_engine::BackendConfig`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_backend_config {
    /// The server's address.
    pub addr: ttm_addr,
    /// The server's port, host order.
    pub port: u16,
    /// The weight; 0 drains (default 1).
    pub weight: u16,
    /// Whether it may take new sessions (default true).
    pub up: bool,
}

/// A listener (a VIP and port), mirroring `lb_engine::ListenerConfig`.
/// Fill it with `ttm_listener_config_default`, then set the VIP, port and
/// local addresses. The arrays it points to are read by
/// `ttm_engine_add_listener` during the call only; the caller owns them.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_listener_config {
    /// The virtual IP address.
    pub vip: ttm_addr,
    /// The port, host order.
    pub port: u16,
    /// `TTM_PROTOCOL_TCP` or `TTM_PROTOCOL_UDP`.
    pub protocol: u8,
    /// `TTM_SCHEDULER_ROUND_ROBIN`, `_LEAST_CONNECTIONS` or `_MAGLEV`.
    pub scheduler: u8,
    /// Maglev only: the lookup table size, a prime in 3..=2^24 (65537).
    pub maglev_table_size: u32,
    /// Maglev only: `TTM_MAGLEV_KEY_FIVE_TUPLE` or `_SOURCE_ADDRESS`.
    pub maglev_key: u8,
    /// Source-address affinity timeout; 0 for no affinity.
    pub affinity_timeout_ms: u64,
    /// The idle timeouts.
    pub timeouts: ttm_timeouts,
    /// The local addresses (FULLNAT sources), `local_addrs_len` of them.
    pub local_addrs: *const ttm_addr,
    /// The number of `local_addrs`.
    pub local_addrs_len: usize,
    /// The lowest local port (default 1024; not 0).
    pub local_port_min: u16,
    /// The highest local port (default 65535).
    pub local_port_max: u16,
    /// Whether echo requests to the VIP are answered.
    pub ping: bool,
    /// Whether the TTM option is inserted (TCP).
    pub ttm_enabled: bool,
    /// The TTM option kind inserted (default 254).
    pub ttm_kind: u8,
    /// The kinds stripped from client packets (default 253, 254),
    /// `ttm_strip_kinds_len` of them; NULL allowed when 0.
    pub ttm_strip_kinds: *const u8,
    /// The number of `ttm_strip_kinds`.
    pub ttm_strip_kinds_len: usize,
    /// Whether TCP timestamps are stripped from SYNs.
    pub ttm_strip_timestamps: bool,
    /// Which packets have their TCP or UDP checksum verified (a wrong one
    /// is dropped as `bad_l4_checksum`): `TTM_VERIFY_CHECKSUMS_NEW` (those
    /// that would start a session, the default), `_ALL` or `_OFF`.
    pub verify_checksums: u8,
    /// The initial backends, `backends_len` of them; NULL allowed when 0.
    pub backends: *const ttm_backend_config,
    /// The number of `backends`.
    pub backends_len: usize,
}

static DEFAULT_STRIP_KINDS: [u8; 2] = [253, 254];

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Write the engine's defaults to `*out` (capacity 2^20, sweep period 1 s,
/// tick 100 ms, quarantine 120 s, ...).
///
/// Returns `TTM_RESULT_OK` or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_config_default(out: *mut ttm_engine_config) -> ttm_result {
    guard(|| {
        let out = out_ptr(out)?;
        let d = EngineConfig::default();
        let c = ttm_engine_config {
            capacity: d.capacity,
            affinity_capacity: d.affinity_capacity,
            hash_seed: d.hash_seed,
            sweep_period_ms: ms_of(d.sweep_period),
            sweep_tick_ms: ms_of(d.sweep_tick),
            quarantine_ms: ms_of(d.quarantine),
            quarantine_capacity: d.quarantine_capacity,
        };
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, c) };
        Ok(())
    })
}

/// Write a listener's defaults to `*out`: no VIP (family 0: set it), port
/// 0, TCP, round robin, the default timeouts, no local address (set them),
/// ports 1024-65535, ping on, TTM on with kind 254 stripping 253 and 254
/// (`ttm_strip_kinds` points at static memory of the library), checksums
/// of new sessions verified, no backend.
///
/// Returns `TTM_RESULT_OK` or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `out` is NULL or valid for writes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_listener_config_default(out: *mut ttm_listener_config) -> ttm_result {
    guard(|| {
        let out = out_ptr(out)?;
        let t = Timeouts::default();
        let ttm = TtmConfig::default();
        let c = ttm_listener_config {
            vip: ttm_addr::default(),
            port: 0,
            protocol: TTM_PROTOCOL_TCP,
            scheduler: TTM_SCHEDULER_ROUND_ROBIN,
            maglev_table_size: 65537,
            maglev_key: TTM_MAGLEV_KEY_FIVE_TUPLE,
            affinity_timeout_ms: 0,
            timeouts: ttm_timeouts {
                tcp_established_ms: ms_of(t.tcp_established),
                syn_recv_ms: ms_of(t.syn_recv),
                fin_wait_ms: ms_of(t.fin_wait),
                close_wait_ms: ms_of(t.close_wait),
                last_ack_ms: ms_of(t.last_ack),
                time_wait_ms: ms_of(t.time_wait),
                close_ms: ms_of(t.close),
                udp_ms: ms_of(t.udp),
            },
            local_addrs: core::ptr::null(),
            local_addrs_len: 0,
            local_port_min: *LocalPool::DEFAULT_PORTS.start(),
            local_port_max: *LocalPool::DEFAULT_PORTS.end(),
            ping: true,
            ttm_enabled: ttm.enabled,
            ttm_kind: ttm.kind,
            ttm_strip_kinds: DEFAULT_STRIP_KINDS.as_ptr(),
            ttm_strip_kinds_len: DEFAULT_STRIP_KINDS.len(),
            ttm_strip_timestamps: ttm.strip_timestamps,
            verify_checksums: TTM_VERIFY_CHECKSUMS_NEW,
            backends: core::ptr::null(),
            backends_len: 0,
        };
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, c) };
        Ok(())
    })
}

fn backend_from_c(b: &ttm_backend_config) -> Result<BackendConfig, ttm_result> {
    Ok(BackendConfig {
        addr: addr_from_c(b.addr.family, &b.addr.addr)?,
        port: b.port,
        weight: b.weight,
        up: b.up,
    })
}

/// # Safety
/// The pointers inside `c` are NULL or valid for their lengths.
unsafe fn listener_from_c(c: &ttm_listener_config) -> Result<ListenerConfig, ttm_result> {
    let vip = addr_from_c(c.vip.family, &c.vip.addr)?;
    let protocol = match c.protocol {
        TTM_PROTOCOL_TCP => Protocol::Tcp,
        TTM_PROTOCOL_UDP => Protocol::Udp,
        _ => return Err(ttm_result::InvalidArgument),
    };
    // SAFETY: by the function's contract.
    let locals = unsafe { in_slice(c.local_addrs, c.local_addrs_len) }?;
    let addresses = locals
        .iter()
        .map(|a| addr_from_c(a.family, &a.addr))
        .collect::<Result<Vec<_>, _>>()?;
    let mut local = LocalPool::new(addresses);
    local.ports = c.local_port_min..=c.local_port_max;
    let mut config = ListenerConfig::new(vip, c.port, protocol, local);
    config.scheduler = match c.scheduler {
        TTM_SCHEDULER_ROUND_ROBIN => SchedulerKind::RoundRobin,
        TTM_SCHEDULER_LEAST_CONNECTIONS => SchedulerKind::LeastConnections,
        TTM_SCHEDULER_MAGLEV => SchedulerKind::Maglev {
            table_size: c.maglev_table_size,
            key: match c.maglev_key {
                TTM_MAGLEV_KEY_FIVE_TUPLE => lb_engine::MaglevKey::FiveTuple,
                TTM_MAGLEV_KEY_SOURCE_ADDRESS => lb_engine::MaglevKey::SourceAddress,
                _ => return Err(ttm_result::InvalidArgument),
            },
        },
        _ => return Err(ttm_result::InvalidArgument),
    };
    config.affinity = (c.affinity_timeout_ms != 0).then(|| Affinity {
        timeout: ms(c.affinity_timeout_ms),
    });
    let t = &c.timeouts;
    config.timeouts = Timeouts {
        tcp_established: ms(t.tcp_established_ms),
        syn_recv: ms(t.syn_recv_ms),
        fin_wait: ms(t.fin_wait_ms),
        close_wait: ms(t.close_wait_ms),
        last_ack: ms(t.last_ack_ms),
        time_wait: ms(t.time_wait_ms),
        close: ms(t.close_ms),
        udp: ms(t.udp_ms),
    };
    config.ping = c.ping;
    // SAFETY: by the function's contract.
    let strip = unsafe { kinds(c.ttm_strip_kinds, c.ttm_strip_kinds_len) }?;
    config.ttm = TtmConfig {
        enabled: c.ttm_enabled,
        kind: c.ttm_kind,
        strip,
        strip_timestamps: c.ttm_strip_timestamps,
    };
    config.verify_checksums = match c.verify_checksums {
        TTM_VERIFY_CHECKSUMS_NEW => ChecksumPolicy::New,
        TTM_VERIFY_CHECKSUMS_ALL => ChecksumPolicy::All,
        TTM_VERIFY_CHECKSUMS_OFF => ChecksumPolicy::Off,
        _ => return Err(ttm_result::InvalidArgument),
    };
    // SAFETY: by the function's contract.
    let backends = unsafe { in_slice(c.backends, c.backends_len) }?;
    config.backends = backends
        .iter()
        .map(backend_from_c)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(config)
}

// ----- the engine handle ------------------------------------------------------

/// An engine: the sans-I/O FULLNAT packet engine of `lb-engine`. Opaque;
/// made by `ttm_engine_new`, freed by `ttm_engine_free`. Not thread-safe:
/// one thread at a time may use it (it may move between threads).
pub struct ttm_engine {
    engine: Engine,
}

/// Make an engine from `*config` (read during the call only) and write the
/// new handle to `*engine_out`; the caller owns it and frees it with
/// `ttm_engine_free`. Its memory is allocated now, never per packet.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`; or a configuration
/// error: `TTM_RESULT_ZERO_CAPACITY`, `TTM_RESULT_CAPACITY_TOO_LARGE`,
/// `TTM_RESULT_BAD_SWEEP`, `TTM_RESULT_QUARANTINE_TOO_LONG`,
/// `TTM_RESULT_OUT_OF_MEMORY`.
///
/// # Safety
/// Pointers NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_new(
    config: *const ttm_engine_config,
    engine_out: *mut *mut ttm_engine,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let c = unsafe { in_ref(config) }?;
        let engine_out = out_ptr(engine_out)?;
        let engine = Engine::new(EngineConfig {
            capacity: c.capacity,
            affinity_capacity: c.affinity_capacity,
            hash_seed: c.hash_seed,
            sweep_period: ms(c.sweep_period_ms),
            sweep_tick: ms(c.sweep_tick_ms),
            quarantine: ms(c.quarantine_ms),
            quarantine_capacity: c.quarantine_capacity,
            port_share: lb_engine::PortShare::ALL,
            rss: None,
        })
        .map_err(config_error)?;
        let handle = Box::into_raw(Box::new(ttm_engine { engine }));
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(engine_out, handle) };
        Ok(())
    })
}

/// Free an engine made by `ttm_engine_new`, and everything it holds.
/// NULL does nothing. The handle must not be used afterwards.
///
/// # Safety
/// `engine` is NULL or a handle from `ttm_engine_new` not yet freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_free(engine: *mut ttm_engine) {
    let _ = catch_unwind(|| {
        if !engine.is_null() {
            // SAFETY: a handle from `Box::into_raw` in `ttm_engine_new`,
            // freed once, by the function's contract.
            drop(unsafe { Box::from_raw(engine) });
        }
    });
}

/// The engine behind a handle.
///
/// # Safety
/// `engine` is NULL or a live handle, used by this thread only.
unsafe fn engine_mut<'a>(engine: *mut ttm_engine) -> Result<&'a mut Engine, ttm_result> {
    // SAFETY: by the function's contract.
    Ok(&mut unsafe { in_mut(engine) }?.engine)
}

/// Add a listener from `*config` (and the arrays it points to, read during
/// the call only); writes its id to `*id_out`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` (a family, protocol, scheduler or Maglev
/// key out of range); `TTM_RESULT_RESERVED_KIND` (a strip kind); or a
/// configuration error (`TTM_RESULT_DUPLICATE_LISTENER`,
/// `TTM_RESULT_LOCAL_POOL`, `TTM_RESULT_BAD_TIMEOUT`, ...).
///
/// # Safety
/// `engine` is NULL or a live handle; other pointers NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_add_listener(
    engine: *mut ttm_engine,
    config: *const ttm_listener_config,
    id_out: *mut u16,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        // SAFETY: by the function's contract.
        let config = unsafe { listener_from_c(in_ref(config)?) }?;
        let id_out = out_ptr(id_out)?;
        let id = engine.add_listener(config).map_err(config_error)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(id_out, id) };
        Ok(())
    })
}

/// Remove a listener; its sessions end.
///
/// Returns `TTM_RESULT_OK`, `TTM_RESULT_NULL_PARAMETER` or
/// `TTM_RESULT_NO_SUCH_LISTENER` (also when removed already).
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_remove_listener(
    engine: *mut ttm_engine,
    listener: u16,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine.remove_listener(listener).map_err(config_error)
    })
}

/// Add a backend to a listener's pool; writes its id to `*id_out`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` (family); `TTM_RESULT_NO_SUCH_LISTENER`,
/// `TTM_RESULT_DUPLICATE_BACKEND`, `TTM_RESULT_NO_LOCAL_ADDRESS_FOR`,
/// `TTM_RESULT_IPV6_UNSUPPORTED`.
///
/// # Safety
/// `engine` is NULL or a live handle; other pointers NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_add_backend(
    engine: *mut ttm_engine,
    listener: u16,
    backend: *const ttm_backend_config,
    id_out: *mut u32,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        // SAFETY: by the function's contract.
        let backend = backend_from_c(unsafe { in_ref(backend) }?)?;
        let id_out = out_ptr(id_out)?;
        let id = engine
            .add_backend(listener, backend)
            .map_err(config_error)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(id_out, id) };
        Ok(())
    })
}

/// Remove a backend. Its sessions continue until they end, unless `reset`,
/// which ends them now (no RST is sent).
///
/// Returns `TTM_RESULT_OK`, `TTM_RESULT_NULL_PARAMETER`,
/// `TTM_RESULT_NO_SUCH_LISTENER` or `TTM_RESULT_NO_SUCH_BACKEND` (also when
/// removed already).
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_remove_backend(
    engine: *mut ttm_engine,
    listener: u16,
    backend: u32,
    reset: bool,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine
            .remove_backend(listener, backend, reset)
            .map_err(config_error)
    })
}

/// End every session of a backend now (no RST is sent).
///
/// Returns as `ttm_engine_remove_backend`.
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_reset_backend(
    engine: *mut ttm_engine,
    listener: u16,
    backend: u32,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine
            .reset_backend(listener, backend)
            .map_err(config_error)
    })
}

/// Set a backend's weight; 0 drains it (its sessions continue).
///
/// Returns as `ttm_engine_remove_backend`.
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_set_weight(
    engine: *mut ttm_engine,
    listener: u16,
    backend: u32,
    weight: u16,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine
            .set_weight(listener, backend, weight)
            .map_err(config_error)
    })
}

/// Mark a backend up or down (health checks); a down backend gets no new
/// sessions and its existing ones continue.
///
/// Returns as `ttm_engine_remove_backend`.
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_set_up(
    engine: *mut ttm_engine,
    listener: u16,
    backend: u32,
    up: bool,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine.set_up(listener, backend, up).map_err(config_error)
    })
}

// ----- the packet path --------------------------------------------------------

/// What to do with a frame: `ttm_verdict.kind`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ttm_verdict_kind {
    /// Send toward the real servers; `next_hop` is the server.
    ToServer = 0,
    /// Send toward the clients; `next_hop` is the client.
    ToClient = 1,
    /// Send back where it came from (echo reply): swap the MAC addresses.
    Reply = 2,
    /// Drop it; `drop_reason` says why (see `ttm_drop_reason_name`).
    Drop = 3,
    /// Not for this engine: give it to the host's stack unchanged.
    Pass = 4,
}

/// The engine's verdict on a frame, mirroring `lb_engine::Verdict`. For
/// the forwarding kinds the engine has rewritten IP and the transport
/// layer; the caller writes layer 2 (the next hop's MAC) and transmits.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_verdict {
    /// What to do.
    pub kind: ttm_verdict_kind,
    /// `TO_SERVER`, `TO_CLIENT`, `REPLY`: where the frame goes; else
    /// family 0.
    pub next_hop: ttm_addr,
    /// `DROP`: the reason's number, `0..ttm_drop_reason_count()`, stable
    /// as its name; else 0.
    pub drop_reason: u32,
}

fn verdict_to_c(v: Verdict) -> ttm_verdict {
    let (kind, next_hop, drop_reason) = match v {
        Verdict::ToServer { next_hop } => (ttm_verdict_kind::ToServer, addr_to_c(next_hop), 0),
        Verdict::ToClient { next_hop } => (ttm_verdict_kind::ToClient, addr_to_c(next_hop), 0),
        Verdict::Reply { next_hop } => (ttm_verdict_kind::Reply, addr_to_c(next_hop), 0),
        Verdict::Drop(reason) => (
            ttm_verdict_kind::Drop,
            ttm_addr::default(),
            reason.index() as u32,
        ),
        Verdict::Pass => (ttm_verdict_kind::Pass, ttm_addr::default(), 0),
    };
    ttm_verdict {
        kind,
        next_hop,
        drop_reason,
    }
}

/// The number of drop reasons (and of `ttm_counters.drops` entries in use).
#[unsafe(no_mangle)]
pub extern "C" fn ttm_drop_reason_count() -> u32 {
    DropReason::COUNT as u32
}

/// The stable `snake_case` name of drop reason `reason` (as in metrics
/// labels): static text owned by the library, or NULL when `reason` is not
/// below `ttm_drop_reason_count()`.
#[unsafe(no_mangle)]
pub extern "C" fn ttm_drop_reason_name(reason: u32) -> *const c_char {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    catch_unwind(|| {
        let names = NAMES.get_or_init(|| {
            DropReason::ALL
                .iter()
                .map(|r| CString::new(r.label()).unwrap_or_default())
                .collect()
        });
        names
            .get(reason as usize)
            .map_or(core::ptr::null(), |n| n.as_ptr())
    })
    .unwrap_or(core::ptr::null())
}

/// The headroom a frame needs: bytes of its buffer before its start
/// (`*start` of `ttm_engine_handle_packet`, `ttm_frame.start`). The engine
/// grows a frame only at its front, moving the start back (the TTM option
/// in a segment, an IPv6 header in place of an IPv4 one); with this much
/// room every such rewrite succeeds. With less, a segment that would grow
/// past it gets no TTM option, and a translation that would is dropped
/// (drop reason `truncated`).
pub const TTM_FRAME_HEADROOM: usize = 64;

const _: () = assert!(TTM_FRAME_HEADROOM == Frame::HEADROOM);

/// The tailroom a frame needs: bytes of its buffer after its end. None:
/// the engine never moves a frame's end past where it was, nor the payload
/// (a frame that shrinks gives its front back instead), so a frame may end
/// where its buffer ends.
pub const TTM_FRAME_TAILROOM: usize = 0;

/// Process one frame (Ethernet onward) of `buf[*start..*end]`, in a buffer
/// of `buf_len` bytes that the caller owns and the engine may rewrite
/// (with `TTM_FRAME_HEADROOM` bytes before `*start`, the engine can grow
/// the frame at its front, as for the TTM option; see also
/// `TTM_FRAME_TAILROOM`). On success the frame's new bounds are written to `*start`
/// and `*end`, and the verdict to `*verdict_out`. `now_ns` is the caller's
/// monotonic clock in nanoseconds.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` when `*start > *end` or `*end > buf_len`
/// (nothing done).
///
/// # Safety
/// `engine` is NULL or a live handle; `buf` NULL or valid for `buf_len`
/// bytes; other pointers NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_handle_packet(
    engine: *mut ttm_engine,
    now_ns: u64,
    buf: *mut u8,
    buf_len: usize,
    start: *mut usize,
    end: *mut usize,
    verdict_out: *mut ttm_verdict,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        // SAFETY: by the function's contract.
        let start = unsafe { in_mut(start) }?;
        // SAFETY: by the function's contract.
        let end = unsafe { in_mut(end) }?;
        let verdict_out = out_ptr(verdict_out)?;
        // SAFETY: by the function's contract.
        let buf = unsafe { out_slice(buf, buf_len) }?;
        let mut frame = Frame::new(buf, *start, *end).ok_or(ttm_result::InvalidArgument)?;
        let verdict = engine.handle_packet(Instant::from_nanos(now_ns), &mut frame);
        (*start, *end) = (frame.start(), frame.end());
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(verdict_out, verdict_to_c(verdict)) };
        Ok(())
    })
}

/// One frame of a batch: `buf[start..end]` in a buffer of `buf_len` bytes;
/// `start` and `end` are updated in place.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_frame {
    /// The buffer, owned by the caller.
    pub buf: *mut u8,
    /// Its length.
    pub buf_len: usize,
    /// Where the frame starts (in-out).
    pub start: usize,
    /// Where the frame ends (in-out).
    pub end: usize,
}

/// Process `len` frames, as `ttm_engine_handle_packet` on each in order
/// (faster: table lookups of the batch overlap). Writes `verdicts[i]` for
/// `frames[i]` and updates each frame's `start` and `end`. The frames'
/// buffers must not overlap.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NULL_PARAMETER`;
/// `TTM_RESULT_INVALID_ARGUMENT` when a frame's bounds are out of its
/// buffer (checked for all frames first: then nothing is done).
///
/// # Safety
/// `engine` is NULL or a live handle; `frames` and `verdicts` NULL or valid
/// for `len` elements; each frame's `buf` NULL or valid for its `buf_len`
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_handle_batch(
    engine: *mut ttm_engine,
    now_ns: u64,
    frames: *mut ttm_frame,
    verdicts: *mut ttm_verdict,
    len: usize,
) -> ttm_result {
    const CHUNK: usize = 32;
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        if len == 0 {
            return Ok(());
        }
        if frames.is_null() || verdicts.is_null() {
            return Err(ttm_result::NullParameter);
        }
        if len > isize::MAX as usize / size_of::<ttm_frame>() {
            return Err(ttm_result::InvalidArgument);
        }
        // SAFETY: non-NULL and valid for `len` elements by contract.
        let frames = unsafe { core::slice::from_raw_parts_mut(frames, len) };
        for f in frames.iter() {
            if (f.buf.is_null() && f.buf_len > 0) || f.start > f.end || f.end > f.buf_len {
                return Err(if f.buf.is_null() {
                    ttm_result::NullParameter
                } else {
                    ttm_result::InvalidArgument
                });
            }
        }
        let now = Instant::from_nanos(now_ns);
        let mut done = 0;
        for chunk in frames.chunks_mut(CHUNK) {
            let mut views: [Frame<'_>; CHUNK] = core::array::from_fn(|_| Frame::whole(&mut []));
            for (view, f) in views.iter_mut().zip(chunk.iter()) {
                // SAFETY: checked above; valid and not overlapping by
                // contract.
                let buf = unsafe { out_slice(f.buf, f.buf_len) }?;
                *view = Frame::new(buf, f.start, f.end).ok_or(ttm_result::InvalidArgument)?;
            }
            let n = chunk.len();
            let mut out = [Verdict::Pass; CHUNK];
            if let (Some(views), Some(out)) = (views.get_mut(..n), out.get_mut(..n)) {
                engine.handle_batch(now, views, out);
            }
            for (i, (f, (view, verdict))) in chunk.iter_mut().zip(views.iter().zip(out)).enumerate()
            {
                (f.start, f.end) = (view.start(), view.end());
                // SAFETY: `verdicts` is valid for `len` elements by contract
                // and `done + i < len`.
                unsafe { verdicts.add(done + i).write(verdict_to_c(verdict)) };
            }
            done += n;
        }
        Ok(())
    })
}

/// When `ttm_engine_handle_timeout` should next be called, in the clock of
/// `now_ns`, written to `*deadline_ns_out`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_NO_DEADLINE` when there is none
/// (no session; nothing written); `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `engine` is NULL or a live handle; `deadline_ns_out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_poll_timeout(
    engine: *const ttm_engine,
    deadline_ns_out: *mut u64,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = &unsafe { in_ref(engine) }?.engine;
        let out = out_ptr(deadline_ns_out)?;
        let deadline = engine.poll_timeout().ok_or(ttm_result::NoDeadline)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, deadline.as_nanos()) };
        Ok(())
    })
}

/// Sweep the engine's share of the table at `now_ns`: idle sessions end,
/// and an established TCP session that idled out queues an RST to each
/// side (take them with `ttm_engine_poll_transmit`).
///
/// Returns `TTM_RESULT_OK` or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `engine` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_handle_timeout(
    engine: *mut ttm_engine,
    now_ns: u64,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        engine.handle_timeout(Instant::from_nanos(now_ns));
        Ok(())
    })
}

/// The buffer size `ttm_engine_poll_transmit` needs.
pub const TTM_ENGINE_TRANSMIT_LEN: usize = 74;

const _: () = assert!(TTM_ENGINE_TRANSMIT_LEN == Engine::TRANSMIT_LEN);

/// Write the next packet the engine itself sends (the RSTs of idle expiry)
/// as an Ethernet frame at the start of `buf` (zero MAC addresses, for the
/// caller to fill), its length to `*written_out` and where it goes to
/// `*verdict_out`. Call until it returns `TTM_RESULT_EMPTY`.
///
/// Returns `TTM_RESULT_OK`; `TTM_RESULT_EMPTY` when nothing is waiting;
/// `TTM_RESULT_BUFFER_TOO_SMALL` when `buf_len < TTM_ENGINE_TRANSMIT_LEN`
/// (the packet stays queued); `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `engine` is NULL or a live handle; `buf` NULL or valid for `buf_len`
/// bytes; other pointers NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_poll_transmit(
    engine: *mut ttm_engine,
    buf: *mut u8,
    buf_len: usize,
    written_out: *mut usize,
    verdict_out: *mut ttm_verdict,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = unsafe { engine_mut(engine) }?;
        let written_out = out_ptr(written_out)?;
        let verdict_out = out_ptr(verdict_out)?;
        // SAFETY: by the function's contract.
        let buf = unsafe { out_slice(buf, buf_len) }?;
        if buf.len() < TTM_ENGINE_TRANSMIT_LEN {
            return Err(ttm_result::BufferTooSmall);
        }
        let (len, to) = engine.poll_transmit(buf).ok_or(ttm_result::Empty)?;
        // SAFETY: both checked non-NULL; valid by contract.
        unsafe {
            put(written_out, len);
            put(verdict_out, verdict_to_c(Verdict::from(to)));
        }
        Ok(())
    })
}

// ----- counters ---------------------------------------------------------------

/// The size of `ttm_counters.drops`: room for reasons added later.
pub const TTM_DROP_REASONS_MAX: usize = 64;

const _: () = assert!(DropReason::COUNT <= TTM_DROP_REASONS_MAX);

/// A snapshot of the engine's counters, mirroring `lb_engine::Counters`
/// plus the session table's state.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_counters {
    /// Drops per reason, indexed by reason number; entries from
    /// `drop_reason_count` on are zero.
    pub drops: [u64; TTM_DROP_REASONS_MAX],
    /// `ttm_drop_reason_count()`.
    pub drop_reason_count: u32,
    /// Frames passed to the host.
    pub passed: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions ended by their idle timeout.
    pub sessions_expired: u64,
    /// Sessions ended by a reset of their backend or listener.
    pub sessions_reset: u64,
    /// Closing sessions replaced by a new SYN from the same client port.
    pub sessions_replaced: u64,
    /// Half-open sessions started again on another backend when the
    /// client's SYN came again and their backend could take no new session.
    pub sessions_rescheduled: u64,
    /// Half-open sessions ended, oldest first, for a new SYN in a full
    /// table. Sessions alive = created - expired - reset - replaced -
    /// rescheduled - evicted.
    pub sessions_evicted: u64,
    /// RSTs queued by idle expiry.
    pub rst_sent: u64,
    /// Echo replies.
    pub echo_replies: u64,
    /// TTM options inserted.
    pub ttm_inserted: u64,
    /// Segments that should have got the option but could not (IP length
    /// limit, or too little headroom).
    pub ttm_missed: u64,
    /// Segments whose lesser options were pruned to make room for it.
    pub ttm_pruned: u64,
    /// TTM/TOA-kind options that clients sent and the engine removed.
    pub ttm_spoofed: u64,
    /// ICMP errors forwarded.
    pub icmp_errors_forwarded: u64,
    /// SYN-ACKs whose MSS was lowered.
    pub mss_lowered: u64,
    /// Tuples the quarantine had no room for.
    pub quarantine_overflow: u64,
    /// Sessions now in the table.
    pub sessions: u32,
    /// Tuples now quarantined.
    pub quarantined: u32,
    /// Memory the engine holds, in bytes.
    pub memory_bytes: u64,
}

/// Write a snapshot of the engine's counters to `*out`.
///
/// Returns `TTM_RESULT_OK` or `TTM_RESULT_NULL_PARAMETER`.
///
/// # Safety
/// `engine` is NULL or a live handle; `out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_counters(
    engine: *const ttm_engine,
    out: *mut ttm_counters,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = &unsafe { in_ref(engine) }?.engine;
        let out = out_ptr(out)?;
        let c = engine.counters();
        let mut drops = [0u64; TTM_DROP_REASONS_MAX];
        for (d, s) in drops.iter_mut().zip(c.drops.iter()) {
            *d = *s;
        }
        let snapshot = ttm_counters {
            drops,
            drop_reason_count: DropReason::COUNT as u32,
            passed: c.passed,
            sessions_created: c.sessions_created,
            sessions_expired: c.sessions_expired,
            sessions_reset: c.sessions_reset,
            sessions_replaced: c.sessions_replaced,
            sessions_rescheduled: c.sessions_rescheduled,
            sessions_evicted: c.sessions_evicted,
            rst_sent: c.rst_sent,
            echo_replies: c.echo_replies,
            ttm_inserted: c.ttm_inserted,
            ttm_missed: c.ttm_missed,
            ttm_pruned: c.ttm_pruned,
            ttm_spoofed: c.ttm_spoofed,
            icmp_errors_forwarded: c.icmp_errors_forwarded,
            mss_lowered: c.mss_lowered,
            quarantine_overflow: c.quarantine_overflow,
            sessions: engine.session_count(),
            quarantined: engine.quarantined(),
            memory_bytes: engine.memory_bytes() as u64,
        };
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, snapshot) };
        Ok(())
    })
}

/// A listener's or backend's traffic, mirroring `lb_engine::Traffic`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ttm_traffic {
    /// Packets from clients.
    pub packets_in: u64,
    /// Bytes from clients.
    pub bytes_in: u64,
    /// Packets from servers.
    pub packets_out: u64,
    /// Bytes from servers.
    pub bytes_out: u64,
    /// Sessions created.
    pub new_sessions: u64,
    /// Sessions now active.
    pub active_sessions: u64,
}

fn traffic_to_c(t: &Traffic) -> ttm_traffic {
    ttm_traffic {
        packets_in: t.packets_in,
        bytes_in: t.bytes_in,
        packets_out: t.packets_out,
        bytes_out: t.bytes_out,
        new_sessions: t.new_sessions,
        active_sessions: t.active_sessions,
    }
}

/// Write a listener's traffic to `*out`.
///
/// Returns `TTM_RESULT_OK`, `TTM_RESULT_NULL_PARAMETER` or
/// `TTM_RESULT_NO_SUCH_LISTENER`.
///
/// # Safety
/// `engine` is NULL or a live handle; `out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_listener_traffic(
    engine: *const ttm_engine,
    listener: u16,
    out: *mut ttm_traffic,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = &unsafe { in_ref(engine) }?.engine;
        let out = out_ptr(out)?;
        let t = engine
            .listener_traffic(listener)
            .ok_or(ttm_result::NoSuchListener)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, traffic_to_c(t)) };
        Ok(())
    })
}

/// Write a backend's traffic to `*out`.
///
/// Returns `TTM_RESULT_OK`, `TTM_RESULT_NULL_PARAMETER` or
/// `TTM_RESULT_NO_SUCH_BACKEND` (no such listener or backend).
///
/// # Safety
/// `engine` is NULL or a live handle; `out` NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ttm_engine_backend_traffic(
    engine: *const ttm_engine,
    listener: u16,
    backend: u32,
    out: *mut ttm_traffic,
) -> ttm_result {
    guard(|| {
        // SAFETY: by the function's contract.
        let engine = &unsafe { in_ref(engine) }?.engine;
        let out = out_ptr(out)?;
        let t = engine
            .backend_traffic(listener, backend)
            .ok_or(ttm_result::NoSuchBackend)?;
        // SAFETY: checked non-NULL; valid by contract.
        unsafe { put(out, traffic_to_c(t)) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_result_has_a_distinct_number_and_a_message() {
        for (i, a) in ttm_result::ALL.iter().enumerate() {
            for b in ttm_result::ALL.iter().skip(i + 1) {
                assert_ne!(*a as u32, *b as u32);
            }
            assert!(!a.message().is_empty());
        }
    }

    #[test]
    fn a_panic_becomes_a_result_code() {
        let code = guard(|| -> Result<(), ttm_result> { std::panic::panic_any("boom") });
        assert_eq!(code, ttm_result::Panic);
        assert_eq!(guard(|| Err(ttm_result::Empty)), ttm_result::Empty);
        assert_eq!(guard(|| Ok(())), ttm_result::Ok);
    }

    #[test]
    fn messages_are_found_by_number() {
        // SAFETY: static NUL-terminated strings of the library.
        let text = |code| unsafe { core::ffi::CStr::from_ptr(ttm_result_message(code)) };
        assert_eq!(text(0).to_bytes(), b"success");
        assert_eq!(text(105), ttm_result::OptionOverrun.message());
        assert_eq!(text(1000).to_bytes(), b"unknown result code");
    }

    #[test]
    fn drop_reason_names_match_the_engine() {
        for r in DropReason::ALL {
            let p = ttm_drop_reason_name(r.index() as u32);
            // SAFETY: a static NUL-terminated string of the library.
            let name = unsafe { core::ffi::CStr::from_ptr(p) };
            assert_eq!(name.to_str().ok(), Some(r.label()));
        }
        assert!(ttm_drop_reason_name(DropReason::COUNT as u32).is_null());
    }
}
