"""``get_peer``: the client's real address of a connected TCP socket.

The query is the one the product FAQ's example makes,
``getsockopt(SOL_IP, TTM_SO_GET_PEER, PEER_RECORD_LEN)``, answered by the
``kgwttm`` kernel module or the ``ttm-agent`` eBPF programs; the record is
decoded by ``ttm-core``. It runs through Python's own ``socket`` objects,
so every OS-level failure is the ``OSError`` (with its ``errno``) that the
``socket`` module raises, and an IPv6 ``getpeername()`` is decoded by
CPython.

The caller's socket is never closed or taken over: a socket object is used
as it is, and a bare file descriptor (an ``int``, or an object with
``fileno()``) is ``dup()``-ed into a temporary socket that is closed
before returning.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator, Protocol, Union

from ._ttm import (
    PEER_RECORD_LEN,
    SOL_IP,
    TTM_SO_GET_PEER,
    NotAvailable,
    Peer,
    decode_peer_record,
)

__all__ = ["get_peer"]


class _HasFileno(Protocol):
    """Anything with a file descriptor, as ``select`` takes it."""

    def fileno(self) -> int:
        """The file descriptor."""
        ...


_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def get_peer(sock: Union[socket.socket, _HasFileno, int], *, fallback: bool = True) -> Peer:
    """Return the real client of the connected TCP socket ``sock``.

    ``sock`` is a ``socket.socket`` (or a socket-like object such as
    asyncio's ``TransportSocket``), any object with ``fileno()``, or an
    ``int`` file descriptor; it is not closed.

    Asks the kernel with ``getsockopt(SOL_IP, TTM_SO_GET_PEER, 20)`` and
    returns the decoded record (``source == "ttm"``). When this host has no
    TTM decoder (the kernel answers ``ENOPROTOOPT``) it returns the
    socket's ``getpeername()`` (``source == "peername"``), or raises
    ``NotAvailable`` when ``fallback`` is false.

    Raises ``TypeError`` for an object that is not a socket or file
    descriptor; ``ValueError`` for a socket that is not TCP over IPv4 or
    IPv6; ``OSError`` with ``errno`` ``EBADF`` (closed), ``ENOTSOCK`` (not
    a socket) or ``ENOTCONN`` (listening, or not connected); a ``TtmError``
    if the kernel's record does not decode.
    """
    with _borrow(sock) as conn:
        _check_tcp(conn)
        try:
            record = conn.getsockopt(SOL_IP, TTM_SO_GET_PEER, PEER_RECORD_LEN)
        except OSError as err:
            if err.errno != errno.ENOPROTOOPT:
                raise
            if not fallback:
                raise NotAvailable(
                    errno.ENOPROTOOPT,
                    f"no TTM decoder on this host: getsockopt(SOL_IP, {TTM_SO_GET_PEER}) "
                    "answered ENOPROTOOPT (load the kgwttm module or the ttm-agent, "
                    "or pass fallback=True to get getpeername())",
                ) from None
            return _peername(conn)
        return decode_peer_record(record)


def _is_socket_like(obj: object) -> bool:
    """Whether ``obj`` can be queried as it is, without a file descriptor."""
    if isinstance(obj, socket.socket):
        return True
    return all(
        hasattr(obj, name)
        for name in ("family", "type", "fileno", "getsockopt", "getpeername")
    )


@contextmanager
def _borrow(sock: Any) -> Iterator[Any]:
    """Yield a socket object for ``sock`` without taking ownership of it."""
    if _is_socket_like(sock):
        if sock.fileno() < 0:
            raise OSError(errno.EBADF, "the socket is closed")
        yield sock
        return
    if isinstance(sock, int) and not isinstance(sock, bool):
        fd = sock
    elif callable(getattr(sock, "fileno", None)):
        fd = sock.fileno()
    else:
        raise TypeError(
            "get_peer needs a socket, an object with fileno() or an int file "
            f"descriptor, not {type(sock).__name__}"
        )
    if fd < 0:
        raise OSError(errno.EBADF, f"file descriptor {fd} is not open (a closed socket?)")
    try:
        dup = os.dup(fd)
    except OSError as err:
        if err.errno == errno.EBADF:
            raise OSError(errno.EBADF, f"file descriptor {fd} is not open") from None
        raise
    try:
        conn = socket.socket(fileno=dup)
    except OSError as err:
        os.close(dup)
        if err.errno == errno.ENOTSOCK:
            raise OSError(errno.ENOTSOCK, f"file descriptor {fd} is not a socket") from None
        raise
    with conn:
        yield conn


def _check_tcp(conn: Any) -> None:
    """Refuse a socket that is not TCP over IPv4/IPv6, or that listens."""
    family, kind = conn.family, conn.type
    proto = getattr(conn, "proto", 0)
    if family not in _TCP_FAMILIES or kind != socket.SOCK_STREAM:
        what = f"{_name(family, socket.AddressFamily)}/{_name(kind, socket.SocketKind)}"
    elif proto not in (0, socket.IPPROTO_TCP):
        what = f"protocol {proto}"
    else:
        what = None
    if what is not None:
        raise ValueError(
            f"get_peer needs a TCP socket (AF_INET or AF_INET6, SOCK_STREAM), not {what}"
        )
    if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        raise OSError(
            errno.ENOTCONN,
            "a listening socket has no peer: pass the socket that accept() returned",
        )


def _peername(conn: Any) -> Peer:
    """The socket's ``getpeername()`` as a ``Peer`` with source "peername"."""
    try:
        address = conn.getpeername()
    except OSError as err:
        if err.errno == errno.ENOTCONN:
            raise OSError(errno.ENOTCONN, "the socket is not connected: it has no peer") from None
        raise
    return Peer(ipaddress.ip_address(address[0]), address[1], "peername")


def _name(value: int, enum: Any) -> str:
    """The symbolic name of a family or socket type, for messages."""
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)
