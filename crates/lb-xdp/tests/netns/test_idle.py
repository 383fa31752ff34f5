"""An idle TCP connection gets a RST at both ends after a shortened
timeout."""

from __future__ import annotations

from pathlib import Path

from support import Net, PORT, parse_body, wait_backends_up, wait_until
from netns import RS, VIP, config

IDLE = 2.0  # tcp_established
SWEEP = 0.5  # [engine] sweep_period: every session is checked this often
# The RST may come no earlier than IDLE after the last segment (the
# response, just before `request` returned, or the client's delayed ACK
# just after), and no later than IDLE + SWEEP plus slack for a loaded
# machine.
EARLIEST = IDLE - 0.1
LATEST = IDLE + SWEEP + 1.5


def test_idle_connection_reset_at_both_ends(net: Net, lbd_binary: Path) -> None:
    net.serve("rs1", "rs2")
    text = config(
        six=False,
        engine={"sweep_period": f"{int(SWEEP * 1000)}ms", "sweep_tick": "100ms"},
        timeouts={"tcp_established": f"{int(IDLE)}s"},
    )
    d = net.lbd(text, lbd_binary)
    wait_backends_up(d, "web", [RS["rs1"], RS["rs2"]])

    c = net.cli.open(host=VIP, port=80)
    name, _, _ = parse_body(net.cli.request(id=c["id"]))
    resets_before = net.rs[name].resets(port=PORT)

    waited = net.cli.wait_reset(id=c["id"], timeout=IDLE + 8)
    print(f"client: {waited['outcome']} after {waited['elapsed']:.3f}s idle")
    assert waited["outcome"] == "reset", f"client: {waited}"
    assert EARLIEST <= waited["elapsed"] <= LATEST, (
        f"client reset {waited['elapsed']:.2f}s after the last exchange; "
        f"want {EARLIEST}..{LATEST}s")
    wait_until(lambda: net.rs[name].resets(port=PORT) > resets_before, 3,
               f"{name} to see its end of the connection reset")
    d.wait_metric("lbd_sessions_expired_total", lambda v: v is not None and v >= 1, timeout=2)
    net.cli.close(id=c["id"])
