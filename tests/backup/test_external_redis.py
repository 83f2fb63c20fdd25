"""Backup and restore with ``redis.url``: a password-protected Redis over TCP, ipydoc's
keys in database 2.  The snapshot is taken with ``redis-cli --rdb`` from the running
server; restore refuses a Redis that holds ipydoc's keys and fills an empty one."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from support import free_port, login


def _redis(root: Path, password: str) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--requirepass", password, "--save", "", "--appendonly", "no",
                             "--dir", str(root)], stdout=subprocess.DEVNULL)
    for _ in range(200):
        r = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                           text=True, env={"REDISCLI_AUTH": password, "PATH": "/usr/bin:/bin"})
        if "PONG" in r.stdout:
            return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def _keys(port: int, password: str, db: int) -> list[str]:
    r = subprocess.run(["redis-cli", "-p", str(port), "-n", str(db), "--scan", "--pattern",
                        "ipydoc:*"], capture_output=True, text=True,
                       env={"REDISCLI_AUTH": password, "PATH": "/usr/bin:/bin"})
    return sorted(r.stdout.split())


@pytest.fixture
def redises(tmp_path):
    made = []

    def make(name: str, password: str) -> int:
        proc, port = _redis(tmp_path / name, password)
        made.append(proc)
        return port

    yield make
    for proc in made:
        proc.terminate()
        proc.wait()


def test_backup_and_restore_through_redis_url(make_daemon, redises, tmp_path):
    old_port = redises("old", "old-redis-pw")
    d = make_daemon(redis={"url": f"redis://:old-redis-pw@127.0.0.1:{old_port}/2"},
                    auth={"start_on_login": False})
    d.start()
    d.add_user("carol", "carol-password-1")
    _, r = login(d.url, "carol", "carol-password-1")
    assert r.status_code == 303
    archive = tmp_path / "site.tar"
    r = d.cli("--json", "backup", str(archive))
    assert r.returncode == 0, r.stderr
    d.stop()
    before = _keys(old_port, "old-redis-pw", 2)
    assert "ipydoc:user:carol" in before

    # the old Redis still has ipydoc's keys: refused, and nothing written
    fresh = make_daemon(redis={"url": f"redis://:old-redis-pw@127.0.0.1:{old_port}/2"})
    fresh.root.mkdir(parents=True, exist_ok=True)
    fresh.write_config()
    r = fresh.cli("restore", str(archive))
    assert r.returncode == 1 and "already holds ipydoc:* keys" in r.stderr
    assert not (fresh.root / "state").exists()

    # an empty Redis (another password, database 5) gets every key but the daemon's leases
    new_port = redises("new", "new-redis-pw")
    target = make_daemon(redis={"url": f"redis://:new-redis-pw@127.0.0.1:{new_port}/5"},
                         auth={"start_on_login": False})
    target.root.mkdir(parents=True, exist_ok=True)
    target.write_config()
    r = target.cli("--json", "restore", str(archive))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["keys"]["copied"] > 0
    restored = _keys(new_port, "new-redis-pw", 5)
    assert restored == [k for k in before if not k.startswith(("ipydoc:lease:", "ipydoc:once:"))]
    assert _keys(new_port, "new-redis-pw", 0) == []
    target.start()
    _, r = login(target.url, "carol", "carol-password-1")
    assert r.status_code == 303
