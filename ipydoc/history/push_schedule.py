"""When to push a user's history: one push at a time per user, commits during a push
coalesced into one more push after it, failures retried with exponential backoff.

The push itself is the caller's (the site mirror :mod:`.mirror`, users' own
repositories :mod:`.user_repo`): an async function of the name that
returns ``None`` when done (pushed, or nothing to do, or stopped for good) and raises
:class:`Retry` to be called again later.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from twisted.internet import defer
from twisted.logger import Logger


class Retry(Exception):
    """The push failed in a way that may pass: call again after the backoff."""


class PushSchedule:
    log = Logger()

    def __init__(self, push: Callable[[str], Awaitable[None]], reactor: Any,
                 backoff_max: float) -> None:
        self._push = push
        self.reactor = reactor
        self.backoff_max = backoff_max
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._timers: dict[str, Any] = {}
        self.failures: dict[str, int] = {}  # consecutive failed attempts per name

    def soon(self, name: str) -> None:
        """Push ``name`` now, or after the push in progress, or at the scheduled retry."""
        if name in self._busy:
            self._again.add(name)
            return
        timer = self._timers.get(name)
        if timer is not None and timer.active():
            return  # a retry is scheduled; it pushes the newest commit anyway
        self._busy.add(name)
        d = defer.Deferred.fromCoroutine(self._run(name))
        d.addErrback(lambda f: self.log.failure("history: pushing {name}", f, name=name))

    def now(self, name: str) -> None:
        """Push at once, dropping a scheduled retry (the user fixed something)."""
        self.forget(name)
        self.soon(name)

    def delay(self, name: str) -> float:
        """The wait before the next attempt after ``failures[name]`` failures."""
        return min(float(self.backoff_max), 2.0 ** (self.failures.get(name, 1) - 1))

    async def _run(self, name: str) -> None:
        try:
            self._again.discard(name)
            try:
                await self._push(name)
            except Retry:
                self._timers[name] = self.reactor.callLater(self.delay(name), self._retry,
                                                            name)
        finally:
            self._busy.discard(name)
            if name in self._again and name not in self._timers:
                self.soon(name)

    def _retry(self, name: str) -> None:
        self._timers.pop(name, None)
        self.soon(name)

    def forget(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()
        self.failures.pop(name, None)

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
