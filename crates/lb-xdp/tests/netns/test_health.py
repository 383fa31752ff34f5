"""A backend stopped mid-test is marked down within fall x interval, gets
no new connection afterwards, and the other backend's open connections go
on."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from support import Net, PORT, parse_body, wait_backends_up
from netns import LIPS, RS, VIP, config, tcp_segments
from netns.lbd import DEFAULT_HEALTH

INTERVAL = 0.2  # DEFAULT_HEALTH: interval "200ms", timeout "150ms", fall 3
FALL = 3
# The checker checks each backend once per interval; a stopped server
# refuses the connection at once, so the third failure in a row comes at
# most FALL intervals after the stop. The slack covers the control loop
# applying the event (it waits up to 50 ms for events), the log reaching
# the file and this test polling it every 10 ms, on a loaded 2-CPU machine.
SLACK = 0.4
BOUND = FALL * INTERVAL + SLACK


def test_backend_down_within_fall_times_interval(net: Net, lbd_binary: Path, tmp_path: Path) -> None:
    assert DEFAULT_HEALTH["interval"] == "200ms" and DEFAULT_HEALTH["fall"] == FALL
    net.serve("rs1", "rs2")
    d = net.lbd(config(six=False), lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])

    # Traffic to both, and a kept-alive connection that lands on rs2.
    r = net.cli.get(host=VIP, port=80, n=8, timeout=3)
    assert r["errors"] == []
    assert {parse_body(b)[0] for b in r["bodies"]} == {"rs1", "rs2"}
    keep = None
    for _ in range(8):
        c = net.cli.open(host=VIP, port=80)
        name, lip, lport = parse_body(net.cli.request(id=c["id"]))
        if name == "rs2":
            keep = (c["id"], lip, lport)
            break
        net.cli.close(id=c["id"])
    assert keep is not None, "no kept-alive connection landed on rs2 in 8 tries"

    # Stop rs1: listener and connections closed, so its checks fail.
    since = len(d.log_lines())
    t0 = time.monotonic()
    net.rs["rs1"].kill_server(port=PORT)
    line, t_down = d.wait_log(
        re.compile(rf"backend down.*listener=web\b.*backend={re.escape(RS['rs1'])}:{PORT}"),
        since=since, timeout=5)
    elapsed = t_down - t0
    print(f"rs1 marked down {elapsed:.3f}s after the stop (bound {BOUND:.2f}s): {line}")
    assert elapsed <= BOUND, f"rs1 marked down {elapsed:.3f}s after the stop, bound {BOUND:.2f}s: {line}"
    d.wait_metric("lbd_backend_up", lambda v: v == 0, timeout=2,
                  listener="web", address=RS["rs1"], port=str(PORT))
    d.wait_metric("lbd_backend_up", lambda v: v == 1, timeout=1,
                  listener="web", address=RS["rs2"], port=str(PORT))

    # From now on, no new connection reaches rs1: every one is answered by
    # rs2, and rs1's interface sees no SYN from a LIP.
    pcap = str(tmp_path / "rs1.pcap")
    net.rs["rs1"].capture_start(iface="eth0", filter=f"tcp port {PORT}", file=pcap)
    r = net.cli.get(host=VIP, port=80, n=40, timeout=3)
    net.rs["rs1"].capture_stop(file=pcap)
    assert r["errors"] == [], Counter(r["errors"])
    assert Counter(parse_body(b)[0] for b in r["bodies"]) == {"rs2": 40}
    syns = [s for s in tcp_segments(pcap) if s.syn and not s.is_ack and s.src in LIPS]
    assert syns == [], f"rs1 got SYNs through the balancer after it was down: {[str(s) for s in syns]}"

    # The connection open to rs2 since before the stop still answers, on
    # the same outbound tuple.
    for _ in range(3):
        assert parse_body(net.cli.request(id=keep[0])) == ("rs2", keep[1], keep[2])
    net.cli.close(id=keep[0])
