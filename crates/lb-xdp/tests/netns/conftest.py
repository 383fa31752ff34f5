"""Fixtures of the real-kernel tests of ``lbd``: the namespace topology
(crates/lb-xdp/netns), agents inside it, and ``lbd run`` itself.

Nothing here is skipped: without root, or without one of the tools, every
test fails with a message saying what is missing (CI runs as root)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from support import Net
from netns import LbdError, Topology, preflight
from netns import lbd as lbd_mod

HOSTS = ("cli", "lb", "rs1", "rs2", "rs3")


@pytest.fixture(scope="session")
def requirements() -> None:
    problems = preflight()
    try:
        import ttm  # noqa: F401
    except ImportError:
        problems.append("the `ttm` Python module is not importable: run the tests with the "
                        "project venv (.venv/bin/python) after `cd crates/ttm-py && "
                        "../../.venv/bin/maturin develop` (or scripts/test's python step)")
    if problems:
        pytest.fail("the netns tests cannot run here: " + "; ".join(problems)
                    + " (run as root after scripts/setup)", pytrace=False)


@pytest.fixture(scope="session")
def lbd_binary(requirements: None) -> Path:
    """``$LBD``, or target/debug/lbd built now (a no-op when fresh)."""
    try:
        return lbd_mod.binary("debug")
    except LbdError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def net(requirements: None) -> Iterator[Net]:
    """A fresh topology per test file (cli, lb, rs1-rs3), always removed."""
    with Topology(hosts=HOSTS) as topo:
        n = Net(topo)
        try:
            yield n
        finally:
            n.stop_all()


@pytest.fixture
def restart_dirs(requirements: None, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A ``[restart]`` section of the test's own: a state directory, and a
    pin directory in a bpffs mounted for the test (never the host's
    /sys/fs/bpf). At the end every pin in it is removed, which detaches
    the XDP program lbd left (unmounting alone would not: a process
    started during the test, in a mount namespace of its own, may still
    hold the mount), and it is unmounted."""
    bpffs = tmp_path / "bpffs"
    bpffs.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(bpffs)], check=True)
    try:
        yield {"state_dir": str(tmp_path / "state"), "pin_dir": str(bpffs / "lbd")}
    finally:
        shutil.rmtree(bpffs / "lbd", ignore_errors=True)
        subprocess.run(["umount", "-l", str(bpffs)], capture_output=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """On a failure, attach every running lbd's log and metrics."""
    rep = yield
    if rep.failed:
        n: Optional[Net] = getattr(item, "funcargs", {}).get("net")
        if n is not None:
            for i, d in enumerate(n._lbds):
                rep.sections.append((f"lbd #{i} (running: {d.running()})", d.diagnostics()))
    return rep

