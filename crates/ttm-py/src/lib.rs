//! `ttm._ttm`: the compiled half of the Python package `ttm`, a binding of
//! `ttm-core` and nothing else.
//!
//! It holds the codec (`decode_option`, `find_option`, `encode_option`,
//! `decode_peer_record`, `encode_peer_record`), the value type `Peer`, the
//! constants, and every exception class of the package. All decoding is
//! `ttm-core`'s; this file only converts arguments and results, and turns a
//! [`ttm_core::Error`] into a Python exception in one function,
//! `core_error`, whose messages are `ttm-core`'s `Display` (they name the
//! byte that was wrong).
//!
//! The socket side (`get_peer`) and the server helpers (`peer_of`,
//! `TtmMiddleware`) are Python, in `python/ttm/`: they need the `socket`
//! module's semantics, not speed. `python/ttm/__init__.pyi` is the user's
//! documentation of the whole package.
//!
//! Argument conventions, the same in every function:
//! - bytes in: `bytes`, `bytearray` or `memoryview`, else `TypeError`;
//! - an address: `ipaddress.IPv4Address`, `IPv6Address` or `str`;
//! - a port 0-65535 and a kind 0-255: an `int`, `ValueError` when out of
//!   range (these are mistakes of the caller, not of the bytes, so they are
//!   not `TtmError`s);
//! - accepted kinds: an iterable of such ints, `[254]` by default (written
//!   as a list: `inspect` reads a one-element tuple in a text signature as
//!   its element; the default is never mutated).

use std::net::{IpAddr, SocketAddr};

use pyo3::exceptions::{PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyMemoryView, PyString, PyTuple, PyType};
use ttm_core::{Error, KindSet, PeerRecord, TtmOption};

pyo3::create_exception!(
    ttm,
    TtmError,
    PyValueError,
    "Bytes that are not a valid TTM option, TCP options area or peer record.\n\n\
     The base of every decoding error of the package; a ValueError. The \
     message says what was wrong and at which byte."
);
pyo3::create_exception!(
    ttm,
    Truncated,
    TtmError,
    "The input ends before the structure it starts does."
);
pyo3::create_exception!(
    ttm,
    BadLength,
    TtmError,
    "The option's length byte (byte 1) is neither 8 (IPv4 client) nor 20 (IPv6 client)."
);
pyo3::create_exception!(
    ttm,
    KindNotAccepted,
    TtmError,
    "The option's kind (byte 0) is not one of the accepted kinds."
);
pyo3::create_exception!(
    ttm,
    TrailingBytes,
    TtmError,
    "The input is longer than the one option or record it should hold."
);
pyo3::create_exception!(
    ttm,
    MalformedOption,
    TtmError,
    "In a TCP options area: a length byte below 2, or a standard option of \
     a length other than the one its RFC fixes."
);
pyo3::create_exception!(
    ttm,
    OptionOverrun,
    TtmError,
    "In a TCP options area: an option, or its length byte, runs past the end of the area."
);
pyo3::create_exception!(
    ttm,
    BadFamily,
    TtmError,
    "A peer record's family (bytes 0-1) is neither 2 (AF_INET) nor 10 (AF_INET6)."
);
pyo3::create_exception!(
    ttm,
    NonZeroPadding,
    TtmError,
    "An IPv4 peer record has a non-zero byte after the address (bytes 8-19)."
);
pyo3::create_exception!(
    ttm,
    ReservedKind,
    TtmError,
    "A kind that TCP uses for a standard option (0, 1, 2, 3, 4, 5 or 8) cannot be a TTM kind."
);
pyo3::create_exception!(
    ttm,
    NotAvailable,
    PyOSError,
    "This host has no TTM decoder: the kernel answered getsockopt(SOL_IP, \
     1345) with ENOPROTOOPT (neither the kernel module nor the eBPF agent \
     is loaded).\n\n\
     An OSError whose errno is ENOPROTOOPT, raised by get_peer(..., \
     fallback=False) and peer_of(..., fallback=False)."
);

/// The one place where a `ttm-core` error becomes a Python exception: one
/// class per cause, the message from `ttm-core`.
fn core_error(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::Truncated { .. } => Truncated::new_err(message),
        Error::BadLength { .. } => BadLength::new_err(message),
        Error::KindNotAccepted { .. } => KindNotAccepted::new_err(message),
        Error::TrailingBytes { .. } => TrailingBytes::new_err(message),
        Error::MalformedOption { .. } => MalformedOption::new_err(message),
        Error::OptionOverrun { .. } => OptionOverrun::new_err(message),
        Error::BadFamily { .. } => BadFamily::new_err(message),
        Error::NonZeroPadding { .. } => NonZeroPadding::new_err(message),
        Error::ReservedKind { .. } => ReservedKind::new_err(message),
        // `BufferTooSmall` cannot happen here (this module sizes every
        // buffer), and causes that `ttm-core` adds later land on the base
        // class until they get their own.
        _ => TtmError::new_err(message),
    }
}

