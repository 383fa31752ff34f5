#!/usr/bin/env python3
"""The demo of ``lbd`` (run by ``scripts/demo``, as root, with the project
venv's python so that ``ttm`` is importable).

It builds the namespace topology (a client, the balancer, two real
servers on one L2 segment), starts ``lbd`` with ``demo.toml``, and on the
servers' side ``ttm-agent`` (the eBPF decoder of the TTM option) with a
Python HTTP server on each RS in the agent's cgroup. It captures on each
RS's interface, sends requests from the client to the VIP, and prints for
each request which RS answered, the source address on the RS's wire (a
local address of lbd: FULLNAT), the client that the RS's own socket gives
(``ttm.get_peer``: getsockopt(SOL_IP, 1345) answered by the agent) and the
TTM option read from the capture. Then it removes everything it made.

Options: ``-n N`` requests (default 12); ``$LBD`` and ``$TTM_AGENT`` name
the binaries (default target/release/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # crates/lb-xdp

import ttm  # noqa: E402

from netns import CLIENT, LIPS, RS, VIP, Lbd, Topology, TtmAgent, preflight, tcp_segments  # noqa: E402
from netns import lbd as lbd_mod  # noqa: E402
from netns import ttm_agent as agent_mod  # noqa: E402

PORT = 8080
CONFIG = Path(__file__).resolve().with_name("demo.toml")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=12, help="requests to send (default 12)")
    ap.add_argument("--queues", type=int, default=1,
                    help="receive queues of the balancer's eth0, one lbd engine each (default 1)")
    args = ap.parse_args()

    problems = preflight()
    if problems:
        print("demo: " + "; ".join(problems), file=sys.stderr)
        return 1
    binary = lbd_mod.binary("release", build=False)
    agent_binary = agent_mod.binary("release", build=False)
    started = time.monotonic()
    lip_range = "10.77.0.200/31"
    assert set(LIPS) == {"10.77.0.200", "10.77.0.201"}
    with tempfile.TemporaryDirectory(prefix="lbd-demo-") as tmp, Topology(lb_queues=args.queues) as topo, \
            TtmAgent(lip_range, path=agent_binary) as agent:
        print(f"topology: namespaces {', '.join(topo.ns(h) for h in topo.hosts)} on bridge br0 in {topo.ns('sw')}")
        print(f"  client {CLIENT}  ->  VIP {VIP}:80 on lbd  ->  rs1 {RS['rs1']}:{PORT} (weight 1), "
              f"rs2 {RS['rs2']}:{PORT} (weight 3)")
        print(f"ttm-agent: {agent_binary} run --lb-ranges {lip_range} --cgroup {agent.cgroup}: up")
        cli = topo.agent("cli")
        servers = {name: topo.agent(name, cgroup=agent.cgroup) for name in ("rs1", "rs2")}
        pcaps = {}
        for name, srv in servers.items():
            srv.serve(port=PORT, name=name)
            pcaps[name] = str(Path(tmp) / f"{name}.pcap")
            srv.capture_start(iface="eth0", filter=f"tcp port {PORT}", file=pcaps[name])

        text = CONFIG.read_text().replace("queues = 1", f"queues = {args.queues}")
        lbd = Lbd(topo, text, path=binary, metrics="10.77.0.2:9100")
        lbd.start()
        try:
            print(f"lbd: {binary} run --config {CONFIG.name}: up")
            for name in servers:
                lbd.wait_metric("lbd_backend_up", lambda v: v == 1, timeout=5,
                                listener="web", address=RS[name], port=str(PORT))
            got = cli.get(host=VIP, port=80, n=args.n, timeout=3)
            for name, srv in servers.items():
                srv.capture_stop(file=pcaps[name])
            time.sleep(0.6)  # the metrics are published every 500 ms
            metrics = lbd.metrics()
            lbd.stop()
        finally:
            lbd.cleanup()
        status = agent.status()

        segments = {name: tcp_segments(f) for name, f in pcaps.items()}
        seen = {(p["ttm"].get("ip"), p["ttm"].get("port")): p
                for srv in servers.values() for p in srv.peers(port=PORT)}
        print()
        print(f"{'#':>3}  {'answered by':<12}{'source on the RS wire':<23}{'ttm.get_peer() on the RS':<31}"
              f"{'TTM option (capture)':<23}{'the client socket':<20}")
        ok = 0
        fullnat = True
        for i, res in enumerate(got["results"], 1):
            if res["error"]:
                print(f"{i:>3}  error: {res['error']}")
                continue
            name = res["body"].split()[0]
            mine = f"{CLIENT}:{res['local_port']}"
            peer = seen.get((CLIENT, res["local_port"]))
            got_peer = f"{peer['ttm']['ip']}:{peer['ttm']['port']} ({peer['ttm']['source']})" if peer else "(none)"
            # The handshake of this connection on the RS's wire: the third
            # ACK, from a local address, carrying the option.
            wire, option = "(none)", "(none)"
            for s in segments.get(name, []):
                if s.dst == RS[name] and s.dport == PORT and s.is_ack and not s.syn:
                    o = ttm.find_option(s.options)
                    if o is not None and (str(o.ip), o.port) == (CLIENT, res["local_port"]):
                        wire, option = f"{s.src}:{s.sport}", f"{o.ip}:{o.port}"
                        fullnat &= s.src in LIPS
                        break
            ok += got_peer == f"{mine} (ttm)" and option == mine
            print(f"{i:>3}  {name:<12}{wire:<23}{got_peer:<31}{option:<23}{mine:<20}")
        counts = {n: sum(1 for b in got["bodies"] if b.startswith(n + " ")) for n in servers}
        print()
        print(f"answers: {counts} (weights 1:3)")
        print("FULLNAT: " + ("every connection reached its RS from a local address of lbd, never the client"
                             if fullnat else "NOT every connection came from a local address"))
        print(f"TTM: {ok} of {args.n} RS sockets gave the client's real address and port "
              "(getsockopt answered by ttm-agent, from the option lbd wrote in the handshake)")
        print(f"ttm-agent: accepted {status['accepted']}, refused {status['refused_source']}, "
              f"getsockopt answered {status['getsockopt']}")
        if args.queues > 1:
            print(f"queues of the balancer's eth0 (one engine each): {args.queues}")
            print(f"{'queue':>7}  {'received':>9}  {'handed out':>10}  {'handed in':>9}  {'sent':>6}")
            for q in (str(q) for q in range(args.queues)):
                figures = [metrics.get("lbd_frames_received_total", queue=q),
                           metrics.get("lbd_frames_handed_out_total", queue=q),
                           metrics.get("lbd_frames_handed_in_total", queue=q),
                           metrics.get("lbd_frames_sent_total", queue=q, origin="received")]
                r, o, i, snt = (int(f or 0) for f in figures)
                print(f"{q:>7}  {r:>9}  {o:>10}  {i:>9}  {snt:>6}")
    print(f"removed every namespace, cgroup and process ({time.monotonic() - started:.1f}s)")
    return 0 if ok == args.n and fullnat else 1


if __name__ == "__main__":
    sys.exit(main())
