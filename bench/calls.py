#!/usr/bin/env python3
"""Python calls per proxied request: the proxy's work, counted rather than timed.

Timings on this machine drift by up to 1.8× between runs (bench/README.md); call counts do
not.  Starts its own daemon (``bench/spawn.py``'s ``Daemon``) under ``twistd --profile``
(cProfile), logs one user in, sends ``wrk -t1 -c<conns>`` through the proxy for ``--dur``,
stops the daemon (twistd writes the profile then) and reads it.  The number of proxied
requests N is the number of calls of ``Proxy.handle``; every function called at least
``N / 2`` times is on the path of a proxied request, and its calls ÷ N are listed.  The
totals (Python functions, built-ins) are the figures to compare between trees
(docs/front_end.md, "Where the rest goes").

    .venv/bin/python bench/calls.py [--dur 10s] [--conns 10] [--top 40]
"""

from __future__ import annotations

import argparse
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import spawn  # noqa: E402
import tools  # noqa: E402

USER = "c00"


def per_request(stats: pstats.Stats) -> tuple[int, list[tuple[float, str, bool]]]:
    """(N, [(calls per request, function, is a built-in)]) for the proxied path."""
    n = sum(nc for (f, _, fn), (_, nc, *_rest) in stats.stats.items()  # type: ignore[attr-defined]
            if fn == "handle" and f.endswith("proxy/handler.py"))
    if not n:
        raise SystemExit("no proxied request in the profile")
    rows = []
    for (f, line, fn), (_, nc, *_rest) in stats.stats.items():  # type: ignore[attr-defined]
        if nc >= n / 2:
            where = f.split("site-packages/")[-1].split(str(HERE.parent) + "/")[-1]
            rows.append((nc / n, fn if f == "~" else f"{where}:{line}({fn})", f == "~"))
    return n, sorted(rows, reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dur", default="10s", help="wrk -d")
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--top", type=int, default=40, help="functions listed (0: all)")
    ap.add_argument("--image", default="ipydoc-test-notebook:latest")
    a = ap.parse_args()
    tools.require("wrk", "docker")
    root = Path(tempfile.mkdtemp(prefix="ipydoc-calls-"))
    prof = root / "daemon.prof"
    spawn.TWISTD = spawn.TWISTD + ["--profile", str(prof), "--profiler", "cprofile",
                                   "--savestats"]
    d = spawn.Daemon(a.image, root, "cpu_limit = 0")
    try:
        d.start()
        d.cli("user", "add", USER, "--password-stdin", input=spawn.PASSWORD + "\n")
        sess, *_ = spawn.login(d, USER, 0.05)
        cookie = sess.cookies.get("ipydoc-session")
        out = subprocess.run(["wrk", "-t1", f"-c{a.conns}", f"-d{a.dur}",
                              "-H", f"Cookie: ipydoc-session={cookie}",
                              f"{d.url}/user/{USER}/api/status"],
                             capture_output=True, text=True, check=True).stdout
        print(out)
    finally:
        d.stop()
        d.cleanup()
    n, rows = per_request(pstats.Stats(str(prof)))
    python = sum(r for r, _, builtin in rows if not builtin)
    builtins = sum(r for r, _, builtin in rows if builtin)
    print(f"{n} proxied requests: {python:.0f} Python calls and {builtins:.0f} calls of "
          f"built-ins per request, in {sum(1 for *_, b in rows if not b)} Python functions\n")
    print("| calls per request | function |\n|---|---|")
    for r, name, _ in rows[:a.top or None]:
        print(f"| {r:.2f} | `{name}` |")


if __name__ == "__main__":
    main()
