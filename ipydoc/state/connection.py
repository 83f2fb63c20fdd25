"""What every part of the store shares: the Redis client, the clock, SCAN and Lua.

The parts (:mod:`ipydoc.state.users`, :mod:`.sessions`, ...) each hold one concern's
operations; :class:`ipydoc.state.store.Store` is all of them over one connection.  Each
part is a :class:`StoreBase`, so it can also be built alone on a client (in tests).
"""

from __future__ import annotations

import time
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, gatherResults

T = TypeVar("T")


class StoreBase:
    """A Redis client (a txredisapi pool, or anything with its methods) and a clock."""

    def __init__(self, redis: Any, clock: Any = None) -> None:
        self.redis = redis
        self._now = clock.seconds if clock is not None else time.time

    async def _scan(self, pattern: str) -> set[str]:
        """Every key matching ``pattern`` (SCAN: for admin listings and start-up only)."""
        keys: set[str] = set()
        cursor = "0"
        while True:
            cursor, batch = await self.redis.scan(cursor, pattern, 1000)
            keys.update(batch)
            if str(cursor) == "0":
                return keys

    async def _eval(self, script: str, keys: list[str], *args: str) -> Any:
        """Run a Lua ``script`` on ``keys`` with ``args`` (one atomic step in Redis)."""
        return await self.redis.execute_command("EVAL", script, str(len(keys)), *keys, *args)


def as_float(v: str | None) -> float | None:
    """A stored number, or None for a missing or empty field."""
    return float(v) if v not in (None, "") else None


async def gather(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coros`` concurrently; their results in order."""
    ds = [Deferred.fromCoroutine(c) for c in coros]
    return list(await gatherResults(ds, consumeErrors=True)) if ds else []
