"""Issue 12 item 9 (login half): anonymous starts of a provider login cannot fill Redis.

Real daemons (two of them sharing one Redis, as a site with several daemons does) and the
GitHub stand-in (tests/github_stand_in.py).  The cap on outstanding login states and the
per-address limit answer 429 with Retry-After; states already handed out still complete a
real login; Redis never holds more login states than the cap.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from http.server import ThreadingHTTPServer

import pytest
import requests

from github_stand_in import GitHubStandIn
from support import Daemon

CAP = 4


def github(base: str, **auth: object) -> dict:
    return {
        "auth": {"start_on_login": False, "local": False, **auth},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret", "url": base,
                        "api_url": base + "/api", "orgs": ["acme"]},
    }


@pytest.fixture(scope="module")
def stand_in():
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, stand_in):
    """Two daemons on one Redis (the first one's embedded server), cap CAP, no per-address
    limit (so the site-wide cap is what is hit)."""
    a = Daemon(tmp_path_factory.mktemp("oauth-a"),
               github(stand_in, oauth_pending_max=CAP, oauth_starts_per_address=0))
    a.start()
    sock = a.root / "state" / "redis" / "redis.sock"
    b = Daemon(tmp_path_factory.mktemp("oauth-b"), {
        **github(stand_in, oauth_pending_max=CAP, oauth_starts_per_address=0),
        "redis": {"url": f"unix://{sock}"}})
    # Daemons of one site share the signing secret (they refuse to start otherwise).
    (b.root / "state").mkdir(parents=True, exist_ok=True)
    shutil.copy2(a.root / "state" / "secret", b.root / "state" / "secret")
    try:
        b.start()
        yield a, b
    finally:  # also when b fails to start: a must not outlive the tests
        b.stop()
        a.stop()
        a.cleanup_docker()
        b.cleanup_docker()


def redis(daemon: Daemon, *args: str) -> str:
    sock = daemon.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True, check=True).stdout


def states(daemon: Daemon) -> int:
    return len(redis(daemon, "--scan", "--pattern", "ipydoc:login-state:*").split())


def start(daemon: Daemon) -> tuple[requests.Session, requests.Response]:
    s = requests.Session()
    return s, s.get(daemon.url + "/hub/oauth/github/start", params={"next": "/hub/home"},
                    allow_redirects=False)


def finish(daemon: Daemon, s: requests.Session, at_provider: str, who: str) -> requests.Response:
    GitHubStandIn.next_login = who
    return s.get(at_provider)  # the stand-in's authorize → ipydoc's callback → home


def test_the_cap_on_outstanding_logins_holds_across_daemons(pair):
    a, b = pair
    started = []
    for i in range(CAP):  # alternate daemons: they count in the same Redis
        s, r = start(a if i % 2 == 0 else b)
        assert r.status_code == 302, r.text
        started.append((a if i % 2 == 0 else b, s, r.headers["Location"]))
    for daemon in (a, b):
        s, r = start(daemon)
        assert r.status_code == 429, r.text
        assert "Too many logins are in progress on this site right now" in r.text
        assert "Logins already started still complete" in r.text
        assert 1 <= int(r.headers["Retry-After"]) <= 600
        assert "ipydoc-oauth" not in r.headers.get("Set-Cookie", "")
    assert states(a) == CAP
    assert "github not started: site limit reached" in a.log()

    # A login started before the cap was hit completes (nothing outstanding is lost) ...
    daemon, s, location = started[0]
    r = finish(daemon, s, location, "Octo-Cat")
    assert r.status_code == 200 and 'title="Logged in as octo-cat"' in r.text, r.text
    assert states(a) == CAP - 1
    # ... which frees one slot, and only one.
    s_new, r = start(b)
    assert r.status_code == 302
    _, r = start(a)
    assert r.status_code == 429
    assert states(a) <= CAP
    # every other outstanding login still completes, on the daemon that started it
    for (_, s, location), who in zip(started[1:], ["teamie", "Octo-Cat", "teamie"]):
        GitHubStandIn.next_login = who
        r = s.get(location)
        assert r.status_code in (200, 403), r.text  # teamie is not in acme: refused by
        assert "expired" not in r.text                # membership, never as a lost state
    assert states(a) == 1  # only s_new's start is left


@pytest.fixture(scope="module")
def per_address(tmp_path_factory, stand_in):
    d = Daemon(tmp_path_factory.mktemp("oauth-addr"),
               github(stand_in, oauth_pending_max=100, oauth_starts_per_address=3))
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


def test_one_address_cannot_start_logins_without_limit(per_address):
    d = per_address
    first = [start(d) for _ in range(3)]
    assert all(r.status_code == 302 for _, r in first)
    s, r = start(d)
    assert r.status_code == 429
    assert "Too many logins were started from your network address" in r.text
    assert 1 <= int(r.headers["Retry-After"]) <= 600
    assert states(d) == 3
    session, r = first[2]
    r = finish(d, session, r.headers["Location"], "Octo-Cat")
    assert r.status_code == 200 and 'title="Logged in as octo-cat"' in r.text
    # the address's count is of starts in the window: finishing one does not reset it
    assert start(d)[1].status_code == 429