/// Where a `Peer`'s address came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    /// A TTM option or the kernel's peer record.
    Ttm,
    /// The socket's `getpeername()`: no TTM decoder on this host.
    Peername,
}

impl Source {
    /// The name Python sees.
    fn as_str(self) -> &'static str {
        match self {
            Source::Ttm => "ttm",
            Source::Peername => "peername",
        }
    }
}

/// A client's address as the real server learns it. Immutable and hashable.
///
/// `ip` is an `ipaddress.IPv4Address` or `IPv6Address` (an IPv6 scope is
/// not kept), `port` an int, `source` either `"ttm"` (from a TTM option or
/// the kernel's peer record) or `"peername"` (the socket's `getpeername()`,
/// on a host without a decoder), and `kind` the TCP option kind that
/// carried the address when it was decoded from an option, else `None`.
/// Two peers are equal when all four are. `str(peer)` is `ip:port`
/// (`[ip]:port` for IPv6).
#[pyclass(module = "ttm", name = "Peer", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
struct Peer {
    addr: SocketAddr,
    source: Source,
    kind: Option<u8>,
}

#[pymethods]
impl Peer {
    /// Make a peer; `ip` may also be a string, `kind` is 0-255 or None.
    #[new]
    #[pyo3(signature = (ip, port, source = "ttm", kind = None))]
    fn py_new(
        ip: &Bound<'_, PyAny>,
        port: &Bound<'_, PyAny>,
        source: &str,
        kind: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Peer> {
        let source = match source {
            "ttm" => Source::Ttm,
            "peername" => Source::Peername,
            other => {
                return Err(PyValueError::new_err(format!(
                    "source must be 'ttm' or 'peername', not '{other}'"
                )));
            }
        };
        let kind = kind.map(|kind| byte_arg(kind, "kind")).transpose()?;
        Ok(Peer {
            addr: socket_addr(ip, port)?,
            source,
            kind,
        })
    }

    /// The client's IP address: an `ipaddress.IPv4Address` or `IPv6Address`.
    #[getter]
    fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// The client's port.
    #[getter]
    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `"ttm"` (TTM option or kernel record) or `"peername"` (`getpeername()`).
    #[getter]
    fn source(&self) -> &'static str {
        self.source.as_str()
    }

    /// The option kind that carried the address (`decode_option`,
    /// `find_option`), else None.
    #[getter]
    fn kind(&self) -> Option<u8> {
        self.kind
    }

    /// `Peer(ip=IPv4Address('192.0.2.1'), port=8080, source='ttm')`, with
    /// `kind=` when there is one.
    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let peer = slf.get();
        let ip = peer.addr.ip().into_pyobject(slf.py())?.repr()?;
        let kind = match peer.kind {
            Some(kind) => format!(", kind={kind}"),
            None => String::new(),
        };
        Ok(format!(
            "Peer(ip={ip}, port={}, source='{}'{kind})",
            peer.addr.port(),
            peer.source.as_str()
        ))
    }

    /// `ip:port`, `[ip]:port` for IPv6.
    fn __str__(&self) -> String {
        self.addr.to_string()
    }

    /// Pickle and copy support: the constructor's arguments.
    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyType>, Bound<'py, PyTuple>)> {
        let peer = slf.get();
        let args = (
            peer.addr.ip(),
            peer.addr.port(),
            peer.source.as_str(),
            peer.kind,
        )
            .into_pyobject(slf.py())?;
        Ok((slf.get_type(), args))
    }
}

impl Peer {
    /// The peer a TTM option carried.
    fn from_option(option: TtmOption) -> Peer {
        Peer {
            addr: option.client(),
            source: Source::Ttm,
            kind: Some(option.kind()),
        }
    }
}

/// Run `f` over the bytes of a `bytes`, `bytearray` or `memoryview`.
fn with_bytes<R>(data: &Bound<'_, PyAny>, name: &str, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        Ok(f(bytes.as_bytes()))
    } else if let Ok(array) = data.cast::<PyByteArray>() {
        Ok(f(&array.to_vec()))
    } else if data.is_instance_of::<PyMemoryView>() {
        let copy = data.call_method0("tobytes")?;
        Ok(f(copy.cast::<PyBytes>()?.as_bytes()))
    } else {
        Err(PyTypeError::new_err(format!(
            "{name} must be bytes, bytearray or memoryview, not {}",
            type_name(data)
        )))
    }
}

