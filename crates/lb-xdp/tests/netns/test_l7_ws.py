"""WebSocket through HTTP and HTTPS listeners with the ``websockets``
client: messages echo through WS and WSS, and a WebSocket whose backend
sends nothing for ``websocket_idle_timeout`` (2 s) is closed, while one
whose backend keeps answering stays open past it."""

from __future__ import annotations

from l7 import HEALTH, VIP, WS, L7Net, config, l7_binary, listener, net  # noqa: F401 (fixtures)

WS_BACKENDS = (("rs1", WS, 1), ("rs2", WS, 1))
#: l7_backend.py answers health checks on its WebSocket port too.
WS_HEALTH = HEALTH


def test_ws_and_wss_echo(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2", ws=True)
    net.lbd(config(
        listener("ws", 80, backends=WS_BACKENDS, health=WS_HEALTH),
        listener("wss", 443, "https", backends=WS_BACKENDS, health=WS_HEALTH, certificates=[c.a]),
    ))
    for _ in range(2):  # both backends (round robin)
        got = net.ws("ws://ws.test/echo", 80, "echo")
        assert got == {"echoed": [True, True, True]}, got
        got = net.ws("wss://a.test/echo", 443, "echo", str(c.ca.cert))
        assert got == {"echoed": [True, True, True]}, got


#: With the backend silent the close comes after websocket_idle_timeout
#: (2 s); the bounds allow for a loaded machine, not for speed.
LOW, HIGH = 1.5, 6.0


def test_ws_idle_close(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2", ws=True)
    idle = {"websocket_idle_timeout": "2s"}
    net.lbd(config(
        listener("ws", 80, backends=WS_BACKENDS, health=WS_HEALTH, http=idle),
        listener("wss", 443, "https", backends=WS_BACKENDS, health=WS_HEALTH, http=idle,
                 certificates=[c.a]),
    ))
    got = net.ws("ws://ws.test/silent", 80, "idle", "", "15")
    assert got["ended"] == "closed" and LOW <= got["elapsed"] <= HIGH, f"WS to a silent backend: {got}"
    got = net.ws("wss://a.test/silent", 443, "idle", str(c.ca.cert), "15")
    assert got["ended"] == "closed" and LOW <= got["elapsed"] <= HIGH, f"WSS to a silent backend: {got}"
    # A backend that answers every 0.5 s is never idle for 2 s: the
    # WebSocket lives on past the timeout.
    got = net.python("cli", CHATTY, "ws://ws.test/echo", VIP, "80")
    assert got == {"answers": 10, "open": True}, got


#: Sends a message every 0.5 s for 5 s, each answered by the echo backend;
#: then says whether the connection is still open.
CHATTY = r"""
import json, socket, sys, time
from websockets.sync.client import connect
sock = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
answers = 0
with connect(sys.argv[1], sock=sock, ping_interval=None, open_timeout=5, close_timeout=2) as ws:
    for i in range(10):
        ws.send(str(i))
        answers += ws.recv(timeout=5) == str(i)
        time.sleep(0.5)
    ws.send("last")
    is_open = ws.recv(timeout=5) == "last"
print(json.dumps({"answers": answers, "open": is_open}))
"""
