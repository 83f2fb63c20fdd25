"""The metrics refresher: snapshot gauges set from Redis and the engine every few seconds.

A Prometheus scrape calls ``collect()`` synchronously, so it must never wait on Redis or
Docker; the values it reports for servers by state, active users, the history queue and
the round-trip times are the ones this service took last (``docs/metrics.md``).  Each
probe (an async callable from a folder's ``metrics.py``, wired in :mod:`ipydoc.tap`)
gets a total deadline; one that overruns is cancelled and its ``on_timeout`` marks what
it measures as down.  Failures are logged once when a probe starts failing and once when
it works again, not every few seconds.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet import defer
from twisted.logger import Logger

#: Seconds between two refreshes; a scrape sees values at most this old (plus a probe).
INTERVAL = 5.0
#: Seconds one probe may take before it counts as failed (and is cancelled).
DEADLINE = 4.0


@dataclass(frozen=True)
class Probe:
    """One measurement: ``run`` sets its gauges; ``on_timeout`` when it fails."""

    name: str
    run: Callable[[], Awaitable[None]]
    on_timeout: Callable[[], None] | None = None


class MetricsRefresher(TimerService):
    """Runs every probe, all at once, every ``interval`` seconds (the first at start)."""

    log = Logger()

    def __init__(self, probes: list[Probe], reactor: Any, interval: float = INTERVAL,
                 deadline: float = DEADLINE) -> None:
        super().__init__(interval, self.refresh)
        self.clock = reactor  # TimerService's LoopingCall runs on this reactor
        self._reactor = reactor
        self._probes = list(probes)
        self._deadline = deadline
        self._failing: set[str] = set()
        self.setName("metrics")

    def refresh(self) -> defer.Deferred[Any]:
        """One round; never fails (the LoopingCall would stop)."""
        return defer.gatherResults([self._one(p) for p in self._probes], consumeErrors=True)

    def _one(self, probe: Probe) -> defer.Deferred[None]:
        d = defer.Deferred.fromCoroutine(_run(probe))
        d.addTimeout(self._deadline, self._reactor)
        d.addCallbacks(lambda _: self._ok(probe), lambda f: self._failed(probe, f))
        return d

    def _ok(self, probe: Probe) -> None:
        if probe.name in self._failing:
            self._failing.discard(probe.name)
            self.log.info("metrics: {probe} works again", probe=probe.name)

    def _failed(self, probe: Probe, failure: Any) -> None:
        if probe.on_timeout is not None:
            probe.on_timeout()
        if probe.name not in self._failing:
            self._failing.add(probe.name)
            why = ("no answer within {:g} s".format(self._deadline)
                   if failure.check(defer.TimeoutError) else failure.getErrorMessage())
            self.log.warn("metrics: {probe} failed ({why}); its values are stale until it "
                          "works again", probe=probe.name, why=why)


async def _run(probe: Probe) -> None:
    await probe.run()
