"""``run_eagerly`` (ipydoc/proxy/eager.py): a coroutine that never waits runs to its end in
the call; one that waits goes on under Twisted exactly as ``Deferred.fromCoroutine`` would
run it: results and exceptions of every Deferred it awaits, a crash reported, a
cancellation passed in."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from ipydoc.proxy.eager import run_eagerly


def test_a_coroutine_that_never_waits_finishes_in_the_call():
    seen: list[object] = []

    async def quick() -> None:
        async def inner() -> int:
            return 7
        seen.append(await inner())

    d = run_eagerly(quick(), seen.append)
    assert seen == [7]
    assert d is None  # nothing left to run, nothing made to say so


def test_a_crash_in_the_first_step_is_reported():
    crashes: list[Failure] = []

    async def broken() -> None:
        raise ValueError("boom")

    run_eagerly(broken(), crashes.append)
    assert [f.value.args for f in crashes] == [("boom",)]


def test_values_and_errors_of_awaited_deferreds_reach_the_coroutine_in_order():
    first: Deferred[int] = Deferred()
    second: Deferred[int] = Deferred()
    third: Deferred[int] = Deferred()
    seen: list[object] = []
    crashes: list[Failure] = []

    async def waits() -> None:
        seen.append(await first)
        try:
            await second
        except KeyError as e:
            seen.append(("caught", e.args[0]))
        seen.append(await third)
        raise RuntimeError("late")

    d = run_eagerly(waits(), crashes.append)
    assert seen == [] and not d.called
    first.callback(1)
    assert seen == [1]
    second.errback(KeyError("k"))
    assert seen == [1, ("caught", "k")]
    third.callback(3)
    assert seen == [1, ("caught", "k"), 3]
    assert [f.value.args for f in crashes] == [("late",)]
    assert d.called


def test_an_already_fired_deferred_goes_on_at_once_and_cancel_reaches_the_coroutine():
    ready: Deferred[str] = Deferred()
    ready.callback("now")
    never: Deferred[None] = Deferred()
    seen: list[object] = []

    async def waits() -> None:
        seen.append(await ready)
        try:
            await never
        except CancelledError:
            seen.append("cancelled")
            raise

    d = run_eagerly(waits(), lambda f: seen.append(f.type))
    assert seen == ["now"]
    d.cancel()
    assert seen[:2] == ["now", "cancelled"]
    assert never.called
