"""A restart of lbd loses no connection, and a crash never lets the host
answer for a VIP.

With ``[restart]`` (a state directory, and the XDP link pinned in a bpffs of
the test's own): SIGTERM saves every session and leaves the XDP program
attached, dropping the balancer's traffic while no lbd serves it; the next
lbd swaps its own program into the pinned link once its socket is bound,
and restores the sessions. After ``kill -9`` nothing is saved, but the
program still drops (never passes) the VIP's traffic: the host's stack
resets nothing and answers no ping, and new connections succeed as soon as
the next lbd is up."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import threading

from support import Net, PORT, parse_body, start_nginx, wrk, xdp_attached
from netns import RS, VIP, AgentError, config, tcp_segments

CONNECTIONS = 8
NGINX = PORT + 1


def test_sigterm_then_start_with_a_new_engine_keeps_every_connection(net: Net, lbd_binary: Path,
                                                   restart_dirs: dict[str, str]) -> None:
    net.serve("rs1", "rs2")
    text = config(six=False, health=None, restart=restart_dirs)
    d = net.lbd(text, lbd_binary)
    conns = [net.cli.open(host=VIP, port=80) for _ in range(CONNECTIONS)]
    served = {c["id"]: parse_body(net.cli.request(id=c["id"]))[0] for c in conns}
    d.wait_metric("lbd_sessions", lambda v: v == CONNECTIONS, timeout=3)

    assert d.stop() == 0
    assert "sessions saved" in d.log(), d.log()
    assert xdp_attached(net), "the pinned XDP program must outlive lbd"
    # No lbd: the program drops the VIP's traffic, the host does not answer.
    p = net.cli.ping(host=VIP, count=3, interval=0.2, wait=1)
    assert p["replies"] == 0, p["output"]

    # The restart also changes [engine], which only a restart applies.
    text2 = config(six=False, health=None, restart=restart_dirs,
                   engine={"capacity": 4096, "sweep_period": "2s"})
    d2 = net.lbd(text2, lbd_binary)
    line, _ = d2.wait_log("sessions restored")
    assert "Replaced" in d2.log(), "the second lbd swaps its program into the pinned link"
    print(line)
    d2.wait_metric("lbd_sessions", lambda v: v == CONNECTIONS, timeout=3)
    # Every connection made before the restart goes on, to its own server.
    for c in conns:
        name, _, _ = parse_body(net.cli.request(id=c["id"]))
        assert name == served[c["id"]]
    assert d2.metrics().sum("lbd_drops_total", reason="no_session") == 0
    for c in conns:
        net.cli.close(id=c["id"])

    # Taking the balancer away: `lbd detach` gives the VIP back to the host.
    assert d2.stop() == 0
    r = net.topo.run("lb", lbd_binary, "detach", "--config", d2.config_path)
    assert "XDP detached" in r.stdout, r.stdout + r.stderr
    assert not xdp_attached(net)
    p = net.cli.ping(host=VIP, count=2)
    assert p["replies"] == 2, p["output"]


def test_wrk_and_idle_connections_through_a_restart(net: Net, lbd_binary: Path,
                                                     restart_dirs: dict[str, str],
                                                     tmp_path: Path) -> None:
    # nginx, beside the module's Python servers (on PORT).
    for rs in ("rs1", "rs2"):
        start_nginx(net, rs, tmp_path / f"nginx-{rs}", port=NGINX)
    text = config(six=False, health=None, restart=restart_dirs,
                  backends=((RS["rs1"], NGINX, 1), (RS["rs2"], NGINX, 1)))
    d = net.lbd(text, lbd_binary)
    idle = [net.cli.open(host=VIP, port=80) for _ in range(CONNECTIONS)]
    for c in idle:
        assert net.cli.request(id=c["id"]).strip() in ("rs1", "rs2")
    result: dict[str, dict] = {}
    load = threading.Thread(target=lambda: result.update(r=wrk(net, f"http://{VIP}:80/", 8)))
    load.start()
    time.sleep(3)
    t = time.monotonic()
    assert d.stop() == 0
    d2 = net.lbd(text, lbd_binary)
    print(f"restart: {1000 * (time.monotonic() - t):.0f} ms from SIGTERM to the next lbd up")
    load.join(60)
    r = result["r"]
    print(f"wrk: {r['rate']:.0f} requests/s, {r['requests']} requests, {r['errors']} errors")
    assert r["requests"] > 0 and r["errors"] == 0, r["output"]
    # The idle connections, made before the restart, go on.
    for c in idle:
        assert net.cli.request(id=c["id"]).strip() in ("rs1", "rs2")
        net.cli.close(id=c["id"])
    assert d2.metrics().sum("lbd_drops_total", reason="no_session") == 0
    assert d2.stop() == 0


def test_crash_then_start_resets_nothing(net: Net, lbd_binary: Path,
                                         restart_dirs: dict[str, str], tmp_path: Path) -> None:
    net.serve("rs1", "rs2")
    text = config(six=False, health=None, restart=restart_dirs)
    d = net.lbd(text, lbd_binary)
    c = net.cli.open(host=VIP, port=80)
    parse_body(net.cli.request(id=c["id"]))

    pcap = str(tmp_path / "cli.pcap")
    net.cli.capture_start(iface="eth0", file=pcap, filter=f"tcp and src host {VIP}")
    d.crash()
    assert xdp_attached(net), "the pinned XDP program must outlive a crash"
    # While no lbd runs: the open connection's data and a new connection's
    # SYN are dropped, never answered by the host's stack.
    with pytest.raises(AgentError, match="timed out"):
        net.cli.request(id=c["id"], timeout=1)
    p = net.cli.ping(host=VIP, count=3, interval=0.2, wait=1)
    assert p["replies"] == 0, p["output"]

    d2 = net.lbd(text, lbd_binary)
    up = time.monotonic()
    while True:
        r = net.cli.get(host=VIP, port=80, timeout=1)
        if r["bodies"]:
            break
        assert time.monotonic() - up < 1.0, f"no service 1 s after the restart: {r['errors']}"
    back = time.monotonic() - up
    print(f"service back {back * 1000:.0f} ms after lbd was up")
    net.cli.capture_stop(file=pcap)
    resets = [s for s in tcp_segments(pcap) if s.flags & 0x04]
    assert not resets, f"the host reset a balanced connection: {resets}"
    net.cli.close(id=c["id"])
    assert d2.stop() == 0