/// An int in 0-255: a kind.
fn byte_arg(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u8> {
    int_arg(value, name, "0-255")
}

/// An int in the range of `T`, described as `range` in the error.
fn int_arg<'py, T>(value: &Bound<'py, PyAny>, name: &str, range: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    if !value.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            type_name(value)
        )));
    }
    value
        .extract::<T>()
        .map_err(|_| PyValueError::new_err(format!("{name} {value} is not in {range}")))
}

/// `ip` (an `ipaddress` address or a string) and `port` as a socket address.
fn socket_addr(ip: &Bound<'_, PyAny>, port: &Bound<'_, PyAny>) -> PyResult<SocketAddr> {
    let port = int_arg::<u16>(port, "port", "0-65535")?;
    Ok(SocketAddr::new(ip_arg(ip)?, port))
}

/// An `ipaddress.IPv4Address`, `IPv6Address` or a string naming one.
fn ip_arg(ip: &Bound<'_, PyAny>) -> PyResult<IpAddr> {
    static IPV4: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static IPV6: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let py = ip.py();
    if let Ok(text) = ip.cast::<PyString>() {
        return text.to_cow()?.parse().map_err(|_| match ip.repr() {
            Ok(repr) => PyValueError::new_err(format!("{repr} is not an IPv4 or IPv6 address")),
            Err(err) => err,
        });
    }
    if ip.is_instance(IPV4.import(py, "ipaddress", "IPv4Address")?)?
        || ip.is_instance(IPV6.import(py, "ipaddress", "IPv6Address")?)?
    {
        // `IpAddr`'s conversion reads `.packed`: 4 or 16 bytes.
        return ip.extract();
    }
    Err(PyTypeError::new_err(format!(
        "ip must be an ipaddress.IPv4Address, IPv6Address or str, not {}",
        type_name(ip)
    )))
}

/// An argument with a default, taken as given: extraction never fails, and
/// the value is read in the function body (by [`kinds_arg`] or
/// [`kind_arg`]), so that its errors carry this module's messages alone
/// (pyo3 adds a note to errors raised while it extracts an argument).
#[derive(Default)]
struct Arg<'py>(Option<Bound<'py, PyAny>>);

impl<'py> FromPyObject<'_, 'py> for Arg<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        Ok(Arg(Some(obj.to_owned())))
    }
}

/// The accepted kinds: an iterable of ints 0-255; [`KindSet::DEFAULT`]
/// (254 alone) when not given.
fn kinds_arg(kinds: &Arg<'_>) -> PyResult<KindSet> {
    let Some(kinds) = &kinds.0 else {
        return Ok(KindSet::DEFAULT);
    };
    if kinds.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "kinds must be an iterable of ints, not str",
        ));
    }
    let mut set = KindSet::EMPTY;
    for kind in kinds.try_iter()? {
        set = set.with(byte_arg(&kind?, "kind")?).map_err(core_error)?;
    }
    Ok(set)
}

/// One option kind, 0-255; [`ttm_core::DEFAULT_KIND`] when not given.
fn kind_arg(kind: &Arg<'_>) -> PyResult<u8> {
    kind.0
        .as_ref()
        .map_or(Ok(ttm_core::DEFAULT_KIND), |kind| byte_arg(kind, "kind"))
}

/// The name of `value`'s type, for error messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "?".to_owned(), |name| name.to_string())
}

/// Decode `data`, exactly one TTM option of one of `kinds`, into a Peer.
///
/// Raises Truncated, KindNotAccepted, BadLength or TrailingBytes (checked
/// in that order), each a TtmError; ReservedKind for a standard TCP kind in
/// `kinds`.
#[pyfunction]
#[pyo3(signature = (data, kinds = Arg::default()), text_signature = "(data, kinds=[254])")]
fn decode_option(data: &Bound<'_, PyAny>, kinds: Arg<'_>) -> PyResult<Peer> {
    let kinds = kinds_arg(&kinds)?;
    with_bytes(data, "data", |bytes| TtmOption::decode(bytes, &kinds))?
        .map(Peer::from_option)
        .map_err(core_error)
}

