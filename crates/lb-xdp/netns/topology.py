"""The test topology: a one-armed balancer on one L2 segment, built from
network namespaces and veth pairs, and always removed again.

::

    lbt-cli-S   10.77.0.10/24   fd77::10/64 ─┐
    lbt-lb-S    10.77.0.2/24    fd77::2/64   ├─ br0 in lbt-sw-S
                VIP  10.77.0.100/32, VIP6 fd77::100/128
                LIPs 10.77.0.200/32, 10.77.0.201/32
    lbt-rs1-S   10.77.0.11/24               ─┤
    lbt-rs2-S   10.77.0.12/24               ─┤
    lbt-rs3-S   10.77.0.13/24 (optional)    ─┘

Every host has ``lo`` up, a veth ``eth0`` whose peer is enslaved to the
bridge, transmit checksum offload off (AF_XDP sends no checksum offload,
so a segment left CHECKSUM_PARTIAL by a veth would reach the balancer with
an unfinished checksum) and IPv6 duplicate address detection off, so that
every address is usable at once. The balancer's kernel owns the VIPs and
LIPs, so it answers ARP and NDP for them, while ``lbd``'s XDP program takes
their TCP, UDP and ICMP.

``S`` is a random per-run suffix, so that two runs cannot collide. Only
addresses in 10.77.0.0/16 and fd77::/64 are used, only inside the
namespaces made here.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any, Optional, Sequence, Union

SUBNET4 = "10.77.0.0/24"
CLIENT = "10.77.0.10"
CLIENT6 = "fd77::10"
LB = "10.77.0.2"
LB6 = "fd77::2"
VIP = "10.77.0.100"
VIP6 = "fd77::100"
LIPS = ("10.77.0.200", "10.77.0.201")
RS = {"rs1": "10.77.0.11", "rs2": "10.77.0.12", "rs3": "10.77.0.13"}

#: Each host: its IPv4 address (/24), and its IPv6 address (/64) if any.
HOSTS: dict[str, tuple[str, Optional[str]]] = {
    "cli": (CLIENT, CLIENT6),
    "lb": (LB, LB6),
    "rs1": (RS["rs1"], None),
    "rs2": (RS["rs2"], None),
    "rs3": (RS["rs3"], None),
}

#: The tools the topology and the agents run (Debian packages in
#: scripts/setup: iproute2, ethtool, tcpdump, iputils-ping, curl).
TOOLS = ("ip", "ethtool", "tcpdump", "ping", "curl")

AGENT = Path(__file__).resolve().with_name("agent.py")


class TopologyError(RuntimeError):
    """A command that builds or drives the topology failed."""


def preflight() -> list[str]:
    """What stops the topology from being built here: not root, or a tool
    missing. Empty when all is well."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not running as root (network namespaces, veth and XDP need root)")
    for tool in TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed (scripts/setup installs it)")
    return problems


