"""Two daemons A and B over one redis-server (issue 14, part 2), real parts throughout:
real daemons, real Docker, real jupyter_server, real git.

One pair for the module; tests run in file order and build on each other (the last one
kills A with SIGKILL).
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import subprocess
import threading
import time

import pytest
import requests
import websocket

from cluster_support import RedisServer, cluster_daemons, stop_all
from kernel_client import connect, execute, start_kernel
from support import Daemon, csrf_of, follow_progress, login, wait_for

PW = "cluster-test-password"
USERS = [f"u{i}" for i in range(10)]


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    r = RedisServer(tmp_path_factory.mktemp("redis"))
    r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, redis, notebook_image):
    root = tmp_path_factory.mktemp("cluster")
    a, b = cluster_daemons(root, redis, overrides={"history": {"coalesce_seconds": 1.0}})
    a.start()
    b.start()
    a.add_user("alice", PW)
    a.add_user("bob", PW)
    yield a, b
    stop_all([a, b])


def start_on(session: requests.Session, d: Daemon, name: str) -> requests.Response:
    return session.post(f"{d.url}/hub/spawn/{name}", data={"_csrf": csrf_of(session, d.url)},
                        headers={"Origin": d.url}, allow_redirects=False)


def status(session: requests.Session, d: Daemon, name: str) -> int:
    return session.get(f"{d.url}/user/{name}/api/status", allow_redirects=False).status_code


def events(d: Daemon, kind: str, user: str) -> list[dict]:
    r = d.cli("--json", "events", "--user", user, "--kind", kind)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_a_daemon_with_another_secret_refuses_to_start(pair, redis, tmp_path):
    stranger = Daemon(tmp_path / "stranger", {"redis": {"url": redis.url},
                                              "control": {"socket": str(tmp_path / "c.sock")}})
    stranger.start(wait=False)
    assert stranger.proc.wait(60) != 0
    log = stranger.log()
    assert "different secret" in log and "server.state_dir/secret" in log, log[-2000:]
    # The refusal changed nothing: the site's daemons go on.
    assert requests.get(pair[1].url + "/hub/login").status_code == 200


def test_login_on_a_is_valid_on_b_and_b_proxies_a_server_a_started(pair):
    a, b = pair
    session, r = login(a.url, "alice", PW)
    assert r.status_code == 303
    assert session.get(b.url + "/hub/home").status_code == 200  # the same session on B
    start_on(session, a, "alice")
    assert follow_progress(session, a.url, "alice")[-1]["phase"] == "ready"
    # B learns the route from A's message (or from Redis on its first miss).
    assert wait_for(lambda: status(session, b, "alice") == 200, 30)
    kernel = start_kernel(session, b.url, "alice")
    ws = connect(session, b.url, "alice", kernel)
    assert execute(ws, "6*7")["text/plain"] == "42"
    ws.close()
    # The CLI against either daemon sees the whole site.
    for d in (a, b):
        out = d.cli("--json", "server", "list")
        assert out.returncode == 0, out.stderr
        assert any(s["name"] == "alice" and s["state"] == "running"
                   for s in json.loads(out.stdout)), out.stdout


def test_a_double_start_via_a_and_b_at_once_makes_one_server(pair):
    a, b = pair
    session, r = login(b.url, "bob", PW)
    assert r.status_code == 303
    barrier = threading.Barrier(2)

    def start_and_follow(d: Daemon) -> str:
        barrier.wait()
        assert start_on(session, d, "bob").status_code == 303
        return follow_progress(session, d.url, "bob")[-1]["phase"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        phases = list(pool.map(start_and_follow, (a, b)))
    assert phases == ["ready", "ready"], phases
    assert len(a.containers("bob")) == 1
    assert len(events(a, "spawn", "bob")) == 1
    assert status(session, a, "bob") == 200 and status(session, b, "bob") == 200


def test_a_session_revoked_on_a_is_refused_by_b(pair):
    a, b = pair
    session, r = login(a.url, "alice", PW)
    assert r.status_code == 303
    kernel = start_kernel(session, b.url, "alice")
    ws = connect(session, b.url, "alice", kernel)  # open on B, its credential cached there
    assert execute(ws, "6*7")["text/plain"] == "42"
    assert status(session, b, "alice") == 200
    t0 = time.monotonic()
    out = a.cli("session", "revoke", "alice")
    assert out.returncode == 0, out.stderr
    took_cli = time.monotonic() - t0
    wait_for(lambda: status(session, b, "alice") == 401, 30, interval=0.005)
    refused = time.monotonic() - t0
    ws.settimeout(30)
    closed = None
    try:
        while ws.recv() not in ("", b""):
            pass
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass
    closed = time.monotonic() - t0
    print(f"\nrevoke on A -> refused by B: {refused * 1000:.0f} ms after the CLI started "
          f"({(refused - took_cli) * 1000:.0f} ms after it returned); B's WebSocket closed "
          f"after {closed * 1000:.0f} ms")
    assert re.search(r"closed \d+ open connection\(s\) of alice: session revoked", b.log())


def test_a_start_whose_daemon_died_is_taken_over_when_its_lease_expires(pair, redis):
    a, b = pair
    a.add_user("dave", PW)
    session, r = login(b.url, "dave", PW)
    assert r.status_code == 303
    # A daemon that died mid-start: its lease (2 s left), its fence and "starting" record.
    redis.cli("SET", "ipydoc:fence:start:dave", "41")
    redis.cli("SET", "ipydoc:lease:start:dave", "ghost:1:dead 41", "PX", "2000")
    redis.cli("HSET", "ipydoc:server:dave", "state", "starting", "fence", "41")
    redis.cli("SADD", "ipydoc:servers", "dave")
    t0 = time.monotonic()
    assert start_on(session, b, "dave").status_code == 303
    steps = follow_progress(session, b.url, "dave")
    took = time.monotonic() - t0
    assert "another ipydoc daemon" in steps[0]["message"] or any(
        "another ipydoc daemon" in s.get("message", "") for s in steps), steps
    assert steps[-1]["phase"] == "ready", steps
    assert len(b.containers("dave")) == 1
    assert int(redis.cli("HGET", "ipydoc:server:dave", "fence")) == 42  # the next fence
    # The dead holder's late "running" would carry fence 41: refused (tests/cluster/
    # test_leases.py shows the refusal itself).
    print(f"\ntakeover of a dead daemon's start: ready {took:.1f} s after the request "
          f"(lease had 2 s left)")
    assert status(session, a, "dave") == 200


def save(session: requests.Session, d: Daemon, user: str, path: str, text: str) -> None:
    nb = {"cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "source": text,
                     "execution_count": None, "outputs": []}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    r = session.put(f"{d.url}/user/{user}/api/contents/{path}",
                    json={"type": "notebook", "format": "json", "content": nb},
                    headers={"Origin": d.url}, timeout=60)
    assert r.status_code in (200, 201), r.text


def commits(root, user: str, path: str) -> list[str]:
    repo = root / "shared-state" / "history" / f"{user}.git"
    out = subprocess.run(["git", "--git-dir", str(repo), "log", "--format=%H", "main", "--",
                          path], capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else []


def test_sigkill_a_while_ten_users_save_through_it_loses_and_doubles_nothing(pair, redis):
    a, b = pair
    root = a.root.parent
    sessions = {}
    for name in USERS:
        a.add_user(name, PW)
        s, r = login(a.url, name, PW)
        assert r.status_code == 303
        start_on(s, a, name)
        sessions[name] = s
    for name in USERS:
        assert follow_progress(sessions[name], a.url, name, timeout=180)[-1]["phase"] == "ready"
    files = [f"n{k}.ipynb" for k in range(3)]

    def saves(name: str) -> None:
        for k, path in enumerate(files):
            save(sessions[name], a, name, path, f"print('{name} {k}')")

    with concurrent.futures.ThreadPoolExecutor(len(USERS)) as pool:
        list(pool.map(saves, USERS))
    a.proc.kill()  # SIGKILL inside the coalescing window: saves queued, not committed
    a.proc.wait()
    a.proc = None
    pending = sum(int(redis.cli("LLEN", f"ipydoc:history-queue:{n}") or 0) for n in USERS)
    t0 = time.monotonic()

    def all_committed() -> bool:
        return all(commits(root, n, p) for n in USERS for p in files)
    wait_for(all_committed, 120, interval=0.2)
    took = time.monotonic() - t0
    wait_for(lambda: all(redis.cli("LLEN", f"ipydoc:history-queue:{n}") == "0"
                         for n in USERS), 60)
    print(f"\n{pending} saves were queued when A was killed; B committed them all "
          f"{took:.1f} s later")
    for name in USERS:
        for k, path in enumerate(files):
            assert len(commits(root, name, path)) == 1, (name, path)
            repo = root / "shared-state" / "history" / f"{name}.git"
            shown = subprocess.run(["git", "--git-dir", str(repo), "show", f"main:{path}"],
                                   capture_output=True, text=True, check=True).stdout
            assert f"{name} {k}" in shown
    # A head committed but not popped when its daemon died: the next worker reads the same
    # content, and git makes no commit for a tree equal to HEAD's.
    redis.cli("RPUSH", "ipydoc:history-queue:u0",
              json.dumps({"op": "save", "path": files[0], "time": time.time() - 10}))
    wait_for(lambda: redis.cli("LLEN", "ipydoc:history-queue:u0") == "0", 60)
    assert len(commits(root, "u0", files[0])) == 1
    # B serves the users A had started, and routes them without A.
    assert status(sessions["u3"], b, "u3") == 200
