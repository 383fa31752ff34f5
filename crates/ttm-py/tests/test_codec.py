"""The codec: round trips, Peer, and every error with its message pinned."""

from __future__ import annotations

import copy
import pickle
import re
import struct
import sys
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Callable, Type

import pytest

import ttm

V4_OPTION = bytes.fromhex("fe081f90c0000201")  # 192.0.2.1:8080
V6_OPTION = bytes.fromhex("fe1401bb20010db8000000000000000000000001")  # [2001:db8::1]:443
AF_BYTES = "<H" if sys.byteorder == "little" else ">H"


def exact(message: str) -> str:
    """A ``match=`` pattern that is the whole message and nothing else."""
    return "^" + re.escape(message) + "$"


def record(af: int, port: int, addr: bytes) -> bytes:
    """A peer record as the kernel lays it out on this host."""
    return struct.pack(AF_BYTES, af) + struct.pack("!H", port) + addr


# --- constants ---------------------------------------------------------


def test_constants() -> None:
    """The numbers of the FAQ's getsockopt call and the default kind."""
    assert (ttm.SOL_IP, ttm.TTM_SO_GET_PEER, ttm.PEER_RECORD_LEN) == (0, 1345, 20)
    assert ttm.DEFAULT_KIND == 254
    assert isinstance(ttm.__version__, str) and ttm.__version__


# --- round trips -------------------------------------------------------

ADDRESSES = [
    ("192.0.2.1", 8080),
    ("0.0.0.0", 0),
    ("255.255.255.255", 65535),
    ("2001:db8::1", 443),
    ("::", 0),
    ("::ffff:192.0.2.1", 80),
    ("fe80::1:2:3:4", 1),
    ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
]


@pytest.mark.parametrize(("ip", "port"), ADDRESSES)
@pytest.mark.parametrize("kind", [254, 253, 252, 200, 6, 255])
def test_option_round_trip(ip: str, port: int, kind: int) -> None:
    """encode_option then decode_option and find_option give the address back."""
    data = ttm.encode_option(ip, port, kind=kind)
    address = ip_address(ip)
    assert len(data) == (8 if address.version == 4 else 20)
    assert data[:2] == bytes([kind, len(data)])
    assert data[2:4] == port.to_bytes(2, "big") and data[4:] == address.packed
    expected = ttm.Peer(address, port, "ttm", kind)
    assert ttm.decode_option(data, kinds=[kind]) == expected
    assert ttm.find_option(b"\x01\x01" + data, kinds={kind, 253}) == expected


@pytest.mark.parametrize(("ip", "port"), ADDRESSES)
def test_peer_record_round_trip(ip: str, port: int) -> None:
    """encode_peer_record then decode_peer_record give the address back."""
    data = ttm.encode_peer_record(ip, port)
    address = ip_address(ip)
    assert len(data) == ttm.PEER_RECORD_LEN
    af = 2 if address.version == 4 else 10
    assert data == record(af, port, address.packed.ljust(16, b"\0"))
    assert ttm.decode_peer_record(data) == ttm.Peer(address, port)


def test_record_as_the_faq_unpacks_it() -> None:
    """The FAQ's ``struct.Struct('!bbH4s12s')`` reads our record (little-endian host)."""
    data = ttm.encode_peer_record("198.51.100.7", 40000)
    af_low, af_high, port, addr4, rest = struct.unpack("!bbH4s12s", data)
    if sys.byteorder == "little":
        assert (af_low, af_high) == (2, 0)
    assert port == 40000 and addr4 == bytes([198, 51, 100, 7]) and rest == bytes(12)


def test_default_kind_and_defaults() -> None:
    """encode_option defaults to kind 254; the decoders accept 254 alone by default."""
    assert ttm.encode_option("192.0.2.1", 8080) == V4_OPTION
    assert ttm.decode_option(V4_OPTION).kind == 254
    assert ttm.decode_option(V6_OPTION) == ttm.Peer("2001:db8::1", 443, kind=254)
    assert ttm.find_option(V4_OPTION) == ttm.Peer("192.0.2.1", 8080, kind=254)
    with pytest.raises(ttm.KindNotAccepted):
        ttm.decode_option(b"\xfd" + V4_OPTION[1:])