def _sh(cmd: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise TopologyError(
            f"command failed ({r.returncode}): {' '.join(cmd)}\n"
            f"stdout: {r.stdout.strip()}\nstderr: {r.stderr.strip()}"
        )
    return r


class Topology:
    """Builds the namespaces on ``__enter__`` (or :meth:`build`) and removes
    every one it made on ``__exit__`` (or :meth:`close`), also on
    exceptions and KeyboardInterrupt; an ``atexit`` hook and a SIGTERM
    handler (when none was set) catch the rest.

    ``hosts`` lists the host namespaces wanted, from ``HOSTS``.
    ``lb_queues`` is the number of receive (and transmit) queues of the
    balancer's eth0 and of its peer on the switch: with more than one,
    the switch's side spreads the frames it sends to the balancer over
    the queues by flow hash (a veth hands a frame to the receive queue of
    the transmit queue it was sent on), as a NIC's RSS would.
    """

    def __init__(self, hosts: Sequence[str] = ("cli", "lb", "rs1", "rs2"), suffix: Optional[str] = None,
                 lb_queues: int = 1) -> None:
        unknown = [h for h in hosts if h not in HOSTS]
        if unknown:
            raise ValueError(f"unknown hosts {unknown}; known: {list(HOSTS)}")
        self.hosts = list(hosts)
        self.suffix = suffix or secrets.token_hex(3)
        self.sw = f"lbt-sw-{self.suffix}"
        self.lb_queues = lb_queues
        self._made: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._agents: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False

    # -- naming -----------------------------------------------------------
    def ns(self, host: str) -> str:
        """The namespace of ``host`` ("cli", "lb", "rs1"... or "sw")."""
        if host == "sw":
            return self.sw
        if host not in self.hosts:
            raise KeyError(f"host {host!r} is not in this topology ({self.hosts})")
        return f"lbt-{host}-{self.suffix}"

    def addr(self, host: str) -> str:
        """The IPv4 address of ``host``."""
        return HOSTS[host][0]

    # -- lifetime ---------------------------------------------------------
    def __enter__(self) -> "Topology":
        try:
            self.build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self) -> None:
        problems = preflight()
        if problems:
            raise TopologyError("cannot build the test topology: " + "; ".join(problems))
        atexit.register(self.close)
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                # Turn SIGTERM into SystemExit so that `with` blocks and
                # atexit run and the namespaces go.
                signal.signal(signal.SIGTERM, _sigterm)

        self._add_ns(self.sw)
        self.run("sw", "ip", "link", "set", "lo", "up")
        self.run("sw", "ip", "link", "add", "br0", "type", "bridge",
                 "stp_state", "0", "mcast_snooping", "0", "forward_delay", "0")
        self.run("sw", "ip", "link", "set", "br0", "up")
        # A plain switch: with br_netfilter in the kernel, a bridge hands
        # IP packets to netfilter, which drops malformed ones (bad
        # checksums, lengths, header lengths) that the tests send on
        # purpose to the balancer.
        for table in ("iptables", "ip6tables", "arptables"):
            if Path(f"/proc/sys/net/bridge/bridge-nf-call-{table}").exists():
                self.sysctl("sw", f"net.bridge.bridge-nf-call-{table}", "0")
        for host in self.hosts:
            self._add_host(host)
        if "lb" in self.hosts:
            for a in (f"{VIP}/32", *[f"{lip}/32" for lip in LIPS]):
                self.run("lb", "ip", "addr", "add", a, "dev", "eth0")
            self.run("lb", "ip", "-6", "addr", "add", f"{VIP6}/128", "dev", "eth0", "nodad")

    def _add_ns(self, name: str) -> None:
        _sh(["ip", "netns", "add", name])
        with self._lock:
            self._made.append(name)

    def _add_host(self, host: str) -> None:
        ns = self.ns(host)
        v4, v6 = HOSTS[host]
        self._add_ns(ns)
        # DAD off before eth0 exists, so that it inherits the default.
        for key in ("all", "default"):
            self.sysctl(host, f"net.ipv6.conf.{key}.accept_dad", "0")
        self.run(host, "ip", "link", "set", "lo", "up")
        queues: list[str] = []
        if host == "lb" and self.lb_queues > 1:
            n = str(self.lb_queues)
            queues = ["numtxqueues", n, "numrxqueues", n]
        self.run(host, "ip", "link", "add", "eth0", *queues, "type", "veth",
                 "peer", "name", host, *queues, "netns", self.sw)
        self.run("sw", "ip", "link", "set", host, "master", "br0")
        self.run("sw", "ip", "link", "set", host, "up")
        self.run(host, "ethtool", "-K", "eth0", "tx", "off")
        self.run(host, "ip", "addr", "add", f"{v4}/24", "dev", "eth0")
        if v6:
            self.run(host, "ip", "-6", "addr", "add", f"{v6}/64", "dev", "eth0", "nodad")
        self.run(host, "ip", "link", "set", "eth0", "up")

    def close(self) -> None:
        """Stop every agent and process started here, then delete every
        namespace made here. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            agents, procs, made = list(self._agents), list(self._procs), list(self._made)
        for agent in agents:
            try:
                agent.terminate()
            except Exception:  # noqa: BLE001 - best effort in teardown
                pass
        for p in procs:
            _terminate(p)
        for name in reversed(made):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        try:
            atexit.unregister(self.close)
        except Exception:  # noqa: BLE001
            pass

    # -- commands ---------------------------------------------------------
    def _exec(self, host: str, cmd: Sequence[Union[str, os.PathLike[str]]]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(host), *[os.fspath(c) for c in cmd]]

    def run(self, host: str, *cmd: Union[str, os.PathLike[str]], check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside ``host``'s namespace and wait for it."""
        return _sh(self._exec(host, cmd), check=check, timeout=timeout)

    def sysctl(self, host: str, key: str, value: str) -> None:
        """Set ``key`` (dotted, e.g. ``net.ipv4.ip_forward``) in ``host``'s
        namespace, without needing procps's ``sysctl``."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.run(host, "sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", value, path)

    def popen(self, host: str, *cmd: Union[str, os.PathLike[str]], stdin: Any = subprocess.DEVNULL,
              stdout: Any = subprocess.DEVNULL, stderr: Any = subprocess.DEVNULL,
              env: Optional[dict[str, str]] = None, text: bool = False,
              cgroup: Optional[Path] = None) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside ``host``'s namespace (and in the cgroup v2
        ``cgroup``, joined before entering the namespace, whose mount of
        /sys hides the cgroup tree). ``ip netns exec`` execs it, so the
        process's pid is the command's own. It is killed when the topology
        closes, if still running."""
        argv = self._exec(host, cmd)
        if cgroup is not None:
            argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(cgroup), *argv]
        p = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                             env=env, text=text, start_new_session=True)
        with self._lock:
            self._procs.append(p)
        return p

    def agent(self, host: str, cgroup: Optional[Path] = None) -> "Agent":
        """A new agent (``agent.py``) inside ``host``'s namespace, and in
        the cgroup v2 ``cgroup`` if given (so that programs attached to it
        act on its sockets)."""
        a = Agent(self, host, cgroup)
        with self._lock:
            self._agents.append(a)
        return a


