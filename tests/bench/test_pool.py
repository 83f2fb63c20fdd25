"""Pooling runs of ``bench/proxy.py --adjacent``: every repetition of every run counts once,
against the direct runs on its own two sides, and runs without those are left out."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import pool  # noqa: E402
import stats  # noqa: E402


def _run(tag: str, rng: random.Random, reps: int, adjacent: bool = True) -> dict:
    rows = {}
    for key in ("c10-ipydoc", "c50-ipydoc", "c50-nginx"):
        rs = []
        for i in range(reps):
            rep = {"rps": rng.uniform(500, 1500), "rep": i + 1}
            if adjacent:
                rep["direct_adjacent"] = rng.uniform(1000, 2000)
            rs.append(rep)
        rows[key] = {"reps": rs}
    rows["c50-direct"] = {"reps": [{"rps": 1800.0, "rep": 1}]}
    return {"tag": tag, "wrk": rows}


def test_every_repetition_of_every_run_is_pooled_against_its_own_direct_runs() -> None:
    rng = random.Random(1202)
    runs = [_run("a", rng, 7), _run("b", rng, 5), _run("old", rng, 4, adjacent=False)]
    pooled = pool.pool(runs)
    assert set(pooled) == {"c10-ipydoc", "c50-ipydoc", "c50-nginx"}  # no direct, no "old"
    for key, ratios in pooled.items():
        expected = [r["rps"] / r["direct_adjacent"] for run in runs[:2]
                    for r in run["wrk"][key]["reps"]]
        assert ratios == expected


def test_the_table_gives_the_pooled_median_and_its_interval(tmp_path: Path) -> None:
    rng = random.Random(1203)
    runs = [_run("a", rng, 6), _run("b", rng, 6)]
    files = []
    for run in runs:
        files.append(tmp_path / f"{run['tag']}.json")
        files[-1].write_text(json.dumps(run))
    out = subprocess.run([sys.executable, str(BENCH / "pool.py"), *map(str, files)],
                         capture_output=True, text=True, check=True).stdout
    ratios = pool.pool(runs)["c50-ipydoc"]
    lo, hi = stats.median_interval(ratios)  # type: ignore[misc]
    row = next(line for line in out.splitlines() if line.startswith("| 50 | ipydoc |"))
    assert row == (f"| 50 | ipydoc | 12 | {statistics.median(ratios):.2f} | {lo:.2f}–{hi:.2f} "
                   f"| {min(ratios):.2f} | {max(ratios):.2f} |")
    assert "`a`, `b`" in out


def test_runs_without_direct_on_both_sides_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_run("old", random.Random(1), 6, adjacent=False)))
    done = subprocess.run([sys.executable, str(BENCH / "pool.py"), str(path)],
                          capture_output=True, text=True)
    assert done.returncode != 0 and "--adjacent" in done.stderr
