"""Driving ``lbd run`` inside the balancer's namespace: its configuration,
start (wait for "lbd is up"), reload (SIGHUP), log, metrics, stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from .topology import LB, LIPS, RS, VIP, VIP6, Topology, stop_process

REPO = Path(__file__).resolve().parents[3]
METRICS = f"{LB}:9100"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class LbdError(AssertionError):
    """lbd did not do what was expected of it (start, reload, stop)."""


def cargo_binary(package: str, name: str, env_var: str, profile: str = "debug",
                 build: bool = True) -> Path:
    """The binary ``name`` of the cargo package ``package``: ``$ENV_VAR`` if
    set, else ``target/PROFILE/NAME`` of this repository, built first
    (``cargo build -p PACKAGE --bin NAME``, a no-op when fresh) unless
    ``build`` is false."""
    env = os.environ.get(env_var)
    if env:
        path = Path(env)
        if not path.is_file():
            raise LbdError(f"${env_var} is {env}, which is not a file")
        return path
    path = REPO / "target" / profile / name
    if build:
        cmd = ["cargo", "build", "-p", package, "--bin", name]
        if profile == "release":
            cmd.append("--release")
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if r.returncode != 0:
            raise LbdError(f"`{' '.join(cmd)}` failed:\n{r.stderr[-6000:]}")
    if not path.is_file():
        raise LbdError(f"{path} does not exist (build it with cargo build -p {package} --bin {name})")
    return path


def binary(profile: str = "debug", build: bool = True) -> Path:
    """The ``lbd`` binary: ``$LBD``, or target/PROFILE/lbd built now."""
    return cargo_binary("lb-xdp", "lbd", "LBD", profile, build)


Backend = tuple[str, int, int]  # address, port, weight

DEFAULT_BACKENDS: Sequence[Backend] = ((RS["rs1"], 8080, 1), (RS["rs2"], 8080, 3))
DEFAULT_HEALTH = {
    "type": "http", "path": "/", "status": 200,
    "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 3,
}


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"no TOML for {v!r}")


def config(
    *,
    backends: Sequence[Backend] = DEFAULT_BACKENDS,
    engine: Optional[Mapping[str, Any]] = None,
    timeouts: Optional[Mapping[str, str]] = None,
    health: Optional[Mapping[str, Any]] = DEFAULT_HEALTH,
    six: bool = True,
    metrics: Optional[str] = METRICS,
    xdp_mode: str = "driver",
    restart: Optional[Mapping[str, str]] = None,
    extra: str = "",
    queues: Union[int, str] = 1,
) -> str:
    """The test configuration: interface eth0 (``queues``: 1 unless
    told, or "all"), metrics on
    10.77.0.2:9100, listener "web" (tcp 10.77.0.100:80, LIPs 10.77.0.200
    and .201, ``backends``, ``health``) and, with ``six``, listener "web6"
    on [fd77::100]:80 with the same IPv4 backends (6to4). ``restart`` is
    the ``[restart]`` section (``state_dir``, ``pin_dir``); without it both
    are off, so that nothing outlives the test's lbd (the defaults would
    write /run/lbd and pin in the host's /sys/fs/bpf). ``extra`` is
    appended verbatim."""
    out = [
        "# lbd configuration written by crates/lb-xdp/netns/lbd.py",
        "[[interface]]",
        'name = "eth0"',
        f"queues = {_toml_value(queues)}",
        f"xdp_mode = {_toml_value(xdp_mode)}",
        "",
    ]
    if engine:
        out += ["[engine]", *[f"{k} = {_toml_value(v)}" for k, v in engine.items()], ""]
    if metrics:
        out += ["[metrics]", f"listen = {_toml_value(metrics)}", ""]
    sections = dict(restart or {"state_dir": "", "pin_dir": ""})
    out += ["[restart]", *[f"{k} = {_toml_value(str(v))}" for k, v in sections.items()], ""]
    listeners = [("web", VIP)] + ([("web6", VIP6)] if six else [])
    for name, vip in listeners:
        out += [
            "[[listener]]",
            f"name = {_toml_value(name)}",
            f"vip = {_toml_value(vip)}",
            "port = 80",
            'protocol = "tcp"',
            'scheduler = "rr"',
            f"local = {_toml_value({'addresses': list(LIPS)})}",
        ]
        if timeouts:
            out.append(f"timeouts = {_toml_value(dict(timeouts))}")
        if health:
            out.append(f"health = {_toml_value(dict(health))}")
        out.append("")
        for addr, port, weight in backends:
            out += ["[[listener.backend]]", f"addr = {_toml_value(addr)}", f"port = {port}",
                    f"weight = {weight}", ""]
    if extra:
        out.append(extra)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------


_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Metrics:
    """A parsed Prometheus text exposition."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = {k: v.encode().decode("unicode_escape") for k, v in _LABEL.findall(m.group(2) or "")}
            self.samples.append((m.group(1), labels, float(m.group(3))))

    def get(self, name: str, **labels: str) -> Optional[float]:
        """The value of the one sample of ``name`` whose labels include
        ``labels``; ``None`` if there is none. Raises if several match."""
        found = [v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items())]
        if len(found) > 1:
            raise LbdError(f"{len(found)} samples of {name} match {labels}")
        return found[0] if found else None

    def sum(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples if n == name and all(ls.get(k) == x for k, x in labels.items()))