/// The first TTM option of one of `kinds` in `tcp_options` (the bytes after
/// the fixed TCP header), as a Peer; None when there is none.
///
/// An option of an accepted kind whose length is neither 8 nor 20 is passed
/// over (RFC 6994 experiments share those kinds). Raises MalformedOption or
/// OptionOverrun when the area is malformed before a TTM option is found.
#[pyfunction]
#[pyo3(
    signature = (tcp_options, kinds = Arg::default()),
    text_signature = "(tcp_options, kinds=[254])"
)]
fn find_option(tcp_options: &Bound<'_, PyAny>, kinds: Arg<'_>) -> PyResult<Option<Peer>> {
    let kinds = kinds_arg(&kinds)?;
    with_bytes(tcp_options, "tcp_options", |area| {
        ttm_core::find(area, &kinds)
    })?
    .map(|found| found.map(Peer::from_option))
    .map_err(core_error)
}

/// The TTM option of `kind` that carries `ip`:`port`: 8 bytes for an IPv4
/// address, 20 for IPv6.
///
/// Raises ReservedKind when `kind` is a standard TCP option kind.
#[pyfunction]
#[pyo3(signature = (ip, port, kind = Arg::default()), text_signature = "(ip, port, kind=254)")]
fn encode_option<'py>(
    ip: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
    kind: Arg<'py>,
) -> PyResult<Bound<'py, PyBytes>> {
    let kind = kind_arg(&kind)?;
    KindSet::EMPTY.with(kind).map_err(core_error)?;
    let option = TtmOption::new(kind, socket_addr(ip, port)?);
    let mut buf = [0u8; ttm_core::V6_LEN];
    option.emit(&mut buf).map_err(core_error)?;
    let written = buf.get(..option.buffer_len()).unwrap_or_default();
    Ok(PyBytes::new(ip.py(), written))
}

/// Decode the 20 bytes that getsockopt(SOL_IP, TTM_SO_GET_PEER, 20)
/// returns into a Peer (source "ttm").
///
/// The family (bytes 0-1) is in host byte order, the port in network
/// order. Raises Truncated or TrailingBytes when `data` is not 20 bytes,
/// BadFamily, or NonZeroPadding.
#[pyfunction]
fn decode_peer_record(data: &Bound<'_, PyAny>) -> PyResult<Peer> {
    let record = with_bytes(data, "data", PeerRecord::from_bytes)?.map_err(core_error)?;
    Ok(Peer {
        addr: record.client(),
        source: Source::Ttm,
        kind: None,
    })
}

/// The 20-byte peer record for `ip`:`port`, as the kernel returns it.
#[pyfunction]
fn encode_peer_record<'py>(
    ip: &Bound<'py, PyAny>,
    port: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let record = PeerRecord::new(socket_addr(ip, port)?);
    Ok(PyBytes::new(ip.py(), &record.to_bytes()))
}

/// The compiled part of the `ttm` package: the codec, `Peer`, the
/// constants and the exceptions. Import `ttm`, not this module.
#[pymodule(name = "_ttm")]
fn ttm_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("SOL_IP", ttm_core::SOL_IP)?;
    m.add("TTM_SO_GET_PEER", ttm_core::TTM_SO_GET_PEER)?;
    m.add("PEER_RECORD_LEN", ttm_core::PEER_RECORD_LEN)?;
    m.add("DEFAULT_KIND", ttm_core::DEFAULT_KIND)?;
    m.add_class::<Peer>()?;
    m.add("TtmError", py.get_type::<TtmError>())?;
    m.add("Truncated", py.get_type::<Truncated>())?;
    m.add("BadLength", py.get_type::<BadLength>())?;
    m.add("KindNotAccepted", py.get_type::<KindNotAccepted>())?;
    m.add("TrailingBytes", py.get_type::<TrailingBytes>())?;
    m.add("MalformedOption", py.get_type::<MalformedOption>())?;
    m.add("OptionOverrun", py.get_type::<OptionOverrun>())?;
    m.add("BadFamily", py.get_type::<BadFamily>())?;
    m.add("NonZeroPadding", py.get_type::<NonZeroPadding>())?;
    m.add("ReservedKind", py.get_type::<ReservedKind>())?;
    m.add("NotAvailable", py.get_type::<NotAvailable>())?;
    m.add_function(wrap_pyfunction!(decode_option, m)?)?;
    m.add_function(wrap_pyfunction!(find_option, m)?)?;
    m.add_function(wrap_pyfunction!(encode_option, m)?)?;
    m.add_function(wrap_pyfunction!(decode_peer_record, m)?)?;
    m.add_function(wrap_pyfunction!(encode_peer_record, m)?)?;
    Ok(())
}
