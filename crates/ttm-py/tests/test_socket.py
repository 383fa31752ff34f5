"""get_peer on real loopback sockets.

This host has no TTM decoder, so the kernel answers the query with
ENOPROTOOPT: get_peer falls back to getpeername(), or raises NotAvailable.
The decoder's answer itself is played by a real connected socket whose
getsockopt(SOL_IP, 1345) returns a record (a socket.socket subclass).
"""

from __future__ import annotations

import errno
import os
import re
import socket
from collections.abc import Iterator
from ipaddress import ip_address
from typing import Any, Callable, Optional, Union

import pytest
from conftest import Connection

import ttm


def exact(message: str) -> str:
    """A ``match=`` pattern that is the whole message and nothing else."""
    return "^" + re.escape(message) + "$"


class HasFileno:
    """An object that is not a socket but has the socket's file descriptor."""

    def __init__(self, fd: int) -> None:
        """Hold ``fd``."""
        self.fd = fd

    def fileno(self) -> int:
        """The file descriptor."""
        return self.fd


# --- no decoder: the fallback ------------------------------------------


@pytest.mark.usefixtures("no_decoder")
def test_kernel_refuses_the_query(conn: Connection) -> None:
    """What the fallback rests on: without a decoder the kernel says ENOPROTOOPT."""
    with pytest.raises(OSError) as info:
        conn.server.getsockopt(ttm.SOL_IP, ttm.TTM_SO_GET_PEER, ttm.PEER_RECORD_LEN)
    assert info.value.errno == errno.ENOPROTOOPT


@pytest.mark.usefixtures("no_decoder")
@pytest.mark.parametrize(
    "wrap",
    [lambda s: s, lambda s: s.fileno(), lambda s: HasFileno(s.fileno())],
    ids=["socket", "fd", "fileno"],
)
def test_fallback_is_getpeername(conn: Connection, wrap: Callable[[socket.socket], Any]) -> None:
    """get_peer is the client's address from getpeername(), source "peername"."""
    host, port = conn.client.getsockname()[:2]
    peer = ttm.get_peer(wrap(conn.server))
    assert peer == ttm.Peer(ip_address(host), port, "peername")
    assert peer.source == "peername" and peer.kind is None
    assert (str(peer.ip), peer.port) == conn.server.getpeername()[:2]


@pytest.mark.usefixtures("no_decoder")
@pytest.mark.parametrize(
    "wrap",
    [lambda s: s, lambda s: s.fileno(), lambda s: HasFileno(s.fileno())],
    ids=["socket", "fd", "fileno"],
)
def test_no_fallback_raises_not_available(conn: Connection, wrap: Callable[[socket.socket], Any]) -> None:
    """fallback=False: NotAvailable, an OSError with errno ENOPROTOOPT."""
    with pytest.raises(
        ttm.NotAvailable,
        match=exact(
            f"[Errno {errno.ENOPROTOOPT}] no TTM decoder on this host: getsockopt(SOL_IP, 1345) "
            "answered ENOPROTOOPT (load the kgwttm module or the ttm-agent, or pass "
            "fallback=True to get getpeername())"
        ),
    ) as info:
        ttm.get_peer(wrap(conn.server), fallback=False)
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOPROTOOPT


@pytest.mark.usefixtures("no_decoder")
@pytest.mark.parametrize("how", ["socket", "fd", "fileno"])
def test_the_socket_is_not_taken_over(conn4: Connection, how: str) -> None:
    """get_peer neither closes nor changes the caller's socket, nor leaks a descriptor."""
    before = len(os.listdir("/proc/self/fd"))
    fd = conn4.server.fileno()
    targets: dict[str, Union[socket.socket, int, HasFileno]] = {
        "socket": conn4.server,
        "fd": fd,
        "fileno": HasFileno(fd),
    }
    target = targets[how]
    for _ in range(3):
        ttm.get_peer(target)
        with pytest.raises(ttm.NotAvailable):
            ttm.get_peer(target, fallback=False)
    assert conn4.server.fileno() == fd
    assert len(os.listdir("/proc/self/fd")) == before
    conn4.client.sendall(b"ping")
    assert conn4.server.recv(4) == b"ping"
    conn4.server.sendall(b"pong")
    assert conn4.client.recv(4) == b"pong"


