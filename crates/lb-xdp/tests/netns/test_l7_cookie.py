"""Session persistence by inserted cookie, with curl's cookie jar: the
cookie's attributes, every request of a jar on one backend, the backend
never seeing the balancer's cookie, forged and foreign cookies not
sticking (and replaced), and a backend marked down moving the client and
re-issuing its cookie.

Both backends have weight 1 under round robin, so requests without a
(valid) cookie alternate between them: a cookie that sticks is the only
way to see one backend several times in a row."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from l7 import VIP2, L7Net, Reply, VIP, config, listener, net, l7_binary, resolve, wait_until  # noqa: F401

NAME = "LBD_SERVER"
SECRET = "the secret of the listener web, 32+"
OTHER_SECRET = "another listener, another secret!"


def cookie_listeners(net: L7Net) -> str:
    """`web` (HTTP) and `tls` (HTTPS) on the VIP with one secret, and
    `other` with another secret on a second VIP (lbd refuses cookies of
    one name and different secrets on one VIP: a browser sends a host's
    cookies to every port)."""
    c = net.certs
    net.add_vip(VIP2)
    return config(
        listener("web", 80, cookie={"secret": SECRET, "max_age": "1h", "same_site": "strict"}),
        listener("other", 80, cookie={"secret": OTHER_SECRET}, vip=VIP2),
        listener("tls", 443, "https", cookie={"secret": SECRET, "same_site": "none"}, certificates=[c.a]),
    )


def attributes(set_cookie: str) -> dict[str, str]:
    """``a=b; Path=/; HttpOnly`` -> {"path": "/", "httponly": ""} (the
    attributes after the value, names lowercased)."""
    out = {}
    for part in set_cookie.split(";")[1:]:
        k, _, v = part.strip().partition("=")
        out[k.lower()] = v
    return out


def jar_request(net: L7Net, jar: Path, url: str = f"http://{VIP}/", write: bool = True) -> Reply:
    """One request with curl's cookie jar (read, and written unless told)."""
    args: list[str | Path] = ["-b", jar]
    if write:
        args += ["-c", jar]
    return net.curl(url, *args)


def test_cookie_jar_sticks_and_backend_never_sees_it(net: L7Net) -> None:
    net.backends("rs1", "rs2")
    d = net.lbd(cookie_listeners(net))

    # Without a cookie: round robin, and a cookie offered each time.
    plain = [net.curl(f"http://{VIP}/") for _ in range(4)]
    assert [r.backend for r in plain] in (["rs1", "rs2"] * 2, ["rs2", "rs1"] * 2), [r.backend for r in plain]
    assert all(r.cookie(NAME) for r in plain), [r.headers for r in plain]

    # The cookie's attributes (HTTP: no Secure).
    jar = net.tmp / "jar"
    first = jar_request(net, jar)
    lines = [line for line in first.header("Set-Cookie") if line.startswith(NAME + "=")]
    assert len(lines) == 1, first.headers
    attrs = attributes(lines[0])
    assert attrs.get("path") == "/", lines[0]
    assert "httponly" in attrs, lines[0]
    assert attrs.get("max-age") == "3600", lines[0]
    assert attrs.get("samesite", "").lower() == "strict", lines[0]
    assert "secure" not in attrs, lines[0]
    value = first.cookie(NAME)
    assert value and "10.77." not in value and ":8080" not in value, f"the value is not opaque: {value}"

    # Every request with the jar, each on a new connection, goes to the
    # same backend, and the cookie is refreshed on every response.
    seen = [first.backend]
    for _ in range(10):
        r = jar_request(net, jar)
        assert r.status == 200, r
        assert r.cookie(NAME), f"the cookie was not refreshed: {r.headers}"
        seen.append(r.backend)
        # The backend never sees the balancer's cookie.
        assert all(NAME not in v for v in r.seen("Cookie")), r.echo["headers"]
    assert set(seen) == {first.backend}, seen

    # The client's own cookies reach the backend, without the balancer's.
    r = net.curl(f"http://{VIP}/", "-H", f"Cookie: app=1; {NAME}={value}; theme=dark")
    assert r.backend == first.backend, r.echo
    assert [c.replace(" ", "") for c in r.seen("Cookie")] == ["app=1;theme=dark"], r.echo["headers"]

    # HTTPS: Secure, and SameSite=None as configured.
    r = net.curl("https://a.test/", "--resolve", resolve("a.test", 443), "--cacert", net.certs.ca.cert)
    lines = [line for line in r.header("Set-Cookie") if line.startswith(NAME + "=")]
    assert len(lines) == 1, r.headers
    attrs = attributes(lines[0])
    assert "secure" in attrs and attrs.get("samesite", "").lower() == "none", lines[0]
    assert "httponly" in attrs and attrs.get("path") == "/", lines[0]

    # The counters of `web`: 5 requests without a cookie (4, then the
    # jar's first), 11 with a valid one.
    for name, want in (("misses", 5), ("hits", 11), ("invalid", 0)):
        d.wait_metric(f"lbd_l7_cookie_{name}_total", lambda v, w=want: v == w, timeout=3, listener="web")


