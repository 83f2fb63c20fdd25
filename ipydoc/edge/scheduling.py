"""How the daemon's reactor thread is scheduled (``proxy.scheduling``): normally while
traffic is light, ``SCHED_BATCH`` while it is heavy.

Why.  A proxied request wakes the daemon twice (the request, then the answer), and on a
host whose CPUs are busy with users' servers each wake-up preempts whatever runs there:
most often the very server that answers, which then refills its caches.  Measured with
the server and the daemon on one CPU (``bench/proxy.py``, docs/front_end.md), that costs
the server about a fifth of its throughput, more than all of the daemon's own Python.
Under ``SCHED_BATCH`` a woken thread does not preempt; it runs when the running task
sleeps or its time slice ends, and then finds several events to serve in one go.  The
price is latency on a contended CPU, up to one slice (a few ms) per wake-up: not worth
paying for one person typing, worth paying when thousands of events a second arrive.

So in ``"adaptive"`` mode :class:`BusyScheduling` looks every :data:`WINDOW` seconds at how
many socket events the reactor handled (:attr:`ipydoc.edge.reactor.LeanEPollReactor.events`:
an event is one readable or writable socket, about two per proxied request, whatever the
policy) and switches to ``SCHED_BATCH`` at ``busy_events`` a second, back to normal
below half of that.  The switch to batch does not wait for the end of a window: the
reactor calls back as soon as a window holds ``busy_events × WINDOW`` events (a rate at
the line or above, for certain), so a burst is served in batch within a fraction of a
second.  ``"normal"`` never switches, ``"batch"`` always runs so.

Only the reactor thread's policy changes (``sched_setscheduler(0, ...)`` applies to the
calling thread), and any user may switch between these two policies: no privilege is
needed.  Processes the daemon starts while in batch inherit it (git for the history, at
most); the policy goes back to normal when the service stops.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from prometheus_client import Gauge
from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

_log = Logger()

#: The values of ``proxy.scheduling``.
MODES = ("adaptive", "normal", "batch")
#: Seconds between two looks at the event rate.
WINDOW = 0.5

_batch_gauge = Gauge(
    "ipydoc_proxy_batch_scheduling",
    "1 while the daemon's reactor thread runs as SCHED_BATCH (proxy.scheduling)")


def next_batch(batch: bool, rate: float, busy: float) -> bool:
    """Whether to run as ``SCHED_BATCH`` next, at ``rate`` events a second: from ``busy``
    on, until below half of it (the gap keeps a rate near the line from flapping)."""
    return rate >= busy / 2 if batch else rate >= busy


def set_batch(batch: bool) -> None:
    """The calling thread's policy: ``SCHED_BATCH`` or normal (``SCHED_OTHER``)."""
    os.sched_setscheduler(0, os.SCHED_BATCH if batch else os.SCHED_OTHER, os.sched_param(0))


class BusyScheduling(Service):
    """Applies ``proxy.scheduling`` to the reactor thread (see the module's docstring)."""

    name = "busy-scheduling"

    def __init__(self, reactor: Any, mode: str, busy_events: int) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        self.reactor = reactor
        self.mode = mode
        self.busy = float(busy_events)
        self.batch = False
        self._loop: LoopingCall | None = None
        self._seen = 0
        self._at = 0.0

    def startService(self) -> None:
        super().startService()
        if self.mode == "adaptive" and not hasattr(self.reactor, "events"):
            _log.warn("proxy.scheduling = \"adaptive\" needs ipydoc's reactor, not "
                      "{reactor}; scheduled normally", reactor=type(self.reactor).__name__)
            self.mode = "normal"
        # Set even in "normal": a worker started by one in batch would have inherited it.
        if not self._apply(self.mode == "batch"):
            return
        if self.mode == "adaptive":
            self._seen, self._at = self.reactor.events, self.reactor.seconds()
            self._arm()
            self._loop = LoopingCall(self._look)
            self._loop.clock = self.reactor
            self._loop.start(WINDOW, now=False)

    def stopService(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._disarm()
        if self.batch:
            self._apply(False)
        return super().stopService()

    def _look(self) -> None:
        seen, now = self.reactor.events, self.reactor.seconds()
        elapsed = now - self._at
        if elapsed < WINDOW / 2:  # just after the alarm: too short a while to judge by
            return
        rate = (seen - self._seen) / elapsed
        self._seen, self._at = seen, now
        self._switch(next_batch(self.batch, rate, self.busy), rate)
        self._arm()

    def _busy_now(self) -> None:
        """The reactor's alarm: this window already holds ``busy × WINDOW`` events, in
        less than ``WINDOW`` seconds, so the rate is at the line or above."""
        seen, now = self.reactor.events, self.reactor.seconds()
        elapsed = max(now - self._at, 1e-3)
        rate = (seen - self._seen) / elapsed
        self._seen, self._at = seen, now  # the next look measures from here
        self._switch(True, rate)

    def _switch(self, batch: bool, rate: float) -> None:
        if batch != self.batch and self._apply(batch):
            _log.info("proxy scheduling: {policy} at {rate:.0f} socket events/s",
                      policy="batch (busy)" if batch else "normal", rate=rate)

    def _arm(self) -> None:
        """While normal, have the reactor call :meth:`_busy_now` when this window reaches
        the line; in batch the looks alone decide (the way back waits for a window)."""
        if self.batch:
            self._disarm()
            return
        self.reactor.events_alarm = self._seen + max(1, int(self.busy * WINDOW))
        self.reactor.on_events = self._busy_now

    def _disarm(self) -> None:
        if hasattr(self.reactor, "events_alarm"):
            self.reactor.events_alarm = sys.maxsize
            self.reactor.on_events = None

    def _apply(self, batch: bool) -> bool:
        """Set the policy; False (and adapting stops) if the system refuses."""
        try:
            set_batch(batch)
        except (OSError, AttributeError) as e:  # no such call here, or refused
            _log.warn("proxy.scheduling: cannot set the reactor thread's policy ({e}); "
                      "scheduled normally", e=e)
            if self._loop is not None and self._loop.running:
                self._loop.stop()
            self._disarm()
            return False
        self.batch = batch
        _batch_gauge.set(1 if batch else 0)
        return True
