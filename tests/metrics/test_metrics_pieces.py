"""The pieces of the metrics: snapshot probes against a real redis-server, the refresher's
deadline (on a deterministic clock), the bearer-token page, the proxy's bound counters."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import pytest_twisted
from prometheus_client import REGISTRY
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock

from ipydoc.history.metrics import refresh_history
from ipydoc.proxy import metrics as proxy_metrics
from ipydoc.servers.metrics import WINDOWS, refresh_servers
from ipydoc.servers.metrics_refresh import MetricsRefresher, Probe
from ipydoc.servers.queue import SpawnQueue
from ipydoc.state.metrics import probe_redis
from ipydoc.state.redis_service import RedisService
from ipydoc.web.metrics_page import MetricsPage


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def connected(path: str, tmp_path) -> RedisService:
    service = RedisService(f"unix://{path}?db=5", tmp_path, reactor)
    await service.startService()
    await service.store.redis.execute_command("FLUSHDB")
    return service


@pytest_twisted.ensureDeferred
async def test_snapshots_from_redis(redis_server_path, tmp_path):
    service = await connected(redis_server_path, tmp_path)
    store = service.store
    try:
        now = time.time()
        states = {"u1": "running", "u2": "running", "u3": "stopped", "u4": "failed",
                  "u5": "starting"}
        for name, state in states.items():
            await store.set_server(name, state)
        seen = {"u1": now - 10, "u2": now - 1000, "u3": now - 7200, "u4": now - 90000}
        await store.record_activity(seen)
        queued = {"u1": [now - 30, now - 5], "u2": [now - 400]}
        for name, stamps in queued.items():
            for t in stamps:
                await store.history_enqueue(name, {"op": "save", "path": "a.ipynb", "time": t})
        queue = SpawnQueue(1)
        await queue.acquire(lambda n: None)  # one start holds the only slot ...
        waiting = defer.Deferred.fromCoroutine(queue.acquire(lambda n: None))  # ... one waits

        await refresh_servers(store, queue, per_user=False, now=now)
        await refresh_history(store, per_user=False, now=now)
        by_state = Counter(states.values())
        for state in ("starting", "running", "stopping", "stopped", "failed"):
            assert sample("ipydoc_servers", state=state) == by_state.get(state, 0), state
        for label, seconds in WINDOWS:
            assert sample("ipydoc_active_users", window=label) == \
                sum(1 for t in seen.values() if now - t <= seconds), label
        assert sample("ipydoc_start_queue_length") == 1
        assert sample("ipydoc_starts_in_progress") == 1
        assert sample("ipydoc_history_queue_length") == sum(map(len, queued.values()))
        assert sample("ipydoc_history_queue_users") == len(queued)
        assert sample("ipydoc_history_commit_lag_seconds") == \
            pytest.approx(now - min(min(v) for v in queued.values()))
        assert sample("ipydoc_user_server_running", user="u1") is None  # per_user off

        await refresh_servers(store, queue, per_user=True, now=now)
        await refresh_history(store, per_user=True, now=now)
        for name, state in states.items():
            assert sample("ipydoc_user_server_running", user=name) == \
                (1 if state == "running" else 0)
        assert sample("ipydoc_user_idle_seconds", user="u1") == pytest.approx(10)
        assert sample("ipydoc_user_idle_seconds", user="u3") is None  # not running
        assert sample("ipydoc_user_history_queue_length", user="u1") == 2

        await refresh_servers(store, queue, per_user=False, now=now)  # switched off: gone
        assert sample("ipydoc_user_server_running", user="u1") is None

        await probe_redis(store)
        assert sample("ipydoc_redis_up") == 1
        assert sample("ipydoc_redis_roundtrip_seconds") > 0
        queue.release()
        await waiting
    finally:
        await service.stopService()


def test_a_probe_that_hangs_is_cut_at_its_deadline_and_marked_down():
    clock = Clock()
    downs: list[str] = []
    hanging: list[defer.Deferred[None]] = []

    def hang() -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        hanging.append(d)
        return d

    async def fine() -> None:
        downs.append("fine ran")

    refresher = MetricsRefresher([Probe("stuck", hang, lambda: downs.append("stuck down")),
                                  Probe("fine", fine)], clock, interval=5.0, deadline=4.0)
    refresher.startService()
    assert downs == ["fine ran"] and len(hanging) == 1
    clock.advance(4.0)  # the deadline: cancelled, marked down; the round is over
    assert downs == ["fine ran", "stuck down"]
    assert hanging[0].called  # cancelled, not left running
    clock.advance(1.0)  # the next round runs as usual
    assert downs.count("fine ran") == 2 and len(hanging) == 2
    clock.advance(4.0)
    assert downs.count("stuck down") == 2
    refresher.stopService()


@pytest_twisted.ensureDeferred
async def test_bearer_page():
    off = StubTreq(MetricsPage(None).app.resource())
    assert (await off.get("http://hub.test/metrics")).code == 404
    token = "k" * 32
    page = StubTreq(MetricsPage(token).app.resource())
    for headers in ({}, {"Authorization": "Bearer " + "j" * 32},
                    {"Authorization": "Bearer " + token[:-1]}, {"Authorization": token},
                    {"Authorization": "Basic " + token}):
        r = await page.get("http://hub.test/metrics", headers=headers)
        assert r.code == 401, headers
        assert r.headers.getRawHeaders(b"www-authenticate") == [b'Bearer realm="ipydoc metrics"']
    r = await page.get("http://hub.test/metrics", headers={"Authorization": "bearer " + token})
    assert r.code == 200
    text = (await r.content()).decode()
    assert "ipydoc_proxy_requests_total" in text and "process_open_fds" in text


def test_proxy_counters_by_status_class():
    before = {c: sample("ipydoc_proxy_requests_total", code=c) or 0.0
              for c in ("none", "2xx", "5xx")}
    count = sample("ipydoc_proxy_request_duration_seconds_count") or 0.0
    to_client = sample("ipydoc_proxy_bytes_total", direction="to_client") or 0.0
    for code in (200, 204, 502, 0, 99):
        proxy_metrics.http_done(code, 0.01, 0, 10)
    assert sample("ipydoc_proxy_requests_total", code="2xx") - before["2xx"] == 2
    assert sample("ipydoc_proxy_requests_total", code="5xx") - before["5xx"] == 1
    assert sample("ipydoc_proxy_requests_total", code="none") - before["none"] == 2
    assert sample("ipydoc_proxy_request_duration_seconds_count") - count == 5
    assert sample("ipydoc_proxy_bytes_total", direction="to_client") - to_client == 50
