"""Many server records read in pipelines (reconcile, metrics snapshot, admin listings),
against the real embedded redis-server."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from ipydoc.state import servers as servers_module
from ipydoc.state.redis_service import RedisService


@pytest_twisted.ensureDeferred
async def test_list_and_get_servers_read_every_record_across_pipeline_batches(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    store = service.store
    n = servers_module.PIPELINE_BATCH * 2 + 7  # three pipelines, the last one short
    try:
        for i in range(n):
            state = "running" if i % 3 else "stopped"
            await store.set_server(f"u{i:04d}", state, route=state == "running",
                                   url=f"http://127.0.0.1:{10000 + i}", token=f"t{i}",
                                   id=f"c{i}")
        before = await _commands(store, "hgetall")
        listed = await store.list_servers()
        assert [s.name for s in listed] == [f"u{i:04d}" for i in range(n)]
        assert await _commands(store, "hgetall") - before == n
        for i, s in enumerate(listed):
            if i % 3:
                assert (s.state, s.url, s.token, s.id) == (
                    "running", f"http://127.0.0.1:{10000 + i}", f"t{i}", f"c{i}")
            else:
                assert (s.state, s.url, s.token) == ("stopped", "", "")
        asked = [f"u{i:04d}" for i in range(0, n, 5)] + ["nobody", "u9999"]
        got = await store.get_servers(asked)
        assert sorted(got) == sorted(a for a in asked if a.startswith("u") and a != "u9999")
        assert got["u0005"].url == "http://127.0.0.1:10005"
        assert await store.get_servers([]) == {}
        states = await store.server_states()
        assert states == {f"u{i:04d}": ("running" if i % 3 else "stopped") for i in range(n)}
        # A single read still works on its own, and the pool is usable after pipelines.
        assert (await store.get_server("u0001")).token == "t1"
        assert await store.get_server("nobody") is None
    finally:
        await service.stopService()


async def _commands(store, name: str) -> int:
    """How many ``name`` commands Redis has run (INFO commandstats)."""
    info = await store.redis.execute_command("INFO", "commandstats")
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{name}:"):
            return int(line.split("calls=", 1)[1].split(",", 1)[0])
    return 0
