"""ttm-agent (crates/ttm-agent) on the real servers, with lbd in front: the
client's real address reaches the server's own sockets, through
``getsockopt(SOL_IP, 1345)`` (``ttm.get_peer``, ``ttm_getpeer`` in C) and
``getpeername()``/``accept()``, with no kernel module; an option from
outside the balancer's ranges is not believed.

Each server runs in a cgroup made for the test, to which the agent is
attached (TtmAgent removes the cgroup and everything in it at the end)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import ttm

from support import Net, PORT, wait_until
from netns import CLIENT, CLIENT6, LB, LIPS, RS, VIP, VIP6, Agent, Lbd, TtmAgent, config
from netns import ttm_agent as agent_mod

REPO = Path(__file__).resolve().parents[4]
LIP_RANGE = "10.77.0.200/31"  # LIPS, and nothing else
assert {f"10.77.0.{n}" for n in (200, 201)} == set(LIPS)
C_PORT = 8081  # the C example's port on rs1, behind the listener on VIP:81
C_LISTENER = f"""
[[listener]]
name = "c"
vip = "{VIP}"
port = 81
protocol = "tcp"
local = {{ addresses = {list(LIPS)!r} }}

[[listener.backend]]
addr = "{RS['rs1']}"
port = {C_PORT}
""".replace("'", '"')


@pytest.fixture(scope="module")
def agent_binary(requirements: None) -> Path:
    try:
        return agent_mod.binary("debug")
    except agent_mod.AgentRunError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def agent(net: Net, agent_binary: Path) -> Iterator[TtmAgent]:
    a = TtmAgent(LIP_RANGE, path=agent_binary)
    try:
        yield a.start()
    finally:
        a.close()


@pytest.fixture(scope="module")
def servers(net: Net, agent: TtmAgent) -> dict[str, Agent]:
    """An HTTP server on port 8080 of rs1 and rs2, in the agent's cgroup."""
    out = {}
    for name in ("rs1", "rs2"):
        out[name] = net.topo.agent(name, cgroup=agent.cgroup)
        out[name].serve(port=PORT, name=name)
    return out


@pytest.fixture(scope="module")
def lbd(net: Net, lbd_binary: Path, servers: dict[str, Agent]) -> Lbd:
    d = net.lbd(config(extra=C_LISTENER), lbd_binary)
    for listener in ("web", "web6"):
        for name in ("rs1", "rs2"):
            d.wait_metric("lbd_backend_up", lambda v: v == 1, timeout=5, listener=listener,
                          address=RS[name], port=str(PORT))
    return d


def through_lbd(servers: dict[str, Agent], local_ports: set[int]) -> list[dict]:
    """What the servers recorded of the client connections with these
    local ports (the balancer's health checks aside)."""
    seen = [p for s in servers.values() for p in s.peers(port=PORT)]
    return [p for p in seen if p["ttm"].get("port") in local_ports]


