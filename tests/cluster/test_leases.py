"""Leases, fenced server writes and the pub/sub bus against a real redis-server."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import deferLater

from ipydoc.state.leases import DAEMON_ID
from ipydoc.state.redis_service import RedisService
from ipydoc.state.redis_url import parse


async def connected(path: str, tmp_path) -> RedisService:
    service = RedisService(f"unix://{path}?db=3", tmp_path, reactor)
    await service.startService()
    await service.store.redis.execute_command("FLUSHDB")
    return service


@pytest_twisted.ensureDeferred
async def test_a_lease_is_held_once_renewed_by_its_owner_and_fenced(redis_server_path, tmp_path):
    service = await connected(redis_server_path, tmp_path)
    store = service.store
    try:
        mine = await store.take_lease("start:alice", 5.0)
        assert mine is not None and mine.owner == DAEMON_ID
        assert await store.take_lease("start:alice", 5.0, owner="other") is None
        again = await store.take_lease("start:alice", 5.0)  # its owner: renewed, same fence
        assert again == mine
        assert await store.renew_lease(mine, 5.0)
        assert (await store.lease_holder("start:alice")) == mine
        assert await store.release_lease(mine)
        assert await store.lease_holder("start:alice") is None
        theirs = await store.take_lease("start:alice", 0.2, owner="other")
        assert theirs is not None and theirs.fence > mine.fence
        # The old holder can neither renew nor release the new holder's lease.
        assert not await store.renew_lease(mine, 5.0)
        assert not await store.release_lease(mine)
        await deferLater(reactor, 0.4, lambda: None)  # expires: anyone may take it
        taken = await store.take_lease("start:alice", 5.0)
        assert taken is not None and taken.fence > theirs.fence
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stale_start_cannot_overwrite_a_newer_record(redis_server_path, tmp_path):
    service = await connected(redis_server_path, tmp_path)
    store = service.store
    try:
        assert await store.set_server_fenced("bob", 7, "starting", id="")
        assert await store.set_server_fenced("bob", 8, "running", route=True, id="new",
                                             url="http://10.0.0.8:8888", token="t" * 64)
        # The start with fence 7 finishes late: refused, the newer record and route stay.
        assert not await store.set_server_fenced("bob", 7, "running", route=True, id="old",
                                                 url="http://10.0.0.7:8888", token="s" * 64)
        record = await store.get_server("bob")
        assert (record.state, record.id, record.url) == ("running", "new", "http://10.0.0.8:8888")
        assert await store.routes() == {"bob": "http://10.0.0.8:8888"}
        assert await store.server_fence("bob") == 8
        assert await store.set_server_fenced("bob", 8, "failed", error="x")
        assert await store.routes() == {}
        assert (await store.get_server("bob")).token == ""
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_ending_sessions_is_told_to_the_other_daemons(redis_server_path, tmp_path):
    one = await connected(redis_server_path, tmp_path / "one")
    two = RedisService(f"unix://{redis_server_path}?db=3", tmp_path / "two", reactor)
    await two.startService()
    try:
        # Both services run in this one process, so they share DAEMON_ID: tell two's
        # messages apart by handing the bus a message as another daemon would.
        seen: list[tuple[str, str]] = []
        ended = defer.Deferred()
        two.bus.listen(lambda kind, name: seen.append((kind, name)))
        two.store.on_sessions_ended(lambda: ended.called or ended.callback(None))
        await one.store.redis.publish(
            "ipydoc:cluster", '{"from": "elsewhere:1:ab", "kind": "sessions-ended", "name": ""}')
        await ended.addTimeout(5, reactor)
        await deferLater(reactor, 0, lambda: None)  # the listeners after the store's
        assert seen == [("sessions-ended", "")]
        # Our own messages are not delivered back, and junk on the channel is ignored.
        await one.bus.publish("server-up", "alice")
        await one.store.redis.publish("ipydoc:cluster", "not json")
        await deferLater(reactor, 0.3, lambda: None)
        assert seen == [("sessions-ended", "")]
    finally:
        await one.stopService()
        await two.stopService()


def test_redis_url_forms():
    assert parse("redis://:pw@db.example:6380/2") == parse("redis://:pw@db.example:6380/2")
    t = parse("redis://:p%40ss@db.example:6380/2")
    assert (t.kind, t.host, t.port, t.db, t.password) == ("tcp", "db.example", 6380, 2, "p@ss")
    t = parse("unix:///run/redis.sock?db=4")
    assert (t.kind, t.path, t.db) == ("unix", "/run/redis.sock", 4)
    t = parse("redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/ipydoc/1")
    assert t.kind == "sentinel" and t.service == "ipydoc" and t.db == 1
    assert t.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379)) and t.password == "pw"
    assert "pw" not in t.describe()
    for bad in ("http://x", "redis+sentinel://h:1/", "redis+sentinel://h/svc"):
        with pytest.raises(ValueError):
            parse(bad)


@pytest_twisted.ensureDeferred
async def test_the_bus_reconnects_by_itself_and_reloads(redis_server_path, tmp_path):
    service = await connected(redis_server_path, tmp_path)
    try:
        again = defer.Deferred()
        ended = []
        service.bus.on_connected(lambda reconnected: reconnected and not again.called
                                 and again.callback(None))
        service.store.on_sessions_ended(lambda: ended.append(1))
        # Redis drops the subscriber (a restart, a failover, a network cut would too).
        killed = await service.store.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed) >= 1
        await again.addTimeout(10, reactor)
        assert ended, "what may have been missed is dropped: the session caches are emptied"
        seen = defer.Deferred()
        service.bus.listen(lambda kind, name: seen.called or seen.callback((kind, name)))
        await service.store.redis.publish(
            "ipydoc:cluster", '{"from": "elsewhere:2:cd", "kind": "server-up", "name": "bob"}')
        assert await seen.addTimeout(5, reactor) == ("server-up", "bob")
    finally:
        await service.stopService()
