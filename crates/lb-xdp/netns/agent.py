#!/usr/bin/env python3
"""An agent run inside a namespace (``ip netns exec NS python3 agent.py``):
it reads JSON commands on stdin, one per line, and answers each with one
JSON line, ``{"ok": true, "result": ...}`` or ``{"ok": false, "error":
"..."}``, so that a test can hold connections open across its steps.
Standard library only.

Client side:
  get {host, port=80, n=1, path="/", timeout=5}
      n sequential HTTP/1.0 ``Connection: close`` requests, each on a new
      connection. -> {"bodies": [...], "errors": [...], "results":
      [{"body", "error", "local_port"}...]}
  open {host, port=80, timeout=5} -> {"id", "local_port"}: a kept-alive
      HTTP/1.1 connection
  request {id, path="/", timeout=5} -> the body
  wait_reset {id, timeout} -> {"outcome": "reset" | "closed" | "timeout",
      "elapsed"}: waits for the connection to end
  close {id}
  abort {id}: close with SO_LINGER 0, so that the peer gets a RST
  ping {host, count=3, interval=0.2, wait=2} -> {"success", "replies",
      "output"} (iputils ping)
  forge {host, port, option="", option_in="ack", payload, timeout=5} ->
      {"body", "local_port"}: one HTTP/1.0 exchange over a TCP connection
      made by hand on a raw socket, with the TCP option bytes ``option``
      (hex) in the third ACK ("ack") or only in the request segment that
      follows it ("data"): what a client forging a TTM option sends. The
      host's own stack is kept from resetting it by an nftables rule in
      this namespace, removed afterwards.
  send_frames {frames, iface="eth0"} -> count sent: whole Ethernet frames
      (each a hex string) written as they are to ``iface`` through a
      packet socket: for frames no stack would send (bad checksums,
      truncated headers, fragments...)

Server side:
  serve {port, name, addr="0.0.0.0"}: a threaded HTTP/1.1 keep-alive
      server whose body is "{name} {peer_ip} {peer_port}\\n"; it records
      every accepted peer and every connection that ended with ECONNRESET
  peers {port?} -> [{"ip", "port", "time", "server_port", "peername",
      "ttm"}...]: the peer accept() returned, getpeername() of the
      accepted socket, and what ``ttm.get_peer`` says of it ({"ip",
      "port", "source"}, or {"error"})
  resets {port?} -> count of connections ended by ECONNRESET
  stop_server {port}: closes the listening socket only; open connections
      go on
  kill_server {port}: closes the listening socket and every connection
  capture_start {iface, filter="", file}: tcpdump -U -w FILE, returns once
      tcpdump is listening
  capture_stop {file?} -> {file: tcpdump's stderr}: stops one capture (or
      all)
  quit
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Optional

# frames.py, beside this script (run as a script, its directory is on the
# path): the checksum and the TCP flags.
from frames import ACK, FIN, PSH, RST, SYN, checksum

MAX_HEAD = 64 * 1024


class Failure(Exception):
    """An error answer."""


# ---------------------------------------------------------------------------
# HTTP client


def _read_response(sock: socket.socket, until_eof: bool) -> str:
    """Read one response; return its body. With ``until_eof`` (HTTP/1.0,
    Connection: close) the body runs to the end of the stream."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise Failure(f"connection closed before the response head ({len(buf)} bytes)")
        buf += chunk
        if len(buf) > MAX_HEAD:
            raise Failure("response head too long")
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or status[1] != "200":
        raise Failure(f"bad status line {lines[0]!r}")
    length: Optional[int] = None
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    if length is None or until_eof:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        if length is not None:
            body = body[:length]
    else:
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                raise Failure(f"connection closed in the body ({len(body)}/{length} bytes)")
            body += chunk
    return body.decode("utf-8", "replace")


