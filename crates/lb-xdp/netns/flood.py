"""A SYN flood with a legitimate client beside it: what
``scripts/bench-lbd --synflood`` reports and ``test_synflood.py`` checks.

The flood (``bench/syn_flood.c``) sends SYNs to the VIP from spoofed
addresses in ``SPOOFED`` (inside the tests' own 10.77.0.0/16, owned by no
host), never twice from the same address and port: nobody answers the
SYN-ACKs, so every SYN leaves a half-open session of its own. The balancer routes that prefix through the client's host, so a
SYN-ACK toward a spoofed address costs a route lookup, not an ARP request
that never resolves. Meanwhile a legitimate client opens one connection
after another (an HTTP request each, answered within ``TIMEOUT``: room
for one SYN retransmission, which Linux sends after 1 s) and records each
one's outcome and latency; each RS counts the SYNs it gets
(an nftables counter), to compare with the sessions the balancer made.
"""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .topology import CLIENT, VIP, Topology

ROOT = Path(__file__).resolve().parents[3]
#: Where the spoofed sources come from: inside 10.77.0.0/16, no host's.
SPOOFED = ("10.77.128.0", 17)
#: How long a legitimate connection and its request may take.
TIMEOUT = 3.0


def build_flooder(out: Path) -> Path:
    """``bench/syn_flood.c``, compiled into ``out``."""
    exe = out / "syn_flood"
    src = ROOT / "crates/lb-xdp/bench/syn_flood.c"
    subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True)
    return exe


def route_spoofed(topo: Topology) -> None:
    """Replies to the spoofed prefix go through the client's host."""
    topo.run("lb", "ip", "route", "replace", f"{SPOOFED[0]}/{SPOOFED[1]}", "via", CLIENT)


def count_syns(topo: Topology, host: str, port: int) -> None:
    """An nftables counter of the SYNs ``host`` receives on ``port``."""
    topo.run(host, "nft", "add", "table", "inet", "lbt_syns")
    topo.run(host, "nft", "add", "chain", "inet", "lbt_syns", "input",
             "{ type filter hook input priority 0; }")
    topo.run(host, "nft", "add", "rule", "inet", "lbt_syns", "input", "tcp", "dport", str(port),
             "tcp", "flags", "&", "(syn|ack)", "==", "syn", "counter")


def syns(topo: Topology, host: str) -> int:
    """The SYNs counted on ``host`` so far."""
    out = topo.run(host, "nft", "list", "table", "inet", "lbt_syns").stdout
    for word, value in zip(out.split(), out.split()[1:]):
        if word == "packets":
            return int(value)
    raise AssertionError(f"no counter on {host}: {out}")


@dataclass
class Attempt:
    phase: str
    ok: bool
    seconds: float
    error: Optional[str] = None


@dataclass
class Phase:
    """One phase's legitimate connections."""

    name: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return sum(a.ok for a in self.attempts)

    def rate(self) -> float:
        return self.ok / len(self.attempts) if self.attempts else 0.0

    def latency_ms(self, q: float) -> float:
        ok = sorted(a.seconds for a in self.attempts if a.ok)
        if not ok:
            return float("nan")
        return 1000 * ok[min(len(ok) - 1, int(q * len(ok)))]

    def summary(self) -> str:
        errors = sorted({a.error for a in self.attempts if a.error})
        return (f"{self.name:>6}: {self.ok}/{len(self.attempts)} connections "
                f"({100 * self.rate():.1f}%), latency p50 {self.latency_ms(0.5):.1f} ms, "
                f"p99 {self.latency_ms(0.99):.1f} ms, max {self.latency_ms(1.0):.1f} ms"
                + (f"; errors: {errors[:3]}" if errors else ""))


class LegitClient:
    """Connections from the client's own address, one after another, on a
    thread, each an HTTP request through the balancer (``TIMEOUT``)."""

    def __init__(self, topo: Topology, port: int = 80) -> None:
        self.agent = topo.agent("cli")
        self.port = port
        self.phase = "before"
        self.phases: dict[str, Phase] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LegitClient":
        self._thread.start()
        return self

    def set_phase(self, name: str) -> None:
        self.phase = name

    def stop(self) -> dict[str, Phase]:
        self._stop.set()
        self._thread.join(30)
        return self.phases

    def _run(self) -> None:
        while not self._stop.is_set():
            phase = self.phase
            t = time.monotonic()
            r = self.agent.get(host=VIP, port=self.port, timeout=TIMEOUT)
            took = time.monotonic() - t
            ok = bool(r["bodies"])
            self.phases.setdefault(phase, Phase(phase)).attempts.append(
                Attempt(phase, ok, took, None if ok else r["errors"][0]))
            time.sleep(0.02)


def flood(topo: Topology, flooder: Path, seconds: float, rate: float = 0) -> subprocess.Popen[str]:
    """Start the flood from the client's host; ``communicate()`` gives the
    count sent."""
    return topo.popen("cli", flooder, VIP, "80", str(seconds), str(rate), SPOOFED[0],
                      str(SPOOFED[1]), stdout=subprocess.PIPE, text=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
