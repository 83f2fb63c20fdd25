#!/usr/bin/env python3
"""Two daemons behind a TCP load balancer against one daemon, in the same run.

Starts a redis-server on a free TCP port and two daemons A and B over it (``redis.url``,
one shared state dir, one ``docker.instance``: the several-daemon layout of
docs/several-daemons.md), logs one user in on A (A starts the container), then runs
``wrk --latency`` on ``GET /user/<u>/api/status`` with the session cookie against:

one        A's port directly (one daemon; B idles)
lb-one     nginx ``stream`` (1 worker, TCP, no HTTP parsing) with A alone upstream
lb-two     the same nginx with A and B upstream (round robin per connection)

All on the same machine and the same cores (no pinning: the daemons, redis-server, nginx,
the user's container and wrk share them), the same container behind every target.
Repetitions rotate the order (Latin square); the table shows medians and ratios to
``one``.  Then the delay from a logout on A until B refuses the session (``--revokes``
trials: B's session cache is warmed by a request just before; B is polled as fast as one
client can).  Prints markdown, writes ``results/daemons-<date>.json``, removes what it made.

    python3 bench/daemons.py [--reps 3] [--dur 10s] [--conns 50] [--revokes 20]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import spawn  # noqa: E402  (Daemon, login, free_port)
import tools  # noqa: E402
from proxy import parse_wrk  # noqa: E402

USER = "p00"
NGINX_STREAM = """
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
stream {{
    upstream one {{ server 127.0.0.1:{a}; }}
    upstream two {{ server 127.0.0.1:{a}; server 127.0.0.1:{b}; }}
    server {{ listen 127.0.0.1:{p1}; proxy_pass one; }}
    server {{ listen 127.0.0.1:{p2}; proxy_pass two; }}
}}
"""


def cluster_daemon(root: Path, image: str, redis_url: str, shared: Path,
                   instance: str | None = None) -> spawn.Daemon:
    """A bench daemon (bench/spawn.py) over ``redis_url`` whose state dir is ``shared``."""
    root.mkdir(parents=True)
    (root / "state").symlink_to(shared)
    extra = (f'cpu_limit = 0.0\n[redis]\nurl = "{redis_url}"\n'
             f'[control]\nsocket = "{root / "control.sock"}"\n'
             '[auth]\nstop_on_logout = false\n')
    d = spawn.Daemon(image, root, spawn_extra=extra)
    if instance:
        d.instance = instance
    return d


def wrk(url: str, cookie: str, conns: int, dur: str) -> dict:
    txt = subprocess.run(["wrk", "-t2", f"-c{conns}", f"-d{dur}", "--latency", "-H",
                          f"Cookie: {cookie}", url], capture_output=True, text=True).stdout
    return parse_wrk(txt)


def revoke_delays(a: spawn.Daemon, b: spawn.Daemon, n: int) -> list[float]:
    """Seconds from a logout's answer on A until B refuses that session."""
    delays = []
    for _ in range(n):
        s, _, _, _ = spawn.login(a, USER, 0.02)
        assert s.get(f"{b.url}/user/{USER}/api/status").status_code == 200  # B caches it
        csrf = re.search(r'name="_csrf" value="([^"]+)"', s.get(a.url + "/hub/home").text)
        cookies = dict(s.cookies)
        r = s.post(a.url + "/hub/logout", data={"_csrf": csrf.group(1)},
                   headers={"Origin": a.url}, allow_redirects=False)
        t0 = time.perf_counter()
        assert r.status_code in (302, 303), r.status_code
        probe = requests.Session()
        while probe.get(f"{b.url}/user/{USER}/api/status", cookies=cookies,
                        allow_redirects=False).status_code == 200:
            if time.perf_counter() - t0 > 30:
                raise SystemExit("B still accepts the session 30 s after the logout")
        delays.append(time.perf_counter() - t0)
    return delays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", default="10s")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--revokes", type=int, default=20)
    a_ = ap.parse_args()
    tools.require("wrk", "nginx", "docker")
    if not Path("/usr/lib/nginx/modules/ngx_stream_module.so").exists():
        raise SystemExit("nginx's stream module is missing: apt-get install libnginx-mod-stream "
                         "(scripts/bootstrap.sh --test does)")
    root = Path(tempfile.mkdtemp(prefix="ipydoc-bench-daemons-"))
    shared = root / "shared-state"
    shared.mkdir()
    rport = spawn.free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(root)],
                             stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{rport}/0"
    a = cluster_daemon(root / "a", a_.image, url, shared)
    b = cluster_daemon(root / "b", a_.image, url, shared, instance=a.instance)
    nginx = None
    try:
        time.sleep(0.3)
        a.start()
        b.start()
        a.cli("user", "add", USER, "--password-stdin", input=spawn.PASSWORD + "\n")
        s, _, _, _ = spawn.login(a, USER, 0.02)
        cookie = "; ".join(f"{k}={v}" for k, v in s.cookies.items())
        p1, p2 = spawn.free_port(), spawn.free_port()
        (root / "nginx.conf").write_text(NGINX_STREAM.format(root=root, a=a.port, b=b.port,
                                                             p1=p1, p2=p2))
        nginx = subprocess.Popen(["nginx", "-c", str(root / "nginx.conf"), "-g",
                                  "daemon off;", "-e", str(root / "error.log")])
        time.sleep(0.5)
        targets = {"one": a.url, "lb-one": f"http://127.0.0.1:{p1}",
                   "lb-two": f"http://127.0.0.1:{p2}"}
        path = f"/user/{USER}/api/status"
        for name, base in targets.items():
            r = requests.get(base + path, headers={"Cookie": cookie}, allow_redirects=False)
            assert r.status_code == 200, (name, r.status_code)
            wrk(base + path, cookie, 10, "2s")  # warm-up
        names = list(targets)
        rows: dict[str, list[dict]] = {n: [] for n in names}
        for rep in range(a_.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                rows[name].append(wrk(targets[name] + path, cookie, a_.conns, a_.dur))
        delays = revoke_delays(a, b, a_.revokes)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait()
        for d in (b, a):
            d.stop()
        a.cleanup()
        redis.terminate()
        redis.wait()
    med = {n: {k: statistics.median(r[k] for r in rows[n]) for k in ("rps", "p50_ms", "p99_ms")}
           for n in names}
    print(f"\n### Two daemons behind nginx stream vs one daemon ({a_.reps} reps, wrk -t2 "
          f"-c{a_.conns} -d{a_.dur}, medians; all on the same {len(os.sched_getaffinity(0))} "
          f"cores)\n")
    print("| target | req/s | p50 ms | p99 ms | req/s vs one | p99 vs one |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for n in names:
        m = med[n]
        print(f"| {n} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
              f"{m['rps'] / med['one']['rps']:.2f} | {m['p99_ms'] / med['one']['p99_ms']:.2f} |")
    ms = [d * 1000 for d in delays]
    print(f"\nlogout on A → refused by B ({len(ms)} trials): median {statistics.median(ms):.1f} ms, "
          f"max {max(ms):.1f} ms")
    out = HERE / "results" / f"daemons-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "medians": med, "revoke_ms": ms,
                               "args": vars(a_)}, indent=1))
    print(f"\nwritten {out}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
