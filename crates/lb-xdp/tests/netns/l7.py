"""Helpers and fixtures of the L7 tests (test_l7_*.py): a topology per
test (client, balancer, two real servers), the backends of
``l7_backend.py`` on the real servers, ``lbd`` configurations with HTTP
and HTTPS listeners, certificates made with the ``openssl`` CLI in the
test's temporary directory, and curl and openssl run from the client.

The L7 listeners are on the topology's VIP (10.77.0.100), which the
topology assigns to the balancer's eth0, so that the balancer's own TCP
stack accepts their connections (lbd's XDP program hands it that
traffic)."""

from __future__ import annotations

import json
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import support  # noqa: F401 - puts crates/lb-xdp on sys.path
import pytest

from netns import RS, VIP, Lbd, LbdError, Topology, preflight
from netns import lbd as lbd_mod
from netns.lbd import METRICS, _toml_value as toml
from support import stop_lbds, wait_until  # noqa: F401 - wait_until for the test files

#: A second VIP, for listeners that must not share the first (see
#: :meth:`L7Net.add_vip`).
VIP2 = "10.77.0.110"
#: The backends' HTTP and WebSocket ports.
HTTP = 8080
WS = 8090
BACKEND = Path(__file__).resolve().with_name("l7_backend.py")
HOSTS = ("cli", "lb", "rs1", "rs2")
#: The health check of the L7 tests (interval 200 ms, fall 3).
HEALTH = {"type": "http", "path": "/healthz", "status": 200,
          "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 3}

BackendSpec = tuple[str, int, int]  # host ("rs1") or address, port, weight
TWO: Sequence[BackendSpec] = (("rs1", HTTP, 1), ("rs2", HTTP, 1))


# ---------------------------------------------------------------------------
# configuration


def listener(name: str, port: int, protocol: str = "http", *,
             backends: Sequence[BackendSpec] = TWO, scheduler: str = "rr",
             health: Optional[Mapping[str, Any]] = HEALTH,
             http: Optional[Mapping[str, Any]] = None,
             cookie: Optional[Mapping[str, Any]] = None,
             certificates: Sequence[tuple[Path, Path]] = (),
             client_ca: Optional[Path] = None, vip: str = VIP) -> str:
    """One ``[[listener]]`` table of an L7 listener, with its
    ``[listener.http]``, ``[listener.cookie]``, ``[listener.tls]`` (one
    certificate per line) and backends."""
    out = ["[[listener]]", f"name = {toml(name)}", f"vip = {toml(vip)}", f"port = {port}",
           f"protocol = {toml(protocol)}", f"scheduler = {toml(scheduler)}"]
    if health:
        out.append(f"health = {toml(dict(health))}")
    out.append("")
    if http:
        out += ["[listener.http]", *[f"{k} = {toml(v)}" for k, v in http.items()], ""]
    if cookie:
        out += ["[listener.cookie]", *[f"{k} = {toml(v)}" for k, v in cookie.items()], ""]
    if certificates or client_ca:
        out += ["[listener.tls]", "certificates = ["]
        out += [f"  {{ cert = {toml(str(c))}, key = {toml(str(k))} }}," for c, k in certificates]
        out.append("]")
        if client_ca:
            out.append(f"client_ca = {toml(str(client_ca))}")
        out.append("")
    for host, bport, weight in backends:
        out += ["[[listener.backend]]", f"addr = {toml(RS.get(host, host))}", f"port = {bport}",
                f"weight = {weight}", ""]
    return "\n".join(out)


def config(*listeners: str, access_log: Optional[Mapping[str, Any]] = None, threads: int = 1) -> str:
    """A whole configuration: eth0, metrics on 10.77.0.2:9100, nothing
    kept across restarts, ``[l7]``, ``[access_log]`` if given, then the
    ``listeners`` (texts of :func:`listener`)."""
    out = [
        "# lbd configuration written by crates/lb-xdp/tests/netns/l7.py",
        "[[interface]]", 'name = "eth0"', "queues = 1", 'xdp_mode = "driver"', "",
        "[metrics]", f"listen = {toml(METRICS)}", "",
        "[restart]", 'state_dir = ""', 'pin_dir = ""', "",
        "[l7]", f"threads = {threads}", "",
    ]
    if access_log:
        out += ["[access_log]", *[f"{k} = {toml(v)}" for k, v in access_log.items()], ""]
    return "\n".join(out + list(listeners)) + "\n"


def position(text: str, needle: str) -> tuple[int, int]:
    """The 1-based line and column where ``needle`` starts in ``text``."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    return line, i - (text.rfind("\n", 0, i) + 1) + 1


# ---------------------------------------------------------------------------
# certificates


def openssl(*args: Union[str, Path], cwd: Path) -> str:
    r = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))} failed:\n{r.stderr}")
    return r.stdout


def new_key(path: Path, passphrase: Optional[str] = None) -> Path:
    """An EC P-256 private key (PKCS#8 PEM), encrypted with AES-256 under
    ``passphrase`` if given."""
    args: list[Union[str, Path]] = ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                                    "-out", path]
    if passphrase:
        args += ["-aes256", "-pass", f"pass:{passphrase}"]
    openssl(*args, cwd=path.parent)
    return path


@dataclass
class Ca:
    """A certificate authority made for the test."""
    cert: Path
    key: Path

    @classmethod
    def make(cls, d: Path, name: str) -> "Ca":
        key = new_key(d / f"{name}.key")
        cert = d / f"{name}.pem"
        openssl("req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "2",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", cert, cwd=d)
        return cls(cert, key)

    def issue(self, d: Path, name: str, cn: str, client: bool = False,
              expired: bool = False) -> tuple[Path, Path]:
        """A leaf certificate for ``cn`` (also its DNS name) signed by this
        CA, for a server (or a client), valid for two days from now (or,
        ``expired``, only during 2020): (cert, key) files."""
        key = new_key(d / f"{name}.key")
        csr = d / f"{name}.csr"
        ext = d / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        ext.write_text("basicConstraints=critical,CA:FALSE\n"
                       "keyUsage=critical,digitalSignature\n"
                       f"extendedKeyUsage={usage}\n"
                       + ("" if client else f"subjectAltName=DNS:{cn}\n"))
        openssl("req", "-new", "-key", key, "-subj", f"/CN={cn}/O={name}", "-out", csr, cwd=d)
        cert = d / f"{name}.pem"
        if not expired:
            openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                    "-days", "2", "-extfile", ext, "-out", cert, cwd=d)
            return cert, key
        # `openssl x509` cannot date a certificate in the past; `openssl ca`
        # can, with a database of its own.
        db = d / f"{name}.ca"
        db.mkdir()
        (db / "index.txt").write_text("")
        (db / "serial").write_text("01\n")
        (db / "ca.cnf").write_text(
            "[ca]\ndefault_ca = test\n"
            f"[test]\ndatabase = {db}/index.txt\nnew_certs_dir = {db}\nserial = {db}/serial\n"
            "default_md = sha256\npolicy = any\n"
            "[any]\ncommonName = supplied\norganizationName = optional\n")
        openssl("ca", "-batch", "-config", db / "ca.cnf", "-cert", self.cert, "-keyfile", self.key,
                "-in", csr, "-out", cert, "-notext", "-startdate", "20200101000000Z",
                "-enddate", "20200102000000Z", "-extfile", ext, cwd=d)
        return cert, key


@dataclass
class Certs:
    """Everything the TLS tests need, made on first use in ``dir``: a CA,
    server certificates for a.test and b.test (and a second one for
    a.test, for reloads), a client CA and a client certificate it
    signed, and a client certificate of another CA."""
    dir: Path
    _made: dict[str, Any] = field(default_factory=dict)

    def _get(self, what: str, make: Any) -> Any:
        if what not in self._made:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._made[what] = make()
        return self._made[what]

    @property
    def ca(self) -> Ca:
        return self._get("ca", lambda: Ca.make(self.dir, "lbt-ca"))

    def server(self, name: str, cn: str) -> tuple[Path, Path]:
        return self._get(f"server:{name}", lambda: self.ca.issue(self.dir, name, cn))

    @property
    def a(self) -> tuple[Path, Path]:
        return self.server("a", "a.test")

    @property
    def b(self) -> tuple[Path, Path]:
        return self.server("b", "b.test")

    @property
    def client_ca(self) -> Ca:
        return self._get("client_ca", lambda: Ca.make(self.dir, "lbt-client-ca"))

    @property
    def client(self) -> tuple[Path, Path]:
        return self._get("client", lambda: self.client_ca.issue(self.dir, "client", "client.test", client=True))

    @property
    def stranger(self) -> tuple[Path, Path]:
        """A client certificate signed by a CA the listener does not know."""
        other = self._get("other_ca", lambda: Ca.make(self.dir, "lbt-other-ca"))
        return self._get("stranger", lambda: other.issue(self.dir, "stranger", "stranger.test", client=True))


def subject(pem: Union[str, Path]) -> str:
    """The subject of a certificate (a file or PEM text), as openssl
    prints it."""
    text = Path(pem).read_text() if isinstance(pem, Path) else pem
    r = subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "RFC2253"],
                       input=text, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, f"openssl x509 cannot read the certificate: {r.stderr}\n{text}"
    return r.stdout.strip()


# ---------------------------------------------------------------------------
# HTTP from the client


@dataclass
class Reply:
    """One HTTP response as curl got it."""
    status: int
    headers: list[tuple[str, str]]
    body: str

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def echo(self) -> dict[str, Any]:
        """The backend's JSON (see l7_backend.py)."""
        try:
            return dict(json.loads(self.body))
        except ValueError:
            raise AssertionError(f"not a backend's answer (status {self.status}): {self.body!r}") from None

    @property
    def backend(self) -> str:
        return str(self.echo["backend"])

    def seen(self, name: str) -> list[str]:
        """The values of the request header ``name`` as the backend saw it."""
        return [v for k, v in self.echo["headers"] if k.lower() == name.lower()]

    def cookie(self, name: str) -> Optional[str]:
        """The value that a ``Set-Cookie`` of this response gives ``name``."""
        for line in self.header("Set-Cookie"):
            k, _, rest = line.partition("=")
            if k.strip() == name:
                return rest.split(";", 1)[0].strip()
        return None


def parse_head_and_body(out: str) -> Reply:
    """curl ``-D -`` output: the header block(s), then the body (the last
    block that is a final response, so a ``100 Continue`` is skipped)."""
    rest = out.replace("\r\n", "\n")  # text mode may have done it already
    while True:
        head, sep, rest = rest.partition("\n\n")
        assert sep, f"no header block in curl's output: {out!r}"
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        if status >= 200:
            break
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:])]
    return Reply(status, headers, rest)