@pytest.mark.parametrize(
    "wrap",
    [bytes, bytearray, memoryview, lambda b: memoryview(b"xx" + b)[2:]],
    ids=["bytes", "bytearray", "memoryview", "memoryview-slice"],
)
def test_bytes_like_inputs(wrap: Callable[[bytes], Any]) -> None:
    """bytes, bytearray and memoryview (also a slice of one) all decode."""
    assert ttm.decode_option(wrap(V4_OPTION)).port == 8080
    assert ttm.find_option(wrap(V4_OPTION)) is not None
    assert ttm.decode_peer_record(wrap(ttm.encode_peer_record("::1", 1))).port == 1


def test_address_arguments() -> None:
    """An address is an IPv4Address, IPv6Address or str; the results are ipaddress objects."""
    for ip in ("10.1.2.3", IPv4Address("10.1.2.3")):
        assert ttm.encode_peer_record(ip, 9) == ttm.encode_peer_record("10.1.2.3", 9)
    peer = ttm.decode_peer_record(ttm.encode_peer_record(IPv6Address("2001:db8::7"), 7))
    assert type(peer.ip) is IPv6Address and peer.ip == IPv6Address("2001:db8::7")
    assert type(ttm.decode_option(V4_OPTION).ip) is IPv4Address


def test_kinds_any_iterable() -> None:
    """kinds: a tuple, list, set, generator or range; empty accepts nothing."""
    option = ttm.encode_option("192.0.2.1", 1, kind=200)
    for kinds in ((200,), [254, 200], {200}, (k for k in [200]), range(200, 201)):
        assert ttm.decode_option(option, kinds=kinds).kind == 200
    with pytest.raises(ttm.KindNotAccepted):
        ttm.decode_option(option, kinds=())
    assert ttm.find_option(option, kinds=[]) is None


def test_find_option_kind_order_and_experiments() -> None:
    """The first accepted option wins; an accepted kind of another length is passed over."""
    first = ttm.encode_option("192.0.2.1", 1, kind=253)
    second = ttm.encode_option("192.0.2.2", 2, kind=254)
    assert ttm.find_option(first + second, kinds=(254, 253)) == ttm.Peer("192.0.2.1", 1, kind=253)
    assert ttm.find_option(first + second) == ttm.Peer("192.0.2.2", 2, kind=254)
    experiment = bytes([254, 6, 0xF9, 0x89, 1, 2])
    assert ttm.find_option(experiment + second) == ttm.Peer("192.0.2.2", 2, kind=254)
    assert ttm.find_option(b"\x00" + second) is None  # after end of list
    assert ttm.find_option(b"") is None


# --- Peer --------------------------------------------------------------


def test_peer_fields_and_value_semantics() -> None:
    """Peer: fields, equality over all four, hashing, str and repr."""
    peer = ttm.Peer(IPv4Address("192.0.2.1"), 8080)
    assert (peer.ip, peer.port, peer.source, peer.kind) == (IPv4Address("192.0.2.1"), 8080, "ttm", None)
    assert peer == ttm.Peer("192.0.2.1", 8080, source="ttm")
    assert peer != ttm.Peer("192.0.2.1", 8080, source="peername")
    assert peer != ttm.Peer("192.0.2.1", 8080, kind=254)
    assert peer != ttm.Peer("192.0.2.1", 8081)
    assert peer != ("192.0.2.1", 8080)
    assert len({peer, ttm.Peer("192.0.2.1", 8080), ttm.Peer("192.0.2.1", 8080, "peername")}) == 2
    assert hash(peer) == hash(ttm.Peer("192.0.2.1", 8080))
    assert str(peer) == "192.0.2.1:8080"
    assert str(ttm.Peer("2001:db8::1", 443)) == "[2001:db8::1]:443"
    assert repr(peer) == "Peer(ip=IPv4Address('192.0.2.1'), port=8080, source='ttm')"
    assert repr(ttm.decode_option(V6_OPTION)) == (
        "Peer(ip=IPv6Address('2001:db8::1'), port=443, source='ttm', kind=254)"
    )
    assert repr(ttm.Peer("::1", 1, "peername")) == "Peer(ip=IPv6Address('::1'), port=1, source='peername')"
    assert type(peer).__module__ == "ttm" and type(peer).__qualname__ == "Peer"


