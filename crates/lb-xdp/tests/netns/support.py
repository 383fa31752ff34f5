"""Helpers shared by the netns tests and their fixtures (conftest.py).
Importing this module puts crates/lb-xdp on sys.path, for the ``netns``
package."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # crates/lb-xdp

import pytest  # noqa: E402

from netns import Agent, AgentError, Lbd, LbdError, Metrics, Topology, nginx  # noqa: E402

#: The port every RS serves HTTP on.
PORT = 8080


class Net:
    """A topology with an agent on the client and on each RS."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.cli = topo.agent("cli")
        self.rs: dict[str, Agent] = {name: topo.agent(name) for name in ("rs1", "rs2", "rs3")}
        self._lbds: list[Lbd] = []

    def serve(self, *names: str) -> None:
        """Start the HTTP server on port 8080 of each RS named (one that an
        earlier test of the module started is left as it is)."""
        for name in names:
            try:
                self.rs[name].serve(port=PORT, name=name)
            except AgentError as e:
                if "already serving" not in str(e):
                    raise

    def lbd(self, text: str, binary: Path) -> Lbd:
        d = Lbd(self.topo, text, path=binary)
        self._lbds.append(d)
        return d.start()

    def stop_all(self) -> None:
        """Stop every lbd started (SIGTERM), checking each exits with 0."""
        errors = stop_lbds(self._lbds)
        if errors:
            pytest.fail("lbd did not stop cleanly:\n" + "\n".join(errors), pytrace=False)


def stop_lbds(lbds: list[Lbd]) -> list[str]:
    """Stop every lbd of ``lbds`` still running (SIGTERM), clean up after
    each, and empty the list; the errors of those that did not exit with
    0. ``LBT_SHOW_LOG`` set: print each one's log first."""
    errors = []
    for d in lbds:
        if os.environ.get("LBT_SHOW_LOG"):
            print(f"\n--- lbd log ({d.log_path})\n{d.log()}")
        if d.running():
            try:
                d.stop()
            except LbdError as e:
                errors.append(str(e))
        d.cleanup()
    lbds.clear()
    return errors


def xdp_attached(net: Net) -> bool:
    """Whether an XDP program is attached to the balancer's eth0."""
    out = net.topo.run("lb", "ip", "-d", "link", "show", "dev", "eth0").stdout
    return "prog/xdp" in out


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


BODY = re.compile(r"^(rs\d) (\S+) (\d+)\n$")


def parse_body(body: str) -> tuple[str, str, int]:
    """``"rs1 10.77.0.200 40001\\n"`` -> (``rs1``, ``10.77.0.200``, 40001)."""
    m = BODY.match(body)
    assert m, f"unexpected body {body!r}"
    return m.group(1), m.group(2), int(m.group(3))


def wait_backends_up(d: Lbd, listener: str, addrs: list[str], timeout: float = 5) -> None:
    for a in addrs:
        d.wait_metric("lbd_backend_up", lambda v: v == 1, timeout=timeout, listener=listener,
                      address=a, port=str(PORT))


def start_nginx(net: Net, host: str, directory: Path, port: int = PORT) -> None:
    """nginx on ``port`` of ``host`` (see :mod:`netns.nginx`), its files in
    ``directory``, once it answers."""
    nginx.start(net.topo, host, directory, port)
    addr = net.topo.addr(host)
    wait_until(lambda: net.topo.run("cli", "curl", "-sS", "--max-time", "1",
                                    f"http://{addr}:{port}/", check=False).returncode == 0,
               10, f"nginx on {host}")


def nstat(net: Net, host: str, counter: str) -> int:
    """The absolute value of one of ``host``'s kernel SNMP counters
    (``nstat -asz``: absolute, no history file written, zeros shown)."""
    out = net.topo.run(host, "nstat", "-asz", counter).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == counter:
            return int(fields[1])
    raise AssertionError(f"nstat in {host} does not show {counter}: {out!r}")


WRK_RATE = re.compile(r"Requests/sec:\s+([\d.]+)")
WRK_REQUESTS = re.compile(r"(\d+) requests in ")
WRK_SOCKET_ERRORS = re.compile(
    r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def wrk(net: Net, url: str, seconds: int, connections: int = 64, threads: int = 2) -> dict[str, Any]:
    """wrk from the client, keep-alive: {"rate" (requests/s), "requests",
    "errors" (socket errors of every kind plus non-2xx answers), "output"}."""
    out = net.topo.run("cli", "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", url,
                       timeout=seconds + 60).stdout
    rate = WRK_RATE.search(out)
    requests = WRK_REQUESTS.search(out)
    assert rate and requests, f"cannot read wrk's output:\n{out}"
    errors = 0
    socket_errors = WRK_SOCKET_ERRORS.search(out)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    non_2xx = WRK_NON_2XX.search(out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return {"rate": float(rate.group(1)), "requests": int(requests.group(1)), "errors": errors,
            "output": out}


def identity(m: Metrics, queue: str = "0") -> dict[str, tuple[float, float, float, float]]:
    """The terms of lbd's accounting identity (every frame received, or
    made by lbd, is sent, dropped or held) for each origin of ``queue``,
    from one scrape: {"received": (came, sent, dropped, held), "own":
    (...)}."""
    out = {}
    for origin, came in (("received", "lbd_frames_received_total"), ("own", "lbd_frames_own_total")):
        c = m.get(came, queue=queue)
        sent = m.get("lbd_frames_sent_total", queue=queue, origin=origin)
        held = m.get("lbd_frames_held", queue=queue, origin=origin)
        assert c is not None and sent is not None and held is not None, m.text
        dropped = m.sum("lbd_frames_dropped_total", queue=queue, origin=origin)
        out[origin] = (c, sent, dropped, held)
    return out


def assert_identity(d: Lbd, queue: str = "0") -> Metrics:
    """One scrape; the identity must hold in it, exactly."""
    m = d.metrics()
    for origin, (came, sent, dropped, held) in identity(m, queue).items():
        assert came == sent + dropped + held, (
            f"{origin}: {came:.0f} frames, but sent {sent:.0f} + dropped {dropped:.0f} "
            f"+ held {held:.0f} = {sent + dropped + held:.0f}")
    return m
