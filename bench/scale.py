#!/usr/bin/env python3
"""Flat at scale: the proxy's req/s to one user with 1 route vs with ``--users`` routes.

Two daemons from the working tree (tests/support.py's ``Daemon``: temp state dir, free
port, unique ``docker.instance``), the same config, side by side in one run:

- **one**: one user with a session and a running server record (a route);
- **many**: ``--users`` users, each with a session and a route.

Every route points at one stand-in server (nginx on loopback answering 200 to any path:
one port behind many routes, so the backend costs the same for both).  Users, sessions
and server records are written straight into each daemon's Redis, with the keys of
``ipydoc/state/keys.py`` and a cookie signed with the daemon's secret (no 1,000 argon2
logins); the daemon learns each route on its first miss (``route_from_store``), exactly
as it does for a server another daemon started.  Before measuring, every user of
**many** sends one request, so its route table and session cache hold every user.

Then ``wrk`` on ``/user/u0000/api/status`` (one user's cookie), ``--reps`` times, the two
daemons interleaved (order alternating), and the daemons' RSS (VmRSS) after the runs:
the difference is the memory of ``--users - 1`` users with routes and cached sessions.
With ``taskset`` (default) the daemons and their Redis run on CPU 1, wrk on CPU 0.

    .venv/bin/python bench/scale.py [--users 1000] [--reps 3] [--dur 5s] [--conns 10 50]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))
import nginx_conf  # noqa: E402
import tools  # noqa: E402

from ipydoc.access.cookies import SESSION_COOKIE, Signer, load_secret  # noqa: E402
from ipydoc.state.keys import (  # noqa: E402
    ROUTES,
    SERVERS,
    USERS,
    server_key,
    session_key,
    user_key,
    user_sessions_key,
)

import support  # noqa: E402
from support import Daemon, free_port  # noqa: E402


def user_name(i: int) -> str:
    return f"u{i:04d}"


def redis_cli(d: Daemon, script: str) -> None:
    """Run Redis commands (one per line) against the daemon's embedded Redis."""
    sock = d.root / "state" / "redis" / "redis.sock"
    r = subprocess.run(["redis-cli", "-s", str(sock)], input=script, capture_output=True,
                       text=True, check=True)
    if "ERR" in r.stdout:
        raise RuntimeError(r.stdout[:500])


def populate(d: Daemon, n: int, backend: str) -> dict[str, str]:
    """``n`` users with a session and a running server routed to ``backend``; their
    signed session cookies."""
    signer = Signer(load_secret(d.root / "state" / "secret"), "session")
    now = repr(time.time())
    lines, cookies = [], {}
    for i in range(n):
        u = user_name(i)
        sid = secrets.token_urlsafe(32)
        cookies[u] = signer.sign(sid)
        skey = session_key(sid)
        lines += [
            f"HSET {user_key(u)} created {now} password bench-not-a-hash admin 0 disabled 0",
            f"ZADD {USERS} 0 {u}",
            f"HSET {skey} user {u} created {now} csrf {secrets.token_hex(8)}",
            f"EXPIRE {skey} 86400",
            f"SADD {user_sessions_key(u)} {skey}",
            f"HSET {server_key(u)} state running url {backend} token t{secrets.token_hex(16)}"
            f" id bench{i} image stand-in started {now} updated {now}",
            f"SADD {SERVERS} {u}",
            f"HSET {ROUTES} {u} {backend}",
        ]
    redis_cli(d, "\n".join(lines) + "\n")
    return cookies