def test_check_says_this_host_can_run_it(agent_binary: Path) -> None:
    r = subprocess.run([str(agent_binary), "check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   BPF programs: the kernel loads all 4" in r.stdout, r.stdout
    assert f"ok   cgroup v2: mounted at {agent_mod.cgroup2_root()}" in r.stdout, r.stdout


def test_4to4_client_reaches_getsockopt_getpeername_and_accept(
        net: Net, agent: TtmAgent, servers: dict[str, Agent], lbd: Lbd) -> None:
    before = agent.status()
    assert before["lb_ranges"] == [LIP_RANGE]
    n = 8
    r = net.cli.get(host=VIP, port=80, n=n, timeout=3)
    assert r["errors"] == [], r["errors"]
    ports = {x["local_port"] for x in r["results"]}
    seen = through_lbd(servers, ports)
    assert len(seen) == n, seen
    for p in seen:
        # getsockopt(SOL_IP, 1345) through the ttm module: the client.
        assert p["ttm"]["ip"] == CLIENT and p["ttm"]["source"] == "ttm", p
        # accept() and getpeername(): rewritten to the client too.
        assert (p["ip"], p["port"]) == (CLIENT, p["ttm"]["port"]), p
        assert p["peername"] == [CLIENT, p["ttm"]["port"]], p
    assert {x["body"].split()[0] for x in r["results"]} == {"rs1", "rs2"}
    # The health checks come straight from the balancer, with no option:
    # left alone.
    checks = [p for s in servers.values() for p in s.peers(port=PORT) if p["ip"] == LB]
    assert checks, "no health-check connection seen"
    assert all(p["ttm"]["source"] == "peername" for p in checks), checks[:3]
    after = agent.status()
    assert after["accepted"] - before["accepted"] == n
    assert after["getsockopt"] - before["getsockopt"] >= n
    assert after["getpeername"] - before["getpeername"] >= 2 * n  # accept() and getpeername()
    assert after["refused_source"] == before["refused_source"]


def test_6to4_client_reaches_getsockopt(net: Net, agent: TtmAgent, servers: dict[str, Agent],
                                        lbd: Lbd) -> None:
    r = net.cli.get(host=VIP6, port=80, n=4, timeout=3)
    assert r["errors"] == [], r["errors"]
    ports = {x["local_port"] for x in r["results"]}
    seen = through_lbd(servers, ports)
    assert len(seen) == 4, seen
    for p in seen:
        assert p["ttm"]["ip"] == CLIENT6 and p["ttm"]["source"] == "ttm", p
        # An IPv6 client cannot be an IPv4 socket's peer: the local address
        # stays, as the product FAQ says of 6to4.
        assert p["ip"] in LIPS and p["peername"][0] in LIPS, p


def test_lost_third_ack_the_request_carries_the_address(
        net: Net, agent: TtmAgent, servers: dict[str, Agent], lbd: Lbd) -> None:
    # Drop, on rs1, every third ACK from the balancer (a pure ACK of 60
    # bytes: 20 IP, 20 TCP, 12 timestamps with NOPs, 8 the option): the
    # request segment that follows carries the option too and completes
    # the handshake.
    table = "lbt_lost_ack"
    rule = (f"table ip {table} {{ chain in {{ type filter hook input priority 0; "
            f"ip saddr {{ {', '.join(LIPS)} }} tcp dport {PORT} tcp flags == ack ip length 60 "
            f"counter drop; }}; }}")
    net.topo.run("rs1", "sh", "-c", 'printf "%s\\n" "$0" | nft -f -', rule)
    try:
        r = net.cli.get(host=VIP, port=80, n=8, timeout=3)
        dropped = net.topo.run("rs1", "nft", "list", "table", "ip", table).stdout
    finally:
        net.topo.run("rs1", "nft", "delete", "table", "ip", table, check=False)
    assert r["errors"] == [], r["errors"]
    drops = int(dropped.split("counter packets ")[1].split()[0])
    rs1 = [x for x in r["results"] if x["body"].startswith("rs1 ")]
    assert rs1 and drops >= len(rs1), (drops, dropped)
    seen = through_lbd({"rs1": servers["rs1"]}, {x["local_port"] for x in rs1})
    assert len(seen) == len(rs1)
    assert all(p["ttm"]["ip"] == CLIENT and p["ttm"]["source"] == "ttm" for p in seen), seen


def test_c_example_prints_the_client(net: Net, agent: TtmAgent, lbd: Lbd, tmp_path: Path) -> None:
    subprocess.run(["cargo", "build", "-q", "-p", "ttm-ffi"], cwd=REPO, check=True)
    exe = tmp_path / "rs_server"
    subprocess.run(["gcc", "-std=c11", "-D_DEFAULT_SOURCE", "-Wall", "-Werror", f"-I{REPO}/include",
                    str(REPO / "examples/c/rs_server.c"), str(REPO / "target/debug/libttm.a"),
                    "-lpthread", "-ldl", "-lm", "-o", str(exe)], check=True)
    log = tmp_path / "rs_server.log"
    with open(log, "w") as out:
        p = net.topo.popen("rs1", exe, "0.0.0.0", str(C_PORT), "1", stdout=out, stderr=out,
                           cgroup=agent.cgroup)
        wait_until(lambda: "listening on" in log.read_text(), 5, "rs_server to listen")
        c = net.cli.open(host=VIP, port=81)
        p.wait(10)
        net.cli.close(id=c["id"])
    text = log.read_text()
    assert f"client {CLIENT} port {c['local_port']} (ttm)" in text, text


def test_forged_option_from_outside_the_ranges_is_not_believed(
        net: Net, agent_binary: Path) -> None:
    """A client that reaches rs2 directly writes a TTM option naming
    another address. With the balancer's ranges only, it is refused; with
    the client's own address in the ranges (the control that shows the
    same bytes would be read), it is believed, also when only the request
    segment after the handshake carries it."""
    forged = ttm.encode_option("203.0.113.7", 4242).hex()
    port = 9100
    for ranges, believed in ((LIP_RANGE, False), (f"{LIP_RANGE},{CLIENT}/32", True)):
        with TtmAgent(ranges, path=agent_binary) as a:
            srv = net.topo.agent("rs2", cgroup=a.cgroup)
            srv.serve(port=port, name="rs2")
            for i, option_in in enumerate(("ack", "data")):
                r = net.cli.forge(host=RS["rs2"], port=port, option=forged, option_in=option_in)
                assert r["body"].startswith("rs2 "), r
                peers = srv.peers(port=port)
                assert len(peers) == i + 1, peers
                p = peers[-1]
                if believed:
                    assert p["ttm"] == {"ip": "203.0.113.7", "port": 4242, "source": "ttm"}, p
                else:
                    assert p["ttm"] == {"ip": CLIENT, "port": r["local_port"],
                                        "source": "peername"}, p
                    assert (p["ip"], p["port"]) == (CLIENT, r["local_port"]), p
            s = a.status()
            if believed:
                assert (s["accepted"], s["late"], s["refused_source"]) == (2, 1, 0), s
            else:
                assert (s["accepted"], s["refused_source"]) == (0, 2), s
            srv.kill_server(port=port)
            srv.terminate()
            a.stop()
            port += 1


def test_stopped_agent_detaches(net: Net, agent_binary: Path) -> None:
    """After a clean stop, the programs are gone: getsockopt answers
    ENOPROTOOPT again (``ttm`` falls back to getpeername) and the pins are
    removed."""
    port = 9200
    with TtmAgent(f"{CLIENT}/32", path=agent_binary) as a:
        srv = net.topo.agent("rs2", cgroup=a.cgroup)
        srv.serve(port=port, name="rs2")
        forged = ttm.encode_option("203.0.113.9", 99).hex()
        r = net.cli.forge(host=RS["rs2"], port=port, option=forged)
        assert [x["ttm"]["source"] for x in srv.peers(port=port)] == ["ttm"], r
        a.stop()
        assert not (a.pins / "stats").exists()
        r = net.cli.forge(host=RS["rs2"], port=port, option=forged)
        last = srv.peers(port=port)[-1]
        assert last["ttm"] == {"ip": CLIENT, "port": r["local_port"], "source": "peername"}, last
        srv.kill_server(port=port)
        srv.terminate()
