#!/usr/bin/env python3
"""The demo of ``lbd``'s layer-7 listeners (run by ``scripts/demo --l7``,
as root, with the project venv's python).

It builds the namespace topology (a client, the balancer, two real
servers), makes a CA and a certificate for a.test with the ``openssl``
CLI, starts a small HTTP server on each real server that answers with the
request headers it received, and starts ``lbd`` with one HTTPS listener
on 10.77.0.100:443 with cookie persistence and X-Forwarded-For. From the
client, curl sends requests first without a cookie (round robin: the
backends alternate, each answer sets a cookie), then with a cookie jar
(every request stays on one backend). For each request it prints which
backend answered, the cookie the client sent and the one it got, and the
X-Forwarded-For, X-Real-IP and X-Forwarded-Proto the backend saw. Then it
removes everything it made.

Options: ``-n N`` requests in each part (default 4); ``$LBD`` names the
binary (default target/release/lbd).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1] / "tests" / "netns"))  # l7.py, the L7 tests' helpers
sys.path.insert(0, str(HERE.parents[1]))  # crates/lb-xdp: the netns package

from netns import CLIENT, RS, VIP, Topology, preflight  # noqa: E402
from netns import lbd as lbd_mod  # noqa: E402
import l7  # noqa: E402

COOKIE = "LBD_SERVER"
CLAIMED = "10.77.9.9"  # what the client says in its own X-Forwarded-For (a proxy before it)


def short(value: str | None, width: int = 14) -> str:
    if not value:
        return "-"
    return value if len(value) <= width else value[: width - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=4, help="requests in each part (default 4)")
    args = ap.parse_args()
    problems = preflight()
    if problems:
        print("demo: " + "; ".join(problems), file=sys.stderr)
        return 1
    binary = lbd_mod.binary("release", build=False)
    started = time.monotonic()
    ok = True
    with tempfile.TemporaryDirectory(prefix="lbd-demo-l7-") as tmp, Topology(hosts=l7.HOSTS) as topo:
        net = l7.L7Net(topo, Path(tmp), binary)
        print(f"topology: namespaces {', '.join(topo.ns(h) for h in topo.hosts)} on bridge br0 in {topo.ns('sw')}")
        print(f"  client {CLIENT}  ->  https://a.test on {VIP}:443 (lbd, Pingora)  ->  "
              f"rs1 {RS['rs1']}:{l7.HTTP}, rs2 {RS['rs2']}:{l7.HTTP} (plain HTTP, weight 1 each)")
        certs = net.certs
        cert, _ = certs.a
        print(f"certificates (openssl): CA {l7.subject(certs.ca.cert)}, server {l7.subject(cert)}")
        net.backends("rs1", "rs2")
        text = l7.config(l7.listener(
            "web", 443, "https", certificates=[certs.a],
            cookie={"secret": "demo secret: not for production", "max_age": "1h", "same_site": "lax"},
            http={"x_forwarded_for": "append"}))
        print("\nlbd configuration (the L7 part):")
        print("\n".join("    " + line for line in ("[l7]" + text.split("[l7]", 1)[1]).splitlines() if line))
        d = net.lbd(text)
        try:
            print(f"\nlbd: {binary} run: up")
            curl = ["--resolve", l7.resolve("a.test", 443), "--cacert", str(certs.ca.cert),
                    "-H", f"X-Forwarded-For: {CLAIMED}"]
            jar = Path(tmp) / "cookies.txt"
            head = (f"{'#':>3}  {'part':<12}{'backend':<9}{'cookie sent':<16}{'cookie set':<16}"
                    f"{'X-Forwarded-For seen':<26}{'X-Real-IP':<12}{'Proto':<7}{'balancer cookie at backend'}")
            print("\n" + head)
            rows = []
            for part, jar_args in (("no cookie", []), ("cookie jar", ["-b", str(jar), "-c", str(jar)])):
                for _ in range(args.n):
                    sent = _jar_value(jar) if jar_args else None
                    r = net.curl("https://a.test/", *curl, *jar_args)
                    seen_cookie = any(COOKIE in v for v in r.seen("Cookie"))
                    rows.append((part, r))
                    print(f"{len(rows):>3}  {part:<12}{r.backend:<9}{short(sent):<16}{short(r.cookie(COOKIE)):<16}"
                          f"{', '.join(r.seen('X-Forwarded-For')):<26}{', '.join(r.seen('X-Real-IP')):<12}"
                          f"{', '.join(r.seen('X-Forwarded-Proto')):<7}{'yes (wrong)' if seen_cookie else 'no'}")
                    ok &= not seen_cookie and r.status == 200
            plain = [r.backend for p, r in rows if p == "no cookie"]
            kept = [r.backend for p, r in rows if p == "cookie jar"]
            alternate = all(a != b for a, b in zip(plain, plain[1:]))
            sticky = len(set(kept)) == 1
            xff = all([a.strip() for v in r.seen("X-Forwarded-For") for a in v.split(",")] == [CLAIMED, CLIENT]
                      for _, r in rows)
            print()
            print("without a cookie: " + ("round robin, the backends alternate" if alternate
                                          else f"NOT alternating: {plain}"))
            print("with the cookie jar: " + (f"every request on {kept[0]}" if sticky
                                             else f"NOT on one backend: {kept}"))
            first = rows[0][1].header("Set-Cookie")
            print(f"Set-Cookie: {first[0] if first else '(none)'}")
            print("X-Forwarded-For: " + (f"the client's address {CLIENT} appended to the {CLAIMED} it sent"
                                         if xff else "NOT as expected"))
            ok &= alternate and sticky and xff
            net.stop_all()
        finally:
            d.cleanup()
    print(f"removed every namespace and process ({time.monotonic() - started:.1f}s)")
    return 0 if ok else 1


def _jar_value(jar: Path) -> str | None:
    """The balancer's cookie in curl's jar (Netscape format), if any."""
    if not jar.exists():
        return None
    for line in jar.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) == 7 and fields[5] == COOKIE:
            return fields[6]
    return None


if __name__ == "__main__":
    sys.exit(main())
