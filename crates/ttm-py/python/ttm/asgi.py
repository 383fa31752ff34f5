"""ASGI middleware: the real client in ``scope["client"]``.

No ASGI server hands an application the connection's socket by any
standard (the ASGI spec has no such key; uvicorn and hypercorn keep their
transports to themselves), so the middleware finds it through a documented
convention, and takes a hook for anything else:

- ``scope["extensions"]["ttm"]["socket"]``: the connection's socket (or
  anything ``get_peer`` takes), or
- ``scope["extensions"]["ttm"]["transport"]``: its asyncio transport
  (the socket is ``get_extra_info("socket")``);
- or ``TtmMiddleware(app, get_socket=callable)`` where ``callable(scope)``
  returns the socket or ``None``.

A server, or a protocol subclass of one, that wants its applications to
see real clients puts one of the first two into each scope.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, MutableMapping, Optional

from ._socket import get_peer

__all__ = ["TtmMiddleware", "socket_from_scope"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def socket_from_scope(scope: Mapping[str, Any]) -> Optional[Any]:
    """The connection's socket by this package's convention, else ``None``.

    Looks at ``scope["extensions"]["ttm"]["socket"]``, then at
    ``scope["extensions"]["ttm"]["transport"].get_extra_info("socket")``.
    """
    extensions = scope.get("extensions")
    if not isinstance(extensions, Mapping):
        return None
    entry = extensions.get("ttm")
    if not isinstance(entry, Mapping):
        return None
    sock = entry.get("socket")
    if sock is not None:
        return sock
    transport = entry.get("transport")
    if transport is not None:
        return transport.get_extra_info("socket")
    return None


class TtmMiddleware:
    """ASGI middleware that puts the real client into ``scope["client"]``.

    For ``http`` and ``websocket`` scopes whose socket it can find (see the
    module's convention, or pass ``get_socket``), it calls ``get_peer`` and,
    when the address came from the TTM decoder (``source == "ttm"``), passes
    the application a copy of the scope whose ``client`` is
    ``(str(ip), port)``. Otherwise the scope goes through untouched: a
    ``getpeername()`` fallback says nothing the server did not (and would
    undo a proxy-headers middleware), and an ``OSError`` (a connection gone
    already) is left for the server to see. A ``TtmError`` (the kernel's
    record does not decode) propagates.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        get_socket: Callable[[Scope], Optional[Any]] = socket_from_scope,
    ) -> None:
        """Wrap ``app``; ``get_socket(scope)`` finds a connection's socket."""
        self.app = app
        self.get_socket = get_socket

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope.get("type") in ("http", "websocket"):
            sock = self.get_socket(scope)
            if sock is not None:
                try:
                    peer = get_peer(sock)
                except OSError:
                    peer = None
                if peer is not None and peer.source == "ttm":
                    scope = dict(scope)
                    scope["client"] = (str(peer.ip), peer.port)
        await self.app(scope, receive, send)
