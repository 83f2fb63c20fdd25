#!/usr/bin/env python3
"""Ratios to direct pooled over several runs of ``bench/proxy.py --adjacent``.

One run of ten repetitions gives each median ratio a 95% interval some 0.1-0.3 wide on
this machine (bench/README.md); runs of the same code, each compared with direct on both
sides, are independent samples of the same ratio, so their repetitions can be pooled and
the interval narrows with their number.  Reads the runs' JSON files (``bench/results/``),
takes every repetition's req/s ÷ the geometric mean of the direct runs before and after
it, and prints, per connection count and target, the pooled median with its 95% interval
(``bench/stats.py``) and how many repetitions of how many runs went in.  Pool only runs of
the same code: the table names the runs' tags so that can be checked.

    .venv/bin/python bench/pool.py bench/results/proxy-ipydoc-A.json bench/results/proxy-ipydoc-B.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats  # noqa: E402


def adjacent_ratios(run: dict) -> dict[str, list[float]]:
    """``{"c50-ipydoc": [ratio of each repetition], ...}`` for the runs that have direct
    on both sides (``--adjacent``); direct itself is left out."""
    out: dict[str, list[float]] = {}
    for key, row in run.get("wrk", {}).items():
        ratios = [r["rps"] / r["direct_adjacent"] for r in row.get("reps", [])
                  if r.get("direct_adjacent")]
        if ratios:
            out[key] = ratios
    return out


def pool(runs: list[dict]) -> dict[str, list[float]]:
    """Every run's ratios, per target, in one list."""
    pooled: dict[str, list[float]] = {}
    for run in runs:
        for key, ratios in adjacent_ratios(run).items():
            pooled.setdefault(key, []).extend(ratios)
    return pooled


def _order(key: str) -> tuple[int, str]:
    conns, _, target = key.partition("-")
    return int(conns.lstrip("c") or 0), target


def table(runs: list[dict]) -> str:
    pooled = pool(runs)
    tags = ", ".join(f"`{r.get('tag') or r.get('date')}`" for r in runs)
    lines = [f"req/s ÷ direct (runs on both sides), pooled over {len(runs)} runs: {tags}", "",
             "| conns | target | repetitions | median | 95% interval | lowest | highest |",
             "|---|---|---|---|---|---|---|"]
    for key in sorted(pooled, key=_order):
        ratios = pooled[key]
        interval = stats.median_interval(ratios)
        shown = f"{interval[0]:.2f}–{interval[1]:.2f}" if interval else "–"
        conns, _, target = key.partition("-")
        lines.append(f"| {conns.lstrip('c')} | {target} | {len(ratios)} | "
                     f"{statistics.median(ratios):.2f} | {shown} | {min(ratios):.2f} | "
                     f"{max(ratios):.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="bench/proxy.py result files (JSON)")
    a = ap.parse_args()
    runs = []
    for path in a.runs:
        try:
            runs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path}: {e}") from None
    if not any(adjacent_ratios(r) for r in runs):
        raise SystemExit("no run with direct on both sides (bench/proxy.py --adjacent)")
    print(table(runs))


if __name__ == "__main__":
    main()
