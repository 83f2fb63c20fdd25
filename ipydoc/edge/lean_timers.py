"""The lean front end's timeouts: one sweep over its connections, no timer per request.

twisted.web arms, resets and cancels a ``DelayedCall`` per request (idle timeout, and the
strict channel's head and body timers); for small proxied requests that bookkeeping is a
visible part of the cost.  Here each lean connection only notes *when* its current state
began (a plain float), and :class:`LeanClock` looks at all of them every ``every``
seconds (a quarter of the shortest timeout, at most one second): a connection past its
limit is told so.  Timeouts fire up to ``every`` late, never early.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from ipydoc.edge.limits import RequestLimits


class Timed(Protocol):
    """What the clock needs from a lean connection."""

    def check_deadlines(self, now: float) -> None:
        """Act on whatever limit has passed at ``now`` (``time.monotonic``)."""


class LeanClock:
    """Sweeps the lean connections of one site."""

    def __init__(self, reactor: Any, limits: RequestLimits) -> None:
        self._reactor = reactor
        shortest = min(limits.header_timeout, limits.body_timeout, limits.idle_timeout,
                       limits.send_timeout)
        self.every = max(min(1.0, shortest / 4), 0.01)
        self._channels: set[Timed] = set()
        self._call: Any = None

    def add(self, channel: Timed) -> None:
        self._channels.add(channel)
        if self._call is None:
            self._call = self._reactor.callLater(self.every, self._sweep)

    def forget(self, channel: Timed) -> None:
        self._channels.discard(channel)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _sweep(self) -> None:
        self._call = None
        now = time.monotonic()
        for channel in list(self._channels):
            channel.check_deadlines(now)
        if self._channels:
            self._call = self._reactor.callLater(self.every, self._sweep)
