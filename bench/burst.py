#!/usr/bin/env python3
"""Spawn burst: N users log in at the same moment; how long until all are ready?

For each N in ``--n`` (default 20 and 50) a fresh daemon (default settings unless
``--spawn`` adds [spawn] lines, e.g. ``--spawn 'concurrency = 8'``) gets N users; then N
threads log in together: t0 just before POST /hub/login; then, as the progress page does,
each follows its server-sent progress stream until the server is ready (no polling), and
ready = the first 200 of GET /user/<u>/api/status through the proxy (retried every 20 ms).
The stream is what a browser waits on; polling the proxy from N threads every 0.1 s
(``--poll``) instead puts hundreds of requests a second on the same 2 cores.  Reported: wall time until
all are ready, per-user p50/p90/max, failures; then stop-all: every user POSTs
/hub/stop/<u> at once, wall time until all answered and no container is left.  Also the
CPU seconds the daemon (twistd + its redis) used during the burst, from /proc, to show
where the 2 cores went.  Numbers only, no pass/fail; JSON to bench/results/.

    python3 bench/burst.py [--n 20 50] [--image IMG] [--spawn 'concurrency = 4']
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
from spawn import CSRF_RE, PASSWORD, Daemon, login, pct, stop_server


def login_and_follow(d: Daemon, user: str) -> tuple[requests.Session, float]:
    """Log in, follow the progress stream to its end, confirm through the proxy."""
    s = requests.Session()
    csrf = CSRF_RE.search(s.get(d.url + "/hub/login").text).group(1)
    t0 = time.perf_counter()
    r = s.post(d.url + "/hub/login", data={"_csrf": csrf, "username": user,
                                           "password": PASSWORD, "next": ""},
               headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    last: dict = {}
    with s.get(f"{d.url}/hub/api/users/{user}/server/progress", stream=True,
               timeout=600) as stream:
        for line in stream.iter_lines():
            if line.startswith(b"data: "):
                last = json.loads(line[6:])
                if last.get("phase") in ("ready", "failed", "stopped"):
                    break
    if last.get("phase") != "ready":
        raise SystemExit(f"{user}: start failed: {last.get('message')}")
    while s.get(f"{d.url}/user/{user}/api/status", allow_redirects=False).status_code != 200:
        time.sleep(0.02)
    return s, time.perf_counter() - t0

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def host_cpu_s() -> float:
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    total = sum(int(x) for x in first)
    idle = int(first[3]) + int(first[4])
    return (total - idle) / TICK


def one(n: int, image: str, spawn_extra: str, poll: float = 0.0) -> dict:
    root = Path(tempfile.mkdtemp(prefix=f"ipydoc-burst{n}-"))
    d = Daemon(image, root, spawn_extra)
    d.start()
    try:
        users = [f"b{n}u{i:03d}" for i in range(n)]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda u: d.cli("user", "add", u, "--password-stdin",
                                          input=PASSWORD + "\n"), users))
        redis = d.redis_pid()
        cpu0 = (cpu_s(d.proc.pid), cpu_s(redis), host_cpu_s())
        t0 = time.perf_counter()

        def go(u: str) -> tuple[str, object, float | None]:
            try:
                if poll:
                    s, _, _, ready = login(d, u, poll)
                else:
                    s, ready = login_and_follow(d, u)
                return u, s, ready
            except (SystemExit, Exception) as e:  # noqa: BLE001 - a failure is a number here
                return u, str(e), None

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            res = list(pool.map(go, users))
        wall = time.perf_counter() - t0
        cpu1 = (cpu_s(d.proc.pid), cpu_s(redis), host_cpu_s())
        ok = [r for r in res if r[2] is not None]
        times = [r[2] for r in ok]
        t1 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda r: stop_server(d, r[1], r[0]), ok))
        while d.containers():
            time.sleep(0.1)
        stop_all = time.perf_counter() - t1
        return {
            "n": n, "spawn_extra": spawn_extra, "poll": poll, "all_ready_s": wall if len(ok) == n else None,
            "wall_s": wall, "failures": n - len(ok),
            "errors": [r[1] for r in res if r[2] is None][:5],
            "p50": pct(times, 50), "p90": pct(times, 90), "max": max(times, default=None),
            "stop_all_s": stop_all,
            "cpu_s": {"daemon": cpu1[0] - cpu0[0], "redis": cpu1[1] - cpu0[1],
                      "host_total": cpu1[2] - cpu0[2]},
        }
    finally:
        d.stop()
        d.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[20, 50])
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--spawn", default="", help="extra [spawn] lines, e.g. 'concurrency = 8'")
    ap.add_argument("--poll", type=float, default=0.0,
                    help="poll the proxy every POLL s instead of following the progress stream")
    a = ap.parse_args()
    rows = [one(n, a.image, a.spawn, a.poll) for n in a.n]
    how = f"polling every {a.poll} s" if a.poll else "following the progress stream"
    print(f"\nspawn burst ({a.spawn or 'default settings'}; image {a.image}; {how}; "
          f"{os.cpu_count()} CPUs)\n")
    print("| N | all ready s | p50 s | p90 s | max s | failures | stop-all s | "
          "CPU s daemon / redis / host |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        c = r["cpu_s"]
        print(f"| {r['n']} | {f(r['all_ready_s'])} | {f(r['p50'])} | {f(r['p90'])} | "
              f"{f(r['max'])} | {r['failures']} | {f(r['stop_all_s'])} | "
              f"{c['daemon']:.1f} / {c['redis']:.1f} / {c['host_total']:.1f} |")
    out = HERE / "results" / f"burst-{datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    print(f"\n{out}", file=sys.stderr)


if __name__ == "__main__":
    main()
