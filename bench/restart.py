#!/usr/bin/env python3
"""Restarts of ``ipydoc serve`` under a request loop: how long a switch takes, and what
clients see meanwhile.

Starts its own daemon through ``python -m ipydoc`` (temp state dir, free port, unique
``docker.instance``), logs one user in (their server starts), then runs ``--clients``
threads, each a keep-alive ``requests.Session`` alternating ``GET /user/<u>/api/status``
(through the proxy) and ``GET /hub/home``, while ``ipydoc restart`` runs ``-n`` times,
``--pause`` seconds apart.  Per restart: the supervisor's times (signal → new worker
ready, signal → old worker gone, from ``state_dir/supervisor.json``), the CLI's
wall time, requests sent during the switch, failed ones, and the slowest request of the
switch.  Prints a markdown table, writes ``results/restart-<date>.json``, removes what it
made.

    python3 bench/restart.py [-n 5] [--clients 2] [--pause 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from support import CLI, Daemon, follow_progress, login  # noqa: E402

PASSWORD = "bench-password-1"


class Loop:
    """Requests in a loop; each one's (start, duration, ok)."""

    def __init__(self, base: str, cookies: dict[str, str]) -> None:
        self.base = base
        self.cookies = cookies
        self.samples: list[tuple[float, float, bool]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        import requests

        s = requests.Session()
        s.cookies.update(self.cookies)
        paths = ["/user/bench/api/status", "/hub/home"]
        i = 0
        while not self.stop.is_set():
            began = time.monotonic()
            try:
                ok = s.get(self.base + paths[i % 2], timeout=60,
                           allow_redirects=False).status_code == 200
            except requests.RequestException:
                ok = False
            with self.lock:
                self.samples.append((began, time.monotonic() - began, ok))
            i += 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=5, help="restarts (default 5)")
    p.add_argument("--clients", type=int, default=2, help="request loops (default 2)")
    p.add_argument("--pause", type=float, default=2.0, help="seconds between restarts")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ipydoc-restart-bench-"))
    d = Daemon(root, {"auth": {"stop_on_logout": False}}, serve=True)
    rows = []
    try:
        d.start()
        d.add_user("bench", PASSWORD)
        session, _ = login(d.url, "bench", PASSWORD)
        assert follow_progress(session, d.url, "bench")[-1]["phase"] == "ready"
        loops = [Loop(d.url, dict(session.cookies)) for _ in range(args.clients)]
        threads = [threading.Thread(target=lp.run, daemon=True) for lp in loops]
        for t in threads:
            t.start()
        time.sleep(args.pause)
        for _ in range(args.n):
            began = time.monotonic()
            r = subprocess.run(CLI + ["--config", str(d.config_path), "--json", "restart"],
                               capture_output=True, text=True, timeout=600)
            ended = time.monotonic()
            out = json.loads(r.stdout) if r.stdout.strip() else {"ok": False}
            last = json.loads((root / "state" / "supervisor.json").read_text())["last"]
            during = [s for lp in loops for s in lp.samples if began <= s[0] <= ended]
            rows.append({"ok": out.get("ok", False), "cli_s": round(ended - began, 2),
                         "ready_s": last.get("seconds_ready"),
                         "total_s": last.get("seconds_total"),
                         "requests": len(during), "failed": sum(not s[2] for s in during),
                         "max_latency_ms": round(max((s[1] for s in during), default=0)
                                                 * 1000, 1)})
            time.sleep(args.pause)
        for lp in loops:
            lp.stop.set()
        for t in threads:
            t.join(timeout=60)
        all_samples = [s for lp in loops for s in lp.samples]
    finally:
        d.stop()
        d.cleanup_docker()

    print("| # | ok | signal → new ready (s) | signal → old gone (s) | CLI wall (s) | "
          "requests in switch | failed | max latency (ms) |")
    print("|---|----|---|---|---|---|---|---|")
    for i, row in enumerate(rows, 1):
        print(f"| {i} | {row['ok']} | {row['ready_s']} | {row['total_s']} | {row['cli_s']} | "
              f"{row['requests']} | {row['failed']} | {row['max_latency_ms']} |")
    failed = sum(not s[2] for s in all_samples)
    med = statistics.median(s[1] for s in all_samples) * 1000 if all_samples else 0
    print(f"\nall: {len(all_samples)} requests, {failed} failed, median {med:.1f} ms")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"restart-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"restarts": rows, "requests": len(all_samples),
                               "failed": failed, "median_ms": med}, indent=1))
    print(f"written {out}")
    return 0 if failed == 0 and all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