def _describe(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno is not None:
        return f"{type(e).__name__}: {errno.errorcode.get(e.errno, e.errno)} {e.strerror}"
    return f"{type(e).__name__}: {e}"


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Client:
    def __init__(self) -> None:
        self.conns: dict[int, socket.socket] = {}
        self.next_id = 1

    def get(self, host: str, port: int = 80, n: int = 1, path: str = "/", timeout: float = 5) -> Any:
        results = []
        for _ in range(int(n)):
            local_port = None
            try:
                with socket.create_connection((host, port), timeout=timeout) as s:
                    local_port = s.getsockname()[1]
                    s.sendall(
                        f"GET {path} HTTP/1.0\r\nHost: {_host_header(host, port)}\r\n"
                        "Connection: close\r\n\r\n".encode()
                    )
                    body = _read_response(s, until_eof=True)
                results.append({"body": body, "error": None, "local_port": local_port})
            except (OSError, Failure) as e:
                results.append({"body": None, "error": _describe(e), "local_port": local_port})
        return {
            "bodies": [r["body"] for r in results if r["error"] is None],
            "errors": [r["error"] for r in results if r["error"] is not None],
            "results": results,
        }

    def open(self, host: str, port: int = 80, timeout: float = 5) -> Any:
        try:
            s = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            raise Failure(f"connect to {host}:{port}: {_describe(e)}") from e
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = self.next_id
        self.next_id += 1
        self.conns[cid] = s
        return {"id": cid, "local_port": s.getsockname()[1], "host": host, "port": port}

    def _conn(self, cid: int) -> socket.socket:
        try:
            return self.conns[int(cid)]
        except KeyError:
            raise Failure(f"no connection {cid}") from None

    def request(self, id: int, path: str = "/", timeout: float = 5) -> Any:
        s = self._conn(id)
        s.settimeout(timeout)
        peer = s.getpeername()
        try:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {_host_header(peer[0], peer[1])}\r\n\r\n".encode())
            return _read_response(s, until_eof=False)
        except (OSError, Failure) as e:
            raise Failure(f"request on connection {id}: {_describe(e)}") from e

    def wait_reset(self, id: int, timeout: float = 10) -> Any:
        s = self._conn(id)
        start = time.monotonic()
        deadline = start + float(timeout)
        outcome = "timeout"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                outcome = "reset"
                break
            except socket.timeout:
                break
            except OSError as e:
                raise Failure(f"wait_reset: {_describe(e)}") from e
            if not data:
                outcome = "closed"
                break
            # Unexpected data: keep waiting for the end.
        return {"outcome": outcome, "elapsed": time.monotonic() - start}

    def close(self, id: int) -> Any:
        s = self.conns.pop(int(id), None)
        if s is None:
            raise Failure(f"no connection {id}")
        s.close()
        return None

    def abort(self, id: int) -> Any:
        """Close with SO_LINGER 0: the peer gets a RST."""
        s = self.conns.pop(int(id), None)
        if s is None:
            raise Failure(f"no connection {id}")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return None

    @staticmethod
    def ping(host: str, count: int = 3, interval: float = 0.2, wait: float = 2) -> Any:
        r = subprocess.run(
            ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), host],
            capture_output=True, text=True, timeout=count * (interval + wait) + 10,
        )
        m = re.search(r"(\d+) (?:packets )?received", r.stdout)
        return {
            "success": r.returncode == 0,
            "replies": int(m.group(1)) if m else 0,
            "output": (r.stdout + r.stderr).strip(),
        }


# ---------------------------------------------------------------------------
# A TCP client by hand


def _segment(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
             options: bytes = b"", payload: bytes = b"") -> bytes:
    options += b"\x01" * (-len(options) % 4)  # NOPs up to a 4-byte boundary
    offset = (20 + len(options)) // 4
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, 65535, 0, 0)
    seg = header + options + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, len(seg))
    csum = checksum(pseudo + seg)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]




