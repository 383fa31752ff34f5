"""lbd on a balancer whose eth0 has 2 and 4 receive queues (veth, driver
mode: in generic mode every frame would arrive on queue 0), one engine per
queue: the switch spreads the flows over the queues by their hash, so a
server's reply often arrives on another queue than its client's packets
and is handed to the engine that owns it.

Many client connections (4to4 and 6to4) all complete, and the servers
read every client's real address through the TTM option (ttm-agent in
their cgroup); UDP flows too; every queue receives frames, frames cross
queues, and each queue's ledger balances with its hand-offs. A reload and
a backend going down during a multi-queue run lose no connection."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from support import Net, PORT, wait_backends_up, wrk
from netns import CLIENT, CLIENT6, LB, LIPS, RS, VIP, VIP6, Agent, Lbd, Metrics, Topology, TtmAgent, config
from netns import ttm_agent as agent_mod

HOSTS = ("cli", "lb", "rs1", "rs2", "rs3")
LIP_RANGE = "10.77.0.200/31"
UDP_PORT = 5353
UDP_LISTENER = f"""
[[listener]]
name = "udp"
vip = "{VIP}"
port = {UDP_PORT}
protocol = "udp"
local = {{ addresses = {list(LIPS)!r} }}

[[listener.backend]]
addr = "{RS['rs1']}"
port = {UDP_PORT}

[[listener.backend]]
addr = "{RS['rs2']}"
port = {UDP_PORT}
""".replace("'", '"')

# A UDP echo server: answers each datagram with its bytes.
ECHO = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

# UDP clients: N sockets (N source ports, so N flows), each sends one
# datagram to VIP:PORT and waits for its echo, three tries; prints how
# many were answered.
UDP_CLIENTS = """
import socket, sys
vip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
answered = 0
for i, s in enumerate(socks):
    s.settimeout(1.0)
    msg = f"flow {i}".encode()
    for _ in range(3):
        s.sendto(msg, (vip, port))
        try:
            data, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        if data == msg:
            answered += 1
            break
