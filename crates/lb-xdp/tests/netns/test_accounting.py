"""Every frame lbd receives is accounted for. A mix of good and bad traffic
at the VIPs and the local addresses (real HTTP over IPv4 and IPv6, UDP,
pings, and frames made by hand: truncated headers, bad IP and TCP
checksums, bad flags, IP options, fragments, unknown protocols, SYNs to
a port with no listener, segments with no session, backends with no
route and no neighbour), then, from the metrics, per queue:

    received = sent + Σ dropped by reason + held now

exactly (and the same for the frames lbd makes itself: the RSTs of an
idle connection that expires), each bad kind in
its own reason, and the XDP program's redirected packets equal to what
lbd received plus what the kernel dropped before it."""

from __future__ import annotations

import time
from pathlib import Path

from support import Net, PORT, assert_identity, identity, wait_backends_up, wait_until
from netns import CLIENT, CLIENT6, LIPS, RS, VIP, VIP6, Metrics, config
from netns import frames as f

#: Two listeners whose backends cannot be reached from the balancer:
#: 10.77.1.14 has no route (the balancer's namespace routes only
#: 10.77.0.0/24), 10.77.0.14 is on the segment but no host has it (ARP
#: never resolves). And a UDP listener on rs1, where nothing listens (rs1
#: answers port unreachable, which lbd forwards back to the client).
NOWHERE_PORT, GHOST_PORT, UDP_PORT = 8082, 8083, 5353
NEIGHBOUR_QUEUE = 8
EXTRA = f"""
[neighbour]
queue = {NEIGHBOUR_QUEUE}

[[listener]]
name = "nowhere"
vip = "{VIP}"
port = {NOWHERE_PORT}
protocol = "tcp"
local = {{ addresses = ["{LIPS[0]}"] }}
[[listener.backend]]
addr = "10.77.1.14"
port = {PORT}

[[listener]]
name = "ghost"
vip = "{VIP}"
port = {GHOST_PORT}
protocol = "tcp"
local = {{ addresses = ["{LIPS[0]}"] }}
[[listener.backend]]
addr = "10.77.0.14"
port = {PORT}

[[listener]]
name = "udp"
vip = "{VIP}"
port = {UDP_PORT}
protocol = "udp"
local = {{ addresses = ["{LIPS[0]}"] }}
[[listener.backend]]
addr = "{RS["rs1"]}"
port = {UDP_PORT}
"""

QUEUE = "0"
IDLE = 2  # s, tcp_established


def reasons(m: Metrics) -> dict[str, float]:
    """The received frames dropped on the queue, by reason."""
    return {ls["reason"]: v for n, ls, v in m.samples
            if n == "lbd_frames_dropped_total" and ls.get("queue") == QUEUE
            and ls.get("origin") == "received"}


def xdp_balance(m: Metrics) -> tuple[float, float]:
    """(redirected by the XDP program, received by lbd + dropped by the
    kernel before lbd) for the queue."""
    redirected = m.get("lbd_xdp_packets_total", queue=QUEUE, outcome="redirected")
    received = m.get("lbd_frames_received_total", queue=QUEUE)
    kernel = sum(m.get(f"lbd_ring_kernel_{k}_total", queue=QUEUE) or 0
                 for k in ("rx_dropped", "rx_ring_full"))
    assert redirected is not None and received is not None, m.text
    return redirected, received + kernel


def mac_of(net: Net, host: str) -> str:
    return net.topo.run(host, "cat", "/sys/class/net/eth0/address").stdout.strip()


