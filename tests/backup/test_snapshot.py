"""ipydoc.state.snapshot against real Redis: an RDB taken through Sentinel from a
password-protected master (database 3), loaded by a throw-away redis-server and copied
key by key (types, values and expiry kept; sessions and leases left out on request)."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
import pytest_twisted

from ipydoc.state import snapshot
from ipydoc.state.redis_url import parse

from support import free_port

REDIS = shutil.which("redis-server") or "redis-server"
PW = "sentinel-master-pw"


def cli(port: int, *args: str, db: int = 0, password: str | None = None) -> str:
    env = {"PATH": "/usr/bin:/bin", **({"REDISCLI_AUTH": password} if password else {})}
    return subprocess.run(["redis-cli", "-p", str(port), "-n", str(db), *args],
                          capture_output=True, text=True, env=env).stdout.strip()


def wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


@pytest.fixture
def servers(tmp_path):
    master, target, sport = free_port(), free_port(), free_port()
    procs = []
    for port, extra in ((master, ["--requirepass", PW]), (target, [])):
        d = tmp_path / str(port)
        d.mkdir()
        procs.append(subprocess.Popen([REDIS, "--port", str(port), "--bind", "127.0.0.1",
                                       "--save", "", "--dir", str(d), *extra],
                                      stdout=subprocess.DEVNULL))
    wait(lambda: cli(master, "PING", password=PW) == "PONG" and cli(target, "PING") == "PONG")
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {sport}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor site 127.0.0.1 {master} 1\n"
                    f"sentinel auth-pass site {PW}\n")
    procs.append(subprocess.Popen([REDIS, str(conf), "--sentinel"], stdout=subprocess.DEVNULL))
    wait(lambda: cli(sport, "SENTINEL", "get-master-addr-by-name", "site") != "")
    yield {"master": master, "target": target, "sentinel": sport}
    for p in procs:
        p.terminate()
        p.wait()


def _seed(port: int) -> None:
    def c(*args: str) -> None:
        assert cli(port, *args, db=3, password=PW) not in ("", "ERR")
    c("HSET", "ipydoc:user:alice", "password", "$argon2id$x", "admin", "0")
    c("ZADD", "ipydoc:users", "0", "alice")
    c("XADD", "ipydoc:events", "*", "kind", "login", "user", "alice")
    c("SET", "ipydoc:session:" + "a" * 64, "x", "EX", "5000")
    c("SADD", "ipydoc:user-sessions:alice", "ipydoc:session:" + "a" * 64)
    c("HSET", "ipydoc:token:" + "b" * 64, "user", "alice")
    c("PEXPIRE", "ipydoc:token:" + "b" * 64, "9000000")
    c("SET", "ipydoc:lease:start:alice", "daemon 3", "EX", "30")
    c("SET", "ipydoc:fence:start:alice", "3")
    c("SET", "other:key", "not ours")
    cli(port, "SET", "ipydoc:in-db-0", "elsewhere", db=0, password=PW)


@pytest_twisted.ensureDeferred
async def test_rdb_through_sentinel_then_key_copy(servers, tmp_path):
    _seed(servers["master"])
    target = parse(f"redis+sentinel://:{PW}@127.0.0.1:{servers['sentinel']}/site/3")
    rdb = tmp_path / "dump.rdb"
    snapshot.take_rdb(target, None, rdb)
    assert rdb.stat().st_size > 0

    dest = parse(f"redis://127.0.0.1:{servers['target']}/1")
    with snapshot.throwaway(rdb, tmp_path / "source") as server:
        source = await snapshot.connect(None, server.socket, db=3)
        into = await snapshot.connect(dest, None)
        try:
            assert not await snapshot.has_ipydoc_keys(into)
            counts = await snapshot.copy_keys(source, into, sessions=False)
            assert await snapshot.has_ipydoc_keys(into)
        finally:
            await source.disconnect()
            await into.disconnect()
    assert not (tmp_path / "source" / "appendonlydir").exists()  # persisted nothing

    t = servers["target"]
    keys = sorted(cli(t, "--scan", db=1).split())
    assert keys == ["ipydoc:events", "ipydoc:fence:start:alice", "ipydoc:token:" + "b" * 64,
                    "ipydoc:user:alice", "ipydoc:users"]
    assert counts == {"copied": 5, "skipped": 3}
    assert cli(t, "TYPE", "ipydoc:events", db=1) == "stream"
    assert cli(t, "HGET", "ipydoc:user:alice", "password", db=1) == "$argon2id$x"
    assert 8_000_000 < int(cli(t, "PTTL", "ipydoc:token:" + "b" * 64, db=1)) <= 9_000_000
    assert cli(t, "TTL", "ipydoc:user:alice", db=1) == "-1"
    assert cli(t, "DBSIZE", db=0) == "0"


def test_a_wrong_password_is_a_clear_error_without_the_password(servers, tmp_path):
    target = parse(f"redis://:not-{PW}@127.0.0.1:{servers['master']}/0")
    with pytest.raises(snapshot.SnapshotError) as e:
        snapshot.take_rdb(target, None, tmp_path / "x.rdb")
    assert "redis-cli --rdb" in str(e.value) and PW not in str(e.value)
