#!/usr/bin/env python3
"""ipydoc's proxy in front of a *stock* jupyter_server on the host, exactly as the peer
measured it (``../shared/peer/run_proxy_bench.sh``): direct vs through ipydoc.

Why a host process and not a container: a stock jupyter_server writes kernel WebSocket
frames with Nagle's algorithm on, and on loopback the receiver's delayed ACK then holds
each round trip ~40 ms (the peer's 48 ms, for configurable-http-proxy and nginx too).  In
a container reached through docker-proxy the effect does not show, so this is where the
proxy's latency handling (``TCP_QUICKACK``, ``TCP_NODELAY``: ``ipydoc/proxy/backend.py``)
can be seen and measured.

The proxy is the daemon's own site and proxy code (``ipydoc.edge.site.make_site``) with a
gate that forwards everything to the server (authentication is measured by
``bench/proxy.py`` against the real daemon).  Pinning as the peer: server, kernel and
proxy on CPU 1, wrk and the WebSocket client on CPU 0; three rotated repetitions; medians.

Needs a Python with jupyter_server + ipykernel (``--jupyter-python``; default: the peer's
``/tmp/peer-venv/bin/python``, or a venv made in ``bench/.venv-stock`` from PyPI) and one
with aiohttp for the WebSocket client (the same venv).

    python3 bench/proxy_stock.py [--reps 3] [--dur 10s] [--conns 10 50] [--ws-n 500]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
import tools  # noqa: E402
from proxy import parse_wrk, proc_cpu  # noqa: E402
from spawn import free_port  # noqa: E402

STOCK_VENV = HERE / ".venv-stock"


def stock_python(given: str) -> str:
    """A Python with a stock jupyter_server, ipykernel and aiohttp (made if missing)."""
    if given:
        return given
    for candidate in ("/tmp/peer-venv/bin/python", str(STOCK_VENV / "bin/python")):
        if Path(candidate).exists():
            return candidate
    subprocess.run([sys.executable, "-m", "venv", str(STOCK_VENV)], check=True)
    py = str(STOCK_VENV / "bin/python")
    subprocess.run([py, "-m", "pip", "install", "-q", "jupyter_server", "ipykernel", "aiohttp"],
                   check=True)
    return py


PROXY_MAIN = """
import sys
from twisted.internet import reactor
from twisted.web.resource import Resource
from ipydoc.edge.site import make_site
from ipydoc.proxy.gate import Forward

class ForwardAll:
    def claims(self, request):
        return True
    async def decide(self, request):
        return Forward("bench", sys.argv[1], sys.argv[2])
    def saw_traffic(self, user):
        pass
    def saw_response(self, user, method, path, code):
        pass