class Lbd:
    """``lbd run`` in the balancer's namespace.

    ``start()`` writes ``text`` to a temporary file and waits (``timeout``)
    until lbd logs "lbd is up" (and, with a metrics address, until the
    endpoint answers); ``stop()`` sends SIGTERM and checks the exit code is
    0; ``kill()`` is the teardown of last resort."""

    def __init__(self, topo: Topology, text: str, *, path: Optional[Path] = None,
                 metrics: Optional[str] = METRICS, env: Optional[Mapping[str, str]] = None) -> None:
        self.topo = topo
        self.binary = path or binary()
        self.metrics_addr = metrics
        self.dir = Path(tempfile.mkdtemp(prefix=f"lbt-lbd-{topo.suffix}-"))
        self.config_path = self.dir / "lbd.toml"
        self.config_path.write_text(text)
        self.log_path = self.dir / "lbd.log"
        self.extra_env = dict(env or {})
        self.proc: Optional[subprocess.Popen[Any]] = None
        self.returncode: Optional[int] = None

    # -- lifetime -----------------------------------------------------------
    def start(self, timeout: float = 20) -> "Lbd":
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env["NO_COLOR"] = "1"
        env.update(self.extra_env)
        self._log = open(self.log_path, "wb")
        self.proc = self.topo.popen("lb", self.binary, "run", "--config", self.config_path,
                                    stdout=self._log, stderr=self._log, env=env)
        try:
            self.wait_log("lbd is up", timeout=timeout)
            if self.metrics_addr:
                deadline = time.monotonic() + 5
                while True:
                    try:
                        self.metrics()
                        break
                    except LbdError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        except BaseException:
            self.kill()
            raise
        return self

    def __enter__(self) -> "Lbd":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM, wait, and check that lbd exited with 0."""
        assert self.proc is not None, "lbd was not started"
        if not stop_process(self.proc, timeout):
            raise LbdError(f"lbd did not stop within {timeout}s of SIGTERM; log:\n{self.log()}")
        self.returncode = self.proc.returncode
        self._close_log()
        if self.returncode != 0:
            raise LbdError(f"lbd exited with {self.returncode}; log:\n{self.log()}")
        return self.returncode

    def crash(self) -> None:
        """SIGKILL, as a crash: lbd saves nothing and detaches nothing."""
        assert self.proc is not None and self.running(), f"lbd is not running; log:\n{self.log()}"
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.returncode = self.proc.returncode
        self._close_log()

    def kill(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if needed; never raises."""
        if self.proc is not None:
            stop_process(self.proc, 5)
            self.returncode = self.proc.returncode
        self._close_log()

    def cleanup(self) -> None:
        """Stop lbd if needed and remove its temporary directory (the
        configuration file and the log)."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    # -- configuration ------------------------------------------------------
    def reload(self, text: str, expect: Optional[str] = "reloaded", timeout: float = 10) -> str:
        """Rewrite the file and send SIGHUP; with ``expect``, wait for a new
        log line containing it ("reloaded", or "refused" for a broken file)
        and return that line."""
        assert self.proc is not None and self.running(), f"lbd is not running; log:\n{self.log()}"
        since = len(self.log_lines())
        tmp = self.config_path.with_suffix(".new")
        tmp.write_text(text)
        tmp.replace(self.config_path)
        self.proc.send_signal(signal.SIGHUP)
        if expect is None:
            return ""
        return self.wait_log(expect, since=since, timeout=timeout)[0]

    # -- observation --------------------------------------------------------
    def log(self) -> str:
        try:
            return ANSI.sub("", self.log_path.read_text(errors="replace"))
        except OSError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log().splitlines()

    def wait_log(self, needle: Union[str, re.Pattern[str]], since: int = 0, timeout: float = 10,
                 poll: float = 0.01) -> tuple[str, float]:
        """Wait for a log line (from line ``since`` on) containing ``needle``
        (a string or a compiled regex); return it and the monotonic time it
        was seen. Fails early, with the log, if lbd exits."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.log_lines()
            for line in lines[since:]:
                if (needle.search(line) if isinstance(needle, re.Pattern) else needle in line):
                    return line, time.monotonic()
            if self.proc is not None and self.proc.poll() is not None:
                raise LbdError(f"lbd exited ({self.proc.returncode}) before logging {needle!r}; log:\n{self.log()}")
            if time.monotonic() > deadline:
                raise LbdError(f"lbd did not log {needle!r} within {timeout}s; log:\n{self.log()}")
            time.sleep(poll)

    def metrics_text(self) -> str:
        if not self.metrics_addr:
            raise LbdError("no metrics address configured")
        host, _, port = self.metrics_addr.rpartition(":")
        r = self.topo.run("lb", "curl", "-sS", "--fail", "--max-time", "3",
                          f"http://{host}:{port}/metrics", check=False, timeout=10)
        if r.returncode != 0:
            raise LbdError(f"metrics at {self.metrics_addr}: curl {r.returncode}: {r.stderr.strip()}")
        return r.stdout

    def metrics(self) -> Metrics:
        return Metrics(self.metrics_text())

    def wait_metric(self, name: str, predicate: Any, timeout: float = 10, **labels: str) -> tuple[Optional[float], float]:
        """Poll the metrics until ``predicate(value)`` holds for ``name``
        (with ``labels``); return the value and the monotonic time."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.metrics().get(name, **labels)
            if predicate(value):
                return value, time.monotonic()
            if time.monotonic() > deadline:
                raise LbdError(f"{name}{labels} is {value} after {timeout}s; log:\n{self.log()}")
            time.sleep(0.05)

    def diagnostics(self) -> str:
        """What an lbd failure report wants: the log and the metrics."""
        parts = [f"--- lbd log ({self.log_path})\n{self.log()}"]
        try:
            parts.append("--- metrics\n" + "\n".join(
                line for line in self.metrics_text().splitlines() if not line.startswith("#")))
        except LbdError as e:
            parts.append(f"--- metrics unavailable: {e}")
        return "\n".join(parts)
