"""No black hole at start or reload: the XDP program is attached only once
its addresses and every queue's socket are in its maps, and a reload adds
new addresses before it removes old ones. A ping of the VIP every
millisecond, answered by the balancer's kernel before lbd starts and by lbd
after, loses none across a start and a reload."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from support import Net
from netns import RS, VIP, config

PINGS = 3000


def test_ping_every_millisecond_across_start_and_reload(net: Net, lbd_binary: Path) -> None:
    p = net.topo.popen("cli", "ping", "-n", "-q", "-i", "0.001", "-c", str(PINGS), "-W", "1", VIP,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.3)  # the balancer's kernel answers these
        d = net.lbd(config(six=False, health=None), lbd_binary)
        time.sleep(0.3)
        d.reload(config(six=False, health=None, backends=((RS["rs1"], 8080, 2), (RS["rs3"], 8080, 1))))
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, received = int(m.group(1)), int(m.group(2))
    answered = d.metrics().sum("lbd_echo_replies_total")
    print(f"{sent} pings, {received} answered ({answered:.0f} by lbd)")
    assert sent == PINGS, out
    assert answered > 0, "lbd answered none: the test did not cross a start"
    assert received == sent, f"{sent - received} of {sent} pings lost across the start and reload:\n{out}"
