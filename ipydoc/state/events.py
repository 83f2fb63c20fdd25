"""The event log: the ``events`` stream (capped), read by ``ipydoc events`` and the admin page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import EVENTS

EVENTS_MAXLEN = 10_000


def _entries(raw: Any) -> list[dict[str, str]]:
    out = []
    for entry_id, flat in raw or []:
        item = dict(zip(flat[::2], flat[1::2]))
        item["id"] = entry_id
        item["time"] = int(str(entry_id).split("-")[0]) / 1000
        out.append(item)
    return out


class Events(StoreBase):
    def __init__(self, redis: Any, clock: Any = None) -> None:
        super().__init__(redis, clock)
        self._event_listeners: list[Callable[[], None]] = []

    async def add_event(self, kind: str, user: str = "", detail: str = "") -> None:
        await self.redis.execute_command(
            "XADD", EVENTS, "MAXLEN", "~", str(EVENTS_MAXLEN), "*",
            "kind", kind, "user", user, "detail", detail)
        for listener in list(self._event_listeners):
            listener()

    def on_event_added(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after each event this process adds; returns an unsubscriber.

        Lets a reader waiting for new events (``ipydoc events``) wake at once instead of
        polling; readers still poll now and then for events written by other processes.
        """
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener) \
            if listener in self._event_listeners else None

    async def recent_events(self, count: int = 50) -> list[dict[str, str]]:
        """The newest ``count`` events, newest first."""
        raw = await self.redis.execute_command("XREVRANGE", EVENTS, "+", "-", "COUNT", str(count))
        return _entries(raw)

    async def events_after(self, after: str, count: int = 100) -> list[dict[str, str]]:
        """Up to ``count`` events newer than the id ``after`` (e.g. ``0-0``), oldest first."""
        raw = await self.redis.execute_command("XRANGE", EVENTS, f"({after}", "+",
                                               "COUNT", str(count))
        return _entries(raw)

    async def last_event_id(self) -> str:
        raw = await self.redis.execute_command("XREVRANGE", EVENTS, "+", "-", "COUNT", "1")
        return str(raw[0][0]) if raw else "0-0"
