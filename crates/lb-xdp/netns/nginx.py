"""nginx as a real server, as the benchmark and the load tests run it: one
worker, keep-alive without a request limit, every request answered 200
with ``"{host}\\n"``, no access log."""

from __future__ import annotations

from pathlib import Path

from .topology import Topology


def start(topo: Topology, host: str, directory: Path, port: int) -> None:
    """nginx on ``port`` of ``host``, its files in ``directory`` (made if
    missing). It is stopped with the topology."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
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
  keepalive_requests 1000000;
  server {{
    listen {port} reuseport backlog=4096;
    location / {{ return 200 "{host}\\n"; }}
  }}
}}
""")
    topo.popen(host, "nginx", "-c", str(conf), "-g", "daemon off;")
