#!/usr/bin/env python3
"""Spawn latency of a named server against the default one (issue 19 §1: "equals the
default one's"), in the same run, on the same daemon and user.

One daemon (``bench/spawn.py``'s ``Daemon``: temp state, free port, unique instance), one
user logged in.  Each round starts and stops both of the user's servers, one after the
other, the order alternating every round (ABBA), so drift of a busy machine hits both
alike:

default  t0 just before ``POST /hub/api/users/U/server``; then GET
         ``/user/U/api/status`` through the proxy every ``--poll`` s until 200 = t1.
named    the same with ``POST /hub/api/users/U/servers/gpu`` and
         ``/user/U/gpu/api/status``.

Each server is stopped (``DELETE``) and its container gone before the next start, so
every spawn starts from no container.  The daemon's own measure is read too: each
``spawn`` event's "ready in X s" (container create to Jupyter answering; a named
server's event names it), which the client's polling does not blur.  Prints tables
(p50, mean, min, max per kind) and the ratios named / default; writes JSON to
bench/results/.  No pass/fail: numbers only.

    python3 bench/named_spawn.py -n 10 [--image IMG] [--poll 0.05]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from spawn import HERE, PASSWORD, Daemon, summ  # noqa: E402

USER = "nbench"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def login(d: Daemon) -> tuple[requests.Session, dict[str, str]]:
    s = requests.Session()
    page = s.get(d.url + "/hub/login?next=/hub/home")
    csrf = CSRF_RE.search(page.text).group(1)
    r = s.post(d.url + "/hub/login", data={"_csrf": csrf, "username": USER,
                                           "password": PASSWORD, "next": "/hub/home"},
               headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code == 303, r.text
    home = s.get(d.url + "/hub/home")
    return s, {"X-CSRF-Token": CSRF_RE.search(home.text).group(1), "Origin": d.url}


def one_spawn(d: Daemon, s: requests.Session, headers: dict[str, str], server: str,
              poll: float, timeout: float = 180) -> float:
    api = f"/hub/api/users/{USER}/servers/{server}" if server else f"/hub/api/users/{USER}/server"
    status = f"/user/{USER}/{server}/api/status" if server else f"/user/{USER}/api/status"
    t0 = time.monotonic()
    r = s.post(d.url + api, json={}, headers=headers)
    assert r.status_code == 202, r.text
    while True:
        if s.get(d.url + status, allow_redirects=False).status_code == 200:
            t1 = time.monotonic()
            break
        if time.monotonic() - t0 > timeout:
            raise SystemExit(f"{server or 'default'} did not answer in {timeout}s")
        time.sleep(poll)
    r = s.delete(d.url + api, headers=headers)
    assert r.status_code == 200, r.text
    deadline = time.monotonic() + 60
    while d.containers() and time.monotonic() < deadline:
        time.sleep(0.1)
    return t1 - t0


def table(title: str, stats: dict[str, dict]) -> dict[str, float]:
    """Print one table and its ratios named/default; the ratios."""
    print(f"\n{title}\n")
    print("| server  | n  | p50 s | mean s | min s | max s |")
    print("|---------|----|-------|--------|-------|-------|")
    for kind, st in stats.items():
        print(f"| {kind:<7} | {st['n']:<2} | {st['p50']:.3f} | {st['mean']:.3f}  | "
              f"{st['min']:.3f} | {st['max']:.3f} |")
    ratios = {m: stats["named"][m] / stats["default"][m] for m in ("p50", "mean", "min")}
    print("\n| ratio named/default | p50 | mean | min |")
    print("|---|---|---|---|")
    print(f"| | {ratios['p50']:.3f} | {ratios['mean']:.3f} | {ratios['min']:.3f} |")
    return ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=10, help="rounds (each: one start of each)")
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--tag", default="")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ipydoc-named-bench-"))
    d = Daemon(args.image, root, server_extra="", spawn_extra="max_named_servers = 1")
    d.start()
    times: dict[str, list[float]] = {"default": [], "named": []}
    ready: dict[str, list[float]] = {"default": [], "named": []}
    try:
        d.cli("user", "add", USER, "--password-stdin", input=PASSWORD + "\n")
        s, headers = login(d)
        one_spawn(d, s, headers, "", args.poll)       # warm-up (image cache, volume)
        one_spawn(d, s, headers, "gpu", args.poll)
        for i in range(args.n):
            order = ("default", "named") if i % 2 == 0 else ("named", "default")
            for kind in order:
                times[kind].append(one_spawn(d, s, headers, "gpu" if kind == "named" else "",
                                             args.poll))
            print(f"round {i + 1}/{args.n}: default {times['default'][-1]:.3f} s, "
                  f"named {times['named'][-1]:.3f} s", flush=True)
        for _, kind, user, detail in d.events():
            found = re.search(r"ready in ([\d.]+)s", detail)
            if kind == "spawn" and user == USER and found:
                ready["named" if detail.startswith("server gpu") else "default"].append(
                    float(found[1]))
        for kind in ready:  # the warm-up's are the first ones
            ready[kind] = ready[kind][-args.n:]
    finally:
        if d.proc is not None:
            d.proc.terminate()
            d.proc.wait(30)
        d.cleanup()  # containers, volumes, the users' network and its firewall chain
        shutil.rmtree(root, ignore_errors=True)
    stats = {k: summ(v) for k, v in times.items()}
    ratios = table(f"spawn latency, POST to first 200 through the proxy ({args.n} rounds, "
                   "ABBA)", stats)
    ready_stats = {k: summ(v) for k, v in ready.items()}
    ready_ratios = (table("the daemon's own \"ready in\" (spawn events)", ready_stats)
                    if all(s["n"] for s in ready_stats.values()) else {})
    out = HERE / "results" / f"named_spawn{('-' + args.tag) if args.tag else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"times": times, "stats": stats, "ratios": ratios,
                               "ready": ready, "ready_stats": ready_stats,
                               "ready_ratios": ready_ratios, "rounds": args.n,
                               "image": args.image}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