def test_peer_is_immutable() -> None:
    """No attribute can be set or deleted, nor added."""
    peer = ttm.Peer("192.0.2.1", 1)
    for name in ("ip", "port", "source", "kind", "other"):
        with pytest.raises(AttributeError):
            setattr(peer, name, 0)
    with pytest.raises(AttributeError):
        del peer.port


def test_peer_pickle_and_copy() -> None:
    """A Peer pickles and copies to an equal Peer."""
    for peer in (ttm.decode_option(V6_OPTION), ttm.Peer("10.0.0.1", 5, "peername")):
        assert pickle.loads(pickle.dumps(peer)) == peer
        assert copy.copy(peer) == peer and copy.deepcopy(peer) == peer


def test_peer_drops_an_ipv6_scope() -> None:
    """An IPv6Address with a scope gives its address without the scope."""
    peer = ttm.Peer(IPv6Address("fe80::1%eth0"), 22, "peername")
    assert peer.ip == IPv6Address("fe80::1") and str(peer) == "[fe80::1]:22"


# --- errors: the bytes (TtmError) -------------------------------------

DECODE_ERRORS: list[tuple[str, Callable[[], object], Type[ttm.TtmError], str]] = [
    # decode_option: checked in the order kind, length byte, length.
    ("option empty", lambda: ttm.decode_option(b""), ttm.Truncated, "truncated: 1 bytes needed, 0 given"),
    ("option kind only", lambda: ttm.decode_option(b"\xfe"), ttm.Truncated, "truncated: 2 bytes needed, 1 given"),
    ("option v4 short", lambda: ttm.decode_option(V4_OPTION[:7]), ttm.Truncated, "truncated: 8 bytes needed, 7 given"),
    ("option v6 short", lambda: ttm.decode_option(V6_OPTION[:10]), ttm.Truncated, "truncated: 20 bytes needed, 10 given"),
    (
        "option length 9",
        lambda: ttm.decode_option(b"\xfe\x09" + V4_OPTION[2:]),
        ttm.BadLength,
        "byte 1: option length 9 is neither 8 (IPv4 client) nor 20 (IPv6 client)",
    ),
    (
        "option length 0",
        lambda: ttm.decode_option(b"\xfe\x00"),
        ttm.BadLength,
        "byte 1: option length 0 is neither 8 (IPv4 client) nor 20 (IPv6 client)",
    ),
    (
        "option kind 253",
        lambda: ttm.decode_option(b"\xfd" + V4_OPTION[1:]),
        ttm.KindNotAccepted,
        "byte 0: option kind 253 is not an accepted TTM kind",
    ),
    (
        "option kind before length",
        lambda: ttm.decode_option(b"\xfe", kinds=[253]),
        ttm.KindNotAccepted,
        "byte 0: option kind 254 is not an accepted TTM kind",
    ),
    (
        "option trailing",
        lambda: ttm.decode_option(V4_OPTION + b"\0"),
        ttm.TrailingBytes,
        "9 bytes given where exactly 8 were expected",
    ),
    (
        "option v6 trailing",
        lambda: ttm.decode_option(V6_OPTION + V4_OPTION),
        ttm.TrailingBytes,
        "28 bytes given where exactly 20 were expected",
    ),
    # find_option: the walk's errors, with the offset of the option.
    (
        "find zero length",
        lambda: ttm.find_option(bytes.fromhex("01fe00")),
        ttm.MalformedOption,
        "byte 1: TCP option kind 254 has invalid length 0",
    ),
    (
        "find mss length",
        lambda: ttm.find_option(bytes.fromhex("020305") + V4_OPTION),
        ttm.MalformedOption,
        "byte 0: TCP option kind 2 has invalid length 3",
    ),
    (
        "find overrun",
        lambda: ttm.find_option(bytes.fromhex("0101") + V4_OPTION[:6]),
        ttm.OptionOverrun,
        "byte 2: TCP option kind 254 needs 8 bytes, 6 remain",
    ),
    (
        "find kind without length",
        lambda: ttm.find_option(bytes.fromhex("0101fe")),
        ttm.OptionOverrun,
        "byte 2: TCP option kind 254 needs 2 bytes, 1 remain",
    ),
    # decode_peer_record.
    ("record empty", lambda: ttm.decode_peer_record(b""), ttm.Truncated, "truncated: 20 bytes needed, 0 given"),
    (
        "record short",
        lambda: ttm.decode_peer_record(ttm.encode_peer_record("192.0.2.1", 1)[:19]),
        ttm.Truncated,
        "truncated: 20 bytes needed, 19 given",
    ),
    (
        "record long",
        lambda: ttm.decode_peer_record(ttm.encode_peer_record("192.0.2.1", 1) + b"\0"),
        ttm.TrailingBytes,
        "21 bytes given where exactly 20 were expected",
    ),
    (
        "record family 7",
        lambda: ttm.decode_peer_record(record(7, 1, bytes(16))),
        ttm.BadFamily,
        "bytes 0-1: address family 7 is neither 2 (AF_INET) nor 10 (AF_INET6)",
    ),
    (
        "record family in network order",
        lambda: ttm.decode_peer_record(record(0x0200 if sys.byteorder == "little" else 0x0002, 1, bytes(16))),
        ttm.BadFamily,
        "bytes 0-1: address family 512 is neither 2 (AF_INET) nor 10 (AF_INET6)",
    ),
    (
        "record v4 padding",
        lambda: ttm.decode_peer_record(record(2, 1, bytes([192, 0, 2, 1]) + bytes(11) + b"\x01")),
        ttm.NonZeroPadding,
        "byte 19: IPv4 peer record has non-zero padding",
    ),
    (
        "record v4 first padding byte",
        lambda: ttm.decode_peer_record(record(2, 1, bytes([192, 0, 2, 1, 0x80]) + bytes(11))),
        ttm.NonZeroPadding,
        "byte 8: IPv4 peer record has non-zero padding",
    ),
    # A standard TCP kind cannot be a TTM kind, to decode or to encode.
    (
        "decode kinds reserved",
        lambda: ttm.decode_option(V4_OPTION, kinds=[254, 8]),
        ttm.ReservedKind,
        "kind 8 is a standard TCP option and cannot be a TTM kind",
    ),
    (
        "find kinds reserved",
        lambda: ttm.find_option(V4_OPTION, kinds=[0]),
        ttm.ReservedKind,
        "kind 0 is a standard TCP option and cannot be a TTM kind",
    ),
    (
        "encode kind reserved",
        lambda: ttm.encode_option("192.0.2.1", 1, kind=2),
        ttm.ReservedKind,
        "kind 2 is a standard TCP option and cannot be a TTM kind",
    ),
]


