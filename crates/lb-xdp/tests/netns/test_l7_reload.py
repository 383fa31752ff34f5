"""A reload (SIGHUP) that changes an HTTPS listener's certificate and the
backends' weights, during a wrk run on kept-alive connections and a loop
of curl making a new handshake per request: no request is lost, new
handshakes get the new certificate, and the new weights split requests
1:3; then a reload naming a key protected by a passphrase is refused and
nothing changes. And a backend its health check marked down is up again
after a reload that takes the check away: nothing would ever bring it
back otherwise."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from typing import Any, cast

from l7 import (  # noqa: F401 (fixtures)
    HTTP, L7Net, VIP, config, l7_binary, listener, net, new_key, resolve, subject,
)
from netns import RS
from support import wait_until, wrk

def test_reload_certificate_and_weights_under_load(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2")

    def text(cert: Any, weights: tuple[int, int]) -> str:
        backends = (("rs1", HTTP, weights[0]), ("rs2", HTTP, weights[1]))
        return config(listener("tls", 443, "https", backends=backends, certificates=[cert]))

    d = net.lbd(text(c.a, (1, 1)))
    renewed = c.server("a-renewed", "a.test")  # the same name, another certificate
    old_subject, new_subject = subject(c.a[0]), subject(renewed[0])
    assert old_subject != new_subject
    ca = ["-CAfile", str(c.ca.cert)]
    rc, pem, out = net.server_cert(443, "a.test", *ca)
    assert rc == 0 and subject(pem) == old_subject, out

    # Load: wrk on 8 kept-alive connections for 5 s, and curl in a loop,
    # one new connection (handshake) per request, until wrk is done.
    result: dict[str, Any] = {}
    load = threading.Thread(target=lambda: result.update(
        wrk(cast(Any, net), f"https://{VIP}/", 5, connections=8, threads=1)))
    load.start()
    stop = net.tmp / "stop-the-loop"
    loop = net.topo.popen(
        "cli", "sh", "-c",
        'while [ ! -e "$0" ]; do curl -sS -o /dev/null --max-time 5 -w "%{http_code}\\n" "$@"; done',
        str(stop), "--resolve", resolve("a.test", 443), "--cacert", str(c.ca.cert), "https://a.test/",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        line = d.reload(text(renewed, (1, 3)))
        still_loading = load.is_alive() and loop.poll() is None
        load.join(60)
    finally:
        stop.touch()
    out, err = loop.communicate(timeout=30)

    assert still_loading, "the load ended before the reload was done: make it longer"
    codes = Counter(out.split())
    assert set(codes) == {"200"} and codes["200"] >= 10, f"curl loop: {codes}; {err.strip()}"
    assert result, "wrk did not finish"
    assert result["requests"] > 0 and result["errors"] == 0, f"after reload ({line}):\n{result['output']}"

    # New handshakes get the new certificate; the new weights apply.
    rc, pem, out = net.server_cert(443, "a.test", *ca)
    assert rc == 0 and subject(pem) == new_subject, f"after the reload: {subject(pem) if pem else out}"
    answers = net.curl_many("https://a.test/", 400, "--resolve", resolve("a.test", 443), "--cacert", c.ca.cert)
    assert Counter(a["backend"] for a in answers) == {"rs1": 100, "rs2": 300}

    # A reload naming a key protected by a passphrase is refused, with
    # the file named; the running certificate and weights stay.
    locked = new_key(c.dir / "locked.key", passphrase="a passphrase")
    line = d.reload(text((renewed[0], locked), (1, 1)), expect="reload refused")
    assert d.running(), d.log()
    assert any("locked.key" in ln for ln in d.log_lines()), f"the refusal does not name the key:\n{d.log()}"
    rc, pem, out = net.server_cert(443, "a.test", *ca)
    assert rc == 0 and subject(pem) == new_subject, f"after the refused reload ({line}): {out}"
    answers = net.curl_many("https://a.test/", 8, "--resolve", resolve("a.test", 443), "--cacert", c.ca.cert)
    assert Counter(a["backend"] for a in answers) == {"rs1": 2, "rs2": 6}


def test_a_reload_without_the_health_check_brings_its_down_backend_up(net: L7Net) -> None:
    net.backends("rs1", "rs2")
    d = net.lbd(config(listener("web", 80)))
    label = {"listener": "web", "backend": f"{RS['rs2']}:{HTTP}"}

    def up() -> float | None:
        return d.metrics().get("lbd_l7_backend_up", **label)

    # rs2 stops: its checks fail (fall 3 x 200 ms) and it is marked down.
    net.kill_backend("rs2")
    wait_until(lambda: up() == 0, 5, "rs2 marked down by its health check", poll=0.1)
    # The same listener without a health check: no check watches rs2 any
    # more, so it is up again (as every backend of a listener without
    # checks), not left down for good.
    d.reload(config(listener("web", 80, health=None)))
    # (/metrics serves a snapshot lbd refreshes a few times a second.)
    wait_until(lambda: up() == 1, 2, "rs2 up after the reload", poll=0.1)
    # And it gets its requests once it serves again.
    net.backend("rs2")
    seen = {net.curl(f"http://{VIP}/").backend for _ in range(4)}
    assert seen == {"rs1", "rs2"}, seen