def test_forged_and_foreign_cookies_do_not_stick(net: L7Net) -> None:
    net.backends("rs1", "rs2")
    d = net.lbd(cookie_listeners(net))
    valid = net.curl(f"http://{VIP}/")
    value = valid.cookie(NAME)
    assert value, valid.headers
    foreign = net.curl(f"http://{VIP2}/").cookie(NAME)
    assert foreign, "the listener `other` set no cookie"

    flipped = value[:-1] + ("A" if value[-1] != "A" else "B")
    forged = {
        "flipped last character": flipped,
        "the backend's address": "10.77.0.11:8080",
        "the backend's name": valid.backend,
        "from another listener (another secret)": foreign,
    }
    for what, bad in forged.items():
        got = []
        for _ in range(4):
            r = net.curl(f"http://{VIP}/", "-H", f"Cookie: {NAME}={bad}")
            assert r.status == 200, r
            new = r.cookie(NAME)
            assert new and new != bad, f"{what}: no new cookie: {r.headers}"
            assert all(NAME not in v for v in r.seen("Cookie")), f"{what}: {r.echo['headers']}"
            got.append((r.backend, new))
        assert Counter(b for b, _ in got) == {"rs1": 2, "rs2": 2}, f"{what} ({bad}) stuck: {got}"
        # The new cookie is a valid one: it sticks.
        backend, new = got[-1]
        again = [net.curl(f"http://{VIP}/", "-H", f"Cookie: {NAME}={new}").backend for _ in range(3)]
        assert again == [backend] * 3, f"{what}: the re-issued cookie does not stick: {again}"
    # The counters of `web`: one request without a cookie, 4 x 4 with a
    # bad one, 4 x 3 with a re-issued one.
    for name, want in (("misses", 1), ("invalid", 16), ("hits", 12)):
        d.wait_metric(f"lbd_l7_cookie_{name}_total", lambda v, w=want: v == w, timeout=3, listener="web")


def test_backend_down_moves_client_and_reissues_cookie(net: L7Net) -> None:
    net.backends("rs1", "rs2")
    d = net.lbd(cookie_listeners(net))
    jar = net.tmp / "jar"
    first = jar_request(net, jar)
    old = first.cookie(NAME)
    pinned = first.backend
    other = {"rs1": "rs2", "rs2": "rs1"}[pinned]
    assert [jar_request(net, jar).backend for _ in range(3)] == [pinned] * 3

    # The pinned backend stops: its health checks fail (fall 3 x 200 ms)
    # and the balancer marks it down; the jar's requests then go to the
    # other backend with a new cookie.
    net.kill_backend(pinned)

    def moved() -> Reply | None:
        r = jar_request(net, jar, write=False)
        return r if r.status == 200 and r.backend == other else None

    r = wait_until(moved, 5, f"requests with the cookie of {pinned} to reach {other}", poll=0.1)
    new = r.cookie(NAME)
    assert new and new != old, f"the cookie was not re-issued: {r.headers}"
    jar_request(net, jar)  # keep the new cookie
    assert [jar_request(net, jar).backend for _ in range(5)] == [other] * 5
    assert d.running()
