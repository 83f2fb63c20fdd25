"""How sure a bench's median is: a distribution-free confidence interval.

This machine's speed drifts by up to 2× within minutes (bench/README.md), so a ratio
from one run says little and a median of a few says more only with its spread.  The
interval for the median needs no assumption about how the ratios are distributed: the
number of them below the true median is binomial(n, ½), so the k-th smallest and k-th
largest of n values enclose it with a probability that follows from that alone.
"""

from __future__ import annotations

from math import comb


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The narrowest pair of order statistics (k-th smallest, k-th largest) that encloses
    the median with probability at least ``level``; None when there are too few values for
    any (fewer than 6 at 95%)."""
    n = len(values)
    if not 0 < level < 1 or n == 0:
        return None
    tail = (1 - level) / 2
    # P(fewer than k of n fall below the median) = P(Binomial(n, 1/2) <= k - 1)
    k, below = 0, 0.0
    while k < n // 2:
        below += comb(n, k) / 2**n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    ordered = sorted(values)
    return ordered[k - 1], ordered[n - k]
