"""Waiting, bounded, for a user's server start that is under way.

A request that needs the server (an API call, a WebSocket, a page) arriving while the
server starts need not fail: a cold login's browser runs ahead of the start on purpose
(issue 15 §2).  The wait ends when the start's progress reaches its last step (ready or
failed) or after ``timeout`` seconds, whichever comes first; the caller then looks at
the route again.  :func:`wait_for_phase` waits for an earlier step (``creating``: the
start has left the queue and its record names the image).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from twisted.internet import defer

from ipydoc.servers.progress import Step


async def wait_for_start(manager: Any, name: str, timeout: float) -> None:
    """Return when ``name``'s start under way ends, or after ``timeout`` seconds."""
    await wait_for_phase(manager, name, (), timeout)


async def wait_for_phase(manager: Any, name: str, phases: Collection[str],
                         timeout: float) -> Step | None:
    """The first step of ``name``'s start under way whose phase is in ``phases`` (or its
    last step), or None when no start is under way or ``timeout`` seconds passed first."""
    progress = manager.progress.get(name)
    if progress is None or not manager.is_starting(name):
        return None
    done: defer.Deferred[Step | None] = defer.Deferred()

    def follow(step: Step) -> None:
        if (step.final or step.phase in phases) and not done.called:
            done.callback(step)

    unsubscribe = progress.listen(follow)
    timer = manager.reactor.callLater(timeout, lambda: done.called or done.callback(None))
    try:
        return await done
    finally:
        unsubscribe()
        if timer.active():
            timer.cancel()