def test_each_of_many_clients(conn4: Connection) -> None:
    """Several connections on one listener: each gets its own client."""
    clients = [socket.create_connection(conn4.listener.getsockname()) for _ in range(3)]
    try:
        for client in clients:
            server, _ = conn4.listener.accept()
            with server:
                assert ttm.get_peer(server).port == client.getsockname()[1]
    finally:
        for client in clients:
            client.close()


# --- the decoder's answer ----------------------------------------------


class DecoderSocket(socket.socket):
    """A real connected socket whose kernel answers the TTM query with ``record``."""

    record: Optional[bytes] = None
    error: Optional[int] = None

    def getsockopt(self, level: int, optname: int, buflen: Optional[int] = None) -> Any:
        """The TTM query gets ``record`` (or ``error``); anything else the real kernel."""
        if (level, optname) == (ttm.SOL_IP, ttm.TTM_SO_GET_PEER):
            assert buflen == ttm.PEER_RECORD_LEN
            if self.error is not None:
                raise OSError(self.error, os.strerror(self.error))
            return self.record
        if buflen is None:
            return super().getsockopt(level, optname)
        return super().getsockopt(level, optname, buflen)


@pytest.fixture
def decoder(conn4: Connection) -> Iterator[DecoderSocket]:
    """The server end of a loopback connection, answering the TTM query."""
    sock = DecoderSocket(fileno=conn4.server.detach())
    conn4.server = sock  # closed with the connection
    yield sock


@pytest.mark.parametrize(
    ("ip", "port"),
    [("203.0.113.9", 51234), ("2001:db8::9", 8443), ("::ffff:192.0.2.1", 80)],
)
@pytest.mark.parametrize("fallback", [True, False])
def test_decoder_answer_is_the_real_client(decoder: DecoderSocket, ip: str, port: int, fallback: bool) -> None:
    """With a decoder, the record is the peer (source "ttm"), not getpeername()."""
    decoder.record = ttm.encode_peer_record(ip, port)
    peer = ttm.get_peer(decoder, fallback=fallback)
    assert peer == ttm.Peer(ip, port, "ttm")
    assert str(peer.ip) != decoder.getpeername()[0]


def test_decoder_answer_that_does_not_decode(decoder: DecoderSocket) -> None:
    """A record the kernel got wrong is a TtmError, whatever fallback says."""
    decoder.record = ttm.encode_peer_record("192.0.2.1", 1)[:12]
    with pytest.raises(ttm.Truncated, match=exact("truncated: 20 bytes needed, 12 given")):
        ttm.get_peer(decoder)


def test_decoder_errors_other_than_enoprotoopt_propagate(decoder: DecoderSocket) -> None:
    """Only ENOPROTOOPT means "no decoder"; another errno is the caller's to see."""
    decoder.error = errno.ENOENT
    with pytest.raises(FileNotFoundError, match=exact(f"[Errno {errno.ENOENT}] No such file or directory")):
        ttm.get_peer(decoder)


# --- what is not a connected TCP socket ---------------------------------


