#!/usr/bin/env python3
"""Swarm backend against the Docker backend, in the same run on the same machine.

Needs the two-node swarm (``scripts/swarm-two-node.sh up``; the worker ``ipd-node2``
with the image loaded, e.g. by ``ipydoc image ensure`` on a swarm config).  Two daemons
(``bench/spawn.py``'s ``Daemon``: temp state dir, free port, unique instance, embedded
Redis), one per backend, the same image, limits and ``spawn.concurrency``:

cold   ``--reps`` cold spawns per backend, alternating Docker and Swarm: each a new user,
       measured as ``bench/spawn.py`` does (t0 just before POST /hub/login, then GET
       /user/<u>/api/status through the proxy every ``--poll`` s until 200), then stopped
       (and its service/container gone) before the next.  Swarm users are placed on the
       worker (placement "memory" with no load picks ``ipd-node2``, first by hostname);
       the node each one landed on is checked and recorded.
burst  ``--burst`` users log in at once (``bench/burst.py``'s login + progress stream),
       all ready = wall time until every one answers 200 through the proxy; Swarm with
       placement "spread" (half on each node).  Then stop-all.  Docker first, then Swarm.

Prints markdown tables with a Swarm/Docker ratio column, writes JSON to bench/results/,
removes both daemons' containers, services and volumes (on both nodes).  Numbers only.

    python3 bench/swarm_spawn.py --reps 5 --burst 50
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from burst import login_and_follow
from spawn import PASSWORD, Daemon, docker, login, pct, stop_server

HERE = Path(__file__).resolve().parent
WORKER = "unix:///tmp/n2/docker.sock"
WORKER_HOSTNAME = "ipd-node2"


def worker_pid() -> str:
    """The worker dockerd's pid: a change during the run means it was restarted (another
    test taking the worker down) and the swarm numbers are not valid."""
    try:
        return Path("/tmp/n2/docker.pid").read_text().strip()
    except OSError:
        return "?"


def swarm_daemon(image: str, root: Path, placement: str, extra: str = "") -> Daemon:
    # spawn.py's Daemon writes [spawn] lines, then its own [docker] section: the [swarm]
    # section goes in between.
    return Daemon(image, root, f'backend = "swarm"\n{extra}\n[swarm]\nplacement = "{placement}"\n'
                               f'node_engines."{WORKER_HOSTNAME}" = "{WORKER}"')


def services(d: Daemon) -> list[str]:
    return docker("service", "ls", "-q", "--filter", f"label=ipydoc.instance={d.instance}").split()


def node_of(d: Daemon, user: str) -> str:
    out = docker("service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}",
                 f"{d.instance}-{user}")
    return out.splitlines()[0] if out else "?"


def gone(d: Daemon, swarm: bool) -> bool:
    return not (services(d) if swarm else d.containers())


def cleanup_swarm(d: Daemon) -> None:
    ids = services(d)
    if ids:
        docker("service", "rm", *ids)
    for host in (None, WORKER):
        base = ["docker", *(["-H", host] if host else [])]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            left = subprocess.run([*base, "ps", "-aq", "--filter",
                                   f"label=ipydoc.instance={d.instance}"],
                                  capture_output=True, text=True).stdout.split()
            if not left:
                break
            subprocess.run([*base, "rm", "-f", *left], capture_output=True)
            time.sleep(0.5)
        vols = subprocess.run([*base, "volume", "ls", "-q", "--filter",
                               f"name={d.instance}-home-"], capture_output=True,
                              text=True).stdout.split()
        if vols:
            subprocess.run([*base, "volume", "rm", "-f", *vols], capture_output=True)


def add_users(d: Daemon, users: list[str]) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda u: d.cli("user", "add", u, "--password-stdin",
                                      input=PASSWORD + "\n"), users))


def cold(d: Daemon, user: str, swarm: bool, poll: float) -> dict:
    s, _, _, ready = login(d, user, poll)
    node = node_of(d, user) if swarm else "local"
    stop_server(d, s, user)
    deadline = time.monotonic() + 120
    while not gone(d, swarm) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"user": user, "ready_s": ready, "node": node}


def burst(d: Daemon, users: list[str], swarm: bool) -> dict:
    t0 = time.perf_counter()

    def go(u: str) -> tuple[str, object, float | None]:
        try:
            s, ready = login_and_follow(d, u)
            return u, s, ready
        except (SystemExit, Exception) as e:  # noqa: BLE001 - a failure is a number here
            return u, str(e), None

    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        res = list(pool.map(go, users))
    wall = time.perf_counter() - t0
    ok = [r for r in res if r[2] is not None]
    times = [r[2] for r in ok]
    nodes: dict[str, int] = {}
    if swarm:
        for u, _, _ in ok:
            n = node_of(d, u)
            nodes[n] = nodes.get(n, 0) + 1
    t1 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(len(users)) as pool:
        list(pool.map(lambda r: stop_server(d, r[1], r[0]), ok))
    while not gone(d, swarm) and time.perf_counter() - t1 < 300:
        time.sleep(0.1)
    return {"n": len(users), "all_ready_s": wall if len(ok) == len(users) else None,
            "wall_s": wall, "failures": len(users) - len(ok),
            "errors": [r[1] for r in res if r[2] is None][:5], "p50": pct(times, 50),
            "p90": pct(times, 90), "max": max(times, default=None), "nodes": nodes,
            "stop_all_s": time.perf_counter() - t1}


def ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def f(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5, help="cold spawns per backend")
    ap.add_argument("--burst", type=int, default=50, help="users in the burst (0: none)")
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--spawn", default="", help="extra [spawn] lines for both backends")
    a = ap.parse_args()
    result: dict = {"cpus": os.cpu_count(), "image": a.image, "spawn": a.spawn}
    pid0 = worker_pid()

    dk = Daemon(a.image, Path(tempfile.mkdtemp(prefix="ipydoc-sw-docker-")), a.spawn)
    sw = swarm_daemon(a.image, Path(tempfile.mkdtemp(prefix="ipydoc-sw-swarm-")), "memory",
                      a.spawn)
    rows: dict[str, list[dict]] = {"docker": [], "swarm": []}
    try:
        dk.start()
        sw.start()
        add_users(dk, [f"cd{i:02d}" for i in range(a.reps)])
        add_users(sw, [f"cs{i:02d}" for i in range(a.reps)])
        for i in range(a.reps):
            rows["docker"].append(cold(dk, f"cd{i:02d}", False, a.poll))
            rows["swarm"].append(cold(sw, f"cs{i:02d}", True, a.poll))
            print(f"rep {i}: docker {rows['docker'][-1]['ready_s']:.2f} s, swarm "
                  f"{rows['swarm'][-1]['ready_s']:.2f} s on {rows['swarm'][-1]['node']}",
                  file=sys.stderr)
    finally:
        for d in (dk, sw):
            d.stop()
        dk.cleanup()
        cleanup_swarm(sw)
    result["cold"] = rows

    if a.burst:
        bursts = {}
        for name in ("docker", "swarm"):
            root = Path(tempfile.mkdtemp(prefix=f"ipydoc-sw-burst-{name}-"))
            d = Daemon(a.image, root, a.spawn) if name == "docker" else \
                swarm_daemon(a.image, root, "spread", a.spawn)
            try:
                d.start()
                users = [f"b{name[0]}{i:03d}" for i in range(a.burst)]
                add_users(d, users)
                bursts[name] = burst(d, users, name == "swarm")
                print(f"burst {name}: {bursts[name]['wall_s']:.1f} s, "
                      f"{bursts[name]['failures']} failures {bursts[name]['nodes']}",
                      file=sys.stderr)
            finally:
                d.stop()
                d.cleanup() if name == "docker" else cleanup_swarm(d)
        result["burst"] = bursts

    med = {k: statistics.median(r["ready_s"] for r in v) for k, v in rows.items()}
    on = sorted({r["node"] for r in rows["swarm"]})
    print(f"\ncold spawn, {a.reps} reps each, alternating ({a.image}; {os.cpu_count()} CPUs; "
          f"swarm servers on {', '.join(on)})\n")
    print("| backend | median s | min s | max s | ratio to Docker |")
    print("|---|---|---|---|---|")
    for k in ("docker", "swarm"):
        xs = [r["ready_s"] for r in rows[k]]
        print(f"| {k} | {med[k]:.2f} | {min(xs):.2f} | {max(xs):.2f} | "
              f"{ratio(med[k], med['docker'])} |")
    if a.burst:
        b = result["burst"]
        print(f"\nburst of {a.burst} users (swarm: placement spread over two nodes)\n")
        print("| backend | all ready s | p50 s | p90 s | max s | failures | stop-all s | "
              "nodes | all-ready ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        for k in ("docker", "swarm"):
            r = b[k]
            nodes = ", ".join(f"{n}: {c}" for n, c in sorted(r["nodes"].items())) or "local"
            print(f"| {k} | {f(r['all_ready_s'])} | {f(r['p50'])} | {f(r['p90'])} | "
                  f"{f(r['max'])} | {r['failures']} | {f(r['stop_all_s'])} | {nodes} | "
                  f"{ratio(r['all_ready_s'], b['docker']['all_ready_s'])} |")
    result["worker_restarted"] = worker_pid() != pid0
    if result["worker_restarted"]:
        print("\nWARNING: the worker's dockerd was restarted during this run (another test?): "
              "the swarm numbers are not valid", file=sys.stderr)
    out = HERE / "results" / f"swarm-spawn-{datetime.now():%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{out}", file=sys.stderr)


if __name__ == "__main__":
    main()