def _sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def stop_process(p: subprocess.Popen[Any], timeout: float, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` and wait up to ``timeout`` seconds, then SIGKILL. True
    if the process ended by itself (or had already)."""
    if p.poll() is not None:
        return True
    try:
        p.send_signal(sig)
        p.wait(timeout)
        return True
    except ProcessLookupError:
        return True
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return False


def _terminate(p: subprocess.Popen[Any], grace: float = 3) -> None:
    stop_process(p, grace)
    for f in (p.stdin, p.stdout, p.stderr):
        try:
            if f is not None:
                f.close()
        except OSError:
            pass


#: The commands agent.py knows.
OPS = frozenset({
    "hello", "get", "open", "request", "wait_reset", "close", "abort", "ping", "forge",
    "send_frames", "serve", "peers", "resets", "stop_server", "kill_server", "capture_start",
    "capture_stop",
})


class AgentError(RuntimeError):
    """An agent answered with an error, died, or did not answer in time."""


class Agent:
    """The host side of ``agent.py``: one JSON command per line on its
    stdin, one JSON answer per line on its stdout. Its stderr goes to a
    temporary file, shown in errors."""

    def __init__(self, topo: Topology, host: str, cgroup: Optional[Path] = None) -> None:
        import tempfile

        self.host = host
        self._err = tempfile.NamedTemporaryFile(prefix=f"lbt-agent-{host}-", suffix=".log", delete=False)
        self.proc = topo.popen(host, sys.executable, "-u", AGENT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=self._err, text=True, cgroup=cgroup)
        self._lock = threading.Lock()
        self.call("hello", reply_within=10)

    def stderr(self) -> str:
        try:
            return Path(self._err.name).read_text(errors="replace")
        except OSError:
            return ""

    def call(self, op: str, reply_within: Optional[float] = None, **args: Any) -> Any:
        """Send one command and return its ``result``. ``args`` are the
        command's, its own ``timeout`` among them; ``reply_within`` bounds
        the wait for the answer (default: that ``timeout`` (times ``n``) plus 10 s,
        or 30 s). Raises :class:`AgentError` on an error answer."""
        import json
        import select

        timeout = reply_within
        if timeout is None:
            timeout = float(args.get("timeout", 20)) * max(1, int(args.get("n", 1))) + 10
        line = json.dumps({"op": op, **args}) + "\n"
        with self._lock:
            if self.proc.poll() is not None:
                raise AgentError(f"agent on {self.host} exited ({self.proc.returncode}): {self.stderr()}")
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
            if not ready:
                raise AgentError(f"agent on {self.host}: no answer to {op} within {timeout}s; stderr: {self.stderr()}")
            answer = self.proc.stdout.readline()
        if not answer:
            raise AgentError(f"agent on {self.host} died during {op}: {self.stderr()}")
        reply = json.loads(answer)
        if not reply.get("ok"):
            raise AgentError(f"agent on {self.host}: {op} {args}: {reply.get('error')}")
        return reply.get("result")

    def __getattr__(self, op: str) -> Any:
        # agent.get(host=..., port=...) is agent.call("get", host=..., ...).
        if op not in OPS:
            raise AttributeError(op)
        return lambda **args: self.call(op, **args)

    def terminate(self) -> None:
        """Stop the agent (it kills its servers and captures)."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(5)
            except Exception:  # noqa: BLE001
                _terminate(self.proc)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                if f is not None:
                    f.close()
            except OSError:
                pass
        self._err.close()
        try:
            os.unlink(self._err.name)
        except OSError:
            pass
