#!/usr/bin/env python3
"""Cold-spawn latency and memory of ipydoc, measured from the outside like a browser.

Starts its own daemon (``twistd -n ipydoc``: temp state dir, free port, unique
``docker.instance``, embedded Redis), creates users over the CLI, then:

cold  For each of ``-n`` users, one after another: GET /hub/login for the CSRF token
      (untimed); t0 just before POST /hub/login; then GET /user/<u>/api/status through
      ipydoc's proxy with the session cookie every ``--poll`` s (redirects not followed)
      until 200 = t1.  Latency = t1 - t0.  The server is then stopped (POST /hub/stop/<u>
      with the CSRF token from /hub/home; the daemon removes the container) so every spawn
      starts from no container.  Before stopping, the breakdown is collected (untimed):
      the daemon's ``login`` and ``spawn`` events (Redis stream ids are ms wall-clock
      times), ``docker inspect`` Created / State.StartedAt, the first line and the
      "is running at" line of ``docker logs --timestamps``, and "ready in X s" from the
      daemon log.  All clocks are the host's (Docker runs locally).
mem   ``--keep`` users log in at the same moment (a burst, like the peer's ``burst``
      test); once all answer 200 through the proxy and ``--settle`` s have passed, VmRSS
      of the twistd process and of its redis-server child (/proc) and ``docker stats
      --no-stream`` of the containers are recorded (also with 0 servers, before).

Prints a markdown table, writes JSON to bench/results/, removes the daemon's containers
and volumes.  No pass/fail: numbers only.

    python3 bench/spawn.py -n 10 --keep 10 --settle 10 [--image IMG] [--tag T]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CLI = [sys.executable, "-m", "ipydoc.cli"]
PASSWORD = "bench-password-1"
CSRF_RE = re.compile(r'name="_csrf" value="([^"]+)"')


def pct(xs: list[float], p: float) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summ(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "min": min(xs), "p50": pct(xs, 50), "p90": pct(xs, 90),
            "max": max(xs), "mean": statistics.mean(xs)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True).stdout.strip()


def iso_ts(s: str) -> float:
    """Docker's RFC 3339 with nanoseconds -> epoch seconds."""
    s = s.strip().replace("Z", "+00:00")
    m = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)", s)
    frac = (m.group(2) or ".0")[:7]
    return datetime.fromisoformat(m.group(1) + frac + m.group(3)).timestamp()


