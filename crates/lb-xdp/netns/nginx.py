"""nginx as a real server, as the benchmark and the load tests run it: one
worker, keep-alive without a request limit, every request answered 200
with ``"{host}\\n"`` (but ``/headers``, answered with the forwarding
headers the request came with), no access log; and nginx as the L7
balancer that the L7 benchmark sets beside lbd (:func:`proxy`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .topology import Topology


#: What ``/headers`` answers: one line per header a balancer adds.
HEADERS = "".join(
    f"{name}: ${var}\\n" for name, var in (
        ("x-forwarded-for", "http_x_forwarded_for"), ("x-real-ip", "http_x_real_ip"),
        ("x-forwarded-proto", "http_x_forwarded_proto"),
        ("x-forwarded-port", "http_x_forwarded_port"), ("host", "http_host")))


def _head(directory: Path, workers: int) -> str:
    """The start of an nginx.conf up to the inside of ``http {``: ``workers``
    processes, its pid, error log and temporary files in ``directory``, no
    access log, keep-alive connections without a request limit."""
    return f"""
worker_processes {workers};
pid {directory}/nginx.pid;
error_log {directory}/error.log;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {directory};
  proxy_temp_path {directory};
  fastcgi_temp_path {directory};
  uwsgi_temp_path {directory};
  scgi_temp_path {directory};
  keepalive_requests 1000000;"""


def start(topo: Topology, host: str, directory: Path, port: int) -> None:
    """nginx on ``port`` of ``host``, its files in ``directory`` (made if
    missing). It is stopped with the topology."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(f"""{_head(directory, 1)}
  server {{
    listen {port} reuseport backlog=4096;
    location / {{ return 200 "{host}\\n"; }}
    location = /headers {{ return 200 "{HEADERS}"; }}
  }}
}}
""")
    topo.popen(host, "nginx", "-c", str(conf), "-g", "daemon off;")


def proxy(topo: Topology, host: str, directory: Path, listen: str, backends: list[tuple[str, int]],
          cert: Path, key: Path, workers: int = 2) -> subprocess.Popen[bytes]:
    """nginx as the L7 balancer of the benchmark, on ``host``: HTTP on
    ``listen``:80 and HTTPS on ``listen``:443 (``cert``, ``key``; TLS 1.2
    and 1.3, ECDHE with AES-GCM only, neither session tickets nor a
    session cache, so that every connection is a full handshake), proxied
    to ``backends`` ((address:port, weight)) by weighted round robin over
    kept-alive upstream connections, with the headers lbd adds
    (X-Forwarded-For appended to, X-Real-IP, X-Forwarded-Proto,
    X-Forwarded-Port; Host passed on); ``workers`` worker processes, no
    access log. Its files go in ``directory`` (made if missing). Returns
    the master process (the workers are its children)."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    servers = "".join(f"    server {addr} weight={w};\n" for addr, w in backends)
    conf.write_text(f"""{_head(directory, workers)}
  keepalive_timeout 300s;
  upstream backends {{
{servers}    keepalive 64;
    keepalive_requests 1000000;
  }}
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ciphers ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256;
  ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256;
  ssl_session_tickets off;
  ssl_session_cache off;
  server {{
    listen {listen}:80 reuseport backlog=4096;
    listen {listen}:443 ssl reuseport backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
    }}
  }}
}}
""")
    return topo.popen(host, "nginx", "-c", str(conf), "-g", "daemon off;")
