"""Run a coroutine's first step now; only one that waits gets Twisted's driver.

``Deferred.fromCoroutine`` costs a Deferred, a context copy and the inline-callbacks
bookkeeping even when the coroutine never waits.  The proxy's per-request coroutine
usually does not: the gate decides from memory (session cache, route table) and the
forwarder is started without being awaited.  :func:`run_eagerly` sends the first step
itself; if the coroutine finishes there, that is all.  If it waits on a Deferred, the rest
(that Deferred first, then every later step, exceptions and cancellation included) is
handed to ``Deferred.fromCoroutine`` through :func:`_resume`, so a coroutine that waits
behaves exactly as one run by Twisted from the start.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure


def run_eagerly(coro: Coroutine[Any, Any, Any],
                crashed: Callable[[Failure], object]) -> Deferred[None] | None:
    """Run ``coro`` (its result is dropped); ``crashed`` gets what it raises.  None if it
    ended in the call (no Deferred made for it), else the Deferred of the rest."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    except BaseException:
        crashed(Failure())
        return None
    d: Deferred[None] = Deferred.fromCoroutine(_rest(coro, pending))
    d.addErrback(crashed)
    return d


async def _rest(coro: Coroutine[Any, Any, Any], pending: object) -> None:
    await _resume(coro, pending)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], pending: object) -> Generator[Any, Any, Any]:
    """``coro`` suspended on ``pending``: wait for it, then go on with ``coro`` step by
    step, passing results and exceptions (a cancellation too) through both ways."""
    value: Any = None
    error: BaseException | None = None
    try:
        value = yield pending
    except BaseException as e:  # noqa: BLE001 - handed to the coroutine as is
        error = e
    while True:
        try:
            if error is not None:
                e, error = error, None
                pending = coro.throw(e)
            else:
                pending = coro.send(value)
        except StopIteration as stop:
            return stop.value
        value = None
        try:
            value = yield pending
        except BaseException as e:  # noqa: BLE001
            error = e
