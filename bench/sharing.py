#!/usr/bin/env python3
"""What the share check costs a guest (issue 19 §3): requests through the proxy to the
same server by its owner and by guests, in the same run, as ratios to the owner.

One daemon (``bench/spawn.py``'s ``Daemon``), alice's server running; bob has a direct
``rw`` share of it, dave an ``rw`` share through a group (a group guest costs one Redis
read per request: his memberships), carol a personal token with a direct share (compare
with alice's own token: a token costs a Redis read per request, a cookie's session is
cached).
``wrk -t1 -c CONNS --latency`` on ``GET /user/alice/api/status`` for each caller, the
order rotated every repetition, medians of requests/s and p50 latency.  No pass/fail.

    python3 bench/sharing.py [--reps 3] [--dur 5s] [--conns 10]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import tools  # noqa: E402
from spawn import PASSWORD, Daemon  # noqa: E402

CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def login(d: Daemon, user: str) -> requests.Session:
    s = requests.Session()
    page = s.get(d.url + "/hub/login")
    r = s.post(d.url + "/hub/login", data={"_csrf": CSRF_RE.search(page.text).group(1),
                                           "username": user, "password": PASSWORD},
               headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code == 303, r.text
    return s


def token_of(d: Daemon, s: requests.Session, user: str) -> str:
    home = s.get(d.url + "/hub/home").text
    r = s.post(d.url + f"/hub/api/users/{user}/tokens", json={"scopes": ["servers"]},
               headers={"X-CSRF-Token": CSRF_RE.search(home).group(1), "Origin": d.url})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def wrk(url: str, header: str, dur: str, conns: int) -> tuple[float, float]:
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{dur}", "--latency", "-H", header,
                          url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{header.split(':')[0]}: {non2xx.group(1)} refused answers")
    return rps, float(m.group(1)) * UNIT[m.group(2)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", default="5s")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    args = ap.parse_args()
    tools.require("wrk", "docker")
    d = Daemon(args.image, Path(tempfile.mkdtemp(prefix="ipydoc-share-bench-")),
               server_extra="[auth]\nstart_on_login = false")
    d.start()
    try:
        for u in ("alice", "bob", "carol", "dave"):
            d.cli("user", "add", u, "--password-stdin", input=PASSWORD + "\n")
        d.cli("group", "add", "course")
        d.cli("group", "members", "add", "course", "dave")
        d.cli("share", "add", "alice", "bob")
        d.cli("share", "add", "alice", "carol")
        d.cli("share", "add", "alice", "--group", "course")
        d.cli("server", "start", "alice")
        sessions = {u: login(d, u) for u in ("alice", "bob", "dave", "carol")}
        url = d.url + "/user/alice/api/status"
        deadline = time.monotonic() + 120
        while sessions["alice"].get(url).status_code != 200:
            if time.monotonic() > deadline:
                raise SystemExit("alice's server did not start")
            time.sleep(0.2)

        def cookie(u: str) -> str:
            return "Cookie: " + "; ".join(f"{k}={v}" for k, v in sessions[u].cookies.items())

        callers = {"owner (alice, cookie)": cookie("alice"),
                   "owner (alice, token)": "Authorization: token "
                   + token_of(d, sessions["alice"], "alice"),
                   "guest, direct share (bob, cookie)": cookie("bob"),
                   "guest, group share (dave, cookie)": cookie("dave"),
                   "guest, token (carol)": "Authorization: token "
                   + token_of(d, sessions["carol"], "carol")}
        for header in callers.values():  # warm-up, and every caller is let through
            wrk(url, header, "1s", args.conns)
        names = list(callers)
        runs: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for n in order:
                runs[n].append(wrk(url, callers[n], args.dur, args.conns))
            print(f"rep {rep + 1}/{args.reps} done", flush=True)
    finally:
        d.stop()
        d.cleanup()
    base_rps = statistics.median(r for r, _ in runs[names[0]])
    base_p50 = statistics.median(p for _, p in runs[names[0]])
    print(f"\nGET /user/alice/api/status, wrk -t1 -c{args.conns} -d{args.dur}, "
          f"{args.reps} reps (medians, rotated order)\n")
    print("| caller | req/s | p50 ms | req/s ratio to owner | p50 ratio to owner |")
    print("|---|---|---|---|---|")
    table = {}
    for n in names:
        rps = statistics.median(r for r, _ in runs[n])
        p50 = statistics.median(p for _, p in runs[n])
        table[n] = {"rps": rps, "p50_ms": p50, "rps_ratio": rps / base_rps,
                    "p50_ratio": p50 / base_p50}
        print(f"| {n} | {rps:.0f} | {p50:.2f} | {rps / base_rps:.3f} | {p50 / base_p50:.3f} |")
    out = HERE / "results" / f"sharing-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "table": table, "args": vars(args)}, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
