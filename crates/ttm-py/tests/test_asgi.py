"""TtmMiddleware with a fake ASGI app and real loopback sockets."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from conftest import Connection

import ttm
from ttm.asgi import Message, Scope, socket_from_scope


class App:
    """An ASGI app that records the scope it was given."""

    def __init__(self) -> None:
        """No scope yet."""
        self.scope: Optional[Scope] = None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Record the scope, and answer when it is http."""
        self.scope = scope
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def run(app: Any, scope: Scope) -> list[Message]:
    """Run one ASGI call; the messages it sent."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def http_scope(extensions: Optional[dict[str, Any]] = None, kind: str = "http") -> Scope:
    """An http (or other) scope as a server would make it, behind the balancer."""
    scope: Scope = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "client": ("10.0.0.100", 40000),  # the balancer's local address
        "server": ("10.0.0.2", 8080),
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


class DecoderSocketLike:
    """A connected socket whose kernel has a decoder, seen through its socket API."""

    family, type, proto = 2, 1, 6  # AF_INET, SOCK_STREAM, TCP

    def __init__(self, record: Optional[bytes], error: Optional[int] = None) -> None:
        """Answer the TTM query with ``record``, or fail with ``error``."""
        self.record, self.error = record, error

    def fileno(self) -> int:
        """Open."""
        return 99

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> Any:
        """SO_ACCEPTCONN: not listening; the TTM query: the record."""
        if (level, optname) == (ttm.SOL_IP, ttm.TTM_SO_GET_PEER):
            if self.error is not None:
                raise OSError(self.error, os.strerror(self.error))
            return self.record
        return 0

    def getpeername(self) -> tuple[str, int]:
        """The balancer's local address."""
        return ("10.0.0.100", 40000)


@pytest.fixture
def decoder() -> Iterator[DecoderSocketLike]:
    """A socket whose decoder says the client is 203.0.113.9:51234."""
    yield DecoderSocketLike(ttm.encode_peer_record("203.0.113.9", 51234))


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_real_client_from_the_socket(decoder: DecoderSocketLike, kind: str) -> None:
    """The decoder's client replaces scope["client"], in a copy of the scope."""
    app = App()
    scope = http_scope({"ttm": {"socket": decoder}}, kind)
    run(ttm.TtmMiddleware(app), scope)
    assert app.scope is not None and app.scope is not scope
    assert app.scope["client"] == ("203.0.113.9", 51234)
    assert scope["client"] == ("10.0.0.100", 40000)  # the server's scope is untouched
    assert {k: v for k, v in app.scope.items() if k != "client"} == {k: v for k, v in scope.items() if k != "client"}


def test_ipv6_client(decoder: DecoderSocketLike) -> None:
    """An IPv6 client is written as ASGI wants it: the address as a string."""
    decoder.record = ttm.encode_peer_record("2001:db8::9", 8443)
    app = App()
    run(ttm.TtmMiddleware(app), http_scope({"ttm": {"socket": decoder}}))
    assert app.scope is not None and app.scope["client"] == ("2001:db8::9", 8443)


def test_real_client_from_the_transport(decoder: DecoderSocketLike) -> None:
    """The convention's other form: the asyncio transport."""

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return decoder if name == "socket" else default

    app = App()
    run(ttm.TtmMiddleware(app), http_scope({"ttm": {"transport": Transport()}}))
    assert app.scope is not None and app.scope["client"] == ("203.0.113.9", 51234)


def test_get_socket_hook(decoder: DecoderSocketLike) -> None:
    """A server with its own way to reach the socket passes get_socket."""
    app = App()
    middleware = ttm.TtmMiddleware(app, get_socket=lambda scope: scope["my.server"]["sock"])
    scope = http_scope()
    scope["my.server"] = {"sock": decoder}
    run(middleware, scope)
    assert app.scope is not None and app.scope["client"] == ("203.0.113.9", 51234)


@pytest.mark.usefixtures("no_decoder")
def test_real_loopback_socket_without_decoder(conn4: Connection) -> None:
    """A real socket on a host without a decoder: getpeername() says nothing new, the scope is untouched."""
    app = App()
    scope = http_scope({"ttm": {"socket": conn4.server}})
    sent = run(ttm.TtmMiddleware(app), scope)
    assert app.scope is scope
    assert sent[0]["status"] == 204
    # a raw descriptor in the scope works the same
    run(ttm.TtmMiddleware(app), http_scope({"ttm": {"socket": conn4.server.fileno()}}))
    assert app.scope is not None and app.scope["client"] == ("10.0.0.100", 40000)


def test_closed_connection_leaves_the_scope(conn4: Connection) -> None:
    """An OSError (the connection is gone) leaves the server's client for the server to handle."""
    conn4.server.close()
    app = App()
    scope = http_scope({"ttm": {"socket": conn4.server}})
    run(ttm.TtmMiddleware(app), scope)
    assert app.scope is scope
    app2 = App()
    scope2 = http_scope({"ttm": {"socket": DecoderSocketLike(None, errno.ENOTCONN)}})
    run(ttm.TtmMiddleware(app2), scope2)
    assert app2.scope is scope2


def test_record_that_does_not_decode_propagates() -> None:
    """A broken decoder is not hidden: the TtmError reaches the server."""
    sock = DecoderSocketLike(b"\x07\x00" + bytes(18))
    with pytest.raises(ttm.BadFamily):
        run(ttm.TtmMiddleware(App()), http_scope({"ttm": {"socket": sock}}))


@pytest.mark.parametrize(
    "extensions",
    [None, {}, {"ttm": None}, {"ttm": {}}, {"ttm": "socket"}, {"tls": {}}],
    ids=["no-extensions", "empty", "ttm-none", "ttm-empty", "ttm-str", "other"],
)
def test_no_socket_in_scope(extensions: Optional[dict[str, Any]]) -> None:
    """Without the convention's keys the scope passes through as it is."""
    app = App()
    scope = http_scope(extensions)
    run(ttm.TtmMiddleware(app), scope)
    assert app.scope is scope
    assert socket_from_scope(scope) is None


@pytest.mark.parametrize("kind", ["lifespan", "custom"])
def test_other_scope_types_pass_through(decoder: DecoderSocketLike, kind: str) -> None:
    """lifespan and other scopes are not looked at."""
    app = App()
    scope: Scope = {"type": kind, "extensions": {"ttm": {"socket": decoder}}}
    run(ttm.TtmMiddleware(app), scope)
    assert app.scope is scope
