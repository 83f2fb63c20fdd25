"""Waiting, bounded, for a user's server start that is under way.

A request that needs the server (an API call, a WebSocket) arriving while the server
starts need not fail: a cold login's browser runs ahead of the start on purpose (issue
15 §2).  The wait ends when the start's progress reaches its last step (ready or
failed) or after ``timeout`` seconds, whichever comes first; the caller then looks at
the route again.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from ipydoc.servers.progress import Step


async def wait_for_start(manager: Any, name: str, timeout: float) -> None:
    """Return when ``name``'s start under way ends, or after ``timeout`` seconds."""
    progress = manager.progress.get(name)
    if progress is None or not manager.is_starting(name):
        return
    done: defer.Deferred[None] = defer.Deferred()

    def follow(step: Step) -> None:
        if step.final and not done.called:
            done.callback(None)

    unsubscribe = progress.listen(follow)
    timer = manager.reactor.callLater(timeout, lambda: done.called or done.callback(None))
    try:
        await done
    finally:
        unsubscribe()
        if timer.active():
            timer.cancel()
