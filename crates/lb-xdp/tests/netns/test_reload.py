"""A reload (SIGHUP) adds a backend without dropping open connections; a
broken configuration file is refused and the running one stays."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from support import Net, PORT, parse_body, wait_backends_up
from netns import RS, VIP, config
from netns.lbd import DEFAULT_BACKENDS

WITH_RS3 = (*DEFAULT_BACKENDS, (RS["rs3"], PORT, 1))  # weights 1, 3, 1
N = 40


def test_reload_adds_backend_and_refuses_broken_file(net: Net, lbd_binary: Path) -> None:
    net.serve("rs1", "rs2", "rs3")
    d = net.lbd(config(six=False), lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])

    r = net.cli.get(host=VIP, port=80, n=8, timeout=3)
    assert r["errors"] == []
    assert "rs3" not in {parse_body(b)[0] for b in r["bodies"]}

    c = net.cli.open(host=VIP, port=80)
    before = parse_body(net.cli.request(id=c["id"]))

    # Reload with rs3 added.
    new = config(six=False, backends=WITH_RS3)
    line = d.reload(new, expect="reloaded")
    assert d.running()
    assert parse_body(net.cli.request(id=c["id"])) == before, "the open connection moved or broke"
    d.wait_metric("lbd_backend_up", lambda v: v == 1, timeout=3,
                  listener="web", address=RS["rs3"], port=str(PORT))
    r = net.cli.get(host=VIP, port=80, n=N, timeout=3)
    assert r["errors"] == [], Counter(r["errors"])
    counts = Counter(parse_body(b)[0] for b in r["bodies"])
    # Smooth weighted round robin over weights 1:3:1: 8 of 40 each for rs1
    # and rs3 (± 2 for the phase the scheduler was in at the reload).
    assert 6 <= counts["rs3"] <= 10, f"after the reload ({line}): {counts}"
    assert set(counts) == {"rs1", "rs2", "rs3"}, counts

    # A broken file: an unknown key. Refused; the old config (with rs3)
    # stays and the open connection goes on.
    failed_before = d.metrics().get("lbd_config_reloads_total", result="failed")
    line = d.reload("bogus_key = 1\n" + new, expect="refused")
    assert d.running(), f"lbd stopped on a broken file; log:\n{d.log()}"
    assert parse_body(net.cli.request(id=c["id"])) == before
    d.wait_metric("lbd_config_reloads_total", lambda v: v == (failed_before or 0) + 1, timeout=3,
                  result="failed")
    r = net.cli.get(host=VIP, port=80, n=N, timeout=3)
    assert r["errors"] == [], Counter(r["errors"])
    counts = Counter(parse_body(b)[0] for b in r["bodies"])
    assert set(counts) == {"rs1", "rs2", "rs3"}, f"after the refused reload ({line}): {counts}"
    assert d.metrics().get("lbd_backend_weight", listener="web", address=RS["rs3"], port=str(PORT)) == 1
    net.cli.close(id=c["id"])
