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

With ``--fleet`` it measures a restart at scale instead (:func:`run_fleet`):
``--users`` users with sessions and ``--servers`` real running containers, from SIGTERM
of the old process (and from ``ipydoc restart`` under ``ipydoc serve``) to every running
server answering through the new one, with no container restarted, and the daemon's
memory per server and per user.

    .venv/bin/python bench/restart.py --fleet [--servers 100] [--users 1000] [--batch 10]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))
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
    p.add_argument("--fleet", action="store_true",
                   help="restart with many users and running servers (see below)")
    p.add_argument("--servers", type=int, default=100, help="--fleet: running servers")
    p.add_argument("--users", type=int, default=1000, help="--fleet: users with sessions")
    p.add_argument("--batch", type=int, default=10, help="--fleet: servers started at once")
    args = p.parse_args()
    if args.fleet:
        return run_fleet(args.servers, args.users, args.batch, args.n)

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


# -- --fleet: a restart with many users and running servers ------------------------------

def _populate_users(d: Daemon, names: list[str]) -> dict[str, str]:
    """Users with a session each, written into the daemon's Redis with the keys of
    ipydoc/state/keys.py (no argon2 login per user); their signed session cookies."""
    import secrets as _secrets

    from ipydoc.access.cookies import Signer, load_secret
    from ipydoc.state.keys import USERS, session_key, user_key, user_sessions_key

    signer = Signer(load_secret(d.root / "state" / "secret"), "session")
    now = repr(time.time())
    lines, cookies = [], {}
    for u in names:
        sid = _secrets.token_urlsafe(32)
        cookies[u] = signer.sign(sid)
        key = session_key(sid)
        lines += [f"HSET {user_key(u)} created {now} password bench-not-a-hash admin 0 "
                  f"disabled 0", f"ZADD {USERS} 0 {u}",
                  f"HSET {key} user {u} created {now} csrf {_secrets.token_hex(8)}",
                  f"EXPIRE {key} 86400", f"SADD {user_sessions_key(u)} {key}"]
    sock = d.root / "state" / "redis" / "redis.sock"
    subprocess.run(["redis-cli", "-s", str(sock)], input="\n".join(lines) + "\n",
                   capture_output=True, text=True, check=True)
    return cookies


def _answering(base: str, cookies: dict[str, str], names: list[str]) -> set[str]:
    """Which of ``names`` answer 200 on /api/status through the proxy now (8 threads)."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    def one(u: str) -> str | None:
        try:
            r = requests.get(f"{base}/user/{u}/api/status", cookies={"ipydoc-session":
                             cookies[u]}, allow_redirects=False, timeout=5)
            return u if r.status_code == 200 else None
        except requests.RequestException:
            return None

    with ThreadPoolExecutor(8) as pool:
        return {u for u in pool.map(one, names) if u}


def _until_all(base: str, cookies: dict[str, str], names: list[str], t0: float,
               after: float = 0.0, timeout: float = 120) -> float:
    """Seconds from ``t0`` until every one of ``names`` has answered 200 (asked only from
    ``after`` on: answers of an old process do not count)."""
    pending = set(names)
    while pending and time.monotonic() - t0 < timeout:
        if time.monotonic() < after:
            time.sleep(0.005)
            continue
        pending -= _answering(base, cookies, sorted(pending))
    if pending:
        raise RuntimeError(f"{len(pending)} servers never answered: {sorted(pending)[:5]}")
    return time.monotonic() - t0


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _started_at(d: Daemon) -> dict[str, str]:
    from support import docker

    ids = d.containers(all=False)
    if not ids:
        return {}
    out = docker("inspect", "-f", "{{.Name}} {{.State.StartedAt}}", *ids)
    return dict(line.split(" ", 1) for line in out.splitlines() if line.strip())


def _sigterm_restart(d: Daemon, cookies: dict[str, str],
                     names: list[str]) -> tuple[float, float, float]:
    """SIGTERM to the daemon, then its next process: seconds until the old one exited,
    the new one's login page answers, and all of ``names`` answer through it."""
    old = d.proc
    t0 = time.monotonic()
    old.send_signal(signal.SIGTERM)
    old.wait(60)
    exited = time.monotonic() - t0
    d.proc = None
    d.start(wait=False)
    d.wait_ready(timeout=120)
    ready = time.monotonic() - t0
    return exited, ready, _until_all(d.url, cookies, names, t0)


def _sigterm_empty(root: Path) -> float:
    """The same restart of an empty daemon (its own state dir, no Docker objects): the
    baseline of process start-up on this machine now, for the ratio."""
    e = Daemon(root / f"empty-{time.monotonic_ns()}")
    try:
        e.start()
        _, ready, _ = _sigterm_restart(e, {}, [])
        return round(ready, 3)
    finally:
        e.stop()
        e.cleanup_docker()


