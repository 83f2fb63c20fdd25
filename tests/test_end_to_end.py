"""The first slice end to end, as users do it: real daemon, Docker, Redis, jupyter_server.

One daemon for the module; the tests run in file order and each leaves the site usable
for the next (restart and logout come last).
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests
import websocket

from kernel_client import connect, execute, start_kernel
from support import csrf_of, docker, follow_progress, login, wait_for

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory, request):
    from support import TEST_IMAGE, Daemon

    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    d = Daemon(tmp_path_factory.mktemp("e2e"))
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def state():
    return {}


def redis_cli(daemon, *args: str) -> str:
    sock = daemon.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True).stdout.strip()


def test_admin_creates_accounts_over_the_control_socket(site):
    site.add_user("alice", ALICE_PW, admin=True)
    site.add_user("bob", BOB_PW)
    listed = site.cli("--json", "user", "list")
    assert listed.returncode == 0, listed.stderr
    users = {u["name"]: u for u in json.loads(listed.stdout)}
    assert set(users) == {"alice", "bob"}
    assert users["alice"]["admin"] and not users["bob"]["admin"]
    table = site.cli("user", "list").stdout
    assert "alice" in table and "NAME" in table
    servers = site.cli("--json", "server", "list")
    assert servers.returncode == 0 and json.loads(servers.stdout) == []
    again = site.cli("user", "add", "alice", "--password-stdin", input="whatever-pw\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = site.cli("user", "add", "Alice_1", "--password-stdin", input="whatever-pw\n")
    assert bad.returncode == 2 and "invalid user name" in bad.stderr
    perms = (site.root / "state" / "control.sock").stat().st_mode & 0o777
    assert perms == 0o600


def test_visitor_is_sent_to_login(site):
    r = requests.get(site.url + "/")
    assert r.url == site.url + "/hub/login"
    assert r.status_code == 200 and 'name="password"' in r.text


def test_wrong_password_is_refused(site):
    _, r = login(site.url, "alice", "not-the-password")
    assert r.status_code == 403 and "Wrong user name or password" in r.text
    assert "ipydoc-session" not in r.cookies


def test_login_starts_server_and_lands_in_lab(site, state):
    session, r = login(site.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert r.headers["Location"] == "/user/alice/lab"  # straight there (docs/cold_login.md)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = session.get(site.url + r.headers["Location"], allow_redirects=False)
    assert page.status_code in (200, 302)
    steps = follow_progress(session, site.url, "alice")
    assert steps[-1]["phase"] == "ready", steps
    assert steps[-1]["url"] == "/user/alice/lab"
    lab = session.get(site.url + "/user/alice/lab")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    bare = session.get(site.url + "/user/alice?x=1", allow_redirects=False)
    assert bare.status_code == 302 and bare.headers["Location"] == "/user/alice/?x=1"
    status = session.get(site.url + "/user/alice/api/status")
    assert status.status_code == 200 and "last_activity" in status.json()
    state["alice"] = session


def test_container_is_labelled_limited_and_isolated(site):
    ids = site.containers("alice", all=False)
    assert len(ids) == 1
    info = json.loads(docker("inspect", ids[0]))[0]
    assert info["Config"]["Labels"]["ipydoc.user"] == "alice"
    assert info["Config"]["Image"] == site.overrides.get("spawn", {}).get("image", info["Config"]["Image"])
    hc = info["HostConfig"]
    assert hc["Memory"] == 1024 ** 3 and hc["NanoCpus"] == 1_000_000_000
    # nothing published on any host interface: only on the users' network (isolation:
    # tests/backends/test_isolation.py), where the daemon reaches it at its address
    bindings = [b for bs in info["NetworkSettings"]["Ports"].values() if bs for b in bs]
    assert bindings == []
    assert list(info["NetworkSettings"]["Networks"]) == [f"{site.instance}-users"]
    env = info["Config"]["Env"]
    token = [e for e in env if e.startswith("JUPYTER_TOKEN=")][0].split("=", 1)[1]
    assert token not in " ".join(info["Config"]["Cmd"] or [])
    assert token not in site.log()


def test_token_never_reaches_the_browser(site, state):
    session = state["alice"]
    token = redis_cli(site, "HGET", "ipydoc:server:alice", "token")
    assert len(token) == 64
    for path in ("/user/alice/lab", "/user/alice/lab/tree/x.ipynb", "/user/alice/api/status",
                 "/user/alice/no-such-page", "/user/alice/api/me", "/hub/home"):
        r = session.get(site.url + path)
        assert token not in r.text and token not in str(r.headers)


def test_kernel_runs_code_over_websocket_through_the_proxy(site, state):
    session = state["alice"]
    kernel = start_kernel(session, site.url, "alice")
    ws = connect(session, site.url, "alice", kernel)
    try:
        assert execute(ws, "6*7")["text/plain"] == "42"
    finally:
        ws.close()


def test_other_user_gets_403(site, state):
    bob, r = login(site.url, "bob", BOB_PW)
    assert r.status_code == 303
    state["bob"] = bob
    for path in ("/user/alice/", "/user/alice/lab", "/user/alice/api/status",
                 "/user/alice/api/contents"):
        assert bob.get(site.url + path, allow_redirects=False).status_code == 403, path
    assert bob.post(site.url + "/user/alice/api/kernels", json={},
                    headers={"Origin": site.url}).status_code == 403
    kernel_id = "00000000-0000-0000-0000-000000000000"
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        connect(bob, site.url, "alice", kernel_id)
    assert e.value.status_code == 403
    assert bob.get(site.url + "/hub/spawn/alice").status_code == 403
    # Being an admin does not open other users' servers either.
    alice = state["alice"]
    assert alice.get(site.url + "/user/bob/api/status").status_code == 403


def test_anonymous_visitor(site):
    r = requests.get(site.url + "/user/alice/lab", headers={"Accept": "text/html"},
                     allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == "/hub/login?next=/user/alice/lab"
    api = requests.get(site.url + "/user/alice/api/status", allow_redirects=False)
    assert api.status_code == 401 and "log in" in api.json()["message"]
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(site.url.replace("http", "ws") +
                                    "/user/alice/api/kernels/x/channels", origin=site.url)
    assert e.value.status_code in (401, 403)


def test_cross_site_requests_are_refused(site, state):
    alice = state["alice"]
    r = alice.post(site.url + "/user/alice/api/kernels", json={},
                   headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "Origin" in r.json()["message"]
    kernel = start_kernel(alice, site.url, "alice")
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        connect(alice, site.url, "alice", kernel, origin="https://evil.example")
    assert e.value.status_code == 403
    csrf = csrf_of(alice, site.url)
    stop = alice.post(site.url + "/hub/stop/alice", data={"_csrf": "wrong"},
                      headers={"Origin": site.url}, allow_redirects=False)
    assert stop.status_code == 403
    stop = alice.post(site.url + "/hub/stop/alice", data={"_csrf": csrf},
                      headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert stop.status_code == 403
    assert site.containers("alice", all=False)


def test_files_survive_stop_and_recreation(site, state):
    alice = state["alice"]
    content = f"kept across containers {time.time()}"
    put = alice.put(site.url + "/user/alice/api/contents/keep.txt",
                    json={"type": "file", "format": "text", "content": content},
                    headers={"Origin": site.url})
    assert put.status_code in (200, 201), put.text
    old = site.containers("alice", all=False)
    csrf = csrf_of(alice, site.url)
    stop = alice.post(site.url + "/hub/stop/alice", data={"_csrf": csrf},
                      headers={"Origin": site.url}, allow_redirects=False)
    assert stop.status_code == 303
    assert site.containers("alice") == []
    stopped = alice.get(site.url + "/user/alice/api/status")
    assert stopped.status_code == 503
    for _ in range(2):  # a double click starts one server
        start = alice.post(site.url + "/hub/spawn/alice", data={"_csrf": csrf},
                           headers={"Origin": site.url}, allow_redirects=False)
        assert start.status_code == 303
    assert follow_progress(alice, site.url, "alice")[-1]["phase"] == "ready"
    new = site.containers("alice")
    assert len(new) == 1 and new != old
    got = alice.get(site.url + "/user/alice/api/contents/keep.txt")
    assert got.status_code == 200 and got.json()["content"] == content


def test_restart_keeps_servers_and_sessions(site, state):
    alice, bob = state["alice"], state["bob"]
    assert follow_progress(bob, site.url, "bob")[-1]["phase"] == "ready"
    before = site.containers("alice", all=False)
    assert site.stop() in (0, -15)  # twistd re-raises the SIGTERM it handled
    assert "Server Shut Down" in site.log()
    assert site.containers("alice", all=False) == before  # the daemon's stop left it running
    bob_ids = site.containers("bob")
    assert bob_ids
    docker("rm", "-f", *bob_ids)  # removed while the daemon was down
    site.start()
    r = alice.get(site.url + "/user/alice/api/status")
    assert r.status_code == 200, r.text
    servers = {s["name"]: s for s in json.loads(site.cli("--json", "server", "list").stdout)}
    assert servers["alice"]["state"] == "running"
    assert servers["alice"]["last_activity"] > servers["alice"]["started"]  # proxy traffic
    assert servers["bob"]["state"] == "stopped"
    assert redis_cli(site, "HEXISTS", "ipydoc:routes", "bob") == "0"
    assert bob.get(site.url + "/user/bob/api/status").status_code == 503
    kernel = start_kernel(alice, site.url, "alice")
    ws = connect(alice, site.url, "alice", kernel)
    try:
        assert execute(ws, "6*7")["text/plain"] == "42"
    finally:
        ws.close()


def test_server_killed_outside_ipydoc_is_noticed(site, state):
    alice = state["alice"]
    ids = site.containers("alice", all=False)
    docker("kill", ids[0])
    wait_for(lambda: redis_cli(site, "HEXISTS", "ipydoc:routes", "alice") == "0", 10)
    r = alice.get(site.url + "/user/alice/lab", headers={"Accept": "text/html"},
                  allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/spawn/alice")


def test_logout_ends_session_and_stops_server_but_keeps_files(site, state):
    alice = state["alice"]
    csrf = csrf_of(alice, site.url)
    alice.post(site.url + "/hub/spawn/alice", data={"_csrf": csrf}, headers={"Origin": site.url})
    assert follow_progress(alice, site.url, "alice")[-1]["phase"] == "ready"
    r = alice.post(site.url + "/hub/logout", data={"_csrf": csrf_of(alice, site.url)},
                   headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/hub/login"
    assert alice.get(site.url + "/user/alice/api/status").status_code == 401
    home = alice.get(site.url + "/hub/home", allow_redirects=False)
    assert home.status_code == 302 and home.headers["Location"].startswith("/hub/login")
    wait_for(lambda: site.containers("alice") == [], 30)
    volumes = docker("volume", "ls", "-q", "--filter", f"name={site.instance}-home-alice")
    assert volumes
    again, r = login(site.url, "alice", ALICE_PW)
    assert follow_progress(again, site.url, "alice")[-1]["phase"] == "ready"
    assert again.get(site.url + "/user/alice/api/contents/keep.txt").status_code == 200