def forge(host: str, port: int, option: str = "", option_in: str = "ack",
          payload: str = "GET / HTTP/1.0\r\n\r\n", timeout: float = 5) -> Any:
    if option_in not in ("ack", "data"):
        raise Failure(f"option_in must be 'ack' or 'data', not {option_in!r}")
    opt = bytes.fromhex(option)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.connect((host, int(port)))
    src = probe.getsockname()[0]
    probe.close()
    # A port of our own: bound (so no other socket takes it) but never
    # connected; the kernel would reset what it sees for it, hence the rule.
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((src, 0))
    sport = holder.getsockname()[1]
    table = f"forge{sport}"
    subprocess.run(["nft", "-f", "-"], check=True, text=True, input=(
        f"table ip {table} {{ chain out {{ type filter hook output priority 0; "
        f"tcp sport {sport} tcp flags rst drop; }}; }}\n"))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    # On one CPU while sending: veth queues a frame on the backlog of the
    # CPU that sent it, so a thread that moved between the third ACK and
    # the request could have them arrive in the other order, and which of
    # them carries the option is the point.
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        raw.settimeout(0.2)
        deadline = time.monotonic() + float(timeout)

        def send(seq: int, ack: int, flags: int, options: bytes = b"", data: bytes = b"") -> None:
            raw.sendto(_segment(src, host, sport, int(port), seq, ack, flags, options, data),
                       (host, 0))

        def receive() -> tuple[int, int, int, bytes]:
            while time.monotonic() < deadline:
                try:
                    pkt, _ = raw.recvfrom(65535)
                except socket.timeout:
                    continue
                ihl = (pkt[0] & 0x0F) * 4
                if socket.inet_ntoa(pkt[12:16]) != host:
                    continue
                tcp = pkt[ihl:]
                sp, dp, seq, ack, off, flags = struct.unpack("!HHIIBB", tcp[:14])
                if (sp, dp) != (int(port), sport):
                    continue
                return seq, ack, flags, tcp[(off >> 4) * 4:]
            raise Failure(f"no answer from {host}:{port} within {timeout}s")

        isn = 1_000_000
        send(isn, 0, SYN, struct.pack("!BBH", 2, 4, 1460))
        seq, _, flags, _ = receive()
        if flags & (SYN | ACK) != SYN | ACK:
            raise Failure(f"expected a SYN-ACK, got flags {flags:#x}")
        rcv = (seq + 1) & 0xFFFFFFFF
        snd = isn + 1
        send(snd, rcv, ACK, opt if option_in == "ack" else b"")
        request = payload.encode()
        send(snd, rcv, PSH | ACK, opt if option_in == "data" else b"", request)
        snd += len(request)
        data = b""
        while True:
            seq, _, flags, body = receive()
            if flags & RST:
                raise Failure("reset by the server")
            if seq == rcv:
                data += body
                rcv = (rcv + len(body) + (1 if flags & FIN else 0)) & 0xFFFFFFFF
                send(snd, rcv, ACK)
                if flags & FIN:
                    break
        send(snd, rcv, FIN | ACK)
        head, _, text = data.partition(b"\r\n\r\n")
        return {"body": text.decode("utf-8", "replace"), "local_port": sport}
    finally:
        os.sched_setaffinity(0, cpus)
        raw.close()
        holder.close()
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def send_frames(frames: list[str], iface: str = "eth0") -> Any:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.bind((iface, 0))
        for frame in frames:
            s.send(bytes.fromhex(frame))
    finally:
        s.close()
    return len(frames)


# ---------------------------------------------------------------------------
# HTTP server


class Server:
    """A threaded HTTP/1.1 keep-alive server on one port."""

    def __init__(self, port: int, name: str, addr: str = "0.0.0.0") -> None:
        self.port = int(port)
        self.name = name
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((addr, self.port))
        self.listener.listen(1024)
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.peers: list[dict[str, Any]] = []
        self.resets = 0
        self.listening = True
        self.killed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:
                return  # the listener was closed
            seen = {"ip": peer[0], "port": peer[1], "time": time.time(),
                    "server_port": self.port, "peername": _peername(conn),
                    "ttm": _ttm_peer(conn)}
            with self.lock:
                if self.killed:
                    conn.close()
                    return
                self.conns.add(conn)
                self.peers.append(seen)
            threading.Thread(target=self._serve, args=(conn, peer, seen), daemon=True).start()

    def _serve(self, conn: socket.socket, peer: Any, seen: dict[str, Any]) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = f"{self.name} {peer[0]} {peer[1]}\n".encode()
        buf = b""
        first = True
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                    if len(buf) > MAX_HEAD:
                        return
                if first:
                    # Asked again once the request is in, as a server that
                    # logs its client does: an option that came on the
                    # request rather than on the third ACK is known only
                    # from then on, and accept() can run before it lands.
                    first = False
                    ttm = _ttm_peer(conn)
                    with self.lock:
                        seen["ttm"] = ttm
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                version = parts[2] if len(parts) == 3 else "HTTP/1.0"
                connection = ""
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    if k.strip().lower() == "connection":
                        connection = v.strip().lower()
                close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {len(body)}\r\n".encode()
                    + (b"Connection: close\r\n" if close else b"")
                    + b"\r\n" + body
                )
                if close:
                    return
        except ConnectionResetError:
            with self.lock:
                if not self.killed:
                    self.resets += 1
        except OSError:
            pass  # closed by kill_server
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def stop(self) -> None:
        if self.listening:
            self.listening = False
            try:
                self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            except OSError:
                pass
            self.listener.close()

    def kill(self) -> int:
        with self.lock:
            self.killed = True
            conns = list(self.conns)
        self.stop()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return len(conns)


def _peername(conn: socket.socket) -> Any:
    try:
        return list(conn.getpeername()[:2])
    except OSError as e:
        return {"error": _describe(e)}


