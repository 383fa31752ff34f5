"""Without a pin directory (``[restart] pin_dir = ""``), lbd attaches XDP
to the interface while it runs and a clean shutdown (SIGTERM, exit code 0)
detaches it, leaving the balancer's kernel to answer for its addresses
again. (With one, the program outlives lbd: test_restart.py.)"""

from __future__ import annotations

from pathlib import Path

from support import Net, xdp_attached
from netns import VIP, config


def test_clean_shutdown_detaches_xdp(net: Net, lbd_binary: Path) -> None:
    assert not xdp_attached(net)
    d = net.lbd(config(health=None), lbd_binary)
    assert xdp_attached(net), net.topo.run("lb", "ip", "-d", "link", "show", "dev", "eth0").stdout
    assert d.stop() == 0
    assert not xdp_attached(net), net.topo.run("lb", "ip", "-d", "link", "show", "dev", "eth0").stdout
    # The kernel owns the VIP again and answers its ping itself.
    p = net.cli.ping(host=VIP, count=2)
    assert p["success"] and p["replies"] == 2, p["output"]
