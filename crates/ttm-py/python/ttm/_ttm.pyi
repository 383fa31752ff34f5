"""Stubs of ``ttm._ttm``, the compiled half of ``ttm`` (a binding of the
Rust crate ``ttm-core``): the codec, ``Peer``, the constants and every
exception class. Import them from ``ttm``.

Conventions of every function here:

- bytes in: ``bytes``, ``bytearray`` or ``memoryview`` (else ``TypeError``);
- an address: an ``ipaddress.IPv4Address``, ``IPv6Address`` or a ``str``;
- a port is an int 0-65535 and a kind an int 0-255 (else ``ValueError``;
  ``TypeError`` for a non-int);
- ``kinds``: the accepted option kinds, an iterable of ints, ``[254]``
  by default; a standard TCP option kind in it raises ``ReservedKind``.

Bytes that do not decode raise a subclass of ``TtmError`` (a
``ValueError``), one class per cause, with a message that says what was
wrong and at which byte.
"""

from ipaddress import IPv4Address, IPv6Address
from typing import Final, Iterable, Literal, Optional, Tuple, Type, Union, final

__all__ = [
    "__version__",
    "SOL_IP",
    "TTM_SO_GET_PEER",
    "PEER_RECORD_LEN",
    "DEFAULT_KIND",
    "Peer",
    "TtmError",
    "Truncated",
    "BadLength",
    "KindNotAccepted",
    "TrailingBytes",
    "MalformedOption",
    "OptionOverrun",
    "BadFamily",
    "NonZeroPadding",
    "ReservedKind",
    "NotAvailable",
    "decode_option",
    "find_option",
    "encode_option",
    "decode_peer_record",
    "encode_peer_record",
]

_Bytes = Union[bytes, bytearray, memoryview]
_Ip = Union[IPv4Address, IPv6Address]

__version__: Final[str]

SOL_IP: Final[int]
"""The socket level of the peer query: ``IPPROTO_IP`` (0), Linux's ``SOL_IP``."""
TTM_SO_GET_PEER: Final[int]
"""The socket option of the peer query: 1345, as the FAQ's kernel module defines it."""
PEER_RECORD_LEN: Final[int]
"""The length of the record the peer query returns: 20."""
DEFAULT_KIND: Final[int]
"""The TCP option kind used unless configured otherwise: 254."""

@final
class Peer:
    """A client's address as the real server learns it. Immutable, hashable.

    Two peers are equal when ``ip``, ``port``, ``source`` and ``kind`` all
    are. ``str(peer)`` is ``"ip:port"`` (``"[ip]:port"`` for IPv6). An IPv6
    scope (``%eth0``) is not kept.
    """

    def __new__(
        cls,
        ip: Union[_Ip, str],
        port: int,
        source: Literal["ttm", "peername"] = "ttm",
        kind: Optional[int] = None,
    ) -> "Peer": ...
    @property
    def ip(self) -> _Ip:
        """The client's IP address."""
    @property
    def port(self) -> int:
        """The client's port."""
    @property
    def source(self) -> Literal["ttm", "peername"]:
        """``"ttm"``: a TTM option or the kernel's peer record;
        ``"peername"``: the socket's ``getpeername()`` (no decoder on this host)."""
    @property
    def kind(self) -> Optional[int]:
        """The TCP option kind that carried the address (``decode_option``,
        ``find_option``), else ``None``."""
    def __eq__(self, value: object, /) -> bool: ...
    def __ne__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(
        self,
    ) -> Tuple[Type["Peer"], Tuple[_Ip, int, str, Optional[int]]]:
        """Pickle and copy support: the constructor's arguments."""

def decode_option(data: _Bytes, kinds: Iterable[int] = [254]) -> Peer:
    """Decode ``data``, exactly one TTM option of one of ``kinds``.

    ``kind=254, len=8, port (2 bytes), IPv4 (4)`` or
    ``kind=254, len=20, port (2), IPv6 (16)``, numbers in network order.

    Raises ``Truncated``, ``KindNotAccepted``, ``BadLength`` or
    ``TrailingBytes``, checked in that order.
    """

def find_option(tcp_options: _Bytes, kinds: Iterable[int] = [254]) -> Optional[Peer]:
    """The first TTM option of one of ``kinds`` in a TCP options area (the
    bytes after the fixed 20-byte TCP header), or ``None``.

    An option of an accepted kind whose length is neither 8 nor 20 is
    passed over (RFC 6994 experiments share those kinds); the walk stops at
    an end-of-list option. Raises ``MalformedOption`` or ``OptionOverrun``
    when the area is malformed before a TTM option is found.
    """

def encode_option(ip: Union[_Ip, str], port: int, kind: int = 254) -> bytes:
    """The TTM option of ``kind`` that carries ``ip:port``: 8 bytes for an
    IPv4 address, 20 for IPv6. Raises ``ReservedKind`` for a standard TCP
    option kind (0-5, 8)."""

def decode_peer_record(data: _Bytes) -> Peer:
    """Decode what ``getsockopt(SOL_IP, TTM_SO_GET_PEER, 20)`` returns.

    ``af`` (2 bytes, host order: 2 AF_INET, 10 AF_INET6), port (2, network
    order), address (16: IPv6, or IPv4 then 12 zero bytes); the layout the
    FAQ's example unpacks with ``!bbH4s12s``. The peer's source is
    ``"ttm"``. Raises ``Truncated`` or ``TrailingBytes`` when ``data`` is
    not 20 bytes, ``BadFamily`` or ``NonZeroPadding``.
    """

def encode_peer_record(ip: Union[_Ip, str], port: int) -> bytes:
    """The 20-byte peer record for ``ip:port``, as the kernel returns it
    (the family in this host's byte order)."""

class TtmError(ValueError):
    """Bytes that are not a valid TTM option, TCP options area or peer
    record: the base of every decoding error. The message says what was
    wrong and at which byte."""

class Truncated(TtmError):
    """The input ends before the structure it starts does."""

class BadLength(TtmError):
    """The option's length byte (byte 1) is neither 8 nor 20."""

class KindNotAccepted(TtmError):
    """The option's kind (byte 0) is not one of the accepted kinds."""

class TrailingBytes(TtmError):
    """The input is longer than the one option or record it should hold."""

class MalformedOption(TtmError):
    """In a TCP options area: a length byte below 2, or a standard option
    of a length other than the one its RFC fixes."""

class OptionOverrun(TtmError):
    """In a TCP options area: an option, or its length byte, runs past the
    end of the area."""

class BadFamily(TtmError):
    """A peer record's family (bytes 0-1) is neither 2 (AF_INET) nor 10 (AF_INET6)."""

class NonZeroPadding(TtmError):
    """An IPv4 peer record has a non-zero byte after the address (bytes 8-19)."""

class ReservedKind(TtmError):
    """A standard TCP option kind (0, 1, 2, 3, 4, 5 or 8) cannot be a TTM kind."""

class NotAvailable(OSError):
    """This host has no TTM decoder: ``getsockopt(SOL_IP, 1345)`` answered
    ``ENOPROTOOPT`` (neither the kgwttm module nor the ttm-agent is
    loaded). Raised by ``get_peer`` and ``peer_of`` with ``fallback=False``; ``errno`` is
    ``ENOPROTOOPT``."""
