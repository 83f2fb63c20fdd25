"""The control command that reads events: the newest ones, or long polling for new ones."""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import defer

from ipydoc.control import commands as c
from ipydoc.control.base import ControlBase, newest_json, page_json, responder


class EventCommands(ControlBase):
    """``Events``: long polling for new events, woken as soon as one is added."""

    @responder(c.Events)
    async def events(self, after: str, wait: float, limit: int, user: str, kinds: str) -> dict:
        limit = max(1, min(limit, 500))
        wanted = {k for k in kinds.split(",") if k}

        def keep(e: dict[str, Any]) -> bool:
            return (not user or e.get("user") == user) and (not wanted or e.get("kind") in wanted)

        if not after:
            recent = [e for e in reversed(await self.store.recent_events(limit)) if keep(e)]
            last = await self.store.last_event_id()
            # Cut by size, the oldest go: "the last N events" must end with the newest.
            text, taken = newest_json(recent)
            return {"items": text, "last": last, "omitted": len(recent) - taken}
        if after == "$":
            after = await self.store.last_event_id()
        if not _is_stream_id(after):
            raise c.InvalidInput(f"not an event id: {after!r}")
        deadline = time.monotonic() + max(0.0, min(wait, c.MAX_WAIT))
        while True:
            batch = await self.store.events_after(after, limit)
            if batch:
                chosen = [e for e in batch if keep(e)]
                text, taken = page_json(chosen)
                if taken < len(chosen):  # cut by size: resume after the last one sent
                    return {"items": text, "last": chosen[taken - 1]["id"]}
                after = batch[-1]["id"]
                if chosen or len(batch) == limit:
                    return {"items": text, "last": after}
            left = deadline - time.monotonic()
            if left <= 0 or self._closed:
                return {"items": "[]", "last": after}
            await self._nap(min(left, 1.0))

    def _nap(self, seconds: float) -> defer.Deferred[None]:
        """Until an event is added in this process, the connection closes, or ``seconds``."""
        d: defer.Deferred[None] = defer.Deferred()
        reactor = self.context.reactor

        def wake() -> None:
            if not d.called:
                d.callback(None)
        timer = reactor.callLater(seconds, wake)
        unsubscribe = self.store.on_event_added(wake)
        self._wakers.add(d)

        def done(result: Any) -> Any:
            self._wakers.discard(d)
            unsubscribe()
            if timer.active():
                timer.cancel()
            return result
        return d.addBoth(done)


def _is_stream_id(text: str) -> bool:
    ms, _, seq = text.partition("-")
    return ms.isdigit() and (seq == "" or seq.isdigit())


