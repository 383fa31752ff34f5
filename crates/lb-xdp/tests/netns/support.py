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

from netns import Agent, Lbd, LbdError, Topology  # noqa: E402

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
        """Start the HTTP server on port 8080 of each RS named."""
        for name in names:
            self.rs[name].serve(port=PORT, name=name)

    def lbd(self, text: str, binary: Path) -> Lbd:
        d = Lbd(self.topo, text, path=binary)
        self._lbds.append(d)
        return d.start()

    def stop_all(self) -> None:
        """Stop every lbd started (SIGTERM), checking each exits with 0."""
        errors = []
        for d in self._lbds:
            if os.environ.get("LBT_SHOW_LOG"):
                print(f"\n--- lbd log ({d.log_path})\n{d.log()}")
            if d.running():
                try:
                    d.stop()
                except LbdError as e:
                    errors.append(str(e))
            d.cleanup()
        self._lbds.clear()
        if errors:
            pytest.fail("lbd did not stop cleanly:\n" + "\n".join(errors), pytrace=False)


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