class L7Net:
    """One test's topology, its backends and lbds; :meth:`stop_all` (the
    fixture's teardown) stops lbd (checking it exits with 0) and the
    backends. ``_lbds`` is read by conftest.py's failure report."""

    def __init__(self, topo: Topology, tmp: Path, binary: Path) -> None:
        self.topo = topo
        self.tmp = tmp
        self.binary = binary
        self.certs = Certs(tmp / "certs")
        self._lbds: list[Lbd] = []
        self._backends: dict[str, subprocess.Popen[Any]] = {}

    # -- backends -----------------------------------------------------------
    def backend(self, host: str, ws: bool = False) -> None:
        """Start l7_backend.py on ``host`` (HTTP on 8080, WebSocket on 8090
        with ``ws``) and wait until it listens."""
        args: list[Union[str, Path]] = [sys.executable, "-u", BACKEND, host, "--http", str(HTTP)]
        if ws:
            args += ["--ws", str(WS)]
        err = self.tmp / f"backend-{host}.err"  # a file: a pipe nobody reads could fill
        with open(err, "wb") as stderr:
            p = self.topo.popen(host, *args, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self._backends[host] = p
        assert p.stdout is not None
        ready, _, _ = select.select([p.stdout], [], [], 15)
        line = p.stdout.readline() if ready else ""
        if line.strip() != "ready":
            p.kill()
            raise AssertionError(f"the backend on {host} did not start: {line!r} {err.read_text()}")

    def backends(self, *hosts: str, ws: bool = False) -> None:
        for h in hosts:
            self.backend(h, ws=ws)

    def kill_backend(self, host: str) -> None:
        """Stop ``host``'s backend: its ports close (connections refused)."""
        p = self._backends.pop(host)
        p.kill()
        p.wait(5)

    def add_vip(self, addr: str) -> None:
        """Assign another VIP (a /32) to the balancer's eth0, so that its
        TCP stack accepts an L7 listener's connections there."""
        self.topo.run("lb", "ip", "addr", "add", f"{addr}/32", "dev", "eth0")

    # -- lbd ----------------------------------------------------------------
    def lbd(self, text: str, env: Optional[Mapping[str, str]] = None) -> Lbd:
        d = Lbd(self.topo, text, path=self.binary, env=env)
        self._lbds.append(d)
        return d.start()

    def stop_all(self) -> None:
        errors = stop_lbds(self._lbds)
        for p in self._backends.values():
            p.kill()
            p.wait(5)
        self._backends.clear()
        if errors:
            pytest.fail("lbd did not stop cleanly:\n" + "\n".join(errors), pytrace=False)

    # -- clients ------------------------------------------------------------
    def run(self, host: str, *cmd: Union[str, Path], timeout: float = 30,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        return self.topo.run(host, *cmd, timeout=timeout, check=check)

    def curl(self, url: str, *args: Union[str, Path], timeout: float = 10) -> Reply:
        """One request from the client: the response (curl must succeed
        at the transfer; any status is returned)."""
        r = self.run("cli", "curl", "-sS", "--max-time", str(timeout), "-D", "-", *args, url,
                     timeout=timeout + 10)
        assert r.returncode == 0, f"curl {url} {args}: exit {r.returncode}: {r.stderr.strip()}"
        return parse_head_and_body(r.stdout)

    def curl_many(self, url: str, n: int, *args: Union[str, Path], timeout: float = 30) -> list[dict[str, Any]]:
        """``n`` requests of ``url`` by one curl on one kept-alive
        connection: the backends' answers (every status must be 200)."""
        r = self.run("cli", "curl", "-sS", "--max-time", str(timeout), "-w", "%{http_code}\\n",
                     *args, *([url] * n), timeout=timeout + 10)
        assert r.returncode == 0, f"curl x{n} {url}: exit {r.returncode}: {r.stderr.strip()}"
        lines = r.stdout.splitlines()
        assert len(lines) == 2 * n, f"{len(lines)} lines for {n} requests: {r.stdout[-2000:]!r}"
        out = []
        for body, status in zip(lines[::2], lines[1::2]):
            assert status == "200", f"status {status}: {body!r}"
            out.append(json.loads(body))
        return out

    def python(self, host: str, code: str, *args: str, timeout: float = 30) -> Any:
        """Run ``code`` with this Python (the venv's: ``websockets``) in
        ``host``; it prints one JSON value, returned."""
        r = self.run(host, sys.executable, "-c", code, *args, timeout=timeout)
        assert r.returncode == 0, f"python in {host} failed ({r.returncode}):\n{r.stderr}"
        return json.loads(r.stdout)

    def ws(self, url: str, port: int, mode: str, *extra: str, timeout: float = 30) -> dict[str, Any]:
        """:data:`WS_CLIENT` from the client to VIP:``port``."""
        return dict(self.python("cli", WS_CLIENT, url, VIP, str(port), mode, *extra, timeout=timeout))

    def server_cert(self, port: int, servername: Optional[str], *args: str) -> tuple[int, str, str]:
        """``openssl s_client`` from the client to VIP:``port`` with SNI
        ``servername``: (exit code, the server certificate's PEM or "",
        the output)."""
        sni = ["-servername", servername] if servername else ["-noservername"]
        r = self.run("cli", "sh", "-c",
                     'echo | exec openssl s_client -connect "$0" "$@" 2>&1',
                     f"{VIP}:{port}", *sni, "-verify_return_error", *args, timeout=20)
        m = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", r.stdout, re.S)
        return r.returncode, m.group(0) if m else "", r.stdout


#: A WebSocket client (``websockets``), run in the client's namespace:
#: ``python -c WS_CLIENT URL ADDRESS PORT MODE [CAFILE]``, URL's host
#: giving the Host header and the SNI, the TCP connection made to
#: ADDRESS:PORT. MODE ``echo``: sends text and binary messages and says
#: whether each came back; ``idle``: sends nothing and says when and how
#: the connection ended (``{"ended": "closed" | "timeout", "elapsed"}``).
WS_CLIENT = r"""
import json, socket, ssl, sys, time
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
url, addr, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=sys.argv[5]) if url.startswith("wss:") else None
sock = socket.create_connection((addr, port), timeout=5)
out = {}
with connect(url, sock=sock, ssl=ctx, open_timeout=5, close_timeout=2, ping_interval=None,
             compression=None) as ws:
    if mode == "echo":
        sent = ["hello", "x" * 70000, bytes(range(256))]
        got = []
        for m in sent:
            ws.send(m)
            got.append(ws.recv(timeout=5))
        out = {"echoed": [a == b for a, b in zip(sent, got)]}
    else:
        t0 = time.monotonic()
        try:
            ws.recv(timeout=float(sys.argv[6]) if len(sys.argv) > 6 else 15)
            out = {"ended": "message", "elapsed": time.monotonic() - t0}
        except ConnectionClosed as e:
            out = {"ended": "closed", "elapsed": time.monotonic() - t0, "why": str(e)}
        except TimeoutError:
            out = {"ended": "timeout", "elapsed": time.monotonic() - t0}
print(json.dumps(out))
"""


def resolve(name: str, port: int) -> str:
    """curl's ``--resolve`` for ``name`` on the VIP."""
    return f"{name}:{port}:{VIP}"


# ---------------------------------------------------------------------------
# fixtures (imported by the test files)


@pytest.fixture(scope="session")
def l7_binary() -> Path:
    """``$LBD``, or target/debug/lbd built now."""
    problems = preflight()
    for tool in ("openssl", "wrk"):
        if shutil.which(tool) is None:
            problems.append(f"`{tool}` is not installed (scripts/setup installs it)")
    try:
        import websockets  # noqa: F401
    except ImportError:
        problems.append("the `websockets` Python package is missing: run the tests with the project "
                        "venv (.venv/bin/python; scripts/setup installs crates/ttm-py/requirements-dev.txt)")
    if problems:
        pytest.fail("the L7 netns tests cannot run here: " + "; ".join(problems), pytrace=False)
    try:
        return lbd_mod.binary("debug")
    except LbdError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def net(l7_binary: Path, tmp_path: Path) -> Iterator[L7Net]:
    """A fresh topology per test (cli, lb, rs1, rs2), always removed."""
    with Topology(hosts=HOSTS) as topo:
        n = L7Net(topo, tmp_path, l7_binary)
        try:
            yield n
        finally:
            n.stop_all()

