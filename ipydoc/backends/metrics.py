"""The container engine as the metrics see it: the round-trip time of Docker's
``/_ping`` (``docs/metrics.md``), measured by the metrics refresher
(:mod:`ipydoc.servers.metrics_refresh`) every few seconds."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import Gauge

DOCKER_RTT = Gauge("ipydoc_docker_roundtrip_seconds",
                   "Round-trip time of the last /_ping to the Docker engine from this daemon")
DOCKER_UP = Gauge("ipydoc_docker_up", "1 if the last /_ping to the Docker engine was "
                  "answered, else 0")


async def probe_docker(ping: Callable[[], Awaitable[Any]]) -> None:
    """``ping`` is the engine client's (``DockerAPI.ping`` / ``SwarmAPI.ping``), timed."""
    t0 = time.perf_counter()
    try:
        await ping()
    except Exception:
        DOCKER_UP.set(0)
        raise
    DOCKER_RTT.set(time.perf_counter() - t0)
    DOCKER_UP.set(1)


def docker_unreachable() -> None:
    """The probe did not finish in time."""
    DOCKER_UP.set(0)
