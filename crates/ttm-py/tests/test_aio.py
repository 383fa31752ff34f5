"""peer_of on a real asyncio server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import errno
import re
from typing import Optional

import pytest

import ttm


def exact(message: str) -> str:
    """A ``match=`` pattern that is the whole message and nothing else."""
    return "^" + re.escape(message) + "$"


async def serve_one(check: "asyncio.Future[tuple[ttm.Peer, ttm.Peer]]") -> tuple[tuple[ttm.Peer, ttm.Peer], int]:
    """Accept one connection with start_server; the handler answers peer_of(writer) and of its transport."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            check.set_result((ttm.peer_of(writer), ttm.peer_of(writer.transport)))
        except BaseException as err:  # handed to the test
            check.set_exception(err)
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        client_port = writer.get_extra_info("sockname")[1]
        peers = await asyncio.wait_for(check, 10)
        await reader.read()  # the server closes
        writer.close()
        await writer.wait_closed()
    return peers, client_port


@pytest.mark.usefixtures("no_decoder")
def test_peer_of_stream_writer_and_transport() -> None:
    """In a start_server handler: the client, from getpeername() on this host."""

    async def main() -> tuple[tuple[ttm.Peer, ttm.Peer], int]:
        return await serve_one(asyncio.get_running_loop().create_future())

    (from_writer, from_transport), client_port = asyncio.run(main())
    expected = ttm.Peer("127.0.0.1", client_port, "peername")
    assert from_writer == expected and from_transport == expected


@pytest.mark.usefixtures("no_decoder")
def test_peer_of_in_a_protocol_and_after_close() -> None:
    """In Protocol.connection_made, peer_of(transport); once closed, EBADF."""

    class Recorder(asyncio.Protocol):
        def __init__(self) -> None:
            self.peer: Optional[ttm.Peer] = None
            self.transport: Optional[asyncio.BaseTransport] = None
            self.done = asyncio.get_running_loop().create_future()

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.peer = ttm.peer_of(transport)
            with pytest.raises(ttm.NotAvailable):
                ttm.peer_of(transport, fallback=False)
            transport.close()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self.done.set_result(None)

    async def main() -> tuple[Recorder, int]:
        loop = asyncio.get_running_loop()
        protocol = Recorder()
        server = await loop.create_server(lambda: protocol, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            await asyncio.wait_for(protocol.done, 10)
            port = writer.get_extra_info("sockname")[1]
            await reader.read()
            writer.close()
            await writer.wait_closed()
        return protocol, port

    protocol, port = asyncio.run(main())
    assert protocol.peer == ttm.Peer("127.0.0.1", port, "peername")
    assert protocol.transport is not None and protocol.transport.is_closing()
    with pytest.raises(OSError, match=exact(f"[Errno {errno.EBADF}] the socket is closed")) as info:
        ttm.peer_of(protocol.transport)
    assert info.value.errno == errno.EBADF


def test_peer_of_needs_a_transport() -> None:
    """Something without get_extra_info: TypeError."""
    with pytest.raises(
        TypeError, match=exact("peer_of needs an asyncio StreamWriter or transport, not object")
    ):
        ttm.peer_of(object())  # type: ignore[arg-type]


def test_peer_of_a_transport_without_socket() -> None:
    """A transport with no socket (a pipe, a test double): ValueError."""

    class NoSocket(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

    with pytest.raises(ValueError, match=exact("NoSocket has no socket (not a socket transport)")):
        ttm.peer_of(NoSocket())
