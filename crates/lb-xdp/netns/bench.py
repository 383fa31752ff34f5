"""The lbd benchmark (issue 8): the same one-armed veth topology as the
tests, every balancer doing the same FULLNAT job, modes interleaved over
several rounds; medians with min-max.

- UDP packets/s (64-byte frames, 16 flows, weights 1:3 over two sinks):
  ``reflector`` (``lbd reflect``: the same XDP program and AF_XDP loop with
  no engine, frames sent on to rs1 and rs2 1:3 by MAC address alone, the
  I/O ceiling), ``lbd``, and ``nftables`` (kernel DNAT + SNAT to a local
  address).
- New TCP connections/s (wrk with ``Connection: close``) and keep-alive
  requests/s (wrk): ``direct`` (client to rs1, no balancer, for scale),
  ``lbd``, ``nftables``, ``haproxy`` (TCP mode, two threads).

Every run of a FULLNAT balancer gets local addresses of its own, never
used before in the benchmark: a server keeps a connection it closed in
TIME_WAIT for 60 s, and a new connection on the same (local address, port)
within that time waits for a SYN retransmission. lbd avoids that by
quarantining closed tuples, but a new lbd process (each run starts one)
does not know what the previous one used, nor does nftables or HAProxy.
Fresh addresses give every mode the state of a balancer that has run for
a while.

Each figure comes with the CPU the balancer took: its own process time
(``proc``; nftables works in softirq and has none) and the whole machine's
softirq share (``sirq``), both as % of one core. All processes share the
machine's cores, so a figure is the cost of client, balancer and servers
together.

``--synflood`` measures something else: a legitimate client's connections
through lbd (session table of ``--capacity`` 2000) before, during and after
a flood of spoofed SYNs (see ``flood.py``), at the highest rate the machine
allows and at lower ones (``--rates``), and how many SYNs reached the
servers against the sessions lbd admitted.

``--queues N`` gives the balancer's eth0 N receive queues (and lbd an
engine per queue); the switch spreads the flows over them by hash, so
about ``(N-1)/N`` of the replies reach lbd on another queue than their
session's and are handed over. The reflector serves one queue, so it is
left out with more than one.

``--l7`` measures lbd's HTTP and HTTPS listeners beside nginx and HAProxy
as L7 proxies (see ``bench_l7.py``).

Run as root: ``scripts/bench-lbd [--rounds 5] [--seconds 5] [--queues N]``,
``scripts/bench-lbd --l7 [--rounds 5] [--seconds 5] [--only REGEX]`` or
``scripts/bench-lbd --synflood [--seconds 10] [--capacity 2000] [--rates 0,100000,50000]``.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netns import bench_l7, flood, nginx  # noqa: E402
from netns.lbd import Lbd, config  # noqa: E402
from netns.topology import CLIENT, LIPS, RS, VIP, Topology, stop_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]
TICK = os.sysconf("SC_CLK_TCK")
UDP_PORT = 9000
HTTP_PORT = 8080
WEIGHTS = {"rs1": 1, "rs2": 3}
#: Local addresses for the balancers' runs, each used once: 10.77.0.20 on.
FRESH_LIPS = [f"10.77.0.{n}" for n in range(20, 100)]


def build_tools(out: Path) -> dict[str, Path]:
    """The UDP load tools (C, ours), and lbd in release mode."""
    tools = {}
    for name in ("udp_flood", "udp_sink"):
        exe = out / name
        src = ROOT / "crates/lb-xdp/bench" / f"{name}.c"
        subprocess.run(["gcc", "-O2", "-Wall", "-Werror", "-o", exe, src], check=True)
        tools[name] = exe
    subprocess.run(["cargo", "build", "-q", "--release", "-p", "lb-xdp", "--bin", "lbd"],
                   cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    tools["lbd"] = target / "release/lbd"
    return tools


def cpu_times(pid: Optional[int]) -> tuple[float, float]:
    """(process CPU seconds, machine softirq seconds) now."""
    proc = 0.0
    if pid is not None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            proc = (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            proc = 0.0
    cpu = Path("/proc/stat").read_text().splitlines()[0].split()
    return proc, int(cpu[7]) / TICK


class Bench:
    def __init__(self, topo: Topology, tools: dict[str, Path], seconds: float, tmp: Path,
                 only: str = "", queues: int = 1) -> None:
        self.only = re.compile(only)
        self.queues = queues
        self.topo = topo
        self.tools = tools
        self.seconds = seconds
        self.tmp = tmp
        self.macs = {h: self.mac(h) for h in ("lb", *WEIGHTS)}
        self.fresh = iter(FRESH_LIPS)

    def mac(self, host: str) -> str:
        return self.topo.run(host, "cat", "/sys/class/net/eth0/address").stdout.strip()

    # -- set-up of the hosts ---------------------------------------------
    def prepare(self) -> None:
        for rs in WEIGHTS:
            # The reflector delivers frames still addressed to the VIP: rs1
            # takes them on lo, without answering ARP for it (LVS-DR style).
            self.topo.run(rs, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
            self.topo.run(rs, "sysctl", "-qw", "net.ipv4.conf.all.arp_announce=2")
            self.topo.run(rs, "ip", "addr", "add", f"{VIP}/32", "dev", "lo")
            self.start_nginx(rs)
        for lip in FRESH_LIPS:
            self.topo.run("lb", "ip", "addr", "add", f"{lip}/32", "dev", "eth0")
        self.topo.run("lb", "sysctl", "-qw", "net.ipv4.conf.all.send_redirects=0")
        self.topo.run("lb", "sysctl", "-qw", "net.ipv4.conf.eth0.send_redirects=0")
        # Every client-side ARP entry in place before the first figure.
        self.topo.run("cli", "ping", "-c1", "-W1", RS["rs1"], check=False)

    def start_nginx(self, rs: str) -> None:
        nginx.start(self.topo, rs, self.tmp / f"nginx-{rs}", HTTP_PORT)

    # -- the balancers ----------------------------------------------------
    def lips(self, n: int) -> list[str]:
        """``n`` local addresses not used before in this benchmark."""
        try:
            return [next(self.fresh) for _ in range(n)]
        except StopIteration:
            raise RuntimeError(f"more than {len(FRESH_LIPS)} local addresses needed: fewer rounds")

    def lbd_config(self) -> Path:
        backends = lambda port: "".join(  # noqa: E731
            f'[[listener.backend]]\naddr = "{RS[rs]}"\nport = {port}\nweight = {w}\n'
            for rs, w in WEIGHTS.items())
        local = ", ".join(f'"{a}"' for a in self.lips(len(LIPS)))
        text = f"""