port = reactor.listenTCP(0, make_site(Resource(), ForwardAll(), reactor), interface="127.0.0.1")
print(port.getHost().port, flush=True)
reactor.run()
"""


def wait_ok(url: str, headers: dict[str, str], timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if requests.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", default="10s")
    ap.add_argument("--conns", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--ws-n", type=int, default=500)
    ap.add_argument("--skip-wrk", action="store_true")
    ap.add_argument("--jupyter-python", default="")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    tools.require("wrk", "taskset")

    py = stock_python(a.jupyter_python)
    token = secrets.token_hex(24)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = HERE / "results" / f"proxy-stock-{stamp}{'-' + a.tag if a.tag else ''}"
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ipydoc-stock-"))
    procs: list[subprocess.Popen] = []
    port = free_port()
    procs.append(subprocess.Popen(
        ["taskset", "-c", "1", py, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", "--ServerApp.allow_root=True",
         "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}"],
        cwd=root, stdout=open(out / "jupyter_server.log", "wb"), stderr=subprocess.STDOUT))
    backend = f"http://127.0.0.1:{port}"
    proxy = subprocess.Popen(
        ["taskset", "-c", "1", str(ROOT / ".venv/bin/python"), "-c", PROXY_MAIN, backend, token],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=open(out / "proxy.log", "wb"))
    procs.append(proxy)
    pport = int(proxy.stdout.readline())
    auth = {"Authorization": f"token {token}"}
    targets = {"direct": backend, "ipydoc": f"http://127.0.0.1:{pport}"}
    for url in targets.values():
        wait_ok(url + "/api/status", auth)
    versions = subprocess.run([py, "-c", "import jupyter_server, tornado; print(jupyter_server.__version__, tornado.version)"],
                              capture_output=True, text=True).stdout.split()
    print(f"stock jupyter_server {versions[0]} (tornado {versions[1]}) on {backend}; ipydoc proxy on :{pport}", flush=True)

    rows: list[dict] = []
    orders = [["direct", "ipydoc"], ["ipydoc", "direct"]]
    if not a.skip_wrk:
        for url in targets.values():  # warm-up
            subprocess.run(["taskset", "-c", "0", "wrk", "-t1", "-c10", "-d2s", "-H",
                            f"Authorization: token {token}", url + "/api/status"], capture_output=True)
        for rep in range(a.reps):
            for c in a.conns:
                for t in orders[rep % 2]:
                    cpu0 = proc_cpu(proxy.pid)
                    txt = subprocess.run(
                        ["taskset", "-c", "0", "wrk", "-t1", f"-c{c}", f"-d{a.dur}", "--latency", "-H",
                         f"Authorization: token {token}", targets[t] + "/api/status"],
                        capture_output=True, text=True).stdout
                    (out / f"wrk-rep{rep + 1}-c{c}-{t}.txt").write_text(txt)
                    r = parse_wrk(txt)
                    r.update(rep=rep + 1, conns=c, target=t)
                    if t == "ipydoc":
                        r["proxy_cpu_us_per_req"] = (proc_cpu(proxy.pid) - cpu0) * 1e6 / max(r["requests"], 1)
                    rows.append(r)
                    print(f"rep{rep + 1} c{c} {t}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms "
                          f"p99 {r['p99_ms']:.2f} ms {r['errors']}", flush=True)
    ws_targets = [{"name": t, "http": url, "ws": url.replace("http://", "ws://"), "headers": auth}
                  for t, url in targets.items()]
    subprocess.run(["taskset", "-c", "0", py, str(HERE / "proxy_ws.py"), "--targets", json.dumps(ws_targets),
                    "--n", str(a.ws_n), "--reps", str(a.reps), "--out", str(out / "ws.json")], check=True)
    ws = json.loads((out / "ws.json").read_text())

    lines = [f"## ipydoc proxy vs direct, stock jupyter_server {versions[0]} on the host ({stamp})", ""]
    if rows:
        lines += ["| conns | target | req/s | p50 ms | p99 ms | req/s vs direct | proxy CPU µs/req |",
                  "|---|---|---|---|---|---|---|"]
        for c in a.conns:
            med = {}
            for t in targets:
                rs = [r for r in rows if r["conns"] == c and r["target"] == t]
                med[t] = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50_ms", "p99_ms")}
                if t == "ipydoc":
                    med[t]["cpu"] = statistics.median(r["proxy_cpu_us_per_req"] for r in rs)
            for t in targets:
                m = med[t]
                cpu = f"{m['cpu']:.0f}" if "cpu" in m else "–"
                lines.append(f"| {c} | {t} | {m['rps']:.0f} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
                             f"{m['rps'] / med['direct']['rps']:.2f} | {cpu} |")
        lines.append("")
    lines += ["| WebSocket (kernel `1+1` round trip) | msgs | p50 ms | p99 ms |", "|---|---|---|---|"]
    for t in targets:
        w = ws["summary_pooled"][t]
        lines.append(f"| {t} | {w['n']} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} |")
    table = "\n".join(lines)
    print("\n" + table)
    (out / "summary.md").write_text(table + "\n")
    (out.with_suffix(".json")).write_text(json.dumps({"wrk": rows, "ws": ws, "versions": versions}, indent=1))
    print(f"\nwrote {out}")
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
