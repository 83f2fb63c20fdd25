"""Waiting in line for a start: one run per user, and the FIFO of start slots.

Both are plain Deferred plumbing with no I/O: the server manager builds its rules on them
(a stop never waits behind a start, at most ``spawn.concurrency`` starts at once, queue
positions on the progress page).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")


class OnePerUser:
    """At most one run of an operation per user; callers meanwhile share its outcome.

    The first caller's operation begins synchronously, so ``busy`` is true as soon as
    ``run`` was called, before any await.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[defer.Deferred[Any]]] = {}

    def busy(self, name: str) -> bool:
        return name in self._waiters

    async def run(self, name: str, op: Callable[[], Awaitable[T]]) -> T:
        if name in self._waiters:
            shared: defer.Deferred[T] = defer.Deferred()
            self._waiters[name].append(shared)
            return await shared
        self._waiters[name] = []
        try:
            result = await op()
        except BaseException:
            failure = Failure()
            for waiter in self._waiters.pop(name):
                waiter.errback(failure)
            raise
        for waiter in self._waiters.pop(name):
            waiter.callback(result)
        return result

    async def wait(self, name: str) -> None:
        """Until the run in flight (if any) has ended, however it ended."""
        if name in self._waiters:
            done: defer.Deferred[Any] = defer.Deferred()
            self._waiters[name].append(done)
            try:
                await done
            except Exception:  # noqa: BLE001 - its own caller handles the failure
                pass


class SpawnQueue:
    """A FIFO of starts waiting for one of ``size`` slots, with positions to show.

    ``acquire`` calls ``on_position(n)`` with the caller's 1-based place in the queue
    whenever it changes (n ahead + 1); it returns once the caller holds a slot.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.active = 0
        self._waiting: list[tuple[defer.Deferred[None], Callable[[int], None]]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    async def acquire(self, on_position: Callable[[int], None]) -> None:
        if self.active < self.size and not self._waiting:
            self.active += 1
            return
        d: defer.Deferred[None] = defer.Deferred()
        entry = (d, on_position)
        self._waiting.append(entry)
        on_position(len(self._waiting))
        try:
            await d
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._announce()
            raise

    def release(self) -> None:
        if self._waiting:
            d, _ = self._waiting.pop(0)  # the slot passes straight on: active stays
            self._announce()
            d.callback(None)
        else:
            self.active -= 1

    def _announce(self) -> None:
        for i, (_, on_position) in enumerate(self._waiting):
            on_position(i + 1)