[[interface]]
name = "eth0"
queues = {self.queues}
xdp_mode = "driver"
[engine]
capacity = 1048576
[restart]
state_dir = ""
pin_dir = ""
[[listener]]
name = "http"
vip = "{VIP}"
port = 80
protocol = "tcp"
local = {{ addresses = [{local}] }}
{backends(HTTP_PORT)}
[[listener]]
name = "udp"
vip = "{VIP}"
port = {UDP_PORT}
protocol = "udp"
local = {{ addresses = [{local}] }}
{backends(UDP_PORT)}
"""
        path = self.tmp / "lbd.toml"
        path.write_text(text)
        return path

    def start_lbd(self) -> subprocess.Popen:
        log = open(self.tmp / "lbd.log", "w")
        p = self.topo.popen("lb", self.tools["lbd"], "run", "--config", self.lbd_config(),
                            stderr=log, env={**os.environ, "RUST_LOG": "warn"})
        self.wait_xdp(p)
        return p

    def start_reflector(self) -> subprocess.Popen:
        to = [arg for rs, w in WEIGHTS.items() for _ in range(w)
              for arg in ("--to", self.macs[rs])]
        p = self.topo.popen("lb", self.tools["lbd"], "reflect", "--interface", "eth0", *to, VIP)
        self.wait_xdp(p)
        return p

    def wait_xdp(self, p: subprocess.Popen) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"balancer exited with {p.returncode}; see {self.tmp}")
            links = self.topo.run("lb", "ip", "link", "show", "eth0").stdout
            if "xdp" in links:
                time.sleep(0.5)  # the socket goes in the map right after
                return
            time.sleep(0.1)
        raise RuntimeError("XDP program not attached in 20 s")

    def start_nft(self) -> None:
        self.topo.run("lb", "sysctl", "-qw", "net.ipv4.ip_forward=1")
        slots = [rs for rs, w in WEIGHTS.items() for _ in range(w)]
        def rule(proto: str, port: int) -> str:
            m = ", ".join(f"{i} : {RS[rs]}" for i, rs in enumerate(slots))
            return (f"ip daddr {VIP} {proto} dport {80 if proto == 'tcp' else port} "
                    f"dnat to numgen inc mod {len(slots)} map {{ {m} }} : {port}")
        ruleset = f"""
table ip lbbench {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    {rule("tcp", HTTP_PORT)}
    {rule("udp", UDP_PORT)}
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    ct status dnat snat to {self.lips(1)[0]}
  }}
}}
"""
        f = self.tmp / "nft.conf"
        f.write_text(ruleset)
        self.topo.run("lb", "nft", "-f", str(f))

    def stop_nft(self) -> None:
        self.topo.run("lb", "nft", "delete", "table", "ip", "lbbench", check=False)
        self.topo.run("lb", "sysctl", "-qw", "net.ipv4.ip_forward=0")

    def start_haproxy(self) -> subprocess.Popen:
        servers = "\n".join(
            f"  server {rs} {RS[rs]}:{HTTP_PORT} weight {w}" for rs, w in WEIGHTS.items())
        conf = self.tmp / "haproxy.cfg"
        conf.write_text(f"""
