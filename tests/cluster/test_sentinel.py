"""``redis+sentinel://`` against real Redis Sentinel: a master, a replica and one Sentinel
(``redis-server --sentinel``); the store follows a failover by itself."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ipydoc.state.redis_service import RedisService

from support import free_port

REDIS = shutil.which("redis-server") or "redis-server"


def cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True).stdout.strip()


def wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met")
        time.sleep(0.05)


@pytest.fixture
def sentinel(tmp_path):
    master, replica, sport = free_port(), free_port(), free_port()
    procs = []
    for port, extra in ((master, []), (replica, ["--replicaof", "127.0.0.1", str(master)])):
        d = tmp_path / str(port)
        d.mkdir()
        procs.append(subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--dir", str(d), *extra],
                                      stdout=subprocess.DEVNULL))
    wait(lambda: cli(replica, "PING") == "PONG" and cli(master, "PING") == "PONG")
    wait(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"))
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sport}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor site 127.0.0.1 {master} 1\n"
                    "sentinel down-after-milliseconds site 1000\n"
                    "sentinel failover-timeout site 5000\n")
    procs.append(subprocess.Popen([REDIS, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
    wait(lambda: cli(sport, "SENTINEL", "get-master-addr-by-name", "site") != "")
    wait(lambda: "slaves=1" in cli(sport, "INFO", "sentinel"))
    yield {"master": master, "replica": replica, "sentinel": sport}
    for p in procs:
        p.terminate()
        p.wait()


@pytest_twisted.ensureDeferred
async def test_the_store_connects_through_sentinel_and_follows_a_failover(sentinel, tmp_path):
    service = RedisService(f"redis+sentinel://127.0.0.1:{sentinel['sentinel']}/site/0",
                           tmp_path, reactor)
    await service.startService()
    store = service.store
    try:
        assert "Sentinels" in service.describe()
        await store.create_session("cookie-1", "alice", "csrf", 3600)
        assert cli(sentinel["master"], "DBSIZE") != "0"  # written to the master
        # Fail over: the replica becomes master; ipydoc's connections to the old one drop
        # (it is demoted) and reconnect to whatever the Sentinel names now.
        deadline = time.monotonic() + 60
        while (out := cli(sentinel["sentinel"], "SENTINEL", "failover", "site")) != "OK":
            # NOGOODSLAVE until the Sentinel has heard from the replica a few times
            assert time.monotonic() < deadline, out
            await deferLater(reactor, 0.5, lambda: None)
        while str(sentinel["replica"]) not in cli(sentinel["sentinel"], "SENTINEL",
                                                  "get-master-addr-by-name", "site"):
            assert time.monotonic() < deadline, "the Sentinel did not fail over"
            await deferLater(reactor, 0.1, lambda: None)
        while True:
            try:
                await store.create_session("cookie-2", "alice", "csrf", 3600)
                break
            except Exception:  # noqa: BLE001 - READONLY / connection lost while it moves
                if time.monotonic() > deadline:
                    raise
                await deferLater(reactor, 0.2, lambda: None)
        assert "role:master" in cli(sentinel["replica"], "INFO", "replication")
        assert (await store.get_session("cookie-2"))["user"] == "alice"
        assert (await store.get_session("cookie-1"))["user"] == "alice"
    finally:
        await service.stopService()
