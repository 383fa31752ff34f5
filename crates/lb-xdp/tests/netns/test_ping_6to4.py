"""Ping to the VIP is answered (by lbd, not the balancer's kernel); an IPv6
client reaches the IPv4 RSs through a 6to4 listener; a listener with no
live backend stops answering ping."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ttm

from support import Net, PORT, parse_body, wait_backends_up
from netns import CLIENT6, LIPS, RS, VIP, VIP6, Lbd, config, tcp_segments

COUNT = 3


@pytest.fixture(scope="module")
def lbd(net: Net, lbd_binary: Path) -> Lbd:
    net.serve("rs1", "rs2")
    d = net.lbd(config(), lbd_binary)
    for listener in ("web", "web6"):
        wait_backends_up(d, listener, [RS["rs1"], RS["rs2"]])
    return d


def echo_replies(d: Lbd) -> float:
    return d.metrics().get("lbd_echo_replies_total") or 0


@pytest.mark.parametrize("vip", [VIP, VIP6], ids=["ipv4", "ipv6"])
def test_ping_vip_answered_by_lbd(net: Net, lbd: Lbd, vip: str) -> None:
    before = echo_replies(lbd)
    p = net.cli.ping(host=vip, count=COUNT)
    assert p["success"] and p["replies"] == COUNT, p["output"]
    # The kernel owns the VIP too: the counter tells that lbd answered.
    lbd.wait_metric("lbd_echo_replies_total", lambda v: (v or 0) >= before + COUNT, timeout=3)


def test_ipv6_client_reaches_ipv4_rs(net: Net, lbd: Lbd, tmp_path: Path) -> None:
    pcaps = {name: str(tmp_path / f"{name}.pcap") for name in ("rs1", "rs2")}
    for name, f in pcaps.items():
        net.rs[name].capture_start(iface="eth0", filter=f"tcp port {PORT}", file=f)
    r = net.cli.get(host=VIP6, port=80, n=8, timeout=3)
    for name, f in pcaps.items():
        net.rs[name].capture_stop(file=f)
    assert r["errors"] == [], Counter(r["errors"])
    answers = [(parse_body(x["body"]), x["local_port"]) for x in r["results"]]
    assert {name for (name, _, _), _ in answers} == {"rs1", "rs2"}
    for (name, peer_ip, _), _ in answers:
        assert peer_ip in LIPS, f"{name} saw {peer_ip}, not an IPv4 LIP"
    # The third ACK towards the IPv4 RS carries the IPv6 client's address.
    for (name, lip, lport), client_port in answers:
        flow = [s for s in tcp_segments(pcaps[name])
                if (s.src, s.sport, s.dst, s.dport) == (lip, lport, RS[name], PORT)]
        third = next((s for s in flow if s.is_ack and not s.syn), None)
        assert third is not None, f"no third ACK of {lip}:{lport} on {name}"
        peer = ttm.find_option(third.options)
        assert peer is not None, f"third ACK without a TTM option: {third}"
        assert (str(peer.ip), peer.port) == (CLIENT6, client_port), peer


def test_no_live_backend_no_ping(net: Net, lbd: Lbd) -> None:
    """Last in this file: it stops both servers."""
    for name in ("rs1", "rs2"):
        net.rs[name].kill_server(port=PORT)
    for name in ("rs1", "rs2"):
        lbd.wait_metric("lbd_backend_up", lambda v: v == 0, timeout=5,
                        listener="web", address=RS[name], port=str(PORT))
    before = echo_replies(lbd)
    p = net.cli.ping(host=VIP, count=COUNT, wait=1)
    assert p["replies"] == 0, f"the VIP answered ping with no live backend:\n{p['output']}"
    lbd.wait_metric("lbd_drops_total", lambda v: (v or 0) >= COUNT, timeout=3, reason="ping_no_backend")
    assert echo_replies(lbd) == before
