"""HTTP over IPv4 through lbd to two RSs weighted 1:3: the split, FULLNAT
(the RS sees a LIP, never the client), and the TTM option in the third ACK
carrying the client's real address and port."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import ttm

from support import Net, PORT, parse_body, wait_backends_up
from netns import CLIENT, LB, LIPS, RS, VIP, config, tcp_segments

N = 400
# The scheduler is smooth weighted round robin: with weights 1:3 every run
# of 4 consecutive new sessions holds exactly one rs1 and three rs2, so
# N = 400 sequential connections split exactly 100:300 whatever the phase
# the scheduler starts in, as long as nothing else creates sessions on the
# listener (nothing does here: health checks go from the balancer's own
# address, not through the VIP) and no backend flaps. The tolerance of
# 0.01 (4 connections) only allows for a stray SYN retransmission that a
# busy machine could turn into a second session; a wrong weighting (1:1
# gives 0.5, 1:2 gives 0.667) is far outside it.
TOLERANCE = 0.01


def test_weighted_split_fullnat_and_ttm(net: Net, lbd_binary: Path, tmp_path: Path) -> None:
    net.serve("rs1", "rs2")
    d = net.lbd(config(), lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])

    pcap = str(tmp_path / "rs1.pcap")
    net.rs["rs1"].capture_start(iface="eth0", filter=f"tcp port {PORT}", file=pcap)
    r = net.cli.get(host=VIP, port=80, n=N, timeout=3)
    net.rs["rs1"].capture_stop(file=pcap)

    assert r["errors"] == [], f"{len(r['errors'])} of {N} requests failed: {Counter(r['errors'])}"
    answers = [(parse_body(x["body"]), x["local_port"]) for x in r["results"]]
    counts = Counter(name for (name, _, _), _ in answers)
    share = counts["rs2"] / N
    print(f"split of {N} connections: {dict(counts)} (rs2 share {share:.4f})")
    assert set(counts) == {"rs1", "rs2"}, counts
    assert abs(share - 0.75) <= TOLERANCE, f"rs2 answered {counts['rs2']} of {N} ({share:.3f}), want 0.75 ± {TOLERANCE}"

    # FULLNAT: the RS's socket saw a LIP, never the client.
    for (name, peer_ip, _), _ in answers:
        assert peer_ip in LIPS, f"{name} saw {peer_ip}, not a LIP"
    for name in ("rs1", "rs2"):
        peers = net.rs[name].peers(port=PORT)
        ips = Counter(p["ip"] for p in peers)
        assert CLIENT not in ips, f"{name} accepted connections from the client itself: {ips}"
        # Besides the LIPs, only the balancer's health checks (from LB).
        assert set(ips) <= {*LIPS, LB}, f"{name} saw peers {ips}"
        assert sum(ips[lip] for lip in LIPS) == counts[name], (name, ips, counts)

    # TTM: on rs1's interface, the third ACK of every connection through
    # the balancer carries kind 254 with the client's address and port.
    segments = tcp_segments(pcap)
    rs1_answers = [(lip, lport, cport) for (name, lip, lport), cport in answers if name == "rs1"]
    assert rs1_answers
    checked = 0
    for lip, lport, client_port in rs1_answers:
        flow = [s for s in segments
                if (s.src, s.sport, s.dst, s.dport) == (lip, lport, RS["rs1"], PORT)]
        assert flow, f"no segment of {lip}:{lport} -> rs1 in the capture"
        assert flow[0].syn and not flow[0].is_ack, f"first segment is not a SYN: {flow[0]}"
        third = next((s for s in flow if s.is_ack and not s.syn), None)
        assert third is not None, f"no third ACK in {[str(s) for s in flow]}"
        peer = ttm.find_option(third.options)
        assert peer is not None, f"third ACK without a TTM option: {third}"
        assert (str(peer.ip), peer.port) == (CLIENT, client_port), f"TTM says {peer}, client was {CLIENT}:{client_port}"
        checked += 1
    assert checked == counts["rs1"]

    # The metrics agree with what the servers saw (they are published
    # every 500 ms).
    for name in ("rs1", "rs2"):
        d.wait_metric("lbd_backend_new_sessions_total", lambda v, n=counts[name]: v == n, timeout=3,
                      listener="web", address=RS[name], port=str(PORT))