def test_every_frame_is_accounted_for(net: Net, lbd_binary: Path) -> None:
    net.serve("rs1", "rs2")
    d = net.lbd(config(extra=EXTRA, timeouts={"tcp_established": f"{IDLE}s"},
                       engine={"sweep_period": "500ms", "sweep_tick": "100ms"}), lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])
    # A connection left idle: lbd resets it at both ends, with frames of
    # its own.
    idle = net.cli.open(host=VIP, port=80)
    net.cli.request(id=idle["id"])
    cli_mac, lb_mac = mac_of(net, "cli"), mac_of(net, "lb")
    m0 = assert_identity(d)
    before = reasons(m0)

    def v4(dst: str, proto: int, payload: bytes, **ip: object) -> str:
        return f.ethernet(lb_mac, cli_mac, f.ETH_IPV4, f.ipv4(CLIENT, dst, proto, payload, **ip)).hex()

    def syn(dport: int, sport: int, dst: str = VIP, **kw: object) -> bytes:
        return f.tcp(CLIENT, dst, sport, dport, f.SYN, **kw)

    # Each bad kind, as many frames as its index + 2, so that a frame
    # counted under the wrong reason shows; every reason here is one that
    # nothing else in this phase can cause.
    kinds: list[tuple[str, str, list[str]]] = []

    def kind(name: str, reason: str, make: object) -> None:
        n = len(kinds) + 2
        kinds.append((name, reason, [make(i) for i in range(n)]))  # type: ignore[operator]

    kind("TCP header cut short", "truncated",
         lambda i: v4(VIP, f.TCP, syn(80, 30000 + i)[:12]))
    kind("IPv4 header length 16", "bad_ip_header",
         lambda i: v4(VIP, f.TCP, syn(80, 30100 + i), ihl=4))
    kind("IPv4 total length past the frame", "bad_ip_length",
         lambda i: v4(VIP, f.TCP, syn(80, 30200 + i), total=400))
    kind("bad IPv4 checksum", "bad_ip_checksum",
         lambda i: v4(VIP, f.TCP, syn(80, 30300 + i), bad_checksum=True))
    kind("IPv4 options", "ip_options",
         lambda i: v4(VIP, f.TCP, syn(80, 30400 + i), options=b"\x01\x01\x01\x00"))
    kind("a first fragment", "fragment",
         lambda i: v4(VIP, f.TCP, syn(80, 30500 + i), frag=0x2000, ident=i + 1))
    kind("TCP data offset past the segment", "bad_l4_header",
         lambda i: v4(VIP, f.TCP, syn(80, 30600 + i, offset=15)))
    kind("SYN with FIN", "bad_tcp_flags",
         lambda i: v4(VIP, f.TCP, f.tcp(CLIENT, VIP, 30700 + i, 80, f.SYN | f.FIN)))
    kind("SYN to a port with no listener", "no_listener",
         lambda i: v4(VIP, f.TCP, syn(81, 30800 + i)))
    kind("ACK with no session", "no_session",
         lambda i: v4(VIP, f.TCP, f.tcp(CLIENT, VIP, 30900 + i, 80, f.ACK, seq=5, ack=7)))
    kind("ICMP timestamp request to the VIP", "icmp_unsupported",
         lambda i: v4(VIP, f.ICMP, f.icmp(13, rest=bytes(4), payload=bytes(12))))
    kind("echo request to a local address", "for_host",
         lambda i: v4(LIPS[0], f.ICMP, f.icmp(8, rest=bytes([0, 1, 0, i]))))
    kind("IPv6 to the VIP, an unknown header after hop-by-hop", "ipv6_extension",
         lambda i: f.ethernet(lb_mac, cli_mac, f.ETH_IPV6, f.ipv6(
             CLIENT6, VIP6, f.HOPOPTS, f.hop_by_hop(253) + bytes(8))).hex())
    # Any protocol to the VIP reaches lbd, never the host's stack (which
    # would answer for a balancer that may be down).
    kind("an unknown IPv4 protocol to the VIP", "unsupported_protocol",
         lambda i: v4(VIP, 253, bytes(16)))
    kind("SYN to a backend with no route", "no_route",
         lambda i: v4(VIP, f.TCP, syn(NOWHERE_PORT, 31000 + i)))

    for name, _, frames in kinds:
        assert net.cli.send_frames(frames=frames) == len(frames), name

    def settled() -> Metrics | None:
        m = d.metrics()
        got = reasons(m)
        done = all(got.get(r, 0) - before.get(r, 0) >= len(fr) for _, r, fr in kinds)
        return m if done else None

    m = wait_until(settled, 5, "every bad frame to be counted")
    got = reasons(m)
    wrong = []
    for name, reason, frames in kinds:
        n = got.get(reason, 0) - before.get(reason, 0)
        print(f"{name:45} -> {reason:22} {n:.0f} of {len(frames)}")
        if n != len(frames):
            wrong.append(f"{name}: {n:.0f} counted as {reason}, {len(frames)} sent")
    assert not wrong, "\n".join(wrong) + f"\nreasons: {got}"

    # A next hop that never resolves: NEIGHBOUR_QUEUE SYNs wait for it, the
    # rest find its queue full; the waiting ones are dropped after 3 s.
    ghost = [v4(VIP, f.TCP, syn(GHOST_PORT, 31100 + i)) for i in range(NEIGHBOUR_QUEUE + 3)]
    net.cli.send_frames(frames=ghost)

    # Good traffic, of every kind the balancer serves, and a bad TCP
    # checksum on a SYN that would open a session.
    r = net.cli.get(host=VIP, port=80, n=20, timeout=3)
    assert r["errors"] == [], r["errors"]
    r = net.cli.get(host=VIP6, port=80, n=5, timeout=3)
    assert r["errors"] == [], r["errors"]
    p = net.cli.ping(host=VIP, count=5, interval=0.05)
    assert p["replies"] == 5, p["output"]
    p = net.cli.ping(host=VIP6, count=5, interval=0.05)
    assert p["replies"] == 5, p["output"]
    udp = [v4(VIP, f.UDP, f.udp(CLIENT, VIP, 32000 + i, UDP_PORT, b"hello")) for i in range(6)]
    net.cli.send_frames(frames=udp)
    bad_sum = [v4(VIP, f.TCP, syn(80, 32100 + i, bad_checksum=True)) for i in range(7)]
    net.cli.send_frames(frames=bad_sum)
    assert_identity(d)

    waited = net.cli.wait_reset(id=idle["id"], timeout=IDLE + 8)
    assert waited["outcome"] == "reset", waited
    net.cli.close(id=idle["id"])
    # The waiting SYNs give up after 3 s; then nothing is held.
    d.wait_metric("lbd_frames_held", lambda v: v == 0, timeout=6, queue=QUEUE, origin="received")
    m = assert_identity(d)
    got = reasons(m)
    full = got["neighbour_queue_full"] - before.get("neighbour_queue_full", 0)
    unresolved = got["no_neighbour"] - before.get("no_neighbour", 0)
    assert (full, unresolved) == (3, NEIGHBOUR_QUEUE), (full, unresolved)
    assert got["tx_full"] == 0 and got["bookkeeping"] == 0 and got["netlink_error"] == 0, got
    # The neighbour counters agree.
    assert m.get("lbd_neigh_unreachable_total") == got["no_route"], m.text
    assert m.get("lbd_neigh_unresolved_dropped_total") == got["no_neighbour"], m.text
    assert m.get("lbd_neigh_queue_dropped_total") == got["neighbour_queue_full"], m.text
    # The UDP datagrams went to rs1, whose port unreachable came back to
    # the client: sent both ways.
    udp_in = m.get("lbd_listener_packets_in_total", listener="udp")
    assert udp_in == len(udp), udp_in
    sent = m.get("lbd_frames_sent_total", queue=QUEUE, origin="received")
    assert sent is not None and sent > 2 * 25 * 4, sent
    own, own_sent, _, _ = identity(m)["own"]
    assert own >= 2 and own_sent == own, identity(m)
    came, *_ = identity(m)["received"]
    print(f"received {came:.0f}: {identity(m)}")

    # Before lbd: what the XDP program redirected is what lbd received plus
    # what the kernel dropped on the way (once the RX ring is empty and the
    # kernel's figures are read again).
    def xdp_settled() -> tuple[float, float] | None:
        time.sleep(0.3)
        r, l = xdp_balance(d.metrics())
        return (r, l) if r == l else None

    try:
        wait_until(xdp_settled, 5, "the XDP program's count to settle")
    except AssertionError:
        r, l = xdp_balance(d.metrics())
        raise AssertionError(f"the XDP program redirected {r:.0f} packets; lbd received and the "
                             f"kernel dropped {l:.0f}") from None
    net.stop_all()


def test_bad_l4_checksum_is_its_own_drop(net: Net, lbd_binary: Path) -> None:
    """A SYN with a bad TCP checksum opens no session: it is dropped, as
    ``bad_l4_checksum``."""
    net.stop_all()  # the module's topology has one balancer at a time
    d = net.lbd(config(six=False, health=None), lbd_binary)
    cli_mac, lb_mac = mac_of(net, "cli"), mac_of(net, "lb")
    frames = [f.ethernet(lb_mac, cli_mac, f.ETH_IPV4, f.ipv4(
        CLIENT, VIP, f.TCP, f.tcp(CLIENT, VIP, 33000 + i, 80, f.SYN, bad_checksum=True))).hex()
        for i in range(9)]
    net.cli.send_frames(frames=frames)
    d.wait_metric("lbd_frames_dropped_total", lambda v: v == len(frames), timeout=5,
                  queue=QUEUE, origin="received", reason="bad_l4_checksum")
    m = assert_identity(d)
    assert m.get("lbd_sessions_created_total") == 0
