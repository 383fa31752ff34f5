"""The L7 benchmark (issue 16, ``scripts/bench-lbd --l7``): on the
topology of ``bench.py``, three HTTP balancers doing the same job on the
balancer's host, modes interleaved over several rounds; medians with
min-max.

The job: HTTP on VIP:80 and HTTPS on VIP:443 (one certificate and key,
RSA 2048, made with the openssl CLI at run time; TLS 1.2 and 1.3, ECDHE
with AES-GCM), proxied to rs1 and rs2 (nginx, port 8080) 1:3 by weighted
round robin over kept-alive upstream connections, each request given
X-Forwarded-For (appended to), X-Real-IP, X-Forwarded-Proto and
X-Forwarded-Port, no access log, two worker threads or processes each:

- ``lbd``: its HTTP and HTTPS listeners (Pingora, rustls), ``[l7] threads = 2``
  (per listener: two single-threaded Pingora services accepting on its
  socket; a figure loads one listener);
- ``nginx``: ``proxy_pass``, ``worker_processes 2`` (see ``nginx.proxy``);
- ``haproxy``: HTTP mode, ``nbthread 2``, ``http-reuse always``.

The figures, each from the client host:

- ``http_req_per_s``: keep-alive requests/s (wrk, 2 threads, 64 connections);
- ``http_conn_per_s``: new connections/s, one request each (wrk with
  ``Connection: close``);
- ``https_req_per_s``: keep-alive requests/s over HTTPS (wrk, TLS 1.3);
- ``https_hs_per_s``: new TLS connections/s, each a full TLS 1.3
  handshake (X25519, TLS_AES_256_GCM_SHA384) and one request
  (``openssl s_time -new``, ``HS_CLIENTS`` processes at once). Not wrk:
  wrk keeps a connection's TLS session across its reconnections
  (``SSL_clear``) and so resumes it wherever the server allows, and
  rustls under Pingora (lbd) keeps rustls's default session cache, which
  lbd's configuration cannot turn off. nginx and HAProxy have tickets and
  cache off anyway.

``direct`` (the client to rs1, no balancer) gives the scale of the plain
HTTP figures.

Each figure comes with the CPU the balancer took (``proc``: its processes'
CPU time, nginx's master and workers together, as % of one core), the
figure per second of that CPU (``per balancer core``), the machine's
softirq and idle time (% of one core each) and the connections the real
servers accepted per request (``rs conn/req``: 0 when the balancer keeps
its upstream connections, 1 when it opens one per request). Client,
balancer and servers share the machine's cores, with whatever else runs
there (an idle time near 0 says the machine was saturated and the
figures were shared out by the scheduler): a figure is the cost of all
of them together.

Before the rounds, every mode is checked once: the headers a real server
sees (``/headers``), the TLS version, cipher and key exchange negotiated,
whether the server resumes a TLS session (see ``tls_check``), the
answer to s_time's request, and the backends' shares of 400 requests.
The modes' order turns by one each round.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from . import nginx
from .lbd import Lbd
from .topology import RS, VIP, Topology, stop_process

TICK = os.sysconf("SC_CLK_TCK")
HTTP_PORT = 8080
WEIGHTS = {"rs1": 1, "rs2": 3}
MODES = ("lbd", "nginx", "haproxy")
#: The balancers' worker threads (lbd, HAProxy) or processes (nginx).
WORKERS = 2
#: ``openssl s_time`` processes at once in ``https_hs_per_s``.
HS_CLIENTS = 16
#: What ``s_time -www`` requests: it sends ``GET {path} HTTP/1.0`` and no
#: header, so the path makes it the request of ``http_conn_per_s``: HTTP/1.1
#: with a Host header (without one, a balancer that speaks HTTP/1.1 to its
#: backends gets 400 and a closed connection) and ``Connection: close``,
#: then a last header to take the ``HTTP/1.0`` that s_time appends.
HS_PATH = "/ HTTP/1.1\r\nHost: bench.lbd.test\r\nConnection: close\r\nX-Pad:"
#: The figures, in the order of a round.
FIGURES = ("http_req_per_s", "http_conn_per_s", "https_req_per_s", "https_hs_per_s")
#: How each mode runs its workers, for the table.
WORKER_NOTE = {
    "lbd": f"[l7] threads = {WORKERS}, per listener",
    "nginx": f"worker_processes {WORKERS}",
    "haproxy": f"nbthread {WORKERS}",
    "direct": "no balancer",
}

#: One run: the figure, the balancer's CPU, the softirq and the machine's
#: idle time (% of one core), the real servers' new connections per request.
Row = tuple[float, float, float, float, float]


def tree_cpu(pid: Optional[int]) -> float:
    """CPU seconds of ``pid`` and of every process under it."""
    if pid is None:
        return 0.0
    stats: dict[int, tuple[int, float]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            stats[int(d)] = (int(f[1]), (int(f[11]) + int(f[12])) / TICK)
        except (OSError, IndexError, ValueError):
            continue
    tree, grew = {pid}, True
    while grew:
        more = {p for p, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(stats.get(p, (0, 0.0))[1] for p in tree)


def softirq_idle() -> tuple[float, float]:
    """The machine's softirq and idle seconds so far."""
    cpu = Path("/proc/stat").read_text().split(maxsplit=9)
    return int(cpu[7]) / TICK, int(cpu[4]) / TICK


