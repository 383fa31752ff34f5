#!/usr/bin/env python3
"""A backend of the L7 tests, run inside a real server's namespace
(``ip netns exec NS python l7_backend.py NAME --http PORT [--ws PORT]``).

``--http PORT``: an HTTP/1.1 keep-alive server. Every request is answered
200 with one line of JSON saying what the backend saw::

    {"backend": NAME, "method": "GET", "path": "/x", "peer": "10.77.0.2:40000",
     "headers": [["Host", "..."], ["X-Forwarded-For", "..."], ...]}

(headers as a list, in the order received, so that a repeated header
shows), except ``/sleep/SECONDS``, answered the same way after that long.

``--ws PORT``: a WebSocket server (the ``websockets`` package): on path
``/echo`` every message is sent back; on ``/silent`` nothing is ever sent
(the connection stays open until the peer closes it). A plain GET of
``/healthz`` on that port is answered 200, for health checks.

It prints "ready" on stdout once every port listens, and runs until
killed."""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from http import HTTPStatus
from typing import Any


def http_handler(name: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # The head and the body are two writes: without TCP_NODELAY the
        # second waits for the balancer's delayed ACK (40 ms a request).
        disable_nagle_algorithm = True

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.startswith("/sleep/"):
                time.sleep(float(self.path.split("/")[2]))
            body = json.dumps({
                "backend": name,
                "method": self.command,
                "path": self.path,
                "peer": f"{self.client_address[0]}:{self.client_address[1]}",
                "headers": [[k, v] for k, v in self.headers.items()],
            }).encode() + b"\n"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


def serve_ws(port: int) -> threading.Thread:
    from websockets.sync.server import ServerConnection, serve

    def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request else ""
        if path == "/echo":
            for message in ws:
                ws.send(message)
        elif path == "/silent":
            try:  # nothing is ever sent: wait for the peer to close
                for _ in ws:
                    pass
            except Exception:  # noqa: BLE001 - any end of the connection ends it
                pass

    def process_request(ws: ServerConnection, request: Any) -> Any:
        if request.path == "/healthz" and "upgrade" not in request.headers.get("Connection", "").lower():
            return ws.respond(HTTPStatus.OK, "ok\n")
        return None

    server = serve(handler, "0.0.0.0", port, process_request=process_request,
                   ping_interval=None, compression=None)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    return t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--http", type=int, required=True)
    ap.add_argument("--ws", type=int)
    args = ap.parse_args()
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", args.http), http_handler(args.name))
    srv.daemon_threads = True
    if args.ws:
        serve_ws(args.ws)
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
