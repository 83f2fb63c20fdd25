"""Named servers in Redis (issue 19 §1): records by server key, the owner's index, one
script call for ``servers_of``, removal of a named server and of the whole user; against
the real embedded redis-server."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from ipydoc.state.redis_service import RedisService


async def _commands(store, name: str) -> int:
    info = await store.redis.execute_command("INFO", "commandstats")
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{name}:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0


@pytest_twisted.ensureDeferred
async def test_servers_of_lists_default_first_then_named_in_one_call(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    store = service.store
    try:
        await store.set_server("alice--gpu", "running", route=True, url="http://10.0.0.2:8888",
                               token="t-gpu", id="c-gpu")
        await store.set_server("alice--big", "stopped")
        await store.set_server("alice", "running", route=True, url="http://10.0.0.1:8888",
                               token="t-default")
        await store.set_server("alicea", "running", route=True, url="http://10.0.0.9:8888")
        assert await store.set_server_fenced("bob--lab2", 3, "starting", image="img")
        calls = await _commands(store, "eval")
        found = await store.servers_of("alice")
        assert await _commands(store, "eval") - calls == 1
        assert [s.name for s in found] == ["alice", "alice--big", "alice--gpu"]
        assert [(s.owner, s.server) for s in found] == [("alice", ""), ("alice", "big"),
                                                         ("alice", "gpu")]
        assert found[2].token == "t-gpu" and found[1].state == "stopped"
        assert found[2].public()["server"] == "gpu" and "token" not in found[2].public()
        assert [s.name for s in await store.servers_of("bob")] == ["bob--lab2"]
        assert await store.servers_of("carol") == []
        routes = await store.routes()
        assert routes["alice--gpu"] == "http://10.0.0.2:8888" and "alice--big" not in routes

        await store.remove_server_record("alice--big")
        assert [s.name for s in await store.servers_of("alice")] == ["alice", "alice--gpu"]
        assert "alice--big" not in await store.server_states()

        await store.record_activity({"alice--gpu": 100.0, "alice": 200.0})
        await store.remove_user("alice")
        assert await store.servers_of("alice") == []
        assert set(await store.server_states()) == {"alicea", "bob--lab2"}
        assert set(await store.routes()) == {"alicea"}
        assert await store.activity() == {}
        assert await store.named_server_keys("alice") == []
    finally:
        await service.stopService()
