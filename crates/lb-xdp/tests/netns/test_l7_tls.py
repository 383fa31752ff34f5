"""HTTPS listeners with openssl s_client and curl: the certificate chosen
by SNI (two names, two certificates, the first the default), TLS 1.2 and
1.3 only, client certificates required where ``client_ca`` is set; and
``lbd check`` refusing a key protected by a passphrase, a key that does
not match its certificate and an expired certificate, at the file's line
and column."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from l7 import (  # noqa: F401 (fixtures)
    Certs, L7Net, VIP, config, l7_binary, listener, net, new_key, position, resolve, subject,
)


def test_sni_chooses_the_certificate(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2")
    net.lbd(config(listener("tls", 443, "https", certificates=[c.a, c.b])))
    ca = ["-CAfile", str(c.ca.cert)]
    want_a, want_b = subject(c.a[0]), subject(c.b[0])
    assert want_a != want_b
    for servername, want in (("a.test", want_a), ("b.test", want_b),
                             (None, want_a), ("unknown.test", want_a)):
        rc, pem, out = net.server_cert(443, servername, *ca)
        assert rc == 0 and pem, f"s_client -servername {servername}: exit {rc}\n{out}"
        assert subject(pem) == want, f"SNI {servername}: got {subject(pem)}, want {want}"
        assert "Verify return code: 0 (ok)" in out, out
    # TLS 1.2 and 1.3 are offered; a request works on each.
    for version in ("-tls1_2", "-tls1_3"):
        rc, pem, out = net.server_cert(443, "b.test", *ca, version)
        assert rc == 0 and subject(pem) == want_b, f"{version}: exit {rc}\n{out}"
    # TLS 1.1 is refused by the server with an alert (rustls sends
    # handshake_failure), not merely left untried by the client
    # (SECLEVEL=0 lets this openssl offer it).
    rc, pem, out = net.server_cert(443, "a.test", *ca, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert rc != 0 and not pem, f"TLS 1.1 was accepted:\n{out}"
    assert "SSL alert number" in out, f"TLS 1.1 was not refused by the server's alert:\n{out}"
    for name in ("a.test", "b.test"):
        r = net.curl(f"https://{name}/", "--resolve", resolve(name, 443), "--cacert", c.ca.cert)
        assert r.status == 200 and r.seen("Host") == [name], r


def test_client_certificate_required_with_client_ca(net: L7Net) -> None:
    c = net.certs
    net.backends("rs1", "rs2")
    d = net.lbd(config(
        listener("mtls", 443, "https", certificates=[c.a], client_ca=c.client_ca.cert),
        listener("open", 8443, "https", certificates=[c.a]),
    ))
    base = ["--resolve", resolve("a.test", 443), "--cacert", str(c.ca.cert)]

    def attempt(*cert: str) -> tuple[int, str, str]:
        r = net.run("cli", "curl", "-sS", "--max-time", "5", *base, *cert, "https://a.test/", timeout=20)
        return r.returncode, r.stdout, r.stderr

    rc, out, err = attempt()
    assert rc != 0 and '"backend"' not in out, f"no client certificate, yet: exit {rc} {out!r} {err!r}"
    cert, key = c.client
    rc, out, err = attempt("--cert", str(cert), "--key", str(key))
    assert rc == 0 and '"backend"' in out, f"with a certificate of the client CA: exit {rc} {out!r} {err!r}"
    cert, key = c.stranger
    rc, out, err = attempt("--cert", str(cert), "--key", str(key))
    assert rc != 0 and '"backend"' not in out, f"with a certificate of another CA: exit {rc} {out!r} {err!r}"
    # Two handshakes refused (counted), one completed.
    d.wait_metric("lbd_l7_tls_handshake_failures_total", lambda v: v == 2, timeout=3, listener="mtls")
    d.wait_metric("lbd_l7_tls_handshakes_total", lambda v: v == 1, timeout=3, listener="mtls")
    # Where no client CA is set, none is asked for.
    r = net.curl("https://a.test:8443/", "--resolve", resolve("a.test", 8443), "--cacert", c.ca.cert)
    assert r.status == 200, r


LOCATION = re.compile(r":(\d+):(\d+): ")


def test_check_refuses_passphrase_and_mismatched_keys(l7_binary: Path, tmp_path: Path) -> None:
    """``lbd check`` (no namespace needed: it only reads files) refuses a
    key protected by a passphrase and a key of another certificate, each
    at the key's line and column, and an expired certificate at its
    own; it accepts the same file with a good pair."""
    c = Certs(tmp_path / "certs")
    a_cert, a_key = c.a
    encrypted = new_key(c.dir / "encrypted.key", passphrase="a passphrase")
    assert "ENCRYPTED" in encrypted.read_text()
    stranger_key = new_key(c.dir / "other.key")
    expired = c.ca.issue(c.dir, "expired", "a.test", expired=True)

    def check(cert: Path, key: Path) -> tuple[int, str, str]:
        # The pair under test is the second certificate of the listener.
        text = config(listener("tls", 443, "https", certificates=[c.b, (cert, key)], health=None))
        path = tmp_path / "lbd.toml"
        path.write_text(text)
        r = subprocess.run([str(l7_binary), "check", str(path)], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout + r.stderr, text

    rc, out, _ = check(a_cert, a_key)
    assert rc == 0, f"lbd check refused a good configuration:\n{out}"
    for what, (cert, key), blamed in (
            ("a key protected by a passphrase", (a_cert, encrypted), "key"),
            ("a key of another certificate", (a_cert, stranger_key), "key"),
            ("an expired certificate", expired, "cert")):
        rc, out, text = check(cert, key)
        assert rc != 0, f"lbd check accepted {what}:\n{out}"
        # The error is at the blamed file of the second certificate: its
        # line, and a column from the key's name to the end of its value.
        file = key if blamed == "key" else cert
        entry = f'{blamed} = "{file}"'
        line, col = position(text, entry)
        end = col + len(entry)
        found = [(int(m.group(1)), int(m.group(2))) for m in LOCATION.finditer(out)]
        assert any(ln == line and col <= cl <= end for ln, cl in found), (
            f"{what}: no error at line {line}, columns {col}..{end}:\n{out}\n{text}")
        assert file.name in out, f"{what}: the message does not name {file.name}:\n{out}"
