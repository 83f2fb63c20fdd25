"""The bench's confidence interval for a median encloses the true median as often as it
claims, and no narrower pair of order statistics would."""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import stats  # noqa: E402

TRIALS = 4000


def _coverage(n: int, inner: int, rng: random.Random) -> float:
    """How often the pair of order statistics ``inner`` places inside the interval
    ``median_interval`` picks encloses the true median (0.5 of a uniform draw)."""
    hits = 0
    for _ in range(TRIALS):
        values = [rng.random() for _ in range(n)]
        interval = stats.median_interval(values)
        assert interval is not None
        ordered = sorted(values)
        lo_at, hi_at = ordered.index(interval[0]) + inner, ordered.index(interval[1]) - inner
        hits += ordered[lo_at] <= 0.5 <= ordered[hi_at]
    return hits / TRIALS


def test_the_interval_holds_the_median_as_often_as_claimed() -> None:
    rng = random.Random(20261202)
    for n in (6, 8, 10, 15, 20):
        assert _coverage(n, 0, rng) >= 0.94, n  # 0.95 up to the simulation's own noise


def test_no_narrower_interval_would() -> None:
    rng = random.Random(20261203)
    for n in (8, 10, 15, 20):
        assert _coverage(n, 1, rng) < 0.95, n


def test_too_few_values_give_no_interval() -> None:
    assert stats.median_interval([0.7, 0.8, 0.75, 0.72, 0.71]) is None
    assert stats.median_interval([]) is None
    lo, hi = stats.median_interval([0.7, 0.8, 0.75, 0.72, 0.71, 0.9])  # type: ignore[misc]
    assert (lo, hi) == (0.7, 0.9)  # six values: only the extremes are sure enough
