#!/usr/bin/env python3
"""A paced client for ``bench/proxy.py --rate``: one keep-alive connection, one ``GET`` every
``1/rate`` seconds (as a person using JupyterLab makes them, not as fast as possible like
wrk), each answer's latency from the first byte sent to the last byte read.  Prints one
JSON object with the fields of ``proxy.parse_wrk``.

    python3 bench/paced.py URL RATE SECONDS [HEADER: VALUE ...]
"""

from __future__ import annotations

import json
import socket
import sys
import time
from urllib.parse import urlsplit


def read_answer(sock: socket.socket, buf: bytearray) -> int:
    """One answer with a Content-Length from ``sock``; its status."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    length = next((int(h.split(":", 1)[1]) for h in head
                   if h.lower().startswith("content-length:")), None)
    if length is None:  # (jupyter_server's /api/status has one, through every proxy here)
        raise SystemExit(f"paced.py reads answers with a Content-Length only: {head[0]}")
    del buf[:end + 4]
    while len(buf) < length:
        buf += sock.recv(65536)
    del buf[:length]
    return int(head[0].split(" ")[1])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def main() -> None:
    url, rate, seconds, *headers = sys.argv[1:]
    u = urlsplit(url)
    req = (f"GET {u.path}{'?' + u.query if u.query else ''} HTTP/1.1\r\nHost: {u.netloc}\r\n"
           + "".join(h + "\r\n" for h in headers) + "\r\n").encode()
    sock = socket.create_connection((u.hostname, u.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    gap, lat, bad = 1 / float(rate), [], 0
    start = time.perf_counter()
    nxt = start
    while (now := time.perf_counter()) - start < float(seconds):
        if nxt > now:
            time.sleep(nxt - now)
        nxt += gap
        t0 = time.perf_counter()
        sock.sendall(req)
        if read_answer(sock, buf) >= 400:
            bad += 1
        lat.append((time.perf_counter() - t0) * 1e3)
    took = time.perf_counter() - start
    print(json.dumps({"rps": len(lat) / took, "requests": len(lat),
                      **{f"p{p}_ms": pct(lat, p) for p in (50, 75, 90, 99)},
                      "errors": f"Non-2xx or 3xx responses: {bad}" if bad else ""}))


if __name__ == "__main__":
    main()