@pytest.mark.parametrize(
    ("call", "cls", "message"),
    [case[1:] for case in DECODE_ERRORS],
    ids=[case[0] for case in DECODE_ERRORS],
)
def test_decode_errors(call: Callable[[], object], cls: Type[ttm.TtmError], message: str) -> None:
    """Each cause has its class (a TtmError, a ValueError) and ttm-core's message."""
    with pytest.raises(cls, match=exact(message)) as info:
        call()
    assert type(info.value) is cls
    assert isinstance(info.value, ttm.TtmError) and isinstance(info.value, ValueError)


def test_exception_hierarchy() -> None:
    """TtmError is a ValueError with one subclass per cause; NotAvailable is an OSError."""
    causes = [
        ttm.Truncated,
        ttm.BadLength,
        ttm.KindNotAccepted,
        ttm.TrailingBytes,
        ttm.MalformedOption,
        ttm.OptionOverrun,
        ttm.BadFamily,
        ttm.NonZeroPadding,
        ttm.ReservedKind,
    ]
    assert ttm.TtmError.__bases__ == (ValueError,)
    for cls in causes:
        assert cls.__bases__ == (ttm.TtmError,), cls
        assert cls.__module__ == "ttm" and cls.__doc__
    assert ttm.NotAvailable.__bases__ == (OSError,)
    assert not issubclass(ttm.NotAvailable, ValueError)
    error = ttm.NotAvailable(92, "no decoder")
    assert error.errno == 92 and str(error) == "[Errno 92] no decoder"


# --- errors: the arguments (TypeError, ValueError) --------------------