def warm(d: Daemon, cookies: dict[str, str]) -> float:
    """One request per user (route and session learnt); seconds taken."""
    s = requests.Session()
    t0 = time.monotonic()
    for u, c in cookies.items():
        r = s.get(f"{d.url}/user/{u}/api/status", cookies={SESSION_COOKIE: c},
                  allow_redirects=False, timeout=30)
        if r.status_code != 200:
            raise RuntimeError(f"{u}: {r.status_code} {r.text[:200]}")
    return time.monotonic() - t0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", v)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(cpu: list[str], url: str, cookie: str, conns: int, dur: str) -> dict:
    txt = subprocess.run(cpu + ["wrk", "-t1", f"-c{conns}", f"-d{dur}", "--latency", "-H",
                                f"Cookie: {SESSION_COOKIE}={cookie}", url],
                         capture_output=True, text=True).stdout
    row = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1)),
           "requests": int(re.search(r"(\d+) requests in", txt).group(1))}
    for p in ("50", "99"):
        row[f"p{p}_ms"] = ms(re.search(rf"^\s+{p}%\s+(\S+)", txt, re.M).group(1))
    row["errors"] = " ".join(re.findall(r"(Non-2xx.*|Socket errors.*)", txt))
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=1000, help="users with routes (default 1000)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--dur", default="5s", help="wrk -d per run")
    p.add_argument("--conns", type=int, nargs="+", default=[10, 50])
    p.add_argument("--idle", type=float, default=20.0,
                   help="seconds of idle CPU measured with no traffic (default 20)")
    p.add_argument("--no-pin", action="store_true")
    a = p.parse_args()
    tools.require("wrk", "nginx", *([] if a.no_pin else ["taskset"]))

    srv = [] if a.no_pin else ["taskset", "-c", "1"]
    cli = [] if a.no_pin else ["taskset", "-c", "0"]
    support.TWISTD = srv + support.TWISTD
    root = Path(tempfile.mkdtemp(prefix="ipydoc-scale-bench-"))
    stand_in = root / "stand-in"
    stand_in.mkdir()
    port = free_port()
    backend = f"http://127.0.0.1:{port}"
    overrides = {"spawn": {"cpu_limit": 0}}
    daemons = {"one": Daemon(root / "one", overrides), "many": Daemon(root / "many", overrides)}
    counts = {"one": 1, "many": a.users}
    result: dict = {"users": a.users, "reps": a.reps, "dur": a.dur, "conns": a.conns,
                    "date": time.strftime("%Y%m%dT%H%M%S")}
    rows: dict[tuple[int, str], list[dict]] = {}
    try:
        nginx_conf.start(stand_in, nginx_conf.stand_in_conf(stand_in, port))
        for d in daemons.values():
            d.start()
        rss_empty = {k: rss_mib(d.proc.pid) for k, d in daemons.items()}
        cookies = {k: populate(d, counts[k], backend) for k, d in daemons.items()}
        result["warm_s"] = {k: round(warm(d, cookies[k]), 2) for k, d in daemons.items()}
        # Periodic work (metrics snapshot, activity flush, culler) with no traffic: what
        # grows with the number of users costs CPU here, in the same window for both.
        idle0 = {k: cpu_seconds(d.proc.pid) for k, d in daemons.items()}
        time.sleep(a.idle)
        result["idle_cpu_ms_per_s"] = {
            k: (cpu_seconds(d.proc.pid) - idle0[k]) * 1000 / a.idle for k, d in daemons.items()}
        for k, d in daemons.items():  # warm-up, not recorded
            subprocess.run(cli + ["wrk", "-t1", "-c10", "-d2s", "-H",
                                  f"Cookie: {SESSION_COOKIE}={cookies[k][user_name(0)]}",
                                  f"{d.url}/user/{user_name(0)}/api/status"],
                           capture_output=True)
        names = list(daemons)
        for r in range(a.reps):
            order = names if r % 2 == 0 else names[::-1]
            for c in a.conns:
                for k in order:
                    d = daemons[k]
                    cpu0 = cpu_seconds(d.proc.pid)
                    row = wrk(cli, f"{d.url}/user/{user_name(0)}/api/status",
                              cookies[k][user_name(0)], c, a.dur)
                    row["cpu_us"] = (cpu_seconds(d.proc.pid) - cpu0) / row["requests"] * 1e6
                    row["rep"] = r + 1
                    rows.setdefault((c, k), []).append(row)
                    print(f"rep{r + 1} c{c} {k}: {row['rps']:.0f} req/s p50 {row['p50_ms']:.2f}"
                          f" ms p99 {row['p99_ms']:.2f} ms, daemon CPU {row['cpu_us']:.0f} µs/request"
                          f" {row['errors']}", flush=True)
        # Every user once more: the whole table is still routed (nothing was dropped).
        result["rewarm_s"] = round(warm(daemons["many"], cookies["many"]), 2)
        rss = {k: rss_mib(d.proc.pid) for k, d in daemons.items()}
        result["rss_mib"] = {"empty": rss_empty, "after": rss}
    finally:
        for d in daemons.values():
            try:
                d.stop()
            finally:
                try:
                    d.cleanup_docker()
                except RuntimeError as e:  # dockerd away: say so, stop the rest anyway
                    print(f"cleanup of {d.instance}: {e}", file=sys.stderr)
        nginx_conf.stop(stand_in)

    print("\n| conns | routes | req/s (median) | req/s each rep | p50 ms | p99 ms | "
          "req/s vs 1 route | daemon CPU µs/request (median) | CPU vs 1 route |")
    print("|---|---|---|---|---|---|---|---|---|")
    summary = []
    for c in a.conns:
        base = statistics.median(x["rps"] for x in rows[(c, "one")])
        base_cpu = statistics.median(x["cpu_us"] for x in rows[(c, "one")])
        for k in names:
            xs = rows[(c, k)]
            med = statistics.median(x["rps"] for x in xs)
            summary.append({"conns": c, "routes": counts[k], "rps": med,
                            "ratio": med / base,
                            "p50_ms": statistics.median(x["p50_ms"] for x in xs),
                            "p99_ms": statistics.median(x["p99_ms"] for x in xs),
                            "cpu_us": statistics.median(x["cpu_us"] for x in xs)})
            s = summary[-1]
            each = ", ".join(f"{x['rps']:.0f}" for x in xs)
            print(f"| {c} | {counts[k]} | {med:.0f} | {each} | {s['p50_ms']:.2f} | "
                  f"{s['p99_ms']:.2f} | {s['ratio']:.3f} | {s['cpu_us']:.0f} | "
                  f"{s['cpu_us'] / base_cpu:.3f} |")
    extra = (rss["many"] - rss["one"]) / max(1, a.users - 1)
    print("\n| daemon | routes | RSS empty (MiB) | RSS after (MiB) |\n|---|---|---|---|")
    for k in names:
        print(f"| {k} | {counts[k]} | {rss_empty[k]:.1f} | {rss[k]:.1f} |")
    idle = result["idle_cpu_ms_per_s"]
    print(f"\nidle daemon CPU (no traffic, {a.idle:g} s, same window): one route "
          f"{idle['one']:.2f} ms/s, {a.users} routes {idle['many']:.2f} ms/s")
    print(f"\nper user with a route and a cached session: {extra * 1024:.1f} KiB "
          f"({a.users - 1} users, same run); first request of every user: "
          f"{result['warm_s']['many']} s, again after the runs: {result['rewarm_s']} s")
    result["summary"] = summary
    result["per_user_kib"] = extra * 1024
    result["runs"] = {f"c{c}-{k}": v for (c, k), v in rows.items()}
    out = HERE / "results" / f"scale-{result['date']}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written {out}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