def run_fleet(n_servers: int, n_users: int, batch: int, reps: int) -> int:
    """See the module docstring (``--fleet``)."""
    root = Path(tempfile.mkdtemp(prefix="ipydoc-fleet-bench-"))
    d = Daemon(root, {"auth": {"stop_on_logout": False},
                      "spawn": {"concurrency": batch, "cpu_limit": 0, "mem_limit": "512M",
                                "start_timeout": 300.0},
                      "cull": {"idle_timeout": 0.0}})
    users = [f"u{i:04d}" for i in range(max(n_users, n_servers))]
    with_server = users[:n_servers]
    result: dict = {"servers": n_servers, "users": len(users), "batch": batch, "sigterm": [],
                    "sigterm_empty": [], "serve_restart": []}
    try:
        d.start()
        time.sleep(2)
        result["rss_empty_mib"] = _rss_mib(d.proc.pid)
        result["sigterm_empty"].append(_sigterm_empty(root))
        cookies = _populate_users(d, users)
        _answering(d.url, cookies, users)  # every session read once (and cached)
        result["rss_users_mib"] = _rss_mib(d.proc.pid)
        began = time.monotonic()
        for i in range(0, n_servers, batch):
            group = with_server[i:i + batch]
            for u in group:
                r = d.cli("server", "start", u, "--no-wait")
                assert r.returncode == 0, r.stderr
            _until_all(d.url, cookies, group, time.monotonic(), timeout=600)
            print(f"{i + len(group)} servers running ({time.monotonic() - began:.0f} s)",
                  flush=True)
        result["start_all_s"] = round(time.monotonic() - began, 1)
        _answering(d.url, cookies, users)
        result["rss_servers_mib"] = _rss_mib(d.proc.pid)
        before = _started_at(d)
        assert len(before) == n_servers, f"{len(before)} containers running"
        for rep in range(reps):  # SIGTERM, then the next process (as systemd does)
            if rep:
                result["sigterm_empty"].append(_sigterm_empty(root))
            exited, ready, total = _sigterm_restart(d, cookies, with_server)
            result["sigterm"].append({"old_exited_s": round(exited, 3),
                                      "new_ready_s": round(ready, 3),
                                      "all_answering_s": round(total, 3)})
            print(f"SIGTERM rep{rep + 1}: old exited {exited:.2f} s, new ready {ready:.2f} s, "
                  f"all {n_servers} "
                  f"answering through the new one {total:.2f} s", flush=True)
        _answering(d.url, cookies, users)  # every user's session once more
        result["rss_fresh_full_mib"] = _rss_mib(d.proc.pid)
        d.stop()
        d.serve = True
        d.start()
        _until_all(d.url, cookies, with_server, time.monotonic())
        for rep in range(reps):
            t0 = time.monotonic()
            r = subprocess.run(CLI + ["--config", str(d.config_path), "--json", "restart"],
                               capture_output=True, text=True, timeout=600)
            cli_s = time.monotonic() - t0
            out = json.loads(r.stdout) if r.stdout.strip() else {"ok": False}
            last = json.loads((root / "state" / "supervisor.json").read_text())["last"]
            total = _until_all(d.url, cookies, with_server, t0, after=t0 + cli_s)
            result["serve_restart"].append({
                "ok": out.get("ok", False), "cli_s": round(cli_s, 3),
                "new_ready_s": last.get("seconds_ready"), "old_gone_s": last.get("seconds_total"),
                "all_answering_s": round(total, 3)})
            print(f"ipydoc restart rep{rep + 1}: {result['serve_restart'][-1]}", flush=True)
        after = _started_at(d)
        import re
        result["reconcile_s"] = [float(m) for m in re.findall(
            rf"reconciled: {n_servers} running servers adopted, \d+ stale routes dropped "
            r"\(([\d.]+) s\)", d.log())]
        result["restarted_containers"] = sorted(k for k in before if after.get(k) != before[k])
        result["containers_after"] = len(after)
    finally:
        d.stop()
        d.cleanup_docker()

    empty, with_users = result["rss_empty_mib"], result["rss_users_mib"]
    per_user = (with_users - empty) / len(users)
    per_server = (result["rss_servers_mib"] - with_users) / max(1, n_servers)
    fresh_per_server = (result["rss_fresh_full_mib"] - with_users) / max(1, n_servers)
    result.update(per_user_kib=per_user * 1024, per_server_mib=per_server,
                  fresh_per_server_mib=fresh_per_server)
    print(f"\n{n_servers} running servers, {len(users)} users; started in batches of {batch} "
          f"in {result['start_all_s']} s")
    print("\n| restart | rep | old process gone (s) | new ready (s) | all servers answering "
          "through the new one (s) |\n|---|---|---|---|---|")
    for i, row in enumerate(result["sigterm"], 1):
        print(f"| SIGTERM + start | {i} | {row['old_exited_s']} | {row['new_ready_s']} | "
              f"{row['all_answering_s']} |")
    for i, ready in enumerate(result["sigterm_empty"], 1):
        print(f"| SIGTERM + start, empty daemon (baseline) | {i} | | {ready} | |")
    for i, row in enumerate(result["serve_restart"], 1):
        print(f"| ipydoc restart (serve) | {i} | {row['old_gone_s']} | {row['new_ready_s']} | "
              f"{row['all_answering_s']} |")
    if result["reconcile_s"]:
        print(f"\nreconcile of {n_servers} running servers (daemon log, every start): "
              f"median {statistics.median(result['reconcile_s']):.3f} s, "
              f"max {max(result['reconcile_s']):.3f} s")
    print(f"\ncontainers restarted: {len(result['restarted_containers'])} "
          f"(of {n_servers}; {result['containers_after']} running after)")
    print("\n| daemon state | RSS (MiB) |\n|---|---|")
    for k, label in (("rss_empty_mib", "empty (fresh)"),
                     ("rss_users_mib", f"{len(users)} users, sessions cached"),
                     ("rss_servers_mib", f"+ {n_servers} servers started by it"),
                     ("rss_fresh_full_mib", "fresh process, all adopted, all users seen")):
        print(f"| {label} | {result[k]:.1f} |")
    print(f"\nper user: {per_user * 1024:.1f} KiB; per server: {per_server:.2f} MiB (process "
          f"that started them), {fresh_per_server:.2f} MiB (fresh process that adopted them)")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out_path = results / f"restart-fleet-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_path.write_text(json.dumps(result, indent=1))
    print(f"written {out_path}")
    ok = not result["restarted_containers"] and all(r["ok"] for r in result["serve_restart"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
