"""Reconciling many running servers at once (start-up after a restart): the records are
read in one pipeline and the adoptions run side by side; every rule of the one-by-one
version still holds.  Real embedded Redis; the backend is a stand-in that lists what a
Docker engine would (the reconciler, not Docker, is under test here: tests/servers/
test_lifecycle.py restarts a daemon over real containers)."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor

from ipydoc.backends.base import ServerInfo
from ipydoc.servers.reconcile import Reconciler
from ipydoc.servers.routes import Route
from ipydoc.state.redis_service import RedisService


class ListingBackend:
    """Lists ``infos``; records what was stopped."""

    def __init__(self, infos: list[ServerInfo]) -> None:
        self.infos = infos
        self.stopped: list[str] = []

    async def list(self) -> list[ServerInfo]:
        return list(self.infos)

    async def stop(self, name: str) -> None:
        self.stopped.append(name)


def base_url(name: str) -> str:
    return f"/user/{name}/"


@pytest_twisted.ensureDeferred
async def test_a_restart_with_many_running_servers_adopts_each_by_the_same_rules(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    store = service.store
    n = 120
    infos = []
    try:
        for i in range(n):
            name = f"u{i:03d}"
            infos.append(ServerInfo(name, f"c{i}", True, f"http://127.0.0.1:{20000 + i}",
                                    image="img", started_at=1000.0 + i, token=f"env{i}",
                                    base_url=base_url(name), paused=(i % 10 == 3)))
            if i % 2 == 0:  # the record knows the container: its token is kept
                await store.set_server(name, "running", route=True, id=f"c{i}",
                                       url=f"http://127.0.0.1:{20000 + i}", token=f"rec{i}")
            elif i % 5 == 1:  # a record of an older container: the container's token wins
                await store.set_server(name, "running", route=True, id="old",
                                       url="http://127.0.0.1:1", token="stale")
        # Two that must be stopped: started under another routing, and one without token.
        infos.append(ServerInfo("moved", "cm", True, "http://127.0.0.1:30000",
                                token="t", base_url="/elsewhere/"))
        infos.append(ServerInfo("tokenless", "ct", True, "http://127.0.0.1:30001",
                                token=None, base_url=base_url("tokenless")))
        # A record whose container is gone, and a stale route in memory.
        await store.set_server("gone", "running", route=True, id="cg",
                               url="http://127.0.0.1:30002", token="g")
        routes = {"ghost": Route("http://127.0.0.1:9", "x", "cx")}
        backend = ListingBackend(infos)
        reconciler = Reconciler(backend, service, routes, lambda name: False, base_url)

        await reconciler.reconcile()

        assert sorted(backend.stopped) == ["moved", "tokenless"]
        assert set(routes) == {f"u{i:03d}" for i in range(n)}
        records = await store.get_servers(sorted(routes) + ["moved", "gone"])
        for i in range(n):
            name = f"u{i:03d}"
            want_token = f"rec{i}" if i % 2 == 0 else f"env{i}"
            paused = i % 10 == 3
            route = routes[name]
            assert (route.url, route.token, route.id, route.paused) == (
                f"http://127.0.0.1:{20000 + i}", want_token, f"c{i}", paused)
            record = records[name]
            assert record.state == ("paused" if paused else "running")
            assert (record.token, record.id, record.url) == (
                want_token, f"c{i}", f"http://127.0.0.1:{20000 + i}")
            assert (record.paused_since is not None) == paused
        assert records["moved"].state == "stopped"
        assert records["gone"].state == "stopped"
        stored_routes = await store.routes()
        assert set(stored_routes) == set(routes)
        assert "ghost" not in routes

        # Reconciling again changes nothing (the same routes, the same tokens).
        before = dict(routes)
        await reconciler.reconcile()
        assert routes == before
    finally:
        await service.stopService()


class FollowedBackend(ListingBackend):
    """Also an events stream that connects ``delay`` s after ``follow`` (never: None)."""

    def __init__(self, infos: list[ServerInfo], delay: float | None) -> None:
        super().__init__(infos)
        self.reactor = reactor
        self.delay = delay
        self.lists = 0
        self.on_open = None

    async def list(self) -> list[ServerInfo]:
        from twisted.internet.task import deferLater

        self.lists += 1
        await deferLater(reactor, 0.01, lambda: None)  # an answer comes later, as Docker's
        return await super().list()

    def follow(self, on_event, on_open) -> None:
        self.on_open = on_open
        if self.delay is not None:
            reactor.callLater(self.delay, on_open, False)


async def _settle() -> None:
    from twisted.internet.task import deferLater
    await deferLater(reactor, 0.3, lambda: None)


@pytest_twisted.ensureDeferred
async def test_the_first_reconcile_lists_once_after_the_stream_connects(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    try:
        info = ServerInfo("alice", "c1", True, "http://127.0.0.1:20001", token="t",
                          base_url=base_url("alice"))
        backend = FollowedBackend([info], delay=0.2)
        routes: dict = {}
        reconciler = Reconciler(backend, service, routes, lambda name: False, base_url)
        reconciler.follow()            # as the manager starts: follow, then reconcile
        await reconciler.reconcile()
        await _settle()
        assert backend.lists == 1      # listed once, after the stream connected
        assert set(routes) == {"alice"}
        backend.on_open(True)          # a reconnection (dockerd restarted): reconcile again
        await _settle()
        assert backend.lists == 2
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_stream_that_does_not_connect_delays_the_first_reconcile_only_briefly(
        tmp_path, monkeypatch):
    from ipydoc.servers import reconcile as module

    monkeypatch.setattr(module, "STREAM_WAIT", 0.2)
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    try:
        info = ServerInfo("bob", "c2", True, "http://127.0.0.1:20002", token="t",
                          base_url=base_url("bob"))
        backend = FollowedBackend([info], delay=None)
        routes: dict = {}
        reconciler = Reconciler(backend, service, routes, lambda name: False, base_url)
        reconciler.follow()
        await reconciler.reconcile()   # the wait ends, the listing goes on
        assert backend.lists == 1 and set(routes) == {"bob"}
        backend.on_open(False)         # connects late: already reconciled, nothing to do
        await _settle()
        assert backend.lists == 1
    finally:
        await service.stopService()
