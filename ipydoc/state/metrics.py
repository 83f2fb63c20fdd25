"""Redis as the metrics see it: the round-trip time of a ``PING`` (``docs/metrics.md``).

Measured by the metrics refresher (:mod:`ipydoc.servers.metrics_refresh`) every few
seconds; ``ipydoc_redis_up`` is 0 while Redis does not answer (the refresher's deadline),
so an alert does not depend on the absence of a series.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Gauge

REDIS_RTT = Gauge("ipydoc_redis_roundtrip_seconds",
                  "Round-trip time of the last PING to Redis from this daemon")
REDIS_UP = Gauge("ipydoc_redis_up", "1 if the last PING to Redis was answered, else 0")


async def probe_redis(store: Any) -> None:
    """PING through ``store`` (:class:`ipydoc.state.store.Store`), timed."""
    t0 = time.perf_counter()
    try:
        ok = await store.ping()
    except Exception:
        REDIS_UP.set(0)
        raise
    REDIS_RTT.set(time.perf_counter() - t0)
    REDIS_UP.set(1 if ok else 0)


def redis_unreachable() -> None:
    """The probe did not finish in time (or had no connection to try)."""
    REDIS_UP.set(0)
