"""The cold-login path through the real daemon: cached static files behind the ladder,
requests that wait for a start, the spawn page's prefetch list (docs/cold_login.md)."""

from __future__ import annotations

import re
import subprocess
import threading

import pytest
import requests

from support import login, wait_for

JSON = {"Accept": "application/json"}


def main_bundle(daemon, session) -> str:
    """The entry bundle's URL path, as the spawn page offers it for prefetching."""
    def listed():
        page = session.get(f"{daemon.url}/hub/spawn/alice").text
        return re.findall(r'<link rel="prefetch" href="([^"]+)">', page)
    links = wait_for(listed, timeout=120)  # the cache is read in the background at start
    return next(u for u in links if "/static/lab/main." in u)


@pytest.fixture
def hub(make_daemon):
    daemon = make_daemon(auth={"start_on_login": False})
    daemon.start()
    daemon.add_user("alice", "alice-password-1")
    daemon.add_user("bob", "bob-password-1")
    alice, _ = login(daemon.url, "alice", "alice-password-1")
    return daemon, alice


def test_cached_files_match_the_servers_own_and_stay_the_owners(hub):
    daemon, alice = hub
    path = main_bundle(daemon, alice)
    assert path.startswith("/user/alice/static/lab/main.") and "?v=" in path
    cached = alice.get(daemon.url + path, headers=JSON)
    assert cached.status_code == 200, cached.text
    assert cached.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert cached.headers["Content-Type"] == "application/javascript"
    assert "static-cache" in wait_for(lambda: "static-cache" in daemon.log() and daemon.log())

    # Not the owner: refused exactly as for the server itself; no credential: 401.
    bob, _ = login(daemon.url, "bob", "bob-password-1")
    assert bob.get(daemon.url + path, headers=JSON).status_code == 403
    assert requests.get(daemon.url + path, headers=JSON).status_code == 401
    # Only versioned files: anything else of a stopped server is the usual 503.
    assert alice.get(daemon.url + "/user/alice/static/lab/index.html",
                     headers=JSON).status_code == 503
    assert alice.get(daemon.url + path.split("?")[0] + "?v=0123456789abcdef",
                     headers=JSON).status_code == 503

    # The same file from the running server itself: byte for byte the same.
    r = daemon.cli("server", "start", "alice")
    assert r.returncode == 0, r.stderr
    own = alice.get(daemon.url + path, headers=JSON)
    assert own.status_code == 200 and "static-cache" not in own.headers.get("Via", "")
    assert own.content == cached.content
    # No token of the server (nor the browser's session) in any cached byte.
    record = subprocess.run(["docker", "inspect", "--format", "{{json .Config.Env}}",
                             *daemon.containers("alice")], capture_output=True, text=True)
    tokens = set(re.findall(r"[0-9a-f]{64}", record.stdout))
    secrets_ = {t.encode() for t in tokens} | {v.encode() for v in alice.cookies.values()}
    assert secrets_ and not any(s in cached.content for s in secrets_)


def test_an_api_request_during_the_start_waits_and_succeeds(hub):
    daemon, alice = hub
    csrf = re.search(r'name="_csrf" value="([^"]+)"',
                     alice.get(f"{daemon.url}/hub/spawn/alice").text).group(1)
    answers: list[requests.Response] = []
    started = alice.post(f"{daemon.url}/hub/spawn/alice",
                         data={"_csrf": csrf, "next": "/user/alice/lab"},
                         headers={"Origin": daemon.url}, allow_redirects=False)
    assert started.status_code in (302, 303), started.text
    # Asked at once (the server cannot answer yet): the daemon holds it until it can.
    t = threading.Thread(target=lambda: answers.append(
        alice.get(f"{daemon.url}/user/alice/api/status", headers=JSON, timeout=90)))
    t.start()
    t.join(120)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert "started" in answers[0].json()
    # The Origin rule still holds for a state-changing request (on a running server).
    foreign = alice.post(f"{daemon.url}/user/alice/api/contents", json={"type": "notebook"},
                         headers={**JSON, "Origin": "https://evil.example"})
    assert foreign.status_code == 403


def test_prestart_on_home_starts_a_returning_users_server(make_daemon):
    daemon = make_daemon(auth={"start_on_login": False}, spawn={"prestart_on_home": True})
    daemon.start()
    daemon.add_user("dora", "dora-password-1")
    dora, _ = login(daemon.url, "dora", "dora-password-1", next="/hub/home")
    assert not daemon.containers("dora")
    home = dora.get(f"{daemon.url}/hub/home")
    assert home.status_code == 200
    wait_for(lambda: dora.get(f"{daemon.url}/user/dora/api/status",
                              headers=JSON).status_code == 200, timeout=120)
    assert daemon.containers("dora")
