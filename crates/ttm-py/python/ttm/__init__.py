"""ttm: the client's real address on a real server behind ttm-lb.

The balancer writes the client's address into a TCP option (TTM) in the
handshake; on the real server the kernel module or eBPF agent answers
``getsockopt(SOL_IP, 1345, 20)`` with it. ``get_peer(conn)`` makes that
call and decodes the answer; the codec functions read and write the option
and the 20-byte record themselves. See ``__init__.pyi`` for the API.
"""

from ._socket import get_peer
from ._ttm import (
    DEFAULT_KIND,
    PEER_RECORD_LEN,
    SOL_IP,
    TTM_SO_GET_PEER,
    BadFamily,
    BadLength,
    KindNotAccepted,
    MalformedOption,
    NonZeroPadding,
    NotAvailable,
    OptionOverrun,
    Peer,
    ReservedKind,
    TrailingBytes,
    Truncated,
    TtmError,
    __version__,
    decode_option,
    decode_peer_record,
    encode_option,
    encode_peer_record,
    find_option,
)
from .aio import peer_of
from .asgi import TtmMiddleware

__all__ = [
    "DEFAULT_KIND",
    "PEER_RECORD_LEN",
    "SOL_IP",
    "TTM_SO_GET_PEER",
    "BadFamily",
    "BadLength",
    "KindNotAccepted",
    "MalformedOption",
    "NonZeroPadding",
    "NotAvailable",
    "OptionOverrun",
    "Peer",
    "ReservedKind",
    "TrailingBytes",
    "Truncated",
    "TtmError",
    "TtmMiddleware",
    "__version__",
    "decode_option",
    "decode_peer_record",
    "encode_option",
    "encode_peer_record",
    "find_option",
    "get_peer",
    "peer_of",
]
