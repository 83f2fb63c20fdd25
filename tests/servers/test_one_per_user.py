"""Concurrent starts of one user's server share one start; others are independent."""

import pytest
import pytest_twisted
from twisted.internet import defer

from ipydoc.servers.queue import OnePerUser


@pytest_twisted.ensureDeferred
async def test_callers_share_one_run_and_its_result():
    flights = OnePerUser()
    gate: defer.Deferred[str] = defer.Deferred()
    runs = []

    async def op():
        runs.append(1)
        return await gate

    first = defer.Deferred.fromCoroutine(flights.run("alice", op))
    assert flights.busy("alice")  # busy before any await completes
    second = defer.Deferred.fromCoroutine(flights.run("alice", op))
    other = defer.Deferred.fromCoroutine(flights.run("bob", lambda: defer.succeed("bob's")))
    assert await other == "bob's"
    gate.callback("server")
    assert await first == "server" and await second == "server"
    assert runs == [1]
    assert not flights.busy("alice")


@pytest_twisted.ensureDeferred
async def test_failure_reaches_every_caller_and_wait_swallows_it():
    flights = OnePerUser()
    gate: defer.Deferred[str] = defer.Deferred()
    first = defer.Deferred.fromCoroutine(flights.run("alice", lambda: gate))
    second = defer.Deferred.fromCoroutine(flights.run("alice", lambda: gate))
    waited = defer.Deferred.fromCoroutine(flights.wait("alice"))
    gate.errback(RuntimeError("image missing"))
    for d in (first, second):
        with pytest.raises(RuntimeError, match="image missing"):
            await d
    assert await waited is None
