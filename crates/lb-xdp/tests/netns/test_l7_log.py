"""The access log of an HTTP listener: requests made with curl are read
back from the gzip files field by field (the format of
crates/lb-l7/src/access_log/mod.rs: sixteen fields separated by one
space, the last six quoted with ``\\xHH`` escapes or a bare ``-``), and
with ``period = "2s"`` the files rotate: one per period, in a folder per
day, named after the listener's address and the period's start, each a
finished gzip stream once its period is over. ``request_length`` counts a
request's line, headers and body, checked on a request of known bytes.
(The S3 upload is tested in Rust, against a store on loopback.)"""

from __future__ import annotations

import gzip
import re
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from l7 import HTTP, L7Net, VIP, config, l7_binary, listener, net, wait_until  # noqa: F401 (fixtures)
from netns import CLIENT, RS

PERIOD = 2
QUOTED = re.compile(r'"((?:[^"\\]|\\x[0-9A-Fa-f]{2})*)"|(-)(?= |$)')
FIELDS = ("time_iso8601", "remote", "server", "upstream_addr", "request_time", "upstream_response_time",
          "status", "upstream_status", "request_length", "body_bytes_sent", "request_method", "http_host",
          "request_uri", "server_protocol", "http_referer", "http_user_agent")


def parse(line: str) -> dict[str, Any]:
    """One access-log line as a dict of the sixteen fields; a bare ``-``
    string field is ``None``."""
    bare = line.split(" ", 10)
    assert len(bare) == 11, f"fewer than ten bare fields: {line!r}"
    out: dict[str, Any] = dict(zip(FIELDS[:10], bare[:10]))
    rest = bare[10]
    strings: list[Optional[str]] = []
    pos = 0
    while pos < len(rest):
        m = QUOTED.match(rest, pos)
        assert m, f"bad string field at {pos} of {rest!r} in {line!r}"
        strings.append(None if m.group(2) else
                       re.sub(r"\\x([0-9A-Fa-f]{2})", lambda e: chr(int(e.group(1), 16)), m.group(1)))
        pos = m.end()
        if pos < len(rest):
            assert rest[pos] == " ", f"no space after a string field in {line!r}"
            pos += 1
    assert len(strings) == 6, f"{len(strings)} string fields, want 6: {line!r}"
    out.update(zip(FIELDS[10:], strings))
    return out


def read_whole(path: Path) -> Optional[str]:
    """The text of a finished gzip file, ``None`` while it is unfinished
    (no trailer yet)."""
    try:
        with gzip.open(path, "rt") as f:
            return f.read()
    except (EOFError, zlib.error, OSError):
        return None


