#!/usr/bin/env python3
"""Pause and resume (issue 15 §1): what a resume costs the first request, and what paused
servers cost the host.

A fresh daemon (own state dir, free port, unique ``docker.instance``) gets ``--n`` users,
who log in together; then:

- **latency**: for each of ``--rounds`` rounds, every user in turn: one timed
  ``GET /user/<u>/api/status`` through the proxy to the running server (the baseline),
  then ``ipydoc server pause <u>`` (untimed; ``docker inspect`` confirms ``Paused``), then
  the same request timed from just before it is sent to its full answer (the resume
  included).  Only 200s count.  p50/p90/max of both, and of the daemon's own resume time
  (the ``resume`` events' "in N ms").
- **memory**: with every server running and idle (after ``--settle`` s), then with every
  server paused: each container's memory (``docker stats --no-stream`` and its cgroup's
  ``memory.current``), their CPU use, the host's used memory (MemTotal - MemAvailable), and
  the RSS of the daemon and of its redis-server.

Numbers only, no pass/fail; JSON to bench/results/.

    .venv/bin/python bench/pause.py [--n 20] [--rounds 5] [--settle 10]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import re
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests
from spawn import PASSWORD, Daemon, docker, login, mem_unit, pct, rss_mib

HERE = Path(__file__).resolve().parent
IMAGE = "ipydoc-test-notebook:latest"


def host_used_mib() -> float:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        info[k] = int(v.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024


def cgroup_mib(cid: str) -> float | None:
    for path in (f"/sys/fs/cgroup/system.slice/docker-{cid}.scope/memory.current",
                 f"/sys/fs/cgroup/docker/{cid}/memory.current",
                 f"/sys/fs/cgroup/memory/docker/{cid}/memory.usage_in_bytes"):
        try:
            return int(Path(path).read_text()) / 2**20
        except OSError:
            continue
    return None


def snapshot(d: Daemon) -> dict:
    ids = docker("ps", "-q", "--no-trunc", "--filter",
                 f"label=ipydoc.instance={d.instance}").split()
    out = docker("stats", "--no-stream", "--format", "{{.MemUsage}}\t{{.CPUPerc}}", *ids)
    mem = [mem_unit(line.split("\t")[0].split("/")[0].strip()) for line in out.splitlines()]
    cpu = [float(line.split("\t")[1].rstrip("%") or 0) for line in out.splitlines()]
    cg = [m for m in (cgroup_mib(i) for i in ids) if m is not None]
    paused = sum(1 for i in ids if docker("inspect", "--format", "{{.State.Paused}}", i)
                 .strip() == "true")
    rp = d.redis_pid()
    return {"containers": len(ids), "paused": paused,
            "docker_stats_mem_mib_total": sum(mem), "docker_stats_mem_mib_each": pct(mem, 50),
            "cgroup_mem_mib_total": sum(cg) if cg else None,
            "cpu_percent_total": sum(cpu), "host_used_mib": host_used_mib(),
            "daemon_rss_mib": rss_mib(d.proc.pid), "redis_rss_mib": rss_mib(rp) if rp else None}


def pause(d: Daemon, user: str) -> bool:
    """``ipydoc server pause``; False when the engine could not freeze it (it happens
    under load: runc gives up when the cgroup does not reach FROZEN in time)."""
    try:
        d.cli("server", "pause", user)
    except SystemExit as e:
        print(f"  pause of {user} failed: {str(e).strip()[-160:]}", file=sys.stderr)
        return False
    return True


def timed_get(s: requests.Session, url: str) -> float | None:
    t = time.perf_counter()
    r = s.get(url, allow_redirects=False, timeout=30)
    took = time.perf_counter() - t
    return took if r.status_code == 200 else None


def summary(xs: list[float]) -> dict:
    ms = [x * 1000 for x in xs]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p90_ms": pct(ms, 90),
            "max_ms": max(ms) if ms else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20, help="users (servers)")
    ap.add_argument("--rounds", type=int, default=5, help="pause/resume rounds per user")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds idle before memory")
    ap.add_argument("--image", default=IMAGE)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipydoc-pause-"))
    d = Daemon(args.image, root, spawn_extra="concurrency = 4\nmem_limit = \"1G\"")
    users = [f"p{i:02d}" for i in range(args.n)]
    result: dict = {"n": args.n, "rounds": args.rounds, "image": args.image}
    try:
        d.start()
        for u in users:
            d.cli("user", "add", u, "--password-stdin", input=PASSWORD + "\n")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            sessions = dict(zip(users, (s for s, *_ in pool.map(lambda u: login(d, u, 0.02),
                                                                   users))))
        running, resumed, failed = [], [], 0
        for _ in range(args.rounds):
            for u in users:
                url = f"{d.url}/user/{u}/api/status"
                base = timed_get(sessions[u], url)
                if base is not None:
                    running.append(base)
                if not pause(d, u):
                    failed += 1
                    continue
                t = timed_get(sessions[u], url)
                if t is not None:
                    resumed.append(t)
        own = [float(m.group(1)) / 1000 for _, kind, _, detail in d.events()
               if kind == "resume" and (m := re.search(r"in (\d+) ms", detail))]
        result["latency"] = {"running": summary(running), "resume": summary(resumed),
                             "daemon_resume": summary(own), "pause_failures": failed}
        time.sleep(args.settle)
        result["memory_running"] = snapshot(d)
        for u in users:
            for _ in range(3):
                if pause(d, u):
                    break
        time.sleep(args.settle)
        result["memory_paused"] = snapshot(d)
    finally:
        d.stop()
        d.cleanup()
    lat = result["latency"]
    print(f"\nresume latency, GET /user/U/api/status through the proxy ({args.n} users x "
          f"{args.rounds} rounds)")
    print(f"{'':28}{'n':>5}{'p50 ms':>10}{'p90 ms':>10}{'max ms':>10}")
    for label, key in (("running server", "running"), ("paused server (resume)", "resume"),
                       ("daemon's resume alone", "daemon_resume")):
        s = lat[key]
        print(f"{label:28}{s['n']:>5}{s['p50_ms'] or 0:>10.1f}{s['p90_ms'] or 0:>10.1f}"
              f"{s['max_ms'] or 0:>10.1f}")
    print(f"pause failures (engine could not freeze): {lat['pause_failures']}")
    print(f"\nmemory, {args.n} idle servers")
    print(f"{'':34}{'running':>12}{'paused':>12}")
    for key in ("containers", "paused", "docker_stats_mem_mib_total",
                "docker_stats_mem_mib_each", "cgroup_mem_mib_total", "cpu_percent_total",
                "host_used_mib", "daemon_rss_mib", "redis_rss_mib"):
        a, b = result["memory_running"].get(key), result["memory_paused"].get(key)
        fmt = (lambda v: "-" if v is None else f"{v:.1f}")
        print(f"{key:34}{fmt(a):>12}{fmt(b):>12}")
    out = HERE / "results" / f"pause-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\n{out}")


if __name__ == "__main__":
    main()
