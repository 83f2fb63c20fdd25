"""The in-memory session cache stays bounded (LRU) and still answers from Redis after an
eviction, against the real embedded redis-server."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.web.http_headers import Headers

from ipydoc.access.cookies import SESSION_COOKIE
from ipydoc.access.metrics import SESSION_CACHE_EVICTIONS as EVICTIONS
from ipydoc.access.sessions import Sessions
from ipydoc.state.redis_service import RedisService


class _Request:
    def __init__(self, cookie: bytes) -> None:
        self.requestHeaders = Headers({b"cookie": [SESSION_COOKIE.encode() + b"=" + cookie]})

    def isSecure(self) -> bool:
        return False


class _CountingStore:
    """The real store, with its session reads counted (to see hits vs Redis reads)."""

    def __init__(self, service: RedisService) -> None:
        self._service = service
        self.reads = 0

    @property
    def store(self):  # noqa: ANN201 (the real Store, wrapped)
        outer = self
        real = self._service.store

        class Counted:
            def __getattr__(self, name):  # noqa: ANN001, ANN204
                return getattr(real, name)

            async def get_session(self, session_id):  # noqa: ANN001, ANN201
                outer.reads += 1
                return await real.get_session(session_id)

        if not hasattr(self, "_counted"):
            self._counted = Counted()
        return self._counted


@pytest_twisted.ensureDeferred
async def test_the_session_cache_keeps_the_most_recently_used_and_counts_evictions(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    source = _CountingStore(service)
    sessions = Sessions(source, b"k" * 64, 3600, cache_max=3)
    try:
        users = [f"user{i}" for i in range(5)]
        requests = {}
        for u in users:
            await service.store.create_session(f"sid-{u}", u, "c", 3600)
            requests[u] = _Request(sessions.signer.sign(f"sid-{u}").encode())
        before = EVICTIONS._value.get()
        for u in users:
            assert (await sessions.from_request(requests[u])).user == u
        assert source.reads == len(users)
        assert sessions.cached == 3
        assert sessions.evictions == len(users) - 3
        assert EVICTIONS._value.get() - before == len(users) - 3
        # The three most recent are hits (no Redis read) ...
        for u in users[-3:]:
            assert (await sessions.from_request(requests[u])).user == u
        assert source.reads == len(users)
        # ... an evicted one is read again from Redis, and still valid.
        assert (await sessions.from_request(requests[users[0]])).user == users[0]
        assert source.reads == len(users) + 1
        assert sessions.cached == 3
        # Cache now [3, 4, 0]: two more misses push out 3 and 4, the entries used least
        # recently, while 2 (used in between) stays.
        assert (await sessions.from_request(requests[users[2]])).user == users[2]
        assert (await sessions.from_request(requests[users[1]])).user == users[1]
        reads = source.reads
        assert (await sessions.from_request(requests[users[2]])).user == users[2]
        assert source.reads == reads  # still cached
        # A revoked session is gone at once, cached or not.
        await service.store.revoke_sessions(users[2])
        assert await sessions.from_request(requests[users[2]]) is None
    finally:
        await service.stopService()