def _ttm_peer(conn: socket.socket) -> Any:
    """What the ``ttm`` module (the project's, when this runs in its venv)
    says of an accepted socket."""
    try:
        import ttm  # noqa: PLC0415 - only the servers need it
    except ImportError as e:
        return {"error": f"no ttm module: {e}"}
    try:
        p = ttm.get_peer(conn)
    except Exception as e:  # noqa: BLE001 - reported to the test
        return {"error": f"{type(e).__name__}: {e}"}
    return {"ip": str(p.ip), "port": p.port, "source": p.source}


class Servers:
    def __init__(self) -> None:
        self.servers: dict[int, Server] = {}

    def serve(self, port: int, name: str, addr: str = "0.0.0.0") -> Any:
        old = self.servers.get(int(port))
        if old is not None and old.listening:
            raise Failure(f"already serving on port {port}")
        try:
            self.servers[int(port)] = Server(port, name, addr)
        except OSError as e:
            raise Failure(f"serve on {addr}:{port}: {_describe(e)}") from e
        return None

    def _select(self, port: Optional[int]) -> list[Server]:
        if port is None:
            return list(self.servers.values())
        if int(port) not in self.servers:
            raise Failure(f"no server on port {port}")
        return [self.servers[int(port)]]

    def peers(self, port: Optional[int] = None) -> Any:
        out: list[dict[str, Any]] = []
        for s in self._select(port):
            with s.lock:
                out.extend(s.peers)
        return out

    def resets(self, port: Optional[int] = None) -> Any:
        total = 0
        for s in self._select(port):
            with s.lock:
                total += s.resets
        return total

    def stop_server(self, port: int) -> Any:
        for s in self._select(port):
            s.stop()
        return None

    def kill_server(self, port: int) -> Any:
        return {"closed_connections": sum(s.kill() for s in self._select(port))}


# ---------------------------------------------------------------------------
# Captures


class Captures:
    def __init__(self) -> None:
        self.procs: dict[str, tuple[subprocess.Popen[str], list[str]]] = {}

    def capture_start(self, iface: str, file: str, filter: str = "") -> Any:
        if file in self.procs:
            raise Failure(f"already capturing to {file}")
        cmd = ["tcpdump", "-n", "-U", "--immediate-mode", "-Z", "root", "-i", iface, "-w", file]
        if filter:
            cmd.append(filter)
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        listening = threading.Event()

        def drain() -> None:
            assert p.stderr is not None
            for line in p.stderr:
                lines.append(line.rstrip("\n"))
                if "listening on" in line:
                    listening.set()
            listening.set()

        threading.Thread(target=drain, daemon=True).start()
        if not listening.wait(10) or p.poll() is not None:
            p.kill()
            p.wait()
            raise Failure(f"tcpdump did not start listening: {' | '.join(lines)}")
        self.procs[file] = (p, lines)
        return None

    def capture_stop(self, file: Optional[str] = None) -> Any:
        files = [file] if file is not None else list(self.procs)
        out = {}
        for f in files:
            if f not in self.procs:
                raise Failure(f"no capture to {f}")
            p, lines = self.procs.pop(f)
            time.sleep(0.2)  # let the last frames reach tcpdump
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            time.sleep(0.05)
            out[f] = "\n".join(lines)
        return out

    def stop_all(self) -> None:
        for p, _ in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs.clear()


# ---------------------------------------------------------------------------


def main() -> int:
    client, servers, captures = Client(), Servers(), Captures()
    handlers: dict[str, Callable[..., Any]] = {
        "hello": lambda: {"pid": os.getpid()},
        "get": client.get,
        "open": client.open,
        "request": client.request,
        "wait_reset": client.wait_reset,
        "close": client.close,
        "abort": client.abort,
        "ping": client.ping,
        "forge": forge,
        "send_frames": send_frames,
        "serve": servers.serve,
        "peers": servers.peers,
        "resets": servers.resets,
        "stop_server": servers.stop_server,
        "kill_server": servers.kill_server,
        "capture_start": captures.capture_start,
        "capture_stop": captures.capture_stop,
    }
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                op = cmd.pop("op")
                if op == "quit":
                    break
                if op not in handlers:
                    raise Failure(f"unknown op {op!r}")
                reply = {"ok": True, "result": handlers[op](**cmd)}
            except (Failure, TypeError, ValueError, KeyError) as e:
                reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
            except Exception as e:  # noqa: BLE001 - every error is answered
                reply = {"ok": False, "error": _describe(e)}
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        captures.stop_all()
        for s in list(servers.servers.values()):
            s.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