class L7Bench:
    """The real servers, the certificate, the balancers and the loads of
    one benchmark run on ``topo``; files in ``tmp``."""

    def __init__(self, topo: Topology, lbd_path: Path, seconds: float, tmp: Path,
                 only: str = "") -> None:
        self.topo = topo
        self.lbd_path = lbd_path
        self.seconds = seconds
        self.tmp = tmp
        self.only = re.compile(only)
        self.cert = tmp / "cert.pem"
        self.key = tmp / "key.pem"
        self.haproxy_pem = tmp / "haproxy.pem"

    # -- set-up --------------------------------------------------------------
    def prepare(self) -> None:
        for rs in WEIGHTS:
            nginx.start(self.topo, rs, self.tmp / f"nginx-{rs}", HTTP_PORT)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=bench.lbd.test", "-addext", "subjectAltName=DNS:bench.lbd.test",
                        "-keyout", self.key, "-out", self.cert],
                       check=True, capture_output=True)
        self.haproxy_pem.write_text(self.cert.read_text() + self.key.read_text())
        self.topo.run("cli", "ping", "-c1", "-W1", RS["rs1"], check=False)
        self.topo.run("cli", "ping", "-c1", "-W1", VIP, check=False)
        # The servers answer once they listen.
        deadline = time.monotonic() + 10
        for rs in WEIGHTS:
            while self.curl(f"http://{RS[rs]}:{HTTP_PORT}/", check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx on {rs} does not answer")
                time.sleep(0.1)

    def curl(self, url: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.topo.run("cli", "curl", "-sS", "-k", "--max-time", "3", url, check=check)

    # -- the balancers ----------------------------------------------------------
    def start(self, mode: str) -> tuple[Optional[int], Callable[[], None]]:
        """Start ``mode``'s balancer; its pid (None for ``direct``) and how
        to stop it."""
        if mode == "direct":
            return None, lambda: None
        if mode == "lbd":
            d = Lbd(self.topo, self.lbd_config(), path=self.lbd_path, metrics=None,
                    env={"RUST_LOG": "warn,lb_xdp=info,lbd=info"}).start()
            assert d.proc is not None
            try:
                self.wait_listening()
            except BaseException:
                d.cleanup()
                raise
            return d.proc.pid, d.cleanup
        backends = [(f"{RS[rs]}:{HTTP_PORT}", w) for rs, w in WEIGHTS.items()]
        if mode == "nginx":
            p = nginx.proxy(self.topo, "lb", self.tmp / "nginx-lb", VIP, backends, self.cert,
                            self.key, WORKERS)
        else:
            log = open(self.tmp / "haproxy.log", "ab")
            p = self.topo.popen("lb", "haproxy", "-db", "-f", str(self.haproxy_config()),
                                stdout=log, stderr=log)
            log.close()
        try:
            self.wait_listening(p)
        except BaseException:
            stop_process(p, 10)
            raise

        def stop() -> None:
            stop_process(p, 10)
        return p.pid, stop

    def wait_listening(self, p: Optional[subprocess.Popen] = None) -> None:
        """Wait until VIP:80 and VIP:443 answer (a real server's answer
        through the balancer); fail if ``p`` exits, or after 20 s."""
        deadline = time.monotonic() + 20
        while True:
            ok = all(self.curl(url, check=False).returncode == 0
                     for url in (f"http://{VIP}/", f"https://{VIP}/"))
            if ok:
                return
            if p is not None and p.poll() is not None:
                raise RuntimeError(f"balancer exited with {p.returncode}: "
                                   f"{self.log().strip()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"balancer does not answer on {VIP}:80 and :443 in 20 s")
            time.sleep(0.2)

    def log(self) -> str:
        """What HAProxy wrote (its output) and nginx (its error log)."""
        files = ("haproxy.log", "nginx-lb/error.log")
        return "".join((self.tmp / f).read_text(errors="replace")
                       for f in files if (self.tmp / f).exists())

    def lbd_config(self) -> str:
        backends = "".join(
            f'[[listener.backend]]\naddr = "{RS[rs]}"\nport = {HTTP_PORT}\nweight = {w}\n\n'
            for rs, w in WEIGHTS.items())
        return f"""# lbd for the L7 benchmark (crates/lb-xdp/netns/bench_l7.py)
[[interface]]
name = "eth0"
xdp_mode = "driver"

[restart]
state_dir = ""
pin_dir = ""

[l7]
threads = {WORKERS}

[[listener]]
name = "http"
vip = "{VIP}"
port = 80
protocol = "http"
scheduler = "rr"

{backends}[[listener]]
name = "https"
vip = "{VIP}"
port = 443
protocol = "https"
scheduler = "rr"

[listener.tls]
certificates = [ {{ cert = "{self.cert}", key = "{self.key}" }} ]

{backends}"""

    def haproxy_config(self) -> Path:
        servers = "\n".join(
            f"  server {rs} {RS[rs]}:{HTTP_PORT} weight {w}" for rs, w in WEIGHTS.items())
        conf = self.tmp / "haproxy-l7.cfg"
        conf.write_text(f"""
global
  nbthread {WORKERS}
  maxconn 8000
  tune.ssl.cachesize 0
  ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
  ssl-default-bind-ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
  ssl-default-bind-ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256
defaults
  mode http
  maxconn 8000
  option http-keep-alive
  timeout connect 5s
  timeout client 300s
  timeout http-keep-alive 300s
  timeout server 60s
frontend f
  bind {VIP}:80
  bind {VIP}:443 ssl crt {self.haproxy_pem}
  option forwardfor
  http-request set-header X-Real-IP %[src]
  http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
  http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
  http-request set-header X-Forwarded-Port %[dst_port]
  default_backend b
backend b
  balance roundrobin
  http-reuse always
{servers}
""")
        return conf

    # -- what every mode is checked for once --------------------------------------
    def check(self, mode: str) -> str:
        pid, stop = self.start(mode)
        try:
            lines = []
            for url in (f"http://{VIP}/headers", f"https://{VIP}/headers"):
                got = self.curl(url, check=False)
                seen = " ".join(line.replace(": ", "=", 1) for line in got.stdout.splitlines())
                lines.append(f"    {url}: {got.returncode == 0 and seen or got.stderr.strip()}")
            lines.append("    " + self.tls_check())
            # The request s_time makes, and what it gets (s_client ends when
            # the balancer closes the connection, as it must after it).
            req = f"GET {HS_PATH} HTTP/1.0\r\n\r\n"
            r = self.topo.run("cli", "sh", "-c", f"printf '%s' \"$1\" | timeout 10 openssl "
                              f"s_client -quiet -connect {VIP}:443 2>/dev/null", "sh", req,
                              check=False, timeout=30)
            got = r.stdout.strip().splitlines() or ["nothing"]
            closed = "not closed in 10 s" if r.returncode == 124 else "closed"
            lines.append(f"    s_time's request: {got[0]} ... {got[-1]}; {closed}")
            # The backends' shares over 400 requests, to see the weights.
            shares = self.topo.run("cli", "sh", "-c",
                                   f"for i in $(seq 400); do echo http://{VIP}/; done | "
                                   "xargs curl -s", timeout=60).stdout.split()
            lines.append("    400 requests: " + ", ".join(
                f"{rs} {shares.count(rs)}" for rs in WEIGHTS))
            return "\n".join(lines)
        finally:
            stop()

    def tls_check(self) -> str:
        """The TLS 1.3 connection negotiated, and whether the server resumes
        sessions: in TLS 1.3, a session saved from one connection
        (``-sess_out``) offered on the next (``-sess_in``); in TLS 1.2,
        ``s_client -reconnect`` (which does not see TLS 1.3 resumption)."""
        sess = self.tmp / "tls-session.pem"
        script = (f"(sleep 1) | openssl s_client -connect {VIP}:443 -sess_out {sess} 2>&1; "
                  f"openssl s_client -connect {VIP}:443 -sess_in {sess} </dev/null 2>&1; "
                  f"openssl s_client -tls1_2 -connect {VIP}:443 -reconnect </dev/null 2>&1")
        out = self.topo.run("cli", "sh", "-c", script, check=False, timeout=60).stdout
        first = re.search(r"^New, (\S+), Cipher is (\S+)", out, re.M)
        kx = re.search(r"^(?:Server|Peer) Temp Key: (.*)", out, re.M)
        v13 = re.findall(r"^(New|Reused), TLSv1.3", out, re.M)
        v12 = re.findall(r"^(New|Reused), TLSv1.2", out, re.M)
        return (f"TLS: {first and ' '.join(first.groups())}, key exchange {kx and kx.group(1)}; "
                f"resumed: TLS 1.3 {v13[1:].count('Reused')} of {len(v13[1:])}, "
                f"TLS 1.2 {v12[1:].count('Reused')} of {len(v12[1:])}")

    # -- loads -----------------------------------------------------------------------
    def accepted(self) -> int:
        """Connections the real servers have accepted so far."""
        total = 0
        for rs in WEIGHTS:
            snmp = self.topo.run(rs, "cat", "/proc/net/snmp").stdout.splitlines()
            tcp = [line.split() for line in snmp if line.startswith("Tcp:")]
            total += int(tcp[1][tcp[0].index("PassiveOpens")])
        return total

    def measure(self, pid: Optional[int], load: Callable[[], tuple[float, float]]) -> Row:
        """Run ``load`` (which returns the requests or connections it
        made and the seconds it took them), with the balancer's CPU, the
        softirq, the idle time and the real servers' accepted connections
        around it."""
        opens, cpu, (sirq, idle) = self.accepted(), tree_cpu(pid), softirq_idle()
        t0 = time.monotonic()
        count, seconds = load()
        elapsed = time.monotonic() - t0
        cpu = tree_cpu(pid) - cpu
        sirq_after, idle_after = softirq_idle()
        opens = self.accepted() - opens
        return (count / seconds, 100 * cpu / elapsed, 100 * (sirq_after - sirq) / elapsed,
                100 * (idle_after - idle) / elapsed, opens / count if count else 0.0)

    def wrk(self, url: str, close: bool) -> tuple[float, float]:
        """wrk on ``url`` for ``seconds`` (with ``Connection: close`` if
        ``close``); the requests made and the seconds wrk took."""
        args = ["wrk", "-t2", "-c64", f"-d{int(self.seconds)}s"]
        if close:
            args += ["-H", "Connection: close"]
        out = self.topo.run("cli", *args, url, timeout=self.seconds + 60).stdout
        m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", out)
        if not m:
            raise RuntimeError(f"wrk said:\n{out}")
        for pattern in (r"Socket errors: (.*)", r"Non-2xx or 3xx responses: (\d+)"):
            bad = re.search(pattern, out)
            if bad:
                print(f"    wrk {url}: {bad.group(0)}", file=sys.stderr)
        seconds = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
        return int(m.group(1)), seconds

    def s_time(self) -> tuple[float, float]:
        """``HS_CLIENTS`` ``openssl s_time -new`` at once: full handshakes
        (with one request each, see ``HS_PATH``) for ``seconds``; the connections
        made, and the seconds over which they were made (s_time's own
        clock counts whole seconds, so each process is timed here)."""
        cmd = ["openssl", "s_time", "-connect", f"{VIP}:443", "-new", "-www", HS_PATH,
               "-time", str(int(self.seconds))]
        t0 = time.monotonic()
        procs = [self.topo.popen("cli", *cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for _ in range(HS_CLIENTS)]
        rate, total = 0.0, 0
        for p in procs:
            out, _ = p.communicate(timeout=self.seconds + 60)
            elapsed = time.monotonic() - t0
            m = re.search(r"(\d+) connections in [\d.]+s;", out)
            if p.returncode != 0 or not m:
                print(f"    s_time exited with {p.returncode}: {out.strip()[-300:]}", file=sys.stderr)
            n = int(m.group(1)) if m else 0
            rate += n / elapsed
            total += n
        # As (count, seconds) with the rate summed over the processes.
        return total, total / rate if rate else 1.0

    # -- one round -------------------------------------------------------------------
    def round(self, index: int, results: dict[str, list[Row]]) -> None:
        loads: dict[str, Callable[[str], Callable[[], tuple[float, float]]]] = {
            "http_req_per_s": lambda host: lambda: self.wrk(f"http://{host}/", False),
            "http_conn_per_s": lambda host: lambda: self.wrk(f"http://{host}/", True),
            "https_req_per_s": lambda host: lambda: self.wrk(f"https://{host}/", False),
            "https_hs_per_s": lambda host: lambda: self.s_time(),
        }
        for figure in FIGURES:
            modes = MODES[index % len(MODES):] + MODES[:index % len(MODES)]
            if figure.startswith("http_"):
                modes = ("direct", *modes)
            for mode in modes:
                name = f"{figure} {mode}"
                if not self.only.search(name):
                    continue
                host = f"{RS['rs1']}:{HTTP_PORT}" if mode == "direct" else VIP
                pid, stop = self.start(mode)
                try:
                    row = self.measure(pid, loads[figure](host))
                finally:
                    stop()
                value, proc, sirq, idle, per = row
                print(f"  {name:24} {value:10,.0f}  proc {proc:5.1f}%  sirq {sirq:5.1f}%  "
                      f"idle {idle:5.1f}%  rs conn/req {per:.2f}", flush=True)
                results.setdefault(name, []).append(row)
                time.sleep(1)


def table(results: dict[str, list[Row]]) -> str:
    """Per figure and mode: the median and range of the figure, the
    median of the figure per second of the balancer's CPU (each run's
    figure over its CPU, the cost that contention hides least), and the
    medians of the CPU figures."""
    lines = ["| figure | mode (workers) | median | min-max | balancer CPU | per balancer "
             "core | softirq | machine idle | rs conn/req |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, rows in sorted(results.items(), key=lambda kv: FIGURES.index(kv[0].split()[0])):
        figure, mode = name.split(" ", 1)
        values = [r[0] for r in rows]
        med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
        per_core = (f"{statistics.median(r[0] * 100 / r[1] for r in rows):,.0f}"
                    if all(r[1] > 0 for r in rows) else "-")
        lines.append(
            f"| {figure} | {mode} ({WORKER_NOTE[mode]}) | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f}-{max(values):,.0f} | {med(1):.0f}% | {per_core} | {med(2):.0f}% | "
            f"{med(3):.0f}% | {med(4):.2f} |")
    return "\n".join(lines)


def run(topo: Topology, lbd_path: Path, tmp: Path, rounds: int, seconds: float, only: str) -> None:
    """The benchmark on ``topo`` with the ``lbd`` at ``lbd_path``: each
    mode's check, ``rounds`` rounds of every figure and mode matching
    ``only`` (a regex over "figure mode"), then the table."""
    bench = L7Bench(topo, lbd_path, seconds, tmp, only)
    bench.prepare()
    modes = [m for m in MODES if any(bench.only.search(f"{f} {m}") for f in FIGURES)]
    for mode in modes:
        print(f"{mode} ({WORKER_NOTE[mode]}):\n{bench.check(mode)}", flush=True)
    results: dict[str, list[Row]] = {}
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", flush=True)
        bench.round(r, results)
    print()
    print(f"{rounds} round(s) of {seconds:.0f} s; wrk -t2 -c64; https_hs_per_s: "
          f"{HS_CLIENTS} x openssl s_time -new; CPU as % of one core (2 cores)")
    print(table(results))
