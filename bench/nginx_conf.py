"""The nginx configurations the benches run (one template, two uses).

``bench/proxy.py`` runs nginx as a peer proxy (upstream keepalive, as
``../shared/peer/nginx.conf``); ``bench/scale.py`` runs it as a stand-in server that
answers 200 to any path.  Both get the same frame: one worker, every path under its own
prefix ``root`` (pid, logs, temp files), no access log.

    conf = proxy_conf(root, port, "127.0.0.1:49153")
    start(root, conf, prefix=["taskset", "-c", "1"]) ... stop(root)
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

FRAME = """
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{http}
}}
"""

#: The peer's proxy: keepalive upstream, WebSocket upgrade passed on.
PROXY_HTTP = """
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream jupyter {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://jupyter;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
        }}
    }}"""

#: A stand-in user server: 200 and a small JSON body for any path.
STAND_IN_HTTP = """
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ default_type application/json; return 200 '{{"stand_in":true}}'; }}
    }}"""


def _frame(root: Path, http: str) -> str:
    return FRAME.format(root=root, http=http)


def proxy_conf(root: Path, port: int, upstream: str) -> str:
    """nginx as the peer proxy on ``port`` in front of ``upstream`` (``host:port``)."""
    return _frame(root, PROXY_HTTP.format(upstream=upstream, port=port))


def stand_in_conf(root: Path, port: int) -> str:
    """nginx as a stand-in server on ``port``: 200 to any path."""
    return _frame(root, STAND_IN_HTTP.format(port=port))


def start(root: Path, conf: str, prefix: list[str] | None = None) -> Path:
    """Write ``conf`` to ``root/nginx.conf`` and start nginx on it (``prefix``: e.g. taskset)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "nginx.conf"
    path.write_text(conf)
    subprocess.run([*(prefix or []), "nginx", "-p", str(root), "-c", str(path)], check=True)
    return path


def pid(root: Path) -> int | None:
    """The master's pid, or None when nginx is not running from ``root``."""
    try:
        return int((root / "nginx.pid").read_text())
    except (OSError, ValueError):
        return None


def stop(root: Path) -> None:
    """Stop the nginx started from ``root`` (graceful quit), if it runs."""
    if (root / "nginx.pid").exists():
        subprocess.run(["nginx", "-p", str(root), "-c", str(root / "nginx.conf"), "-s", "quit"],
                       check=False)
        time.sleep(0.2)
