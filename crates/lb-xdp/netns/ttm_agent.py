"""Driving ``ttm-agent run`` (crates/ttm-agent) for the tests and the demo:
a cgroup v2 of its own for the real servers' processes, a bpffs mounted
for its pins, the agent itself, its ``status``, and the removal of all of
it, also on failure.

The agent runs in the host's namespaces: BPF programs attached to a cgroup
act on the sockets of the processes in it, whatever network namespace
those sockets are in, and ``ip netns exec`` would hide the cgroup tree (it
mounts a fresh /sys)."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from .lbd import LbdError, cargo_binary
from .topology import stop_process


class AgentRunError(AssertionError):
    """ttm-agent did not do what was expected of it."""


def binary(profile: str = "debug", build: bool = True) -> Path:
    """The ``ttm-agent`` binary: ``$TTM_AGENT``, or target/PROFILE/ttm-agent
    built now."""
    try:
        return cargo_binary("ttm-agent", "ttm-agent", "TTM_AGENT", profile, build)
    except LbdError as e:
        raise AgentRunError(str(e)) from e


def cgroup2_root() -> Path:
    """Where cgroup v2 is mounted, from /proc/mounts (not always
    /sys/fs/cgroup: /sys/fs/cgroup/unified on hybrid hosts)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1].replace("\\040", " "))
    raise AgentRunError("no cgroup2 file system is mounted")


class TtmAgent:
    """``ttm-agent run --lb-ranges RANGES --cgroup CG --pin-dir PINS``.

    ``cgroup`` is made at construction (``lbt-ttm-XXXXXX`` under the cgroup
    v2 root); start servers in it with ``Topology.agent(host,
    cgroup=agent.cgroup)``. ``close()`` stops the agent, kills whatever is
    left in the cgroup, removes it, and unmounts the pins' bpffs."""

    def __init__(self, ranges: str, *, path: Optional[Path] = None, kinds: Optional[str] = None) -> None:
        self.binary = path or binary()
        self.ranges = ranges
        self.kinds = kinds
        self.cgroup = cgroup2_root() / f"lbt-ttm-{secrets.token_hex(3)}"
        self.cgroup.mkdir()
        self.dir = Path(tempfile.mkdtemp(prefix="lbt-ttm-agent-"))
        self.bpffs = self.dir / "bpffs"
        self.bpffs.mkdir()
        subprocess.run(["mount", "-t", "bpf", "bpf", str(self.bpffs)], check=True)
        self.pins = self.bpffs / "pins"
        self.log_path = self.dir / "ttm-agent.log"
        self.proc: Optional[subprocess.Popen[Any]] = None
        self._log: Any = None

    def start(self, timeout: float = 20) -> "TtmAgent":
        cmd = [str(self.binary), "run", "--lb-ranges", self.ranges, "--cgroup", str(self.cgroup),
               "--pin-dir", str(self.pins)]
        if self.kinds:
            cmd += ["--kinds", self.kinds]
        self._log = open(self.log_path, "wb")
        env = {**os.environ, "RUST_LOG": "info", "NO_COLOR": "1"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=self._log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while "ttm-agent is up" not in self.log():
            if self.proc.poll() is not None:
                raise AgentRunError(f"ttm-agent exited ({self.proc.returncode}); log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AgentRunError(f"ttm-agent not up within {timeout}s; log:\n{self.log()}")
            time.sleep(0.02)
        return self

    def log(self) -> str:
        try:
            return re.sub(r"\x1b\[[0-9;]*m", "", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        """``ttm-agent status``: {"lb_ranges": [...], counter: value...}."""
        r = subprocess.run([str(self.binary), "status", "--pin-dir", str(self.pins)],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise AgentRunError(f"ttm-agent status failed ({r.returncode}): {r.stderr.strip()}")
        out: dict[str, Any] = {}
        for line in r.stdout.splitlines():
            fields = line.split()
            if fields and fields[0] == "lb_ranges":
                out["lb_ranges"] = fields[1].split(",") if len(fields) > 1 else []
            elif len(fields) >= 2 and fields[1].isdigit():
                out[fields[0]] = int(fields[1])
        return out

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM; check that it exits with 0 and says it detached."""
        assert self.proc is not None, "ttm-agent was not started"
        if not stop_process(self.proc, timeout):
            raise AgentRunError(f"ttm-agent did not stop within {timeout}s; log:\n{self.log()}")
        if self.proc.returncode != 0 or "detached" not in self.log():
            raise AgentRunError(f"ttm-agent exited with {self.proc.returncode}; log:\n{self.log()}")
        return self.proc.returncode

    def close(self) -> None:
        """Stop everything made here; never raises."""
        if self.proc is not None:
            stop_process(self.proc, 5)
        if self._log is not None and not self._log.closed:
            self._log.close()
        procs = self.cgroup / "cgroup.procs"
        for _ in range(50):
            try:
                pids = [int(p) for p in procs.read_text().split()]
            except OSError:
                break
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        try:
            self.cgroup.rmdir()
        except OSError:
            pass
        subprocess.run(["umount", str(self.bpffs)], capture_output=True)
        subprocess.run(["rm", "-rf", str(self.dir)], capture_output=True)

    def __enter__(self) -> "TtmAgent":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
