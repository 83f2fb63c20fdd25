"""The site alone, lean vs twisted.web front end: CPU per proxied request, interleaved.

    .venv/bin/python bench/front_end.py [--reps 5] [--dur 5] [--conns 10 50]

No daemon, no gate, no container: the real site and proxy (``tests/proxy_in_a_process.py``,
a gate that forwards everything) on each front end, in front of one small echo server
(``tests/edge/test_front_end_differential.py``'s, in a process of its own), loaded with
``wrk -t1`` on ``GET /user/alice/x``.  Each repetition runs both front ends in turn
(the order rotates); the site process's CPU time (``/proc/PID/stat``) over the requests
wrk completed gives µs per request, the part of the cost the front end decides.  The
machine may be shared: the table gives medians and the lean ÷ twisted ratio per rep.

``--baseline DIR`` adds a third site, the lean front end of the ``ipydoc`` package in
DIR (e.g. a copy of the tree before a change), measured in the same rotation: the
table then also gives lean ÷ baseline per rep, a before/after taken in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import tools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SITE = os.path.join(ROOT, "tests", "proxy_in_a_process.py")
ECHO = ("import sys, time; sys.path.insert(0, %r); import test_front_end_differential as t; "
        "b = t.EchoBackend(); print(b.url, flush=True); time.sleep(1e6)"
        % os.path.join(ROOT, "tests", "edge"))
FRONT_ENDS = ("lean", "twisted")


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(port: int, conns: int, dur: int) -> tuple[float, int, float]:
    """req/s, requests, p99 ms."""
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{dur}s", "--latency", "-H", "Host: x",
                          f"http://127.0.0.1:{port}/user/alice/x"],
                         capture_output=True, text=True, check=True).stdout
    rps = float(next(x.split()[1] for x in out.splitlines() if x.startswith("Requests/sec")))
    reqs = int(next(x.split()[0] for x in out.splitlines() if "requests in" in x))
    p99 = next(x.split()[1] for x in out.splitlines() if x.strip().startswith("99%"))
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    num = p99.rstrip("usm")
    return rps, reqs, float(num) * unit[p99[len(num):]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dur", type=int, default=5, help="seconds of wrk per run")
    ap.add_argument("--conns", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--baseline", metavar="DIR",
                    help="a directory holding an ipydoc package to compare with (lean)")
    a = ap.parse_args()
    tools.require("wrk")
    front_ends = FRONT_ENDS + (("baseline",) if a.baseline else ())
    procs = []
    base_root = None
    try:
        echo = subprocess.Popen([sys.executable, "-c", ECHO], stdout=subprocess.PIPE, text=True)
        procs.append(echo)
        backend = echo.stdout.readline().strip()
        sites = {}
        for fe in front_ends:
            script = SITE
            if fe == "baseline":  # the same script beside the other package
                base_root = tempfile.mkdtemp(prefix="ipydoc-fe-baseline-")
                os.symlink(os.path.join(os.path.abspath(a.baseline), "ipydoc"),
                           os.path.join(base_root, "ipydoc"))
                os.mkdir(os.path.join(base_root, "tests"))
                script = shutil.copy(SITE, os.path.join(base_root, "tests"))
            p = subprocess.Popen([sys.executable, script, backend, "",
                                  "lean" if fe == "baseline" else fe], stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, text=True)
            procs.append(p)
            sites[fe] = (p.pid, int(p.stdout.readline()))
        for fe in front_ends:  # warm-up
            run_wrk(sites[fe][1], 10, 1)
        rows: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
        n = len(front_ends)
        for r in range(a.reps):
            order = front_ends[r % n:] + front_ends[:r % n]
            for c in a.conns:
                for fe in order:
                    pid, port = sites[fe]
                    c0 = cpu_seconds(pid)
                    rps, reqs, p99 = run_wrk(port, c, a.dur)
                    us = (cpu_seconds(pid) - c0) * 1e6 / max(reqs, 1)
                    rows.setdefault((c, fe), []).append((rps, us, p99))
                    print(f"rep{r + 1} c{c} {fe}: {rps:.0f} req/s, {us:.0f} µs/req, "
                          f"p99 {p99:.2f} ms", flush=True)
                    time.sleep(0.5)
        others = [fe for fe in front_ends if fe != "lean"]
        print("\n| conns | front end | req/s | CPU µs/req | p99 ms | "
              + " | ".join(f"µs/req lean ÷ {fe}, per rep" for fe in others) + " |")
        print("|---|---|---|---|---|" + "---|" * len(others))
        for c in a.conns:
            for fe in front_ends:
                rs = rows[(c, fe)]
                med = [statistics.median(x[i] for x in rs) for i in range(3)]
                extra = [", ".join(f"{lean[1] / o[1]:.2f}"
                                   for lean, o in zip(rows[(c, "lean")], rows[(c, other)]))
                         if fe == "lean" else "" for other in others]
                print(f"| {c} | {fe} | {med[0]:.0f} | {med[1]:.0f} | {med[2]:.2f} | "
                      + " | ".join(extra) + " |")
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        if base_root is not None:
            shutil.rmtree(base_root, ignore_errors=True)


if __name__ == "__main__":
    main()
