"""HTTP and HTTPS listeners with curl: the client-address headers as the
backend sees them (X-Forwarded-For appended, replaced or removed,
X-Real-IP, X-Forwarded-Proto, X-Forwarded-Port; an IPv6 client on an IPv6
VIP too), weights 1:3 split
exactly by round robin, the keep-alive idle close, and 504 from a slow
backend, 502 from a closed port."""

from __future__ import annotations

from collections import Counter

from l7 import HTTP, L7Net, VIP, config, listener, net, l7_binary, resolve  # noqa: F401 (fixtures)
from netns import CLIENT, CLIENT6, LB, RS, VIP6

#: An address a client claims in the X-Forwarded-For it sends (a header
#: value only: nothing is ever sent to it).
CLAIMED = "10.77.9.9"


def xff(values: list[str]) -> list[str]:
    """The addresses of X-Forwarded-For headers, in order."""
    return [a.strip() for v in values for a in v.split(",")]


def test_forwarded_headers(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2")
    net.lbd(config(
        listener("append", 80),
        listener("replace", 8001, http={"x_forwarded_for": "replace"}),
        listener("remove", 8002, http={"x_forwarded_for": "remove", "x_real_ip": False,
                                       "x_forwarded_proto": False, "x_forwarded_port": False}),
        listener("tls", 443, "https", certificates=[c.a]),
        listener("six", 80, vip=VIP6),  # an IPv6 VIP, IPv4 backends
    ))
    claims = ["-H", f"X-Forwarded-For: {CLAIMED}", "-H", "X-Real-IP: 10.77.9.8",
              "-H", "X-Forwarded-Proto: gopher", "-H", "X-Forwarded-Port: 1"]

    # append: the client's address after what it sent; the others set by
    # the balancer whatever the client sent.
    r = net.curl(f"http://{VIP}/a", *claims)
    assert r.status == 200, r
    assert r.echo["path"] == "/a"
    assert r.echo["peer"].rsplit(":", 1)[0] == LB, f"the backend's peer is not the balancer: {r.echo}"
    assert len(r.seen("X-Forwarded-For")) == 1, r.echo["headers"]
    assert xff(r.seen("X-Forwarded-For")) == [CLAIMED, CLIENT], r.echo["headers"]
    assert r.seen("X-Real-IP") == [CLIENT], r.echo["headers"]
    assert r.seen("X-Forwarded-Proto") == ["http"], r.echo["headers"]
    assert r.seen("X-Forwarded-Port") == ["80"], r.echo["headers"]
    r = net.curl(f"http://{VIP}/")
    assert r.seen("X-Forwarded-For") == [CLIENT], r.echo["headers"]

    # replace: what the client sent is dropped.
    r = net.curl(f"http://{VIP}:8001/", *claims)
    assert r.status == 200, r
    assert r.seen("X-Forwarded-For") == [CLIENT], r.echo["headers"]
    assert r.seen("X-Real-IP") == [CLIENT], r.echo["headers"]
    assert r.seen("X-Forwarded-Port") == ["8001"], r.echo["headers"]

    # remove, and every other header off: none reaches the backend.
    r = net.curl(f"http://{VIP}:8002/", "-H", f"X-Forwarded-For: {CLAIMED}")
    assert r.status == 200, r
    names = {k.lower() for k, _ in r.echo["headers"]}
    assert not names & {"x-forwarded-for", "x-real-ip", "x-forwarded-proto", "x-forwarded-port"}, \
        r.echo["headers"]

    # HTTPS: the same headers, proto https, port 443.
    r = net.curl("https://a.test/", "--resolve", resolve("a.test", 443), "--cacert", c.ca.cert, *claims)
    assert r.status == 200, r
    assert xff(r.seen("X-Forwarded-For")) == [CLAIMED, CLIENT], r.echo["headers"]
    assert r.seen("X-Real-IP") == [CLIENT], r.echo["headers"]
    assert r.seen("X-Forwarded-Proto") == ["https"], r.echo["headers"]
    assert r.seen("X-Forwarded-Port") == ["443"], r.echo["headers"]
    assert r.seen("Host") == ["a.test"], r.echo["headers"]

    # An IPv6 client: its address as nginx writes it (no brackets).
    r = net.curl(f"http://[{VIP6}]/", "-g", "-H", f"X-Forwarded-For: {CLAIMED}")
    assert r.status == 200, r
    assert xff(r.seen("X-Forwarded-For")) == [CLAIMED, CLIENT6], r.echo["headers"]
    assert r.seen("X-Real-IP") == [CLIENT6], r.echo["headers"]
    assert r.seen("X-Forwarded-Port") == ["80"], r.echo["headers"]


N = 400


def test_weights_one_to_three(net: L7Net) -> None:
    """Smooth weighted round robin over weights 1:3: every 4 consecutive
    requests hold one rs1 and three rs2, so 400 requests on one kept-alive
    connection split exactly 100:300 whatever the phase (health checks do
    not go through the scheduler). Over HTTPS, 8 requests each on a new
    connection (a new handshake) split 2:6."""
    c = net.certs
    weighted = (("rs1", HTTP, 1), ("rs2", HTTP, 3))
    net.backends("rs1", "rs2")
    d = net.lbd(config(listener("web", 80, backends=weighted),
                       listener("tls", 443, "https", backends=weighted, certificates=[c.a])))
    answers = net.curl_many(f"http://{VIP}/", N)
    counts = Counter(a["backend"] for a in answers)
    assert counts == {"rs1": 100, "rs2": 300}, counts
    # One client connection for them all; the backends' counters agree.
    d.wait_metric("lbd_l7_connections_total", lambda v: v == 1, timeout=3, listener="web")
    for name, want in counts.items():
        d.wait_metric("lbd_l7_backend_requests_total", lambda v, w=want: v == w, timeout=3,
                      listener="web", backend=f"{RS[name]}:{HTTP}")
    https = [net.curl("https://a.test/", "--resolve", resolve("a.test", 443), "--cacert", c.ca.cert).backend
             for _ in range(8)]
    assert Counter(https) == {"rs1": 2, "rs2": 6}, https


def test_keepalive_idle_close(net: L7Net) -> None:
    """A kept-alive client connection idle for idle_timeout (2 s) is
    closed by the balancer: a raw socket sees EOF."""
    net.backends("rs1")
    net.lbd(config(listener("web", 80, backends=(("rs1", HTTP, 1),), http={"idle_timeout": "2s"})))
    got = net.python("cli", IDLE_CLIENT, VIP, "80")
    assert got["status"] == "200", got
    assert got["ended"] == "eof", got
    assert 1.5 <= got["idle"] <= 6, f"closed after {got['idle']:.2f}s idle, want 2s: {got}"


#: One HTTP/1.1 request on a raw socket, its response read whole, then
#: nothing sent until the server ends the connection (or 15 s pass).
IDLE_CLIENT = r"""
import json, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
s.sendall(b"GET / HTTP/1.1\r\nHost: idle.test\r\n\r\n")
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(65536)
head, _, body = buf.partition(b"\r\n\r\n")
lines = head.decode().split("\r\n")
length = next(int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length:"))
while len(body) < length:
    body += s.recv(65536)
t0 = time.monotonic()
try:
    ended = "data" if s.recv(65536) else "eof"
except socket.timeout:
    ended = "timeout"
except ConnectionResetError:
    ended = "reset"
print(json.dumps({"status": lines[0].split()[1], "ended": ended, "idle": time.monotonic() - t0}))
"""


def test_slow_backend_504_closed_port_502(net: L7Net) -> None:
    net.backends("rs1")
    d = net.lbd(config(
        listener("slow", 80, backends=(("rs1", HTTP, 1),), http={"read_timeout": "1s"}),
        # Nothing listens on rs1:9999: connections are refused. No health
        # check, so the backend stays up and is tried.
        listener("closed", 8001, backends=(("rs1", 9999, 1),), health=None),
    ))
    assert net.curl(f"http://{VIP}/").status == 200
    r = net.curl(f"http://{VIP}/sleep/4")
    assert r.status == 504, r
    r = net.curl(f"http://{VIP}:8001/")
    assert r.status == 502, r
    # A quick request after the slow one still works.
    assert net.curl(f"http://{VIP}/sleep/0.2").status == 200
    rs1 = f"{RS['rs1']}:{HTTP}"
    d.wait_metric("lbd_l7_backend_timeouts_total", lambda v: v == 1, timeout=3, listener="slow", backend=rs1)
    d.wait_metric("lbd_l7_backend_connect_failures_total", lambda v: v is not None and v >= 1, timeout=3,
                  listener="closed", backend=f"{RS['rs1']}:9999")
