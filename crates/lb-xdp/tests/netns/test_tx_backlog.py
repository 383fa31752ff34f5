"""wrk keep-alive at full rate for 30 s through lbd to two nginx servers:
no frame is dropped at a full TX ring (frames that do not fit wait in the
socket's backlog, and the backlog is used), none is lost at lbd's RX ring
instead, no kernel on either end times a segment out, wrk sees no error,
and every frame is accounted for. Before (frames dropped at a full TX
ring): about 6,000 drops and 80-110 client timeouts in 30 s."""

from __future__ import annotations

from pathlib import Path

from support import Net, PORT, assert_identity, identity, nstat, start_nginx, wait_backends_up, wrk
from netns import RS, VIP, config

SECONDS = 30


def test_no_tx_full_drop_under_keepalive_load(net: Net, lbd_binary: Path, tmp_path: Path) -> None:
    for rs in ("rs1", "rs2"):
        start_nginx(net, rs, tmp_path / f"nginx-{rs}")
    d = net.lbd(config(six=False, engine={"capacity": 65536}), lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])

    hosts = ("cli", "rs1", "rs2")
    timeouts_before = {h: nstat(net, h, "TcpExtTCPTimeouts") for h in hosts}
    r = wrk(net, f"http://{VIP}:80/", SECONDS)
    timeouts = {h: nstat(net, h, "TcpExtTCPTimeouts") - timeouts_before[h] for h in hosts}

    # Published every 500 ms: wait for the last figures.
    d.wait_metric("lbd_frames_held", lambda v: v == 0, timeout=5, queue="0", origin="received")
    m = assert_identity(d)
    tx_full = m.sum("lbd_frames_dropped_total", reason="tx_full")
    deferred = m.sum("lbd_ring_tx_ring_full_total")
    rx_lost = m.sum("lbd_ring_kernel_rx_ring_full_total") + m.sum("lbd_ring_kernel_rx_dropped_total")
    print(f"wrk: {r['rate']:.0f} requests/s, {r['requests']} requests, {r['errors']} errors; "
          f"TX-full drops {tx_full:.0f}, frames that waited for the TX ring {deferred:.0f}, "
          f"lost at the RX ring {rx_lost:.0f}; TCP timeouts {timeouts}; "
          f"frames (came, sent, dropped, held): {identity(m)}")
    assert r["requests"] > 0, r["output"]
    assert r["errors"] == 0, r["output"]
    assert deferred > 0, "the TX ring was never full: the backlog was not tested"
    assert tx_full == 0, f"{tx_full:.0f} frames dropped at a full TX ring"
    assert rx_lost == 0, f"{rx_lost:.0f} frames lost at lbd's RX ring instead"
    assert not any(timeouts.values()), f"TCP timeouts (TcpExtTCPTimeouts): {timeouts}"
    # Every backend answered: the load really went through both.
    for rs in ("rs1", "rs2"):
        n = m.get("lbd_backend_packets_in_total", listener="web", address=RS[rs], port=str(PORT))
        assert n is not None and n > 0, (rs, n)