print(answered)
"""


@pytest.fixture(scope="module", params=(2, 4), ids=lambda n: f"{n}queues")
def net(request: pytest.FixtureRequest, requirements: None) -> Iterator[Net]:
    """The topology with a multi-queue eth0 on the balancer (this module's
    own: it overrides conftest's ``net``)."""
    with Topology(hosts=HOSTS, lb_queues=request.param) as topo:
        n = Net(topo)
        try:
            yield n
        finally:
            n.stop_all()


@pytest.fixture(scope="module")
def queues(net: Net) -> int:
    return net.topo.lb_queues


@pytest.fixture(scope="module")
def agent(net: Net, requirements: None) -> Iterator[TtmAgent]:
    try:
        path = agent_mod.binary("debug")
    except agent_mod.AgentRunError as e:
        pytest.fail(str(e), pytrace=False)
    a = TtmAgent(LIP_RANGE, path=path)
    try:
        yield a.start()
    finally:
        a.close()


@pytest.fixture(scope="module")
def servers(net: Net, agent: TtmAgent) -> dict[str, Agent]:
    """HTTP on port 8080 of rs1-rs3, in the agent's cgroup; UDP echo on
    rs1 and rs2."""
    out = {}
    for name in ("rs1", "rs2", "rs3"):
        out[name] = net.topo.agent(name, cgroup=agent.cgroup)
        out[name].serve(port=PORT, name=name)
    for name in ("rs1", "rs2"):
        net.topo.popen(name, sys.executable, "-c", ECHO, str(UDP_PORT))
    return out


def hand_offs(m: Metrics, queues: int) -> tuple[list[float], list[float], list[float]]:
    """Per queue: frames received, handed out, handed in."""
    qs = [str(q) for q in range(queues)]
    return ([m.get("lbd_frames_received_total", queue=q) or 0 for q in qs],
            [m.get("lbd_frames_handed_out_total", queue=q) or 0 for q in qs],
            [m.get("lbd_frames_handed_in_total", queue=q) or 0 for q in qs])


def assert_ledgers(m: Metrics, queues: int) -> None:
    """Each queue's identity, with its hand-offs: what came (received and
    handed in) is sent, dropped, held or handed out."""
    for q in (str(q) for q in range(queues)):
        o = "received"
        came = m.get("lbd_frames_received_total", queue=q) + m.get("lbd_frames_handed_in_total", queue=q)
        went = (m.get("lbd_frames_sent_total", queue=q, origin=o)
                + m.sum("lbd_frames_dropped_total", queue=q, origin=o)
                + m.get("lbd_frames_held", queue=q, origin=o)
                + m.get("lbd_frames_handed_out_total", queue=q))
        assert came == went, f"queue {q}: {came} came, {went} accounted for"
        own = m.get("lbd_frames_own_total", queue=q)
        own_went = (m.get("lbd_frames_sent_total", queue=q, origin="own")
                    + m.sum("lbd_frames_dropped_total", queue=q, origin="own")
                    + m.get("lbd_frames_held", queue=q, origin="own"))
        assert own == own_went, f"queue {q}: own frames"
        assert m.get("lbd_frames_dropped_total", queue=q, origin=o, reason="handoff_full") == 0


def settled(d: Lbd, queues: int) -> Metrics:
    """A scrape in which every frame handed out has been handed in (the
    rings between queues are empty), the figures stable for a second."""
    deadline = time.monotonic() + 10
    last = None
    while True:
        m = d.metrics()
        _, out, into = hand_offs(m, queues)
        now = (sum(out), sum(into), m.sum("lbd_frames_received_total"))
        if sum(out) == sum(into) and now == last:
            return m
        assert time.monotonic() < deadline, f"hand-offs did not settle: {now}"
        last = now
        time.sleep(0.6)


def recorded(servers: dict[str, Agent]) -> dict[str, int]:
    """How many connections each server has recorded so far."""
    return {name: len(s.peers(port=PORT)) for name, s in servers.items()}


def through_lbd(servers: dict[str, Agent], since: dict[str, int], local_ports: set[int]) -> list[dict]:
    """What the servers recorded, after ``since``, of the client
    connections with these local ports (the balancer's own health checks
    aside)."""
    seen = [p for name, s in servers.items() for p in s.peers(port=PORT)[since[name]:]]
    return [p for p in seen if p["ip"] != LB and p["ttm"].get("port") in local_ports]


@contextmanager
def running(net: Net, text: str, binary: Path) -> Iterator[Lbd]:
    """lbd with ``text``, stopped at the end (also when the test fails, so
    that the module's next test can start its own)."""
    d = net.lbd(text, binary)
    try:
        yield d
    finally:
        if d.running():
            d.stop()


def test_every_connection_and_flow_over_every_queue(
        net: Net, queues: int, servers: dict[str, Agent], lbd_binary: Path) -> None:
    backends = ((RS["rs1"], PORT, 1), (RS["rs2"], PORT, 1))
    with running(net, config(queues="all", backends=backends, extra=UDP_LISTENER), lbd_binary) as d:
        every_queue(net, d, queues, servers)


def every_queue(net: Net, d: Lbd, queues: int, servers: dict[str, Agent]) -> None:
    for listener in ("web", "web6"):
        wait_backends_up(d, listener, [RS["rs1"], RS["rs2"]])
    m = d.metrics()
    assert m.get("lbd_engines") == queues, m.get("lbd_engines")
    assert f"queues={queues}" in d.log() and "steering=\"hand-off\"" in d.log(), d.log()
    assert m.get("lbd_steering_info", mode="hand-off") == 1

    # 4to4 and 6to4: sequential connections, each from a new source port.
    for vip, client, n in ((VIP, CLIENT, 240), (VIP6, CLIENT6, 120)):
        since = recorded(servers)
        r = net.cli.get(host=vip, port=80, n=n, timeout=3)
        assert r["errors"] == [], f"{len(r['errors'])} of {n} failed: {Counter(r['errors'])}"
        ports = {x["local_port"] for x in r["results"]}
        seen = through_lbd(servers, since, ports)
        assert len(seen) == n, f"{len(seen)} of {n} connections reached a server"
        wrong = [p for p in seen if p["ttm"] != {"ip": client, "port": p["ttm"]["port"], "source": "ttm"}]
        assert not wrong, f"servers did not read the client {client} through the option: {wrong[:5]}"
        assert Counter(p["ttm"]["port"] for p in seen) == Counter(ports)

    # UDP: many flows, each answered.
    flows = 64
    out = net.topo.run("cli", sys.executable, "-c", UDP_CLIENTS, VIP, str(UDP_PORT), str(flows),
                       timeout=60).stdout
    assert int(out.strip()) == flows, f"{out.strip()} of {flows} UDP flows answered"

    m = settled(d, queues)
    received, out_, into = hand_offs(m, queues)
    print(f"{queues} queues: received {received}, handed out {out_}, handed in {into}")
    assert all(r > 0 for r in received), f"a queue received nothing: {received}"
    assert sum(out_) > 0, "no frame crossed queues: the test did not test the hand-off"
    assert all(i > 0 for i in into), f"a queue was never handed a frame: {into}"
    assert_ledgers(m, queues)
    assert m.get("lbd_drops_total", reason="no_session") == 0, "a frame reached an engine without its session"


def test_a_reload_and_a_backend_going_down_lose_no_connection(
        net: Net, queues: int, servers: dict[str, Agent], lbd_binary: Path) -> None:
    health = {"type": "tcp", "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2}
    three = ((RS["rs1"], PORT, 1), (RS["rs2"], PORT, 1), (RS["rs3"], PORT, 1))
    text = config(queues="all", six=False, health=health, backends=three)
    with running(net, text, lbd_binary) as d:
        reload_and_down(net, d, queues, health)


def reload_and_down(net: Net, d: Lbd, queues: int, health: dict[str, object]) -> None:
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"], RS["rs3"]])

    # Open connections, on every backend and (by their source ports)
    # every queue.
    conns = [net.cli.open(host=VIP, port=80) for _ in range(24)]
    first = {c["id"]: net.cli.request(id=c["id"]) for c in conns}
    assert {b.split()[0] for b in first.values()} == {"rs1", "rs2", "rs3"}, first

    def spray(n: int) -> list[subprocess.Popen[str]]:
        procs = []
        for _ in range(n):
            procs.append(net.topo.popen(
                "cli", "curl", "-sS", "-o", "/dev/null", "-m", "8", "-w", "%{http_code}\n",
                f"http://{VIP}/", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            time.sleep(0.02)
        return procs

    # New connections during a reload that changes a weight.
    during = spray(10)
    heavier = ((RS["rs1"], PORT, 3), (RS["rs2"], PORT, 1), (RS["rs3"], PORT, 1))
    d.reload(config(queues="all", six=False, health=health, backends=heavier), expect="reloaded")
    during += spray(10)
    d.wait_metric("lbd_backend_weight", lambda v: v == 3, timeout=3, listener="web",
                  address=RS["rs1"], port=str(PORT))
    for c in conns:
        assert net.cli.request(id=c["id"]) == first[c["id"]], "an open connection moved or broke"

    # rs3 goes down for lbd (its health checks from the balancer's own
    # address go unanswered) while it still serves its connections.
    for cmd in (["nft", "add", "table", "inet", "lbt_hc"],
                ["nft", "add", "chain", "inet", "lbt_hc", "input",
                 "{ type filter hook input priority 0; }"],
                ["nft", "add", "rule", "inet", "lbt_hc", "input", "ip", "saddr", LB,
                 "tcp", "dport", str(PORT), "drop"]):
        net.topo.run("rs3", *cmd)
    during += spray(10)
    d.wait_metric("lbd_backend_up", lambda v: v == 0, timeout=5, listener="web",
                  address=RS["rs3"], port=str(PORT))
    during += spray(10)
    codes = [p.communicate(timeout=30)[0].strip() for p in during]
    assert codes == ["200"] * len(during), Counter(codes)
    for c in conns:
        assert net.cli.request(id=c["id"]) == first[c["id"]], "an open connection broke"
        net.cli.close(id=c["id"])

    # Every engine knows rs3 is down: no new connection reaches it.
    r = net.cli.get(host=VIP, port=80, n=40, timeout=3)
    assert r["errors"] == [], Counter(r["errors"])
    names = Counter(b.split()[0] for b in r["bodies"])
    assert "rs3" not in names, names
    m = settled(d, queues)
    assert_ledgers(m, queues)
    net.topo.run("rs3", "nft", "delete", "table", "inet", "lbt_hc")


def test_a_restart_keeps_every_connection_and_another_queue_count_restores_none(
        net: Net, queues: int, servers: dict[str, Agent], lbd_binary: Path,
        restart_dirs: dict[str, str]) -> None:
    """Each engine saves its sessions; the next lbd on as many queues
    restores each into its own engine (the client hash keeps its seed, so
    both directions still meet there). A start on another number of queues
    (told here by the state directory's ``queues`` file) restores none,
    says so, counts them, and removes the files."""
    text = config(queues="all", six=False, health=None, restart=restart_dirs)
    n = 24
    with running(net, text, lbd_binary) as d:
        conns = [net.cli.open(host=VIP, port=80) for _ in range(n)]
        served = {c["id"]: net.cli.request(id=c["id"]) for c in conns}
        d.wait_metric("lbd_sessions", lambda v: v == n, timeout=3)
        per_queue = [d.metrics().get("lbd_queue_sessions", queue=str(q)) for q in range(queues)]
        assert sum(per_queue) == n, per_queue
    state = Path(restart_dirs["state_dir"])
    assert (state / "queues").read_text().strip() == str(queues)
    assert sorted(p.name for p in state.glob("queue-*.sessions")) == [
        f"queue-{q}.sessions" for q in range(queues)]

    with running(net, text, lbd_binary) as d:
        d.wait_log("sessions restored")
        d.wait_metric("lbd_sessions", lambda v: v == n, timeout=3)
        for c in conns:
            assert net.cli.request(id=c["id"]) == served[c["id"]], "a connection broke in the restart"
        m = settled(d, queues)
        assert m.sum("lbd_drops_total", reason="no_session") == 0
        assert_ledgers(m, queues)
        assert m.get("lbd_sessions_not_restored_total") == 0

    # The last run served another number of queues: nothing is restored.
    (state / "queues").write_text(f"{queues + 1}\n")
    with running(net, text, lbd_binary) as d:
        line, _ = d.wait_log("not restored")
        assert f"sessions={n}" in line, line
        d.wait_metric("lbd_sessions_not_restored_total", lambda v: v == n, timeout=3)
        assert d.metrics().get("lbd_sessions") == 0
        assert not list(state.glob("queue-*.sessions")), "refused files must go"
        for c in conns:
            net.cli.abort(id=c["id"])
        r = net.cli.get(host=VIP, port=80, n=8, timeout=3)
        assert r["errors"] == [], r["errors"]


def test_load_on_every_queue_balances_every_ledger(
        net: Net, queues: int, servers: dict[str, Agent], lbd_binary: Path) -> None:
    """wrk's connections, busy on every queue at once: every request is
    answered, no ring between queues overflows, and once the load stops
    every frame handed out has been handed in and each ledger balances."""
    backends = ((RS["rs1"], PORT, 1), (RS["rs2"], PORT, 1))
    with running(net, config(queues="all", six=False, backends=backends), lbd_binary) as d:
        wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])
        r = wrk(net, f"http://{VIP}:80/", 3, connections=32)
        print(f"{queues} queues: {r['rate']:.0f} requests/s, {r['requests']} requests")
        assert r["requests"] > 0 and r["errors"] == 0, r["output"]
        m = settled(d, queues)
        received, out_, into = hand_offs(m, queues)
        print(f"received {received}, handed out {out_}, handed in {into}")
        assert all(x > 0 for x in out_), out_
        assert_ledgers(m, queues)