def test_access_log_fields_and_rotation(net: L7Net) -> None:
    logs = net.tmp / "logs"
    logs.mkdir()
    net.backends("rs1", "rs2")
    d = net.lbd(config(
        listener("web", 80, http={"access_log": True}),
        listener("quiet", 8001),  # access_log off: nothing of it is written
        access_log={"dir": str(logs), "period": f"{PERIOD}s", "queue": 1024},
    ))

    body = net.tmp / "body"
    agent = 'lbt "agent" \\ 1'
    w = "%{local_port} %{size_download} %{size_request} %{size_upload} %{http_code}"

    def request(path: str, *args: str) -> dict[str, Any]:
        before = time.time()
        r = net.run("cli", "curl", "-sS", "--max-time", "10", "-o", str(body), "-w", w, *args,
                    f"http://{VIP}{path}", timeout=20)
        assert r.returncode == 0, r.stderr
        port, down, req, up, code = (int(x) for x in r.stdout.split())
        echo = body.read_text()
        return {"port": port, "size_download": down, "size_request": req, "size_upload": up, "status": code,
                "backend": echo.split('"backend": "')[1].split('"')[0], "before": before, "after": time.time()}

    made = [
        request("/path?q=1&x=%22", "-A", agent, "-e", "http://ref.test/page", "-H", "Host: logs.test"),
        request("/sleep/0.3", "-H", "User-Agent:", "-X", "POST", "--data-binary", "0123456789"),
    ]
    net.curl(f"http://{VIP}:8001/")  # the quiet listener
    # Two more periods, one request in each.
    for _ in range(2):
        time.sleep(PERIOD + 0.2)
        made.append(request("/later"))

    def files() -> list[Path]:
        return sorted(logs.glob("*/*.gz"))

    def finished_lines() -> int:
        texts = [read_whole(f) for f in files()]
        return -1 if None in texts else sum(len((t or "").splitlines()) for t in texts)

    # Each period's file is finished when its period ends, lbd still
    # running: all of them soon after the last request's period.
    wait_until(lambda: finished_lines() == len(made), PERIOD * 3,
               f"{len(made)} lines in finished files in {logs}: {[str(f) for f in files()]}")
    assert d.running()
    found = files()
    starts = []
    name = re.compile(r"lbd-10\.77\.0\.100_80-acc\.log-(\d{8})-(\d+)\.gz")
    for f in found:
        m = name.fullmatch(f.name)
        assert m, f"unexpected file {f}"
        day, start = m.group(1), int(m.group(2))
        assert start % PERIOD == 0, f"{f.name}: the period's start is not aligned on {PERIOD}s"
        utc_day = datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%d")
        assert day == utc_day and f.parent.name == utc_day, f
        starts.append(start)
    assert len(set(starts)) == len(found) >= 3, f"not one file per period: {found}"

    lines = [line for f in found for line in (read_whole(f) or "").splitlines()]
    records = [parse(line) for line in lines]
    assert len(records) == len(made), f"{len(records)} lines for {len(made)} requests:\n" + "\n".join(lines)
    records.sort(key=lambda r: r["time_iso8601"])
    for rec, req in zip(records, made):
        t = datetime.strptime(rec["time_iso8601"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        assert req["before"] - 1 <= t.timestamp() <= req["after"] + 1, (rec, req)
        assert rec["remote"] == f"{CLIENT}:{req['port']}", rec
        assert rec["server"] == f"{VIP}:80", rec
        assert rec["upstream_addr"] == f"{RS[req['backend']]}:{HTTP}", (rec, req)
        assert rec["status"] == rec["upstream_status"] == "200", rec
        assert float(rec["upstream_response_time"]) <= float(rec["request_time"]), rec
        assert int(rec["body_bytes_sent"]) == req["size_download"], (rec, req)
        # (A request body's bytes: test_access_log_request_length_counts_the_body.)
        if not req["size_upload"]:
            assert int(rec["request_length"]) == req["size_request"], (rec, req)
        assert rec["server_protocol"] == "HTTP/1.1", rec

    first, slow = records[0], records[1]
    assert first["request_method"] == "GET" and first["http_host"] == "logs.test", first
    assert first["request_uri"] == "/path?q=1&x=%22", first
    assert first["http_referer"] == "http://ref.test/page", first
    assert first["http_user_agent"] == agent, first
    assert slow["request_method"] == "POST" and slow["request_uri"] == "/sleep/0.3", slow
    assert slow["http_referer"] is None and slow["http_user_agent"] is None, slow
    assert float(slow["request_time"]) >= 0.3 and float(slow["upstream_response_time"]) >= 0.3, slow
    assert re.fullmatch(r"\d+\.\d{3}", slow["request_time"]), slow


def test_access_log_request_length_counts_the_body(net: L7Net) -> None:
    """``request_length`` is the request's line, headers and body (as
    nginx counts it), and so is the listener's received-bytes counter:
    a request of known bytes, sent on a raw socket."""
    logs = net.tmp / "logs"
    logs.mkdir()
    net.backends("rs1")
    d = net.lbd(config(listener("web", 80, backends=(("rs1", HTTP, 1),), http={"access_log": True}),
                       access_log={"dir": str(logs), "period": "1s"}))
    got = net.python("cli", RAW_POST, VIP, "80")
    assert got["status"] == "200", got

    def line() -> Optional[dict[str, Any]]:
        texts = [read_whole(f) for f in sorted(logs.glob("*/*.gz"))]
        lines = [ln for t in texts if t for ln in t.splitlines()]
        return parse(lines[0]) if lines else None

    rec = wait_until(line, 5, f"the line of the request in {logs}")
    assert rec["request_method"] == "POST" and rec["request_uri"] == "/upload", rec
    assert int(rec["request_length"]) == got["sent"], f"request_length {rec['request_length']}, sent {got}"
    assert int(rec["body_bytes_sent"]) == got["body"], f"body_bytes_sent {rec['body_bytes_sent']}, got {got}"
    d.wait_metric("lbd_l7_client_received_bytes_total", lambda v: v == got["sent"], timeout=3, listener="web")


#: A POST of 1000 bytes on a raw socket: {"sent": bytes sent (head and
#: body), "status", "body": bytes of the response's body}.
RAW_POST = r"""
import json, socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
req = (b"POST /upload HTTP/1.1\r\nHost: logs.test\r\nContent-Length: 1000\r\n"
       b"Connection: close\r\n\r\n" + b"x" * 1000)
s.sendall(req)
buf = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
head, _, body = buf.partition(b"\r\n\r\n")
print(json.dumps({"sent": len(req), "status": head.split()[1].decode(), "body": len(body)}))
"""