def rss_mib(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def children(ppid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
                if int(st.rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def mem_unit(v: str) -> float:
    num = float(re.match(r"[\d.]+", v).group(0))
    unit = v[len(re.match(r"[\d.]+", v).group(0)):]
    return num * {"B": 2**-20, "KiB": 2**-10, "kB": 2**-10, "MiB": 1, "MB": 1,
                  "GiB": 1024, "GB": 1024}[unit]


class Daemon:
    def __init__(self, image: str, root: Path, spawn_extra: str = "", server_extra: str = "") -> None:
        self.image = image
        self.spawn_extra = spawn_extra
        self.server_extra = server_extra
        self.root = root
        self.port = free_port()
        self.instance = "bench" + secrets.token_hex(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = root / "ipydoc.toml"
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.config.write_text(f"""
[server]
listen = ["tcp:{self.port}:interface=127.0.0.1"]
state_dir = "{self.root / 'state'}"
{self.server_extra}
[spawn]
image = "{self.image}"
start_timeout = 120.0
{self.spawn_extra}
[docker]
instance = "{self.instance}"
volume_prefix = "{self.instance}-home-"
""")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            TWISTD + ["-n", "--pidfile", str(self.root / "twistd.pid"), "ipydoc",
                      "--config", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
            cwd=self.root)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"daemon exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(self.url + "/hub/login", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise SystemExit("daemon did not come up")

    def cli(self, *args: str, input: str | None = None) -> str:
        r = subprocess.run(CLI + ["--config", str(self.config), *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise SystemExit(f"ipydoc {' '.join(args)}: {r.stderr}")
        return r.stdout

    def redis_pid(self) -> int | None:
        for p in children(self.proc.pid):
            try:
                if b"redis-server" in Path(f"/proc/{p}/cmdline").read_bytes():
                    return p
            except OSError:
                pass
        return None

    def events(self) -> list[tuple[float, str, str, str]]:
        sock = self.root / "state" / "redis" / "redis.sock"
        out = subprocess.run(["redis-cli", "-s", str(sock), "--json", "XRANGE",
                              "ipydoc:events", "-", "+"], capture_output=True, text=True).stdout
        rows = []
        for entry_id, flat in json.loads(out or "[]"):
            d = dict(zip(flat[::2], flat[1::2]))
            rows.append((int(entry_id.split("-")[0]) / 1000, d.get("kind", ""),
                         d.get("user", ""), d.get("detail", "")))
        return rows

    def containers(self) -> list[str]:
        return docker("ps", "-aq", "--filter", f"label=ipydoc.instance={self.instance}").split()

    def mem(self) -> dict:
        snap = {"daemon_rss_mib": rss_mib(self.proc.pid)}
        rp = self.redis_pid()
        snap["redis_rss_mib"] = rss_mib(rp) if rp else None
        snap["daemon_plus_redis_mib"] = (snap["daemon_rss_mib"] or 0) + (snap["redis_rss_mib"] or 0)
        ids = docker("ps", "-q", "--filter", f"label=ipydoc.instance={self.instance}").split()
        snap["containers"] = len(ids)
        if ids:
            out = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", *ids)
            snap["docker_stats_mem_mib"] = summ([mem_unit(l.split("/")[0].strip())
                                                 for l in out.splitlines()])
        return snap

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        ids = self.containers()
        if ids:
            docker("rm", "-f", *ids)
        vols = docker("volume", "ls", "-q", "--filter", f"name={self.instance}-home-").split()
        if vols:
            docker("volume", "rm", "-f", *vols)
        # The users' network (and its host firewall chain) outlives a daemon on purpose;
        # a bench's must not, or Docker's address pools run out after a few dozen runs.
        from ipydoc.backends.docker_network import bridge_interface, teardown_commands

        for nid in docker("network", "ls", "-q", "--filter",
                          f"label=ipydoc.instance={self.instance}").split():
            net = json.loads(docker("network", "inspect", nid) or "[{}]")[0]
            docker("network", "rm", nid)
            if net.get("Id"):
                for argv in teardown_commands(bridge_interface(net)):
                    subprocess.run(argv, capture_output=True)


def login(d: Daemon, user: str, poll: float) -> tuple[requests.Session, float, float, float]:
    """Log in and wait for 200 through the proxy: (session, t0 wall, post s, ready s)."""
    s = requests.Session()
    csrf = CSRF_RE.search(s.get(d.url + "/hub/login").text).group(1)
    t0w = time.time()
    t0 = time.perf_counter()
    r = s.post(d.url + "/hub/login", data={"_csrf": csrf, "username": user,
                                           "password": PASSWORD, "next": ""},
               headers={"Origin": d.url}, allow_redirects=False)
    t_post = time.perf_counter() - t0
    assert r.status_code == 303, (r.status_code, r.text[:300])
    next_check = t0 + 1
    while True:
        st = s.get(f"{d.url}/user/{user}/api/status", allow_redirects=False).status_code
        if st == 200:
            break
        if time.perf_counter() > next_check:  # a failed start never answers 200: stop polling
            next_check += 1
            failed = [e for e in d.events() if e[1] == "spawn-failed" and e[2] == user and e[0] >= t0w]
            if failed or time.perf_counter() - t0 > 300:
                raise SystemExit(f"{user}: start failed: {failed[-1][3] if failed else f'not ready in 300 s ({st})'}")
        time.sleep(poll)
    return s, t0w, t_post, time.perf_counter() - t0


def stop_server(d: Daemon, s: requests.Session, user: str) -> float:
    t = time.perf_counter()
    csrf = CSRF_RE.search(s.get(d.url + "/hub/home").text).group(1)
    r = s.post(f"{d.url}/hub/stop/{user}", data={"_csrf": csrf}, headers={"Origin": d.url},
               allow_redirects=False)
    assert r.status_code == 303, (r.status_code, r.text[:300])
    return time.perf_counter() - t


def breakdown(d: Daemon, user: str, t0w: float, t_post: float, ready: float) -> dict:
    """Stage times (s from t0) of one spawn, from events, Docker and the container log."""
    b: dict = {"post_answered": t_post, "ready_via_proxy": ready}
    ev = [e for e in d.events() if e[2] == user and e[0] >= t0w - 1]
    login_ev = [e for e in ev if e[1] == "login"]
    spawn_ev = [e for e in ev if e[1] == "spawn"]
    if login_ev:
        b["login_event"] = login_ev[-1][0] - t0w
    if spawn_ev:
        b["daemon_saw_ready"] = spawn_ev[-1][0] - t0w
        m = re.search(r"ready in ([\d.]+)s", spawn_ev[-1][3])
        b["daemon_ready_in_s"] = float(m.group(1)) if m else None
    cname = f"{d.instance}-{user}"
    info = json.loads(docker("inspect", cname) or "[]")
    if info:
        b["container_created"] = iso_ts(info[0]["Created"]) - t0w
        b["container_started"] = iso_ts(info[0]["State"]["StartedAt"]) - t0w
    logs = subprocess.run(["docker", "logs", "--timestamps", cname], capture_output=True,
                          text=True)
    lines = [l for l in (logs.stdout + logs.stderr).splitlines() if l.strip()]
    stamped = sorted((iso_ts(l.split(" ", 1)[0]), l.split(" ", 1)[1] if " " in l else "")
                     for l in lines if re.match(r"\d{4}-\d\d-\d\dT", l))
    if stamped:
        b["jupyter_first_log"] = stamped[0][0] - t0w
        b["jupyter_first_log_line"] = stamped[0][1][:120]
        running = [t for t, txt in stamped if "is running at" in txt]
        if running:
            b["jupyter_running_log"] = running[0] - t0w
    m = re.findall(rf"server for {user} ready in ([\d.]+)", d.log_path.read_text())
    b["daemon_log_ready_in_s"] = float(m[-1]) if m else None
    return b


STAGES = [  # (label, from key, to key)
    ("login POST handled (argon2, session) -> login event", None, "login_event"),
    ("login event -> container created (image/inspect/volume/create)", "login_event", "container_created"),
    ("container created -> started (docker start)", "container_created", "container_started"),
    ("container started -> first jupyter log line", "container_started", "jupyter_first_log"),
    ("first log line -> 'is running at'", "jupyter_first_log", "jupyter_running_log"),
    ("'is running at' -> daemon sees 200 (route set)", "jupyter_running_log", "daemon_saw_ready"),
    ("daemon ready -> client sees 200 via proxy", "daemon_saw_ready", "ready_via_proxy"),
]


def stage_table(rows: list[dict]) -> tuple[str, dict]:
    out = ["| stage | p50 s | min s | max s |", "|---|---|---|---|"]
    agg = {}
    for label, a, b in STAGES:
        xs = [r["breakdown"][b] - (r["breakdown"][a] if a else 0) for r in rows
              if b in r["breakdown"] and (a is None or a in r["breakdown"])]
        agg[label] = summ(xs)
        if xs:
            out.append(f"| {label} | {pct(xs, 50):.3f} | {min(xs):.3f} | {max(xs):.3f} |")
    tot = [r["ready_s"] for r in rows]
    out.append(f"| total (login POST -> 200 via proxy) | {pct(tot, 50):.3f} | {min(tot):.3f} | {max(tot):.3f} |")
    return "\n".join(out), agg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=10, help="cold spawns, one after another")
    ap.add_argument("--keep", type=int, default=10, help="servers kept running for the memory phase (0: skip)")
    ap.add_argument("--settle", type=float, default=10, help="seconds idle before the memory snapshot")
    ap.add_argument("--poll", type=float, default=0.02)
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--cpu-limit", type=float, help="spawn.cpu_limit (default: the daemon's, 1.0; 0: none)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--keep-root", action="store_true", help="keep the temp state dir (daemon log)")
    a = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ipydoc-bench-"))
    d = Daemon(a.image, root, "" if a.cpu_limit is None else f"cpu_limit = {a.cpu_limit}")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    result: dict = {"tool": "ipydoc", "date": stamp, "tag": a.tag, "image": a.image,
                    "n": a.n, "keep": a.keep, "poll_s": a.poll, "cpu_limit": a.cpu_limit, "instance": d.instance}
    try:
        d.start()
        users = [f"c{i:02d}" for i in range(a.n)] + [f"m{i:02d}" for i in range(a.keep)]
        for u in users:
            d.cli("user", "add", u, "--password-stdin", input=PASSWORD + "\n")
        rows = []
        for u in users[:a.n]:
            s, t0w, t_post, ready = login(d, u, a.poll)
            b = breakdown(d, u, t0w, t_post, ready)
            stop_s = stop_server(d, s, u)
            rows.append({"user": u, "post_s": t_post, "ready_s": ready, "stop_s": stop_s,
                         "breakdown": b})
            print(f"  {u}: POST {t_post:.3f}s, 200 via proxy at {ready:.3f}s "
                  f"(daemon 'ready in' {b.get('daemon_ready_in_s')}s), stop {stop_s:.2f}s", flush=True)
        if rows:
            result["cold_rows"] = rows
            result["cold_ready_s"] = summ([r["ready_s"] for r in rows])
            table, agg = stage_table(rows)
            result["cold_stages"] = agg
        if a.keep:
            result["mem_0_servers"] = d.mem()
            keep = users[a.n:]
            with concurrent.futures.ThreadPoolExecutor(len(keep)) as pool:
                res = list(pool.map(lambda u: login(d, u, 0.05), keep))
            result["burst_ready_s"] = summ([r[3] for r in res])
            time.sleep(a.settle)
            result["mem_n_servers"] = d.mem()
            print(f"  burst of {a.keep}: p50 {result['burst_ready_s']['p50']:.2f}s, "
                  f"max {result['burst_ready_s']['max']:.2f}s; mem {json.dumps(result['mem_n_servers'])}",
                  flush=True)
    finally:
        d.stop()
        d.cleanup()
        left = d.containers()
        result["leftover_containers"] = left
        if not a.keep_root:
            shutil.rmtree(root, ignore_errors=True)
        else:
            result["root"] = str(root)

    print(f"\n## ipydoc ({a.image}) {stamp} {a.tag}\n")
    if rows:
        c = result["cold_ready_s"]
        print("| test | n | min s | p50 s | p90 s | max s |\n|---|---|---|---|---|---|")
        print(f"| cold, sequential | {c['n']} | {c['min']:.3f} | {c['p50']:.3f} | {c['p90']:.3f} | {c['max']:.3f} |")
        if a.keep:
            bu = result["burst_ready_s"]
            print(f"| burst | {bu['n']} | {bu['min']:.3f} | {bu['p50']:.3f} | {bu['p90']:.3f} | {bu['max']:.3f} |")
        print("\nWhere the cold spawn goes (s, per stage):\n\n" + table)
    if a.keep:
        m0, m = result["mem_0_servers"], result["mem_n_servers"]
        ds = m.get("docker_stats_mem_mib", {})
        print("\n| memory | 0 servers | %d servers |\n|---|---|---|" % a.keep)
        print(f"| daemon (twistd) RSS MiB | {m0['daemon_rss_mib']:.1f} | {m['daemon_rss_mib']:.1f} |")
        print(f"| embedded redis-server RSS MiB | {m0['redis_rss_mib']:.1f} | {m['redis_rss_mib']:.1f} |")
        print(f"| daemon + redis MiB | {m0['daemon_plus_redis_mib']:.1f} | {m['daemon_plus_redis_mib']:.1f} |")
        if ds.get("n"):
            print(f"| container (docker stats) MiB, p50 / max | – | {ds['p50']:.1f} / {ds['max']:.1f} |")
    out_dir = HERE / "results"
    out_dir.mkdir(exist_ok=True)
    fn = out_dir / f"spawn-ipydoc-{stamp}{('-' + a.tag) if a.tag else ''}.json"
    fn.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {fn}" + (f"; LEFTOVER containers {left}" if left else ""))


if __name__ == "__main__":
    main()