global
  nbthread 2
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend f
  bind {VIP}:80
  default_backend b
backend b
  balance roundrobin
  source {self.lips(1)[0]}
{servers}
""")
        p = self.topo.popen("lb", "haproxy", "-db", "-f", str(conf))
        time.sleep(1)
        if p.poll() is not None:
            raise RuntimeError("haproxy did not start")
        return p

    def stop(self, p: Optional[subprocess.Popen]) -> None:
        if p is not None:
            stop_process(p, 10)

    # -- loads --------------------------------------------------------------
    def udp(self, pid: Optional[int], sinks: tuple[str, ...]) -> tuple[float, float, float]:
        procs = [self.topo.popen(rs, self.tools["udp_sink"], str(UDP_PORT),
                                 stdout=subprocess.PIPE, text=True) for rs in sinks]
        for p in procs:
            assert p.stdout is not None
            p.stdout.readline()  # "ready"
        before = cpu_times(pid)
        self.topo.run("cli", self.tools["udp_flood"], VIP, str(UDP_PORT), str(self.seconds),
                      "16", "18", timeout=self.seconds + 30)
        after = cpu_times(pid)
        time.sleep(0.3)
        got = 0
        for p in procs:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=10)
            got += int(out.split()[-1])
        return got / self.seconds, *self.cpu(before, after)

    def wrk(self, pid: Optional[int], close: bool, target: str = VIP,
            port: int = 80) -> tuple[float, float, float]:
        args = ["wrk", "-t2", "-c64", f"-d{int(self.seconds)}s", "--latency"]
        if close:
            args += ["-H", "Connection: close"]
        before = cpu_times(pid)
        out = self.topo.run("cli", *args, f"http://{target}:{port}/",
                            timeout=self.seconds + 60).stdout
        after = cpu_times(pid)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        errors = re.search(r"Socket errors: (.*)", out)
        if errors:
            print(f"    wrk: socket errors: {errors.group(1)}", file=sys.stderr)
        return (float(m.group(1)) if m else 0.0), *self.cpu(before, after)

    def cpu(self, before: tuple[float, float], after: tuple[float, float]) -> tuple[float, float]:
        return (100 * (after[0] - before[0]) / self.seconds,
                100 * (after[1] - before[1]) / self.seconds)

    # -- one round ---------------------------------------------------------------
    def round(self, results: dict[str, list[tuple[float, float, float]]]) -> None:
        runs: list[tuple[str, Callable[[], tuple[float, float, float]]]] = []

        def with_process(start: Callable[[], subprocess.Popen], load: Callable[[int], tuple]) -> Callable[[], tuple]:
            def go() -> tuple:
                p = start()
                try:
                    return load(p.pid)
                finally:
                    self.stop(p)
            return go

        def with_nft(load: Callable[[], tuple]) -> Callable[[], tuple]:
            def go() -> tuple:
                self.start_nft()
                try:
                    return load()
                finally:
                    self.stop_nft()
            return go

        if self.queues == 1:
            runs.append(("udp_pps reflector",
                         with_process(self.start_reflector, lambda pid: self.udp(pid, tuple(WEIGHTS)))))
        runs.append(("udp_pps lbd", with_process(self.start_lbd, lambda pid: self.udp(pid, tuple(WEIGHTS)))))
        runs.append(("udp_pps nftables", with_nft(lambda: self.udp(None, tuple(WEIGHTS)))))
        for figure, close in (("conn_per_s", True), ("req_per_s", False)):
            runs.append((f"{figure} direct",
                         lambda close=close: self.wrk(None, close, RS["rs1"], HTTP_PORT)))
            runs.append((f"{figure} lbd",
                         with_process(self.start_lbd, lambda pid, close=close: self.wrk(pid, close))))
            runs.append((f"{figure} nftables", with_nft(lambda close=close: self.wrk(None, close))))
            runs.append((f"{figure} haproxy",
                         with_process(self.start_haproxy, lambda pid, close=close: self.wrk(pid, close))))
        runs = [(n, g) for n, g in runs if self.only.search(n)]
        for name, go in runs:
            value, proc, sirq = go()
            print(f"  {name:22} {value:12,.0f}  proc {proc:5.1f}%  sirq {sirq:5.1f}%", flush=True)
            results.setdefault(name, []).append((value, proc, sirq))
            time.sleep(1)


def table(results: dict[str, list[tuple[float, float, float]]]) -> str:
    lines = ["| figure | mode | median | min-max | balancer CPU (median) | softirq (median) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, rows in results.items():
        figure, mode = name.split(" ", 1)
        values = [r[0] for r in rows]
        lines.append(
            f"| {figure} | {mode} | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f}-{max(values):,.0f} | "
            f"{statistics.median(r[1] for r in rows):.0f}% | {statistics.median(r[2] for r in rows):.0f}% |")
    return "\n".join(lines)


def synflood(topo: Topology, tools: dict[str, Path], tmp: Path, seconds: float,
             capacity: int, rates: list[float]) -> None:
    """The flood with a legitimate client beside it (see the module doc),
    once per flood rate (0: as fast as the flooder goes), each with a
    fresh lbd."""
    bench = Bench(topo, tools, seconds, tmp)
    for rs in WEIGHTS:
        bench.start_nginx(rs)
        flood.count_syns(topo, rs, HTTP_PORT)
    flood.route_spoofed(topo)
    flooder = flood.build_flooder(tmp)
    text = config(six=False, health=None, engine={"capacity": capacity},
                  backends=[(RS[rs], HTTP_PORT, w) for rs, w in WEIGHTS.items()])
    print(f"session table of {capacity}; a legitimate connection may take "
          f"{flood.TIMEOUT:.0f} s")
    for rate in rates:
        d = Lbd(topo, text, path=tools["lbd"]).start()
        syns_before = sum(flood.syns(topo, rs) for rs in WEIGHTS)
        try:
            legit = flood.LegitClient(topo).start()
            time.sleep(min(5.0, seconds))
            legit.set_phase("during")
            p = flood.flood(topo, flooder, seconds, rate)
            sent = int((p.communicate(timeout=seconds + 30)[0] or "0").split()[-1])
            legit.set_phase("after")
            time.sleep(min(5.0, seconds))
            phases = legit.stop()
            m = d.metrics()
        finally:
            d.cleanup()
        backend_syns = sum(flood.syns(topo, rs) for rs in WEIGHTS) - syns_before
        received = m.sum("lbd_xdp_packets_total", outcome="redirected")
        lost = m.sum("lbd_ring_kernel_rx_ring_full_total")
        print(f"flood at {'full speed' if not rate else f'{rate:,.0f}/s'}: {sent:,} spoofed SYNs "
              f"in {seconds:.0f} s ({sent / seconds:,.0f}/s)")
        for name in ("before", "during", "after"):
            if name in phases:
                print("  " + phases[name].summary())
        print(f"  lbd: {m.sum('lbd_sessions_created_total'):,.0f} sessions made, "
              f"{m.sum('lbd_sessions_evicted_total'):,.0f} half-open ones evicted, "
              f"{m.sum('lbd_drops_total', reason='table_full'):,.0f} SYNs refused (table full), "
              f"{lost:,.0f} of {received:,.0f} frames for it lost at its full RX ring; "
              f"the servers got {backend_syns:,} SYNs")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--only", default="", help="run only the figures and modes matching this regex")
    ap.add_argument("--synflood", action="store_true", help="the SYN flood figure instead")
    ap.add_argument("--l7", action="store_true",
                    help="the HTTP and HTTPS figures instead: lbd, nginx and HAProxy as L7 proxies")
    ap.add_argument("--capacity", type=int, default=2000, help="lbd's session table in --synflood")
    ap.add_argument("--rates", default="0,100000,50000",
                    help="--synflood's flood rates, SYNs/s, comma-separated (0: full speed)")
    ap.add_argument("--queues", type=int, default=1,
                    help="receive queues of the balancer's eth0 (one lbd engine each)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbd-bench-") as t:
        tmp = Path(t)
        tools = build_tools(tmp)
        if args.synflood:
            with Topology(("cli", "lb", "rs1", "rs2")) as topo:
                synflood(topo, tools, tmp, args.seconds, args.capacity,
                         [float(r) for r in args.rates.split(",")])
            return 0
        if args.l7:
            with Topology(("cli", "lb", "rs1", "rs2")) as topo:
                bench_l7.run(topo, tools["lbd"], tmp, args.rounds, args.seconds, args.only)
            return 0
        with Topology(("cli", "lb", "rs1", "rs2"), lb_queues=args.queues) as topo:
            bench = Bench(topo, tools, args.seconds, tmp, args.only, args.queues)
            print(f"{args.queues} queue(s) on the balancer's eth0", flush=True)
            bench.prepare()
            results: dict[str, list[tuple[float, float, float]]] = {}
            for r in range(args.rounds):
                print(f"round {r + 1}/{args.rounds}", flush=True)
                bench.round(results)
            print()
            print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
