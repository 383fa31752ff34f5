"""asyncio helper: the real client of a stream or transport.

``peer_of(writer)`` in an ``asyncio.start_server`` handler, or
``peer_of(self.transport)`` in a ``Protocol``, is ``get_peer`` on the
socket that the transport's ``get_extra_info("socket")`` names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from ._socket import get_peer
from ._ttm import Peer

if TYPE_CHECKING:  # asyncio is not imported at run time: `import ttm` stays light
    from asyncio import BaseTransport, StreamWriter

__all__ = ["peer_of"]


def peer_of(stream: Union[StreamWriter, BaseTransport], *, fallback: bool = True) -> Peer:
    """Return the real client of an asyncio ``StreamWriter`` or transport.

    Anything with ``get_extra_info("socket")`` will do. ``fallback`` is as
    for ``get_peer``. Raises ``TypeError`` when ``stream`` has no
    ``get_extra_info``, ``ValueError`` when its transport has no socket
    (not a socket transport), and whatever ``get_peer`` raises (an
    ``OSError`` with ``EBADF`` once the transport is closed).
    """
    get_extra_info = getattr(stream, "get_extra_info", None)
    if not callable(get_extra_info):
        raise TypeError(
            "peer_of needs an asyncio StreamWriter or transport, not "
            f"{type(stream).__name__}"
        )
    sock = get_extra_info("socket")
    if sock is None:
        raise ValueError(f"{type(stream).__name__} has no socket (not a socket transport)")
    return get_peer(sock, fallback=fallback)
