"""The Redis key schema against a real redis-server: the embedded one the daemon runs."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import pytest_twisted
from twisted.internet import reactor

from ipydoc.state.redis_service import RedisService


async def embedded(tmp_path) -> RedisService:
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    return service


@pytest_twisted.ensureDeferred
async def test_sessions_survive_a_restart_of_the_embedded_redis(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    await store.create_session("cookie-id", "alice", "csrf-1", 3600)
    await store.set_server("alice", "running", route=True, url="http://127.0.0.1:1234",
                           token="t" * 64, id="c1")
    sock = tmp_path / "redis" / "redis.sock"
    assert oct(os.stat(tmp_path / "redis").st_mode & 0o777) == "0o700"
    await service.stopService()
    assert not sock.exists() or subprocess.run(
        ["redis-cli", "-s", str(sock), "PING"], capture_output=True).returncode != 0

    service = await embedded(tmp_path)
    store = service.store
    try:
        assert (await store.get_session("cookie-id"))["user"] == "alice"
        assert await store.routes() == {"alice": "http://127.0.0.1:1234"}
        # Only a hash of the cookie's id is stored.
        keys = await store.redis.keys("ipydoc:session:*")
        assert keys and all("cookie-id" not in k for k in keys)
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_route_exists_exactly_while_running_and_token_goes_with_it(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        await store.set_server("bob", "starting", image="img")
        assert await store.routes() == {}
        await store.set_server("bob", "running", route=True, url="http://127.0.0.1:5",
                               token="secret", id="c2", started=1.5)
        assert await store.routes() == {"bob": "http://127.0.0.1:5"}
        server = await store.get_server("bob")
        assert (server.state, server.token, server.image, server.started) == \
            ("running", "secret", "img", 1.5)
        assert "token" not in server.public()
        await store.set_server("bob", "stopped", id="")
        assert await store.routes() == {}
        stopped = await store.get_server("bob")
        assert stopped.token == "" and stopped.url == ""
        with pytest.raises(ValueError):
            await store.set_server("bob", "exploded")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_users_sessions_and_revocation(tmp_path):
    service = await embedded(tmp_path)
    store = service.store
    try:
        assert await store.add_user("carol", "hash", admin=False)
        assert not await store.add_user("carol", "other", admin=True)  # taken: unchanged
        user = await store.get_user("carol")
        assert (user.password_hash, user.admin, user.disabled) == ("hash", False, False)
        for name in ("dave", "alice", "bob"):
            await store.add_user(name, "h", admin=False)
        page, total = await store.list_users(1, 2)
        assert total == 4 and [u.name for u in page] == ["bob", "carol"]
        await store.create_session("s1", "carol", "c", 3600)
        await store.create_session("s2", "carol", "c", 3600)
        await store.delete_session("s1")
        assert await store.get_session("s1") is None
        assert await store.revoke_sessions("carol") == 1
        assert await store.get_session("s2") is None
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_redis_left_behind_by_a_killed_daemon_is_replaced(tmp_path):
    service = await embedded(tmp_path)
    await service.store.create_session("kept", "alice", "c", 3600)
    await service.store.redis.execute_command("BGREWRITEAOF")
    pid = int((tmp_path / "redis" / "redis.pid").read_text())
    # The daemon dies without stopping its child (SIGKILL): the child lives on.
    await service.pool.disconnect()
    service._child = None
    os.kill(pid, 0)
    again = await embedded(tmp_path)
    try:
        new_pid = int((tmp_path / "redis" / "redis.pid").read_text())
        assert new_pid != pid
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert (await again.store.get_session("kept"))["user"] == "alice"
    finally:
        await again.stopService()
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest_twisted.ensureDeferred
async def test_cached_sessions_end_the_moment_they_are_revoked(tmp_path):
    from ipydoc.access.cookies import SESSION_COOKIE
    from ipydoc.access.sessions import Sessions

    service = await embedded(tmp_path)
    sessions = Sessions(service, b"k" * 64, 3600)

    from twisted.web.http_headers import Headers

    class Request:
        def __init__(self, cookie):
            self.requestHeaders = Headers({b"cookie": [SESSION_COOKIE.encode() + b"=" + cookie]})

        def isSecure(self):
            return False

    try:
        await service.store.create_session("sid-1", "alice", "c", 3600)
        await service.store.create_session("sid-2", "alice", "c", 3600)
        req1 = Request(sessions.signer.sign("sid-1").encode())
        req2 = Request(sessions.signer.sign("sid-2").encode())
        assert (await sessions.from_request(req1)).user == "alice"
        assert (await sessions.from_request(req2)).user == "alice"
        await service.store.delete_session("sid-1")          # logout
        assert await sessions.from_request(req1) is None
        assert (await sessions.from_request(req2)).user == "alice"
        await service.store.revoke_sessions("alice")         # CLI revoke / disable
        assert await sessions.from_request(req2) is None
        assert await sessions.from_request(Request(b"sid-1.forged")) is None
    finally:
        await service.stopService()
