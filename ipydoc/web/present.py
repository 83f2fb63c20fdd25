"""Small helpers for the pages: time and size formatting (Jinja2 filters), admin rows
and their sorting, and a short-lived cache of container stats shared by every admin."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from twisted.internet import defer

StatsFn = Callable[[str], Awaitable[dict | None]]


def when(ts: float | None) -> str:
    """``2024-05-01 12:34 UTC``; an em dash for no time."""
    if not ts:
        return "—"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(ts: float | None) -> str:
    if not ts:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def ago(ts: float | None, now: float | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``; ``never`` for no time."""
    if not ts:
        return "never"
    delta = (now or time.time()) - ts
    if delta < 60:
        return "just now"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    days = int(delta // 86400)
    return f"{days} day{'s' if days != 1 else ''} ago"


def until(ts: float | None, now: float | None = None) -> str:
    """``in 3 h``, ``in 7 days``; ``never`` for no time."""
    if not ts:
        return "never"
    delta = ts - (now or time.time())
    if delta <= 0:
        return "expired"
    if delta < 3600:
        return f"in {max(1, int(delta // 60))} min"
    if delta < 86400 * 2:
        return f"in {int(delta // 3600)} h"
    return f"in {int(delta // 86400)} days"


def size(n: float | None) -> str:
    """Bytes in binary units: ``512 KiB``, ``123.4 MiB``, ``2.0 GiB``."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def percent(p: float | None) -> str:
    return "—" if p is None else f"{p:.1f} %"


FILTERS = {"when": when, "iso": iso, "ago": ago, "until": until, "size": size,
           "percent": percent}


# -- admin rows ----------------------------------------------------------------------------
SORTS = {"name": "Name", "state": "State", "activity": "Last activity", "memory": "Memory",
         "cpu": "CPU", "created": "Created"}
STATE_ORDER = {"running": 0, "paused": 1, "starting": 2, "stopping": 3, "failed": 4,
               "stopped": 5}


@dataclass
class Row:
    name: str
    admin: bool
    disabled: bool
    created: float
    state: str
    error: str = ""
    last_activity: float | None = None
    stats: dict[str, Any] | None = None
    paused_since: float | None = None


def sort_rows(rows: list[Row], key: str, descending: bool) -> list[Row]:
    """Sort by ``key`` (one of :data:`SORTS`); rows without a value go last either way."""
    def value(r: Row) -> Any:
        if key == "state":
            return STATE_ORDER.get(r.state, 9)
        if key == "activity":
            return r.last_activity
        if key == "memory":
            return r.stats["mem_bytes"] if r.stats else None
        if key == "cpu":
            return r.stats["cpu_percent"] if r.stats else None
        if key == "created":
            return r.created
        return r.name

    have = [r for r in rows if value(r) is not None]
    missing = [r for r in rows if value(r) is None]
    have.sort(key=lambda r: (value(r), r.name), reverse=descending)
    missing.sort(key=lambda r: r.name)
    return have + missing


@dataclass
class StatsCache:
    """Stats of running containers, sampled at most every ``ttl`` seconds.

    A sample takes the engine about a second per container (it measures CPU over that
    second); containers are sampled concurrently, at most ``parallel`` at a time, and
    admins polling at once share one sampling.
    """

    stats: StatsFn | None
    ttl: float = 3.0
    parallel: int = 16
    _at: float = 0.0
    _ids: dict[str, str] = field(default_factory=dict)
    _values: dict[str, dict[str, Any]] = field(default_factory=dict)
    _running: defer.Deferred[None] | None = None

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last sample, by user name (no waiting)."""
        return dict(self._values)

    async def sample(self, containers: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Stats by user name for ``containers`` (user name → container id)."""
        if self.stats is None:
            return {}
        fresh = time.monotonic() - self._at < self.ttl and self._ids == containers
        if not fresh:
            if self._running is None:
                self._running = defer.Deferred.fromCoroutine(self._sample(containers))
                self._running.addBoth(self._done)
            running = self._running
            await defer.Deferred.fromCoroutine(_wait(running))
        return {n: v for n, v in self._values.items() if n in containers}

    def _done(self, result: Any) -> Any:
        self._running = None
        return result

    async def _sample(self, containers: dict[str, str]) -> None:
        assert self.stats is not None
        limit = defer.DeferredSemaphore(self.parallel)
        names = list(containers)

        async def one(cid: str) -> dict | None:
            try:
                return await self.stats(cid)
            except Exception:  # noqa: BLE001 - a server that went away shows no stats
                return None

        results = await defer.gatherResults(
            [limit.run(lambda c=containers[n]: defer.Deferred.fromCoroutine(one(c)))
             for n in names], consumeErrors=True)
        self._values = {n: r for n, r in zip(names, results) if r is not None}
        self._ids = dict(containers)
        self._at = time.monotonic()


async def _wait(d: defer.Deferred[None]) -> None:
    """Wait for a shared Deferred without taking its result from other waiters."""
    done: defer.Deferred[None] = defer.Deferred()
    d.addBoth(lambda r: (done.callback(None), r)[1])
    await done
