#!/usr/bin/env python3
"""Proxy overhead of ipydoc, as ratios against direct (and CHP / nginx) in the same run.

The method of ``../shared/peer/run_proxy_bench.sh``: ``wrk -t1 --latency`` on
``GET /user/<u>/api/status``, server and proxies pinned to CPU 1, the load generator
(wrk, the WebSocket client) to CPU 0, repetitions in rotated order, medians.

Starts its own daemon (``bench/spawn.py``'s ``Daemon``: temp state dir, free port, unique
``docker.instance``, embedded Redis) under ``taskset -c 1`` (its redis-server inherits),
with ``spawn.cpu_limit = 0`` (no CFS quota, like the peer's bare process), creates one
user, logs in (the daemon starts the container), then pins the container
(``docker update --cpuset-cpus 1``) and the ``docker-proxy`` of its published port.
Targets, all in front of the same jupyter_server:

direct     wrk to the container's published port (the URL ipydoc routes to, from the
           embedded Redis: ``HGET ipydoc:server:<u> url|token``), ``Authorization: token``
ipydoc     wrk to the daemon's port, ``Cookie: ipydoc-session=...`` from the login
chp        configurable-http-proxy (/tmp/peer-chp), ``--default-target`` = that URL
nginx      nginx, upstream keepalive, as ``../shared/peer/nginx.conf``
direct-ip  (``--direct-ip``) the container's own address:8888, bypassing docker-proxy
relay      (``--relay``) ``bench/twisted_relay.py``: a bare Twisted byte relay (no HTTP) on
           the daemon's CPU, the ceiling of any proxy written on Twisted here

Then the kernel WebSocket round trip (``bench/proxy_ws.py``, the logic of the peer's
``run_ws_bench.py``) for the same targets.  Optionally (``--pyspy S``), after the
measured runs, ``py-spy record`` of the daemon during an extra wrk run through ipydoc.

Prints a markdown table, writes ``results/proxy-ipydoc-<date>[-tag].json`` and the raw
wrk outputs to ``results/proxy-ipydoc-<date>[-tag]/``; tears down everything it started.

    python3 bench/proxy.py [--reps 3] [--dur 10s] [--conns 10 50] [--ws-n 500] [--pyspy 10] [--access-log off]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import nginx_conf  # noqa: E402
import spawn  # noqa: E402  (Daemon, login, free_port, docker)
import stats  # noqa: E402
import tools  # noqa: E402

CHP = "/tmp/peer-chp/node_modules/.bin/configurable-http-proxy"
WS_PYTHON = "/tmp/peer-venv/bin/python"
USER = "p00"
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}
LABEL = {"direct": "direct", "ipydoc": "ipydoc", "chp": "configurable-http-proxy",
         "nginx": "nginx (keepalive upstream)", "direct-ip": "direct, container IP (no docker-proxy)",
         "relay": "bare Twisted relay (no HTTP)",
         "minimal": "minimal HTTP proxy on Twisted (bench only)",
         "ipydoc-lean": "ipydoc, lean front end", "ipydoc-twisted": "ipydoc, twisted.web front end",
         "ipydoc-baseline": "ipydoc, baseline code (--baseline)"}

def ms(v: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", v)
    return float(m.group(1)) * UNIT[m.group(2)]


def parse_seconds(dur: str) -> float:
    """wrk's duration (``10s``, ``2m``, ``500ms``) in seconds."""
    m = re.match(r"([\d.]+)(ms|s|m)?$", dur)
    return float(m.group(1)) * {"ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]


def parse_wrk(txt: str) -> dict:
    r = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", txt).group(1))}
    for p in ("50", "75", "90", "99"):
        r[f"p{p}_ms"] = ms(re.search(rf"^\s+{p}%\s+(\S+)", txt, re.M).group(1))
    r["requests"] = int(re.search(r"(\d+) requests in", txt).group(1))
    r["errors"] = " ".join(re.findall(r"(Non-2xx.*|Socket errors.*)", txt))
    return r


def proc_cpu(pid: int, which: str = "both") -> float:
    """utime + stime (or one of them) of a process (all its threads), seconds."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = {"user": int(f[11]), "sys": int(f[12]), "both": int(f[11]) + int(f[12])}[which]
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def cpu_busy() -> dict[str, float]:
    """Busy jiffies per CPU so far (/proc/stat: all but idle and iowait)."""
    out = {}
    for l in Path("/proc/stat").read_text().splitlines():
        f = l.split()
        if f[0].startswith("cpu") and f[0] != "cpu":
            v = [int(x) for x in f[1:]]
            out[f[0]] = (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")
    return out


def preemptions(pids: list[int]) -> int:
    """Times these processes (all their threads) were preempted so far
    (``nonvoluntary_ctxt_switches``): the container's count says how often a proxy woken
    on its core took the CPU from jupyter_server in the middle of its work."""
    n = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.startswith("nonvoluntary_ctxt_switches:"):
                        n += int(line.split()[1])
            except OSError:
                pass
    return n


def set_batch(pids: list[int]) -> None:
    """``SCHED_BATCH`` for every thread of these processes (``--sched batch``): woken,
    they no longer preempt what runs on their CPU, so they run less often, longer."""
    for pid in pids:
        subprocess.run(["chrt", "-b", "-a", "-p", "0", str(pid)], check=True, capture_output=True)


def tcp_active_opens() -> int:
    """Host-namespace TCP connect()s so far (/proc/net/snmp Tcp: ActiveOpens)."""
    rows = [l.split() for l in Path("/proc/net/snmp").read_text().splitlines() if l.startswith("Tcp:")]
    return int(rows[1][rows[0].index("ActiveOpens")])


class CpuMeter:
    """CPU seconds per component over one run: processes by pid, the container by cgroup."""

    def __init__(self, pids: dict[str, list[int]], cgroup_usage: Path | None) -> None:
        self.pids = pids
        self.cgroup_usage = cgroup_usage
        self.cgroup_procs = cgroup_usage.parent / "cgroup.procs" if cgroup_usage else None

    def snap(self) -> dict[str, float]:
        s = {k: sum(proc_cpu(p) for p in ps) for k, ps in self.pids.items()}
        s["daemon-sys"] = sum(proc_cpu(p, "sys") for p in self.pids["daemon"])
        s["tcp-connects"] = tcp_active_opens()
        s.update({f"host-{k}-busy": v for k, v in cpu_busy().items()})
        if self.cgroup_usage and self.cgroup_usage.exists():
            s["container"] = int(self.cgroup_usage.read_text()) / 1e9
        if self.cgroup_procs and self.cgroup_procs.exists():
            s["container-preempted"] = preemptions(
                [int(x) for x in self.cgroup_procs.read_text().split()])
        return s

    @staticmethod
    def delta(a: dict, b: dict, seconds: float) -> dict[str, float]:
        """Share of one core used by each component between snaps a and b."""
        out = {k: round((b[k] - a[k]) / seconds, 3) for k in b if k in a}
        for count in ("tcp-connects", "container-preempted"):  # counts, not rates
            if count in b and count in a:
                out[count] = b[count] - a[count]
        return out


def pin(pid: int, cpu: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", cpu, str(pid)], check=True, capture_output=True)


def docker_proxy_pids(host_port: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                argv = Path(f"/proc/{d}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"docker-proxy") and b"-host-port" in argv:
                i = argv.index(b"-host-port")
                if argv[i + 1] == str(host_port).encode():
                    out.append(int(d))
    return out


def wait_200(url: str, headers: dict, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    code = None
    while time.monotonic() < deadline:
        try:
            code = requests.get(url, headers=headers, timeout=2, allow_redirects=False).status_code
            if code == 200:
                return
        except requests.RequestException as e:
            code = type(e).__name__
        time.sleep(0.2)
    raise SystemExit(f"{what}: {url} did not answer 200 ({code})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", default="10s", help="wrk -d per run (peer: 10s)")
    ap.add_argument("--conns", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--ws-n", type=int, default=500)
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--no-peers", action="store_true", help="skip configurable-http-proxy and nginx")
    ap.add_argument("--direct-ip", action="store_true", help="also the container IP, bypassing docker-proxy")
    ap.add_argument("--relay", action="store_true",
                    help="also a bare Twisted byte relay (bench/twisted_relay.py, no HTTP) on the "
                         "daemon's CPU: the ceiling of a proxy on Twisted")
    ap.add_argument("--minimal", action="store_true",
                    help="also bench/twisted_minimal_http.py on the daemon's CPU: the least HTTP "
                         "work a gate needs (heads parsed and rewritten, a cookie looked up, a "
                         "log record), the ceiling of an HTTP proxy on Twisted here")
    ap.add_argument("--skip-wrk", action="store_true")
    ap.add_argument("--skip-ws", action="store_true")
    ap.add_argument("--pyspy", type=float, default=0, help="seconds of py-spy record of the daemon (0: none)")
    ap.add_argument("--pyspy-conns", type=int, default=50)
    ap.add_argument("--pyspy-rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--access-log", default="", help='server.access_log for the daemon ("off": as nginx here)')
    ap.add_argument("--front-ends", nargs="+", choices=["lean", "twisted"], default=[],
                    help="proxy.front_end of the daemon; two: a second daemon of the same site "
                         "(same Redis, same container) runs the other, both measured in turn")
    ap.add_argument("--baseline", metavar="DIR",
                    help="also a daemon of the ipydoc package in DIR (e.g. the tree before a "
                         "change; same front end as the first), measured in the same rotation")
    ap.add_argument("--baseline-proxy", metavar="TOML", default="",
                    help='[proxy] settings of the baseline daemon only, e.g. \'scheduling = '
                         '"normal"\' (with --baseline .: the same code, another setting)')
    ap.add_argument("--sched", choices=["other", "batch"], default="other",
                    help="scheduling policy of every proxy under test (daemons, CHP, nginx, the "
                         "relay; never the container): batch = SCHED_BATCH, no wakeup preemption")
    ap.add_argument("--adjacent", action="store_true",
                    help="measure direct before and after each other target (D t1 D t2 D ...) "
                         "and compare each run with the geometric mean of those two: on a "
                         "machine whose speed drifts within a repetition, runs seconds apart")
    ap.add_argument("--hog", action="store_true",
                    help="a CPU-bound process on the servers' CPU during the measured runs "
                         "(another user's computation): what a proxy's latency is then")
    ap.add_argument("--rate", type=float, default=0,
                    help="instead of wrk, bench/paced.py: one connection, this many requests a "
                         "second (a person's pace, not a saturating load); with --conns 1")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    if a.rate and a.conns != [1]:
        ap.error("--rate measures one connection: give --conns 1")
    tools.require("wrk", "docker", *([] if a.no_pin else ["taskset"]),
                  *([] if a.no_peers else ["nginx"]), *(["chrt"] if a.sched == "batch" else []))

    srv = [] if a.no_pin else ["taskset", "-c", "1"]
    cli = [] if a.no_pin else ["taskset", "-c", "0"]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    name = f"proxy-ipydoc-{stamp}{('-' + a.tag) if a.tag else ''}"
    out_dir = HERE / "results" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ipydoc-proxybench-"))
    spawn.TWISTD = srv + spawn.TWISTD  # the daemon, and its redis-server, on CPU 1
    access = f'access_log = "{a.access_log}"' if a.access_log else ""
    fronts = a.front_ends
    d = spawn.Daemon(a.image, root, "cpu_limit = 0",
                     access + (f'\n[proxy]\nfront_end = "{fronts[0]}"\n' if fronts else ""))
    extra: list[spawn.Daemon] = []  # second daemons: the other front end, the baseline
    procs: list[subprocess.Popen] = []
    nginx_root = root / "nginx"
    result: dict = {"tool": "ipydoc-proxy", "date": stamp, "tag": a.tag, "image": a.image,
                    "reps": a.reps, "dur": a.dur, "conns": a.conns, "ws_n": a.ws_n,
                    "pin": not a.no_pin, "instance": d.instance}
    try:
        d.start()
        d.cli("user", "add", USER, "--password-stdin", input=spawn.PASSWORD + "\n")
        sess, *_ = spawn.login(d, USER, 0.05)
        cookie = sess.cookies.get("ipydoc-session")
        sock = root / "state" / "redis" / "redis.sock"
        hget = lambda f: subprocess.run(["redis-cli", "-s", str(sock), "HGET", f"ipydoc:server:{USER}", f],
                                        capture_output=True, text=True, check=True).stdout.strip()
        backend, token = hget("url"), hget("token")
        host_port = int(backend.rsplit(":", 1)[1])
        cname = f"{d.instance}-{USER}"
        info = json.loads(spawn.docker("inspect", cname))[0]
        cip = next(iter(info["NetworkSettings"]["Networks"].values()))["IPAddress"]
        dproxy = docker_proxy_pids(host_port)
        if not a.no_pin:
            spawn.docker("update", "--cpuset-cpus", "1", cname)
            for p in dproxy:
                pin(p, "1")
        base = f"/user/{USER}"
        tok_h = {"Authorization": f"token {token}"}
        daemons = [(d, f"ipydoc-{fronts[0]}" if fronts else "ipydoc")]

        def second(label: str, front_end: str, pythonpath: str = "", proxy: str = "") -> None:
            """A second daemon of the same site (docs/several-daemons.md): the first one's
            Redis, the same signing secret and docker.instance; ``pythonpath``: another
            copy of the code (the baseline)."""
            root2 = root / label
            (root2 / "state").mkdir(parents=True)
            shutil.copy(root / "state" / "secret", root2 / "state" / "secret")
            fe = f'\n[proxy]\nfront_end = "{front_end}"\n' if front_end else "\n"
            if proxy:
                fe += ("" if front_end else "[proxy]\n") + proxy + "\n"
            d2 = spawn.Daemon(a.image, root2, "cpu_limit = 0", access + fe +
                              f'[redis]\nurl = "unix://{sock}"\n[history]\nenabled = false\n')
            d2.instance = d.instance
            old = os.environ.get("PYTHONPATH")
            if pythonpath:
                os.environ["PYTHONPATH"] = pythonpath
            try:
                d2.start()
            finally:
                if pythonpath:
                    os.environ.pop("PYTHONPATH")
                    if old is not None:
                        os.environ["PYTHONPATH"] = old
            extra.append(d2)
            daemons.append((d2, label))

        if len(fronts) > 1:
            second(f"ipydoc-{fronts[1]}", fronts[1])
        if a.baseline:
            second("ipydoc-baseline", fronts[0] if fronts else "", str(Path(a.baseline).resolve()),
                   a.baseline_proxy)
        targets: dict[str, dict] = {"direct": {"url": backend, "headers": tok_h}}
        for dn, label in daemons:
            targets[label] = {
                "url": dn.url, "headers": {"Cookie": f"ipydoc-session={cookie}"},
                "ws_headers": {"Cookie": f"ipydoc-session={cookie}", "Origin": dn.url}}
        if not a.no_peers and not os.path.exists(CHP):
            print(f"configurable-http-proxy not installed ({CHP}): skipped", flush=True)
        if not a.no_peers and os.path.exists(CHP):
            chp_port, chp_api = spawn.free_port(), spawn.free_port()
            procs.append(subprocess.Popen(
                srv + [CHP, "--ip", "127.0.0.1", "--port", str(chp_port), "--api-ip", "127.0.0.1",
                       "--api-port", str(chp_api), "--default-target", backend],
                env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token},
                stdout=open(root / "chp.log", "wb"), stderr=subprocess.STDOUT))
            targets["chp"] = {"url": f"http://127.0.0.1:{chp_port}", "headers": tok_h}
        if not a.no_peers:
            nginx_port = spawn.free_port()
            nginx_conf.start(nginx_root, nginx_conf.proxy_conf(
                nginx_root, nginx_port, backend.split("//", 1)[1]), prefix=srv)
            targets["nginx"] = {"url": f"http://127.0.0.1:{nginx_port}", "headers": tok_h}
        if a.direct_ip:
            targets["direct-ip"] = {"url": f"http://{cip}:8888", "headers": tok_h}
        relay_pid = 0
        if a.relay:
            relay_port = spawn.free_port()
            bhost, bport = backend.split("//", 1)[1].rsplit(":", 1)
            procs.append(subprocess.Popen(
                srv + [sys.executable, str(HERE / "twisted_relay.py"), bhost, bport, str(relay_port)],
                stdout=open(root / "relay.log", "wb"), stderr=subprocess.STDOUT))
            relay_pid = procs[-1].pid
            targets["relay"] = {"url": f"http://127.0.0.1:{relay_port}", "headers": tok_h}
        minimal_pid = 0
        if a.minimal:
            minimal_port = spawn.free_port()
            bhost, bport = backend.split("//", 1)[1].rsplit(":", 1)
            procs.append(subprocess.Popen(
                srv + [sys.executable, str(HERE / "twisted_minimal_http.py"), bhost, bport,
                       str(minimal_port), token, cookie, USER],
                stdout=open(root / "minimal.log", "wb"), stderr=subprocess.STDOUT))
            minimal_pid = procs[-1].pid
            targets["minimal"] = {"url": f"http://127.0.0.1:{minimal_port}",
                                  "headers": {"Cookie": f"ipydoc-session={cookie}"}}
        for t, v in targets.items():
            wait_200(v["url"] + base + "/api/status", v["headers"], t)

        py = lambda code: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip()
        env = {
            "nproc": os.cpu_count(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), ""),
            "backend_url": backend, "container_ip": cip, "docker_proxy_pids": dproxy,
            "daemon_pid": d.proc.pid, "redis_pid": d.redis_pid(),
            "jupyter_server": spawn.docker("exec", cname, "python3", "-c",
                                           "import jupyter_server;print(jupyter_server.__version__)"),
            "twisted": py("import twisted;print(twisted.__version__)"),
            "python": sys.version.split()[0],
            "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
            "nginx": subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
            "chp": (subprocess.run([CHP, "--version"], capture_output=True, text=True).stdout.strip()
                    if os.path.exists(CHP) else "not installed"),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "affinity": {k: subprocess.run(["taskset", "-cp", str(p)], capture_output=True, text=True).stdout.strip()
                         for k, p in [("daemon", d.proc.pid), ("redis", d.redis_pid())]
                         + [("chp", p.pid) for p in procs] + [("docker-proxy", p) for p in dproxy]},
            "container_cpuset": spawn.docker("inspect", "-f", "{{.HostConfig.CpusetCpus}} nanocpus={{.HostConfig.NanoCpus}}", cname),
        }
        result["env"] = env
        print(json.dumps(env, indent=1), flush=True)

        nginx_pids = [nginx_conf.pid(nginx_root)] if not a.no_peers else []
        nginx_pids += [c for p in nginx_pids for c in spawn.children(p)]
        meter = CpuMeter({"daemon": [x.proc.pid for x, _ in daemons],
                          **{f"daemon:{label}": [x.proc.pid] for x, label in daemons}, "redis": [d.redis_pid()],
                          "docker-proxy": dproxy,
                          "chp": [p.pid for p in procs if p.pid not in (relay_pid, minimal_pid)],
                          "relay": [relay_pid] if relay_pid else [],
                          "minimal": [minimal_pid] if minimal_pid else [], "nginx": nginx_pids},
                         Path(f"/sys/fs/cgroup/cpuacct/docker/{info['Id']}/cpuacct.usage"))
        result["sched"], result["hog"], result["rate"] = a.sched, a.hog, a.rate
        if a.sched == "batch":
            set_batch([x.proc.pid for x, _ in daemons] + [p.pid for p in procs] + nginx_pids)
        if a.hog:  # on the servers' CPU, as another user's kernel computing would be
            procs.append(subprocess.Popen(srv + [sys.executable, "-c", "while True: pass"]))
        names = list(targets)
        wrk_url = lambda t: targets[t]["url"] + base + "/api/status"
        wrk_h = lambda t: [x for k, v in targets[t]["headers"].items() for x in ("-H", f"{k}: {v}")]
        rows: dict[tuple[int, str], list[dict]] = {}
        if not a.skip_wrk:
            for t in names:  # warm-up, not recorded
                subprocess.run(cli + ["wrk", "-t1", "-c10", "-d2s", *wrk_h(t), wrk_url(t)], capture_output=True)
            def measure(t: str, c: int, r: int, suffix: str = "") -> dict:
                c0, t0 = meter.snap(), time.monotonic()
                if a.rate:
                    txt = subprocess.run(
                        cli + [sys.executable, str(HERE / "paced.py"), wrk_url(t),
                               str(a.rate), str(parse_seconds(a.dur)),
                               *[f"{k}: {v}" for k, v in targets[t]["headers"].items()]],
                        capture_output=True, text=True, check=True).stdout
                else:
                    txt = subprocess.run(cli + ["wrk", "-t1", f"-c{c}", f"-d{a.dur}", "--latency",
                                                *wrk_h(t), wrk_url(t)],
                                         capture_output=True, text=True).stdout
                cpu = CpuMeter.delta(c0, meter.snap(), time.monotonic() - t0)
                (out_dir / f"wrk-rep{r + 1}-c{c}-{t}{suffix}.txt").write_text(txt)
                row = json.loads(txt) if a.rate else parse_wrk(txt)
                row["rep"] = r + 1
                row["cpu_cores"] = cpu
                rows.setdefault((c, t), []).append(row)
                print(f"rep{r + 1} c{c} {t}{suffix}: {row['rps']:.0f} req/s, p50 {row['p50_ms']:.2f} ms, "
                      f"p99 {row['p99_ms']:.2f} ms {row['errors']} cpu {cpu}", flush=True)
                return row

            for r in range(a.reps):
                k = r % len(names)
                order = names[k:] + names[:k]
                for c in a.conns:
                    if not a.adjacent:
                        for t in order:
                            measure(t, c, r)
                        continue
                    # direct before and after each of the others (D t1 D t2 D ...): each
                    # run is compared with both direct runs seconds away from it, so a
                    # steady drift cancels out and a jump in speed counts half
                    before = measure("direct", c, r, "-first")
                    for t in (u for u in order if u != "direct"):
                        row = measure(t, c, r)
                        after = measure("direct", c, r, f"-after-{t}")
                        row["direct_before"], row["direct_after"] = before["rps"], after["rps"]
                        row["direct_adjacent"] = (before["rps"] * after["rps"]) ** 0.5
                        before = after
        if not a.skip_ws:
            ws_targets = [{"name": t, "http": targets[t]["url"] + base,
                           "ws": targets[t]["url"].replace("http://", "ws://") + base,
                           "headers": targets[t].get("ws_headers", targets[t]["headers"])}
                          for t in names if t != "minimal"]  # (it speaks no WebSocket)
            wsf = out_dir / "ws.json"
            subprocess.run(cli + [WS_PYTHON, str(HERE / "proxy_ws.py"), "--targets", json.dumps(ws_targets),
                                  "--n", str(a.ws_n), "--reps", str(a.reps), "--out", str(wsf)], check=True)
            result["ws"] = json.loads(wsf.read_text())
        if a.pyspy:
            # Two profiles under load: every non-idle sample (wall time, includes time spent
            # in send()/recv() and runnable-but-preempted on the shared core), and --gil
            # (only samples holding the GIL: the Python-level CPU work).
            result["pyspy"] = {}
            pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            for kind, flags in (("wall", []), ("gil", ["--gil"])):
                prof = out_dir / f"pyspy-ipydoc-{kind}.speedscope.json"
                first = names[1]  # the (first) daemon
                w = subprocess.Popen(cli + ["wrk", "-t1", f"-c{a.pyspy_conns}", f"-d{int(a.pyspy) + 4}s",
                                            "--latency", *wrk_h(first), wrk_url(first)],
                                     stdout=subprocess.PIPE, text=True)
                time.sleep(2)
                subprocess.run(cli + [pyspy, "record", "-d", str(int(a.pyspy)), "-r", str(a.pyspy_rate),
                                      "-p", str(d.proc.pid),
                                      "-o", str(prof), "--format", "speedscope", "--nonblocking", *flags],
                               capture_output=True)
                txt = w.communicate()[0]
                (out_dir / f"wrk-pyspy-{kind}-ipydoc.txt").write_text(txt)
                result["pyspy"][kind] = {"file": str(prof), "wrk": parse_wrk(txt), "top": speedscope_top(prof)}
        result["backend_sockets_after"] = subprocess.run(
            ["ss", "-tan", "state", "time-wait", f"( dport = :{host_port} )"],
            capture_output=True, text=True).stdout.count("\n") - 1
    finally:
        for d2 in extra:
            d2.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        nginx_conf.stop(nginx_root)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        d.stop()
        d.cleanup()
        result["leftover_containers"] = d.containers()
        if d.log_path.exists():  # keep the daemon log (size says whether it logs per request)
            shutil.copy(d.log_path, out_dir / "daemon.log")
            result["daemon_log_lines"] = len(d.log_path.read_bytes().splitlines())
        shutil.rmtree(root, ignore_errors=True)

    summary = summarize(rows, result.get("ws"), names)
    result["wrk"] = summary["wrk"]
    print(f"\n## ipydoc proxy overhead ({a.image}) {stamp} {a.tag}\n")
    print(summary["md"])
    fn = HERE / "results" / f"{name}.json"
    fn.write_text(json.dumps(result, indent=1))
    (out_dir / "summary.md").write_text(summary["md"] + "\n")
    print(f"\nwrote {fn}" + (f"; LEFTOVER containers {result['leftover_containers']}"
                             if result["leftover_containers"] else ""))


def summarize(rows: dict, ws: dict | None, names: list[str]) -> dict:
    wrk: dict = {}
    has = set(names)
    ref = [t for t in ("direct", "chp", "nginx") if t in has]
    lines = ["| conns | target | req/s | req/s each rep | p50 ms | p90 ms | p99 ms | "
             + " | ".join(f"req/s vs {t}" for t in ref)
             + " | vs direct, same rep: median [95% interval] (each) | vs direct, runs on both sides: median [95% interval] (each)"
             + " | CPU (cores, median) | errors |",
             "|---|---|---|---|---|---|---|" + "---|" * len(ref) + "---|---|---|---|"]
    for c in sorted({c for c, _ in rows}):
        for t in names:
            rs = rows.get((c, t))
            if not rs:
                continue
            med = {k: statistics.median([r[k] for r in rs]) for k in ("rps", "p50_ms", "p90_ms", "p99_ms")}
            for b in ref:
                med[f"vs_{b}"] = med["rps"] / statistics.median([r["rps"] for r in rows[(c, b)]])
            # The same ratio within each repetition (the two runs minutes apart at most):
            # the machine's drift between repetitions cancels out of it.
            # (with --adjacent a repetition has several direct runs: their median)
            by_rep: dict[int, list[float]] = {}
            for r in rows.get((c, "direct"), []):
                by_rep.setdefault(r["rep"], []).append(r["rps"])
            direct = {rep: statistics.median(v) for rep, v in by_rep.items()}
            paired = [r["rps"] / direct[r["rep"]] for r in rs if direct.get(r["rep"])] \
                if t != "direct" else []
            if paired:
                med["vs_direct_paired"] = statistics.median(paired)
                med["vs_direct_each_rep"] = paired
                med["vs_direct_paired_ci95"] = stats.median_interval(paired)
            # --adjacent: each run against the direct runs right before and after it
            adjacent = [r["rps"] / r["direct_adjacent"] for r in rs if r.get("direct_adjacent")]
            if adjacent:
                med["vs_direct_adjacent"] = statistics.median(adjacent)
                med["vs_direct_each_adjacent"] = adjacent
                med["vs_direct_adjacent_ci95"] = stats.median_interval(adjacent)
            wrk[f"c{c}-{t}"] = {**med, "reps": rs}
            errs = ";".join(r["errors"] for r in rs if r["errors"]) or "none"
            cpu = {k: statistics.median([r["cpu_cores"].get(k, 0) for r in rs]) for k in rs[0].get("cpu_cores", {})}
            med["cpu_cores"] = cpu
            cpu_txt = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()
                                if v >= 0.02 and k not in ("tcp-connects", "container-preempted")
                                and not k.startswith("daemon:"))
            cpu_txt += f"; {cpu.get('tcp-connects', 0):.0f} TCP connects"
            if "container-preempted" in cpu and med["rps"]:  # how often a proxy cut in
                med["container_preempted_per_req"] = statistics.median(
                    [r["cpu_cores"].get("container-preempted", 0) / r["requests"]
                     for r in rs if r["requests"]])
                cpu_txt += f"; container preempted {med['container_preempted_per_req']:.2f}×/req"
            if t.startswith("ipydoc") and med["rps"]:  # the daemon's CPU per proxied request
                # the target's own daemon (the others idle meanwhile), per rep, then the
                # median: cores and req/s of the same run belong together
                per_rep = [r["cpu_cores"].get(f"daemon:{t}", r["cpu_cores"].get("daemon", 0))
                           * 1e6 / r["rps"] for r in rs if r["rps"]]
                med["daemon_us_per_req"] = statistics.median(per_rep)
                cpu_txt += (f"; daemon {med['daemon_us_per_req']:.0f} µs/req (each rep "
                            + ", ".join(f"{x:.0f}" for x in per_rep) + ")")
            if t in ("relay", "minimal") and med["rps"]:  # what the reactor and the socket
                # calls alone cost; and with the least HTTP work
                per_rep = [r["cpu_cores"].get(t, 0) * 1e6 / r["rps"] for r in rs if r["rps"]]
                med[f"{t}_us_per_req"] = statistics.median(per_rep)
                cpu_txt += f"; {t} {med[f'{t}_us_per_req']:.0f} µs/req"
            lines.append(f"| {c} | {LABEL[t]} | {med['rps']:.0f} | {', '.join('%.0f' % r['rps'] for r in rs)} | "
                         f"{med['p50_ms']:.2f} | {med['p90_ms']:.2f} | {med['p99_ms']:.2f} | "
                         + " | ".join(f"{med[f'vs_{b}']:.2f}" for b in ref)
                         + _ratio_cell(med, "vs_direct_paired", "vs_direct_each_rep")
                         + _ratio_cell(med, "vs_direct_adjacent", "vs_direct_each_adjacent")
                         + f" | {cpu_txt} | {errs} |")
    if ws:
        lines += ["", "| WebSocket (kernel `1+1` round trip) | msgs | p50 ms | p99 ms | mean ms | p50 per rep |",
                  "|---|---|---|---|---|---|"]
        for t in names:
            s = ws["summary_pooled"].get(t)
            if s:
                reps = ", ".join(f"{r['p50_ms']:.2f}" for r in ws["per_rep"] if r["target"] == t)
                lines.append(f"| {LABEL[t]} | {s['n']} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                             f"{s['mean_ms']:.2f} | {reps} |")
    return {"wrk": wrk, "md": "\n".join(lines)}


def _ratio_cell(med: dict, key: str, each: str) -> str:
    """A paired ratio's cell: the median, its 95% interval when there are enough pairs
    (``bench/stats.py``), and each pair's ratio."""
    if key not in med:
        return " | –"
    ci = med.get(f"{key}_ci95")
    return (f" | {med[key]:.2f}" + (f" [{ci[0]:.2f}–{ci[1]:.2f}]" if ci else "")
            + " (" + ", ".join(f"{x:.2f}" for x in med[each]) + ")")


def speedscope_top(path: Path, n: int = 25) -> dict:
    """Self and inclusive sample shares per frame of a py-spy speedscope profile."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    frames = doc["shared"]["frames"]
    label = lambda i: f"{frames[i]['name']} ({Path(frames[i].get('file', '')).name}:{frames[i].get('line', '')})"
    self_c: dict[str, float] = {}
    incl_c: dict[str, float] = {}
    total = 0.0
    for prof in doc["profiles"]:
        for stack, w in zip(prof["samples"], prof["weights"]):
            total += w
            if stack:
                self_c[label(stack[-1])] = self_c.get(label(stack[-1]), 0) + w
            for f in {label(i) for i in stack}:
                incl_c[f] = incl_c.get(f, 0) + w
    top = lambda c: [(k, round(v / total, 4)) for k, v in sorted(c.items(), key=lambda kv: -kv[1])[:n]]
    return {"samples": total, "self": top(self_c), "inclusive": top(incl_c)}


if __name__ == "__main__":
    main()