ARGUMENT_ERRORS: list[tuple[str, Callable[[], object], Type[Exception], str]] = [
    (
        "data str",
        lambda: ttm.decode_option("fe08"),  # type: ignore[arg-type]
        TypeError,
        "data must be bytes, bytearray or memoryview, not str",
    ),
    (
        "tcp_options list",
        lambda: ttm.find_option([1, 1]),  # type: ignore[arg-type]
        TypeError,
        "tcp_options must be bytes, bytearray or memoryview, not list",
    ),
    (
        "record None",
        lambda: ttm.decode_peer_record(None),  # type: ignore[arg-type]
        TypeError,
        "data must be bytes, bytearray or memoryview, not NoneType",
    ),
    (
        "kinds str",
        lambda: ttm.decode_option(V4_OPTION, kinds="254"),  # type: ignore[arg-type]
        TypeError,
        "kinds must be an iterable of ints, not str",
    ),
    (
        "kinds int",
        lambda: ttm.decode_option(V4_OPTION, kinds=254),  # type: ignore[arg-type]
        TypeError,
        "'int' object is not iterable",
    ),
    ("kinds 256", lambda: ttm.decode_option(V4_OPTION, kinds=[256]), ValueError, "kind 256 is not in 0-255"),
    ("kinds -1", lambda: ttm.find_option(V4_OPTION, kinds=[-1]), ValueError, "kind -1 is not in 0-255"),
    (
        "kinds float",
        lambda: ttm.find_option(V4_OPTION, kinds=[254.0]),  # type: ignore[list-item]
        TypeError,
        "kind must be an int, not float",
    ),
    ("encode kind 300", lambda: ttm.encode_option("192.0.2.1", 1, kind=300), ValueError, "kind 300 is not in 0-255"),
    (
        "encode kind str",
        lambda: ttm.encode_option("192.0.2.1", 1, kind="254"),  # type: ignore[arg-type]
        TypeError,
        "kind must be an int, not str",
    ),
    ("encode port 65536", lambda: ttm.encode_option("192.0.2.1", 65536), ValueError, "port 65536 is not in 0-65535"),
    ("record port -1", lambda: ttm.encode_peer_record("192.0.2.1", -1), ValueError, "port -1 is not in 0-65535"),
    (
        "port str",
        lambda: ttm.encode_option("192.0.2.1", "80"),  # type: ignore[arg-type]
        TypeError,
        "port must be an int, not str",
    ),
    (
        "ip bad str",
        lambda: ttm.encode_option("192.0.2.256", 1),
        ValueError,
        "'192.0.2.256' is not an IPv4 or IPv6 address",
    ),
    (
        "ip with scope",
        lambda: ttm.encode_peer_record("fe80::1%eth0", 1),
        ValueError,
        "'fe80::1%eth0' is not an IPv4 or IPv6 address",
    ),
    (
        "ip int",
        lambda: ttm.encode_option(3221225985, 1),  # type: ignore[arg-type]
        TypeError,
        "ip must be an ipaddress.IPv4Address, IPv6Address or str, not int",
    ),
    (
        "ip bytes",
        lambda: ttm.Peer(b"\xc0\x00\x02\x01", 1),  # type: ignore[arg-type]
        TypeError,
        "ip must be an ipaddress.IPv4Address, IPv6Address or str, not bytes",
    ),
    (
        "peer source",
        lambda: ttm.Peer("192.0.2.1", 1, source="kernel"),  # type: ignore[arg-type]
        ValueError,
        "source must be 'ttm' or 'peername', not 'kernel'",
    ),
    ("peer kind", lambda: ttm.Peer("192.0.2.1", 1, kind=256), ValueError, "kind 256 is not in 0-255"),
]


@pytest.mark.parametrize(
    ("call", "cls", "message"),
    [case[1:] for case in ARGUMENT_ERRORS],
    ids=[case[0] for case in ARGUMENT_ERRORS],
)
def test_argument_errors(call: Callable[[], object], cls: Type[Exception], message: str) -> None:
    """A wrong argument is the caller's mistake: TypeError or ValueError, never a TtmError."""
    with pytest.raises(cls, match=exact(message)) as info:
        call()
    assert not isinstance(info.value, ttm.TtmError)