def test_udp_socket() -> None:
    """A UDP socket is refused before any query."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("127.0.0.1", 9))
        for target in (udp, udp.fileno()):
            with pytest.raises(
                ValueError,
                match=exact("get_peer needs a TCP socket (AF_INET or AF_INET6, SOCK_STREAM), not AF_INET/SOCK_DGRAM"),
            ):
                ttm.get_peer(target)


def test_unix_socket() -> None:
    """A Unix stream socket is refused."""
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(
            ValueError,
            match=exact("get_peer needs a TCP socket (AF_INET or AF_INET6, SOCK_STREAM), not AF_UNIX/SOCK_STREAM"),
        ):
            ttm.get_peer(left)


def test_listening_socket(conn4: Connection) -> None:
    """A listening socket has no peer: ENOTCONN, with fallback or without."""
    for fallback in (True, False):
        for target in (conn4.listener, conn4.listener.fileno()):
            with pytest.raises(
                OSError,
                match=exact(
                    f"[Errno {errno.ENOTCONN}] a listening socket has no peer: "
                    "pass the socket that accept() returned"
                ),
            ) as info:
                ttm.get_peer(target, fallback=fallback)
            assert info.value.errno == errno.ENOTCONN


@pytest.mark.usefixtures("no_decoder")
def test_unconnected_socket() -> None:
    """A TCP socket never connected: ENOTCONN from the fallback."""
    with socket.socket() as fresh:
        with pytest.raises(
            OSError, match=exact(f"[Errno {errno.ENOTCONN}] the socket is not connected: it has no peer")
        ) as info:
            ttm.get_peer(fresh)
        assert info.value.errno == errno.ENOTCONN
        with pytest.raises(ttm.NotAvailable):
            ttm.get_peer(fresh, fallback=False)


def test_closed_socket(conn4: Connection) -> None:
    """A closed socket object: EBADF, with a message that says so."""
    conn4.server.close()
    with pytest.raises(OSError, match=exact(f"[Errno {errno.EBADF}] the socket is closed")) as info:
        ttm.get_peer(conn4.server)
    assert info.value.errno == errno.EBADF


def test_closed_file_descriptor(conn4: Connection) -> None:
    """A file descriptor that is not open: EBADF."""
    fd = os.dup(conn4.server.fileno())
    os.close(fd)
    for target in (fd, HasFileno(fd)):
        with pytest.raises(OSError, match=exact(f"[Errno {errno.EBADF}] file descriptor {fd} is not open")):
            ttm.get_peer(target)
    with pytest.raises(
        OSError, match=exact(f"[Errno {errno.EBADF}] file descriptor -1 is not open (a closed socket?)")
    ):
        ttm.get_peer(-1)


def test_not_a_socket() -> None:
    """A pipe's file descriptor: ENOTSOCK; and nothing is leaked."""
    before = len(os.listdir("/proc/self/fd"))
    read, write = os.pipe()
    try:
        with pytest.raises(OSError, match=exact(f"[Errno {errno.ENOTSOCK}] file descriptor {read} is not a socket")):
            ttm.get_peer(read)
    finally:
        os.close(read)
        os.close(write)
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.mark.parametrize(
    ("value", "name"),
    [("3", "str"), (3.0, "float"), (None, "NoneType"), (True, "bool"), (b"", "bytes")],
)
def test_not_a_socket_at_all(value: object, name: str) -> None:
    """Anything else is a TypeError."""
    with pytest.raises(
        TypeError,
        match=exact(f"get_peer needs a socket, an object with fileno() or an int file descriptor, not {name}"),
    ):
        ttm.get_peer(value)  # type: ignore[arg-type]


def test_stream_socket_of_another_protocol() -> None:
    """A socket-like object of stream type but another protocol (SCTP, 132) is refused."""

    class SctpLike:
        family, type, proto = socket.AF_INET, socket.SOCK_STREAM, 132

        def fileno(self) -> int:
            return 0

        def getsockopt(self, *args: int) -> int:
            raise AssertionError("queried")

        def getpeername(self) -> tuple[str, int]:
            raise AssertionError("queried")

    with pytest.raises(
        ValueError,
        match=exact("get_peer needs a TCP socket (AF_INET or AF_INET6, SOCK_STREAM), not protocol 132"),
    ):
        ttm.get_peer(SctpLike())
