#!/usr/bin/env python3
"""Daemon memory with many idle WebSockets through the proxy, and after they close.

Starts its own daemon (``bench/spawn.py``'s ``Daemon``), logs one user in (the daemon
starts the container), then for ``--rounds`` rounds: opens ``-n`` WebSockets to the
user's ``/api/events/subscribe`` (jupyter_server's event bus: a real, cheap WebSocket that
stays idle) through ipydoc's proxy, holds them ``--hold`` s, closes them all and lets the
daemon settle.  VmRSS of the twistd process (``/proc``) is recorded before the first round
(after a warm-up of one WebSocket), with the sockets open, and after each close; the open
file descriptors of the daemon show that every spliced connection was released.

A leak shows as "after close" growing round after round; the first round may sit a little
above the baseline (allocator arenas grown once and kept by Python).

    python3 bench/ws_idle.py [-n 200] [--rounds 3] [--hold 5] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import websocket

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import spawn  # noqa: E402


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settle(pid: int, seconds: float) -> float:
    """RSS once it stops moving (or after ``seconds``)."""
    end = time.monotonic() + seconds
    last = spawn.rss_mib(pid)
    while time.monotonic() < end:
        time.sleep(0.5)
        now = spawn.rss_mib(pid)
        if abs(now - last) < 0.05:
            return now
        last = now
    return last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ipydoc-wsidle-"))
    d = spawn.Daemon(a.image, root)
    user = "w00"
    rows: list[dict] = []
    try:
        d.start()
        d.cli("user", "add", user, "--password-stdin", input=spawn.PASSWORD + "\n")
        s, *_ = spawn.login(d, user, 0.1)
        cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
        url = d.url.replace("http://", "ws://") + f"/user/{user}/api/events/subscribe"
        headers = [f"Cookie: {cookie}"]
        origin = d.url
        pid = d.proc.pid

        def open_one() -> websocket.WebSocket:
            return websocket.create_connection(url, header=headers, origin=origin, timeout=30)

        open_one().close()  # warm-up: first use of every code path
        base = settle(pid, 5)
        base_fds = fds(pid)
        print(f"baseline: daemon {base:.1f} MiB, {base_fds} fds", flush=True)
        for r in range(1, a.rounds + 1):
            t0 = time.monotonic()
            socks = [open_one() for _ in range(a.n)]
            opened = time.monotonic() - t0
            time.sleep(a.hold)
            held = spawn.rss_mib(pid)
            held_fds = fds(pid)
            for ws in socks:
                ws.close()
            after = settle(pid, 10)
            row = {"round": r, "open_s": opened, "rss_open_mib": held, "fds_open": held_fds,
                   "rss_after_mib": after, "fds_after": fds(pid)}
            rows.append(row)
            print(f"round {r}: {a.n} open in {opened:.2f} s → {held:.1f} MiB, {held_fds} fds; "
                  f"closed → {after:.1f} MiB, {row['fds_after']} fds", flush=True)
    finally:
        d.stop()
        d.cleanup()

    lines = [f"## Daemon memory, {a.n} idle WebSockets through ipydoc ({time.strftime('%Y-%m-%d')})", "",
             f"Baseline (after one warm-up WebSocket): **{base:.1f} MiB**, {base_fds} fds", "",
             "| round | open | RSS open MiB | per socket KiB | fds open | RSS after close MiB | vs baseline MiB | fds after |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        per = (row["rss_open_mib"] - base) * 1024 / a.n
        lines.append(f"| {row['round']} | {a.n} in {row['open_s']:.1f} s | {row['rss_open_mib']:.1f} | "
                     f"{per:.1f} | {row['fds_open']} | {row['rss_after_mib']:.1f} | "
                     f"{row['rss_after_mib'] - base:+.1f} | {row['fds_after']} |")
    table = "\n".join(lines)
    print("\n" + table)
    out = HERE / "results" / f"ws-idle-{time.strftime('%Y%m%dT%H%M%S')}{'-' + a.tag if a.tag else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"n": a.n, "baseline_mib": base, "baseline_fds": base_fds, "rounds": rows}, indent=1))
    print(f"\nwrote {out}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
