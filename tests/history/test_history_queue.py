"""The history queue's Redis scripts against a real redis-server: the cap (coalesce or
refuse, never drop what is queued), attempts written into the head, dead letters; and the
worker's use of them (tries counted in Redis survive a restart)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from ipydoc.config.history import HistorySection
from ipydoc.history.service import History
from ipydoc.state.redis_service import RedisService


async def embedded(tmp_path) -> RedisService:
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    return service


def save(path: str, t: float = 1.0) -> dict:
    return {"op": "save", "path": path, "time": t}


@pytest_twisted.ensureDeferred
async def test_a_full_queue_coalesces_or_refuses_and_keeps_what_is_queued(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        entries = [save("head.ipynb"), save("a.ipynb"), save("dir/b.ipynb"),
                   {"op": "delete", "path": "dir", "time": 1.0}, save("c.ipynb")]
        for e in entries:
            assert await store.history_enqueue("alice", e, cap=5) == "queued"
        before = await store.history_peek_raw("alice", 100)
        # a.ipynb is queued (not at the head) as its newest change: covered by that save
        assert await store.history_enqueue("alice", save("a.ipynb", 2.0), cap=5) == "coalesced"
        # head.ipynb is only at the head, whose read may be done already: refused
        assert await store.history_enqueue("alice", save("head.ipynb", 2.0), cap=5) == "full"
        # dir/b.ipynb's newest change is the delete of its folder: refused
        assert await store.history_enqueue("alice", save("dir/b.ipynb", 2.0), cap=5) == "full"
        # never queued, or not a save: refused
        assert await store.history_enqueue("alice", save("new.ipynb"), cap=5) == "full"
        assert await store.history_enqueue(
            "alice", {"op": "delete", "path": "c.ipynb", "time": 2.0}, cap=5) == "full"
        assert await store.history_peek_raw("alice", 100) == before  # nothing lost or added
        assert await store.history_enqueue("bob", save("x"), cap=5) == "queued"  # per user
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_attempts_and_dead_letters_only_touch_the_head_as_read(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        await store.history_enqueue("alice", save("a"), cap=10)
        await store.history_enqueue("alice", save("b"), cap=10)
        head = (await store.history_peek_raw("alice"))[0]
        counted = json.dumps({**json.loads(head), "attempts": 1})
        assert await store.history_replace_head("alice", head, counted)
        assert not await store.history_replace_head("alice", head, counted)  # stale read
        assert not await store.history_dead_letter("alice", head, "too late", 1)
        assert await store.history_dead_letter("alice", counted, "too-large: body over", 1)
        assert [json.loads(r)["path"] for r in await store.history_peek_raw("alice")] == ["b"]
        dead = await store.history_dead_letters("alice")
        assert dead == [{"entry": {"op": "save", "path": "a", "time": 1.0, "attempts": 1},
                         "reason": "too-large: body over", "time": dead[0]["time"],
                         "attempts": 1}]
        for i in range(store.HISTORY_DEAD_KEEP + 5):  # the dead letters are capped too
            await store.history_enqueue("bob", save(f"f{i}"))
            raw = (await store.history_peek_raw("bob"))[0]
            await store.history_dead_letter("bob", raw, "x", 1)
        dead = await store.history_dead_letters("bob")
        assert len(dead) == store.HISTORY_DEAD_KEEP
        assert dead[0]["entry"]["path"] == f"f{store.HISTORY_DEAD_KEEP + 4}"  # newest first
    finally:
        await service.stopService()


class _Closer(Protocol):
    """A user's server that hangs up on every request (transient: "closed")."""

    def dataReceived(self, data: bytes) -> None:
        if b"\r\n\r\n" in data:
            self.factory.requests += 1
            self.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_tries_are_counted_in_redis_so_a_restart_does_not_retry_forever(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    factory = Factory.forProtocol(_Closer)
    factory.requests = 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    manager = SimpleNamespace(
        routes={"alice": SimpleNamespace(url=f"http://127.0.0.1:{port.getHost().port}",
                                         token="t")},
        base_url=lambda name: f"/user/{name}/")
    # As a daemon that died during its tries left them: 3 of 3 made, and 2 of 3.
    await store.history_enqueue("alice", {**save("spent.txt"), "attempts": 3,
                                          "error": "closed: the server closed"})
    await store.history_enqueue("alice", {**save("once-more.txt"), "attempts": 2})
    cfg = HistorySection(coalesce_seconds=0.0, max_attempts=3)
    history = History(cfg, tmp_path, SimpleNamespace(store=store), manager, reactor,
                      secret=b"s" * 64)
    try:
        await history.startService()
        for _ in range(100):
            if not await store.history_queued("alice"):
                break
            await deferLater(reactor, 0.1, lambda: None)
        dead = await store.history_dead_letters("alice")
        assert [(d["entry"]["path"], d["attempts"]) for d in dead] == [
            ("once-more.txt", 3), ("spent.txt", 3)]
        assert "gave up after 3 attempts: closed" in dead[1]["reason"]
        assert factory.requests == 1  # one try left for once-more.txt, none for spent.txt
        kinds = [e["kind"] for e in await store.recent_events(10)]
        assert kinds.count("history-dead-letter") == 2
    finally:
        history.stopService()
        port.stopListening()
        await service.stopService()
