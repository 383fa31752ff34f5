"""The harness itself, without lbd: the topology, the agents, the capture
and the pcap reader, and that every namespace goes away."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support import Net, PORT, parse_body, wait_until
from netns import CLIENT, RS, AgentError, Topology, tcp_segments


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_topology_is_removed_even_on_error(requirements: None) -> None:
    before = namespaces()
    made: set[str] = set()
    with pytest.raises(RuntimeError, match="boom"):
        with Topology() as topo:
            made = {topo.ns(h) for h in topo.hosts} | {topo.ns("sw")}
            assert made <= namespaces()
            raise RuntimeError("boom")
    assert len(made) == 5
    assert not (made & namespaces())
    assert before - namespaces() == set()


def test_direct_http_capture_and_reset(net: Net, tmp_path: Path) -> None:
    net.serve("rs1")
    pcap = str(tmp_path / "rs1.pcap")
    net.rs["rs1"].capture_start(iface="eth0", filter=f"tcp port {PORT}", file=pcap)
    r = net.cli.get(host=RS["rs1"], port=PORT, n=3, timeout=2)
    net.rs["rs1"].capture_stop(file=pcap)
    assert r["errors"] == []
    for res in r["results"]:
        assert parse_body(res["body"]) == ("rs1", CLIENT, res["local_port"])
    segs = tcp_segments(pcap)
    for res in r["results"]:
        flow = [s for s in segs if s.src == CLIENT and s.sport == res["local_port"]]
        assert flow and flow[0].syn, flow
        third = next(s for s in flow if s.is_ack and not s.syn)
        assert third.dst == RS["rs1"] and third.dport == PORT
    assert {p["ip"] for p in net.rs["rs1"].peers(port=PORT)} == {CLIENT}

    # A kept-alive connection, then the server is killed: the client sees
    # the connection end, and new connections are refused.
    c = net.cli.open(host=RS["rs1"], port=PORT)
    assert parse_body(net.cli.request(id=c["id"]))[2] == c["local_port"]
    assert parse_body(net.cli.request(id=c["id"]))[2] == c["local_port"]
    net.rs["rs1"].kill_server(port=PORT)
    assert net.cli.wait_reset(id=c["id"], timeout=3)["outcome"] == "closed"
    assert "ECONNREFUSED" in net.cli.get(host=RS["rs1"], port=PORT, n=1, timeout=2)["errors"][0]
    with pytest.raises(AgentError):
        net.cli.request(id=c["id"], timeout=1)
    net.cli.close(id=c["id"])

    # A RST from the client is counted by the server.
    net.serve("rs2")
    c = net.cli.open(host=RS["rs2"], port=PORT)
    net.cli.request(id=c["id"])
    net.cli.abort(id=c["id"])
    wait_until(lambda: net.rs["rs2"].resets(port=PORT) == 1, 3, "rs2 to count the reset")

    # ping works on the segment, IPv6 too.
    p = net.cli.ping(host=RS["rs2"], count=2)
    assert p["success"] and p["replies"] == 2, p["output"]
    p = net.cli.ping(host="fd77::2", count=2)
    assert p["success"] and p["replies"] == 2, p["output"]
