"""Shared fixtures: real TCP connections on loopback, and a probe of
whether this host answers the TTM query (it has no decoder here)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator

import pytest

import ttm


def _has_ipv6_loopback() -> bool:
    """Whether ``::1`` can be listened on."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


HAS_IPV6 = _has_ipv6_loopback()
LOOPBACKS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param(
        "::1",
        id="ipv6",
        marks=pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 loopback"),
    ),
]


class Connection:
    """Both ends of one loopback TCP connection, and the listener."""

    def __init__(self, host: str) -> None:
        """Listen on ``host``, connect to it, and accept."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family)
        self.client = socket.create_connection(self.listener.getsockname()[:2])
        self.server, _ = self.listener.accept()

    def close(self) -> None:
        """Close all three sockets."""
        for sock in (self.server, self.client, self.listener):
            sock.close()


@pytest.fixture(params=LOOPBACKS)
def conn(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection over IPv4 loopback, and over IPv6 loopback when there is one."""
    connection = Connection(request.param)
    yield connection
    connection.close()


@pytest.fixture
def conn4() -> Iterator[Connection]:
    """A connection over IPv4 loopback."""
    connection = Connection("127.0.0.1")
    yield connection
    connection.close()


def _host_has_decoder() -> bool:
    """Whether the kernel answers getsockopt(SOL_IP, 1345) on this host."""
    connection = Connection("127.0.0.1")
    try:
        connection.server.getsockopt(ttm.SOL_IP, ttm.TTM_SO_GET_PEER, ttm.PEER_RECORD_LEN)
    except OSError as err:
        return err.errno != errno.ENOPROTOOPT
    finally:
        connection.close()
    return True


@pytest.fixture(scope="session")
def no_decoder() -> None:
    """Skip a test that needs the kernel to refuse the TTM query."""
    if _host_has_decoder():
        pytest.skip("this host has a TTM decoder: getsockopt(SOL_IP, 1345) answers")
