"""Subdomain mode (``server.routing = "subdomain"``) with the real daemon, Redis and Docker.

The daemon listens on 127.0.0.1; each request names its virtual host in ``Host``
(``nb.test`` is the hub, ``alice.nb.test`` alice's server).  Cookies are kept per host
by hand, as a browser does for host-only cookies, so what each host receives is exactly
what a browser would send it; Set-Cookie attributes are asserted as sent.  The tests run
in file order on one daemon and build on each other.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import websocket

from kernel_client import execute
from subdomain_support import (
    DOMAIN,
    STATE,
    Browser,
    hand_off,
    login,
    set_cookies,
    subdomain_site,
    wait_running,
)
from support import wait_for

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw-1"


def attributes(raw: str) -> set[str]:
    return {part.strip().split("=")[0].lower() for part in raw.split(";")[1:]}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from subdomain_site(tmp_path_factory.mktemp("subdomain"), {})


@pytest.fixture(scope="module")
def state():
    return {}


# -- configuration (no daemon) ----------------------------------------------------------
@pytest.mark.parametrize("server, message", [
    ({"routing": "host"}, "server.routing must be 'path' or 'subdomain'"),
    ({"routing": "subdomain"}, "server.domain must be set"),
    ({"routing": "subdomain", "domain": "https://nb.example.org"}, "server.domain"),
    ({"routing": "subdomain", "domain": "localhost"}, "server.domain"),
    ({"routing": "subdomain", "domain": "nb.example.org", "public_url": "https://other.org"},
     "server.public_url must be on server.domain"),
])
def test_bad_subdomain_settings_name_the_key(server, message):
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    with pytest.raises(ConfigError, match=re.escape(message)):
        from_dict({"server": server})


def test_user_urls_follow_the_mode():
    from ipydoc.edge.routing import Routing

    path, sub = Routing(), Routing("subdomain", "nb.example.org", "https://nb.example.org")
    assert path.user_url("alice", "lab") == "/user/alice/lab"
    assert sub.user_url("alice", "lab") == "https://alice.nb.example.org/lab"
    assert sub.base_url("alice") == "/" and path.base_url("alice") == "/user/alice/"
    # next= may name the user's own host, never another user's or another site
    own = "https://alice.nb.example.org/lab/tree/x.ipynb"
    assert sub.user_target("alice", own) == own
    for bad in ("https://bob.nb.example.org/lab", "https://alice.nb.example.org.evil.org/",
                "https://alice.nb.example.org//evil.org", "//evil.org", "https://evil.org/"):
        assert sub.user_target("alice", bad) == "https://alice.nb.example.org/lab", bad


# -- the daemon -------------------------------------------------------------------------
def test_hosts_other_than_the_domain_and_user_hosts_get_404(site):
    site.add_user("alice", ALICE_PW, admin=True)
    site.add_user("bob", BOB_PW)
    b = Browser(site.port)
    assert b.get(b.host(), "/hub/login").status_code == 200
    assert b.get(b.host(), "/").headers["Location"] == "/hub/"
    old = b.get(b.host(), "/user/alice/lab/tree/x.ipynb?reset")  # a path-mode bookmark
    assert old.status_code == 302
    assert old.headers["Location"] == f"{b.origin('alice')}/lab/tree/x.ipynb?reset"
    assert b.get(b.host(), "/user/Not_a_name/lab").status_code == 404
    for host in (f"127.0.0.1:{site.port}", f"evil.example:{site.port}",
                 f"a.alice.{DOMAIN}:{site.port}", f"Not_a_name.{DOMAIN}:{site.port}",
                 f"{DOMAIN}.evil.example:{site.port}", ""):
        for path in ("/hub/login", "/", "/user/alice/lab"):
            assert b.get(host, path).status_code == 404, (host, path)


def test_login_on_the_hub_sets_a_host_only_cookie(site, state):
    b = Browser(site.port)
    r = login(b, "alice", ALICE_PW)
    assert r.status_code == 303, r.text
    cookie = [c for c in set_cookies(r) if c.startswith("ipydoc-session=")]
    assert len(cookie) == 1
    assert {"path", "httponly", "samesite", "max-age"} <= attributes(cookie[0])
    assert "domain" not in attributes(cookie[0])  # host-only: never sent to alice.nb.test
    lab = f"{b.origin('alice')}/lab"
    assert r.headers["Location"] == "/hub/spawn/alice?next=" + requests.utils.quote(lab, safe="/:")
    steps = wait_running(b, "alice")
    assert steps[-1]["url"] == lab
    home = b.get(b.host(), "/hub/home")
    assert f'href="{lab}"' in home.text
    state["alice"] = b


def test_handoff_brings_alice_to_her_server(site, state):
    b = state["alice"]
    target = hand_off(b, "alice", "/lab?reset")
    u = urlsplit(target)
    assert u.netloc == b.host("alice") and u.path == "/_ipydoc/handoff"
    query = parse_qs(u.query)
    assert query["next"] == ["/lab?reset"] and len(query["token"][0]) >= 32
    assert query["token"][0] not in site.log()
    r = b.go(target)
    assert r.status_code == 302 and r.headers["Location"] == "/lab?reset"
    cookie = [c for c in set_cookies(r) if c.startswith("ipydoc-user=")]
    assert len(cookie) == 1
    assert {"path", "httponly", "samesite"} <= attributes(cookie[0])
    assert "domain" not in attributes(cookie[0])
    assert "ipydoc-session" not in b.jar[b.host("alice")]
    lab = b.get(b.host("alice"), "/lab", html=True)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = b.get(b.host("alice"), "/api/status")
    assert status.status_code == 200 and "last_activity" in status.json()
    state["alice_token_url"] = target


def test_a_handoff_token_works_once(site, state):
    b = state["alice"]
    replay = Browser(site.port)  # e.g. someone who found the URL in a log or history
    r = replay.go(state["alice_token_url"])
    assert r.status_code == 403 and not set_cookies(r)
    assert "ipydoc-user" not in replay.jar.get(replay.host("alice"), {})
    # the same browser cannot replay it either, and a made-up token fails the same way
    fresh = hand_off(b, "alice")
    assert b.go(fresh).status_code == 302
    state_only = {STATE: b.jar[b.host("alice")][STATE]}  # the browser it was issued to
    again = b.go(fresh, cookies=state_only)
    assert again.status_code == 403 and not set_cookies(again)
    forged = b.get(b.host("alice"), "/_ipydoc/handoff?token=" + secrets.token_urlsafe(32),
                   cookies=state_only)
    assert forged.status_code == 403
    assert b.get(b.host("alice"), "/_ipydoc/anything").status_code == 404


def test_kernel_over_websocket_on_alice_host(site, state):
    b = state["alice"]
    host, origin = b.host("alice"), b.origin("alice")
    r = b.request("POST", host, "/api/kernels", json={"name": "python3"},
                  headers={"Origin": origin})
    assert r.status_code == 201, r.text
    kernel = r.json()["id"]
    cookie = "; ".join(f"{k}={v}" for k, v in b.jar[host].items())
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{site.port}/api/kernels/{kernel}/channels", host=host,
        cookie=cookie, origin=origin, timeout=60)
    try:
        assert execute(ws, "6*7")["text/plain"] == "42"
    finally:
        ws.close()
    # the hub's origin (or another user's) is not alice's server's origin
    for other in (b.origin(), b.origin("bob")):
        r = b.request("POST", host, "/api/kernels", json={}, headers={"Origin": other})
        assert r.status_code == 403 and "Origin" in r.json()["message"]
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            websocket.create_connection(
                f"ws://127.0.0.1:{site.port}/api/kernels/{kernel}/channels", host=host,
                cookie=cookie, origin=other, timeout=10)
        assert e.value.status_code == 403


def test_hub_cookie_does_not_open_a_user_host(site, state):
    b = state["alice"]
    hub_cookie = {"ipydoc-session": b.jar[b.host()]["ipydoc-session"]}
    api = b.get(b.host("alice"), "/api/status", cookies=hub_cookie)
    assert api.status_code == 401 and "log in" in api.json()["message"]
    page = b.get(b.host("alice"), "/lab", cookies=hub_cookie, html=True)
    assert page.status_code == 302 and "/hub/handoff?to=alice" in page.headers["Location"]
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(
            f"ws://127.0.0.1:{site.port}/api/kernels/x/channels", host=b.host("alice"),
            cookie=f"ipydoc-session={hub_cookie['ipydoc-session']}",
            origin=b.origin("alice"), timeout=10)
    assert e.value.status_code in (401, 403)


def test_alice_credentials_never_reach_bob_server(site, state):
    alice = state["alice"]
    bob = Browser(site.port)
    assert login(bob, "bob", BOB_PW).status_code == 303
    wait_running(bob, "bob")
    assert bob.go(hand_off(bob, "bob")).status_code == 302
    state["bob"] = bob
    bob_host = bob.host("bob")
    # Bob's own cookie reaches his server (a 404 there is logged by jupyter_server) ...
    control = f"control-{secrets.token_hex(4)}"
    assert bob.get(bob_host, f"/api/contents/{control}").status_code == 404
    # ... alice's user cookie, her hub cookie and her handoff token do not.
    probe = f"probe-{secrets.token_hex(4)}"
    alice_user = {"ipydoc-user": alice.jar[alice.host("alice")]["ipydoc-user"]}
    r = alice.get(bob_host, f"/api/contents/{probe}", cookies=alice_user)
    assert r.status_code == 403
    r = alice.get(bob_host, f"/lab/{probe}", cookies=alice_user, html=True)
    assert r.status_code == 403
    r = alice.request("POST", bob_host, f"/api/contents/{probe}", cookies=alice_user,
                      json={}, headers={"Origin": bob.origin("bob")})
    assert r.status_code == 403
    hub = {"ipydoc-session": alice.jar[alice.host()]["ipydoc-session"]}
    assert alice.get(bob_host, f"/api/contents/{probe}", cookies=hub).status_code == 401
    token_url = hand_off(alice, "alice")
    token = parse_qs(urlsplit(token_url).query)["token"][0]
    r = alice.get(bob_host, f"/_ipydoc/handoff?token={token}&next=/api/contents/{probe}",
                  cookies={})
    assert r.status_code == 403 and not set_cookies(r)
    state_only = {STATE: alice.jar[alice.host("alice")][STATE]}
    assert alice.go(token_url, cookies=state_only).status_code == 403  # spent by that attempt
    # alice's hub session cannot ask the hub for a token to bob's host (admin or not)
    assert alice.go(f"{alice.origin()}/hub/handoff?to=bob&next=/lab").status_code == 403
    container = site.containers("bob", all=False)[0]

    def bob_logs() -> str | None:  # jupyter_server logs every 404 it answers
        out = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        text = out.stdout + out.stderr
        return text if control in text else None

    assert probe not in wait_for(bob_logs, timeout=10)
    # alice's host was never confused with bob's either
    assert alice.get(alice.host("alice"), "/api/status").status_code == 200


def test_personal_token_on_own_host_only(site, state):
    bob = state["bob"]
    home = bob.get(bob.host(), "/hub/token")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', home.text).group(1)
    r = bob.request("POST", bob.host(), "/hub/token",
                    data={"_csrf": csrf, "note": "script", "expires_in": "3600"},
                    headers={"Origin": bob.origin()})
    assert r.status_code == 303, r.text
    page = bob.get(bob.host(), "/hub/token")
    token = re.search(r'id="new-token" readonly value="([^"]+)"', page.text).group(1)
    assert f"{bob.origin('bob')}/api/contents" in page.text
    auth = {"Authorization": f"token {token}"}
    assert bob.get(bob.host("bob"), "/api/status", cookies={}, headers=auth).status_code == 200
    assert bob.get(bob.host("alice"), "/api/status", cookies={},
                   headers=auth).status_code == 403


def test_server_list_shows_user_hosts(site):
    listed = site.cli("server", "list")
    assert listed.returncode == 0, listed.stderr
    assert f"https://alice.{DOMAIN}/lab" in listed.stdout
    assert f"https://bob.{DOMAIN}/lab" in listed.stdout


def test_activity_is_recorded_for_subdomain_traffic(site, state):
    alice = state["alice"]
    started = time.time()
    assert alice.get(alice.host("alice"), "/api/contents").status_code == 200

    def seen() -> float | None:
        out = json.loads(site.cli("--json", "server", "list").stdout)
        stamp = {s["name"]: s.get("last_activity") for s in out}.get("alice")
        return stamp if stamp and stamp >= started - 1 else None

    assert wait_for(seen, timeout=15, interval=0.5)


def test_ending_the_hub_session_ends_the_host_session(site, state):
    alice, bob = state["alice"], state["bob"]
    assert alice.get(alice.host("alice"), "/api/status").status_code == 200
    host = alice.host("alice")
    kernel = alice.request("POST", host, "/api/kernels", json={"name": "python3"},
                           headers={"Origin": alice.origin("alice")}).json()["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{site.port}/api/kernels/{kernel}/channels", host=host,
        cookie="; ".join(f"{k}={v}" for k, v in alice.jar[host].items()),
        origin=alice.origin("alice"), timeout=10)
    assert execute(ws, "6*7")["text/plain"] == "42"
    home = alice.get(alice.host(), "/hub/home")
    csrf = re.search(r'name="_csrf" value="([^"]+)"', home.text).group(1)
    out = alice.request("POST", alice.host(), "/hub/logout", data={"_csrf": csrf},
                        headers={"Origin": alice.origin()})
    assert out.status_code == 303
    # The host session's open WebSocket goes with the hub session (issue 12, item 8).
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        while ws.recv() not in ("", b""):
            pass
        raise websocket.WebSocketConnectionClosedException("closed")
    # ... closed by the revocation itself, not by the server stopping after the logout:
    wait_for(lambda: "open connection(s) of alice: session revoked" in site.log(), 5)
    r = alice.get(alice.host("alice"), "/api/status")  # the browser still sends the cookie
    assert r.status_code == 401, r.text
    # disabling an account ends its host sessions too
    assert bob.get(bob.host("bob"), "/api/status").status_code == 200
    disabled = site.cli("user", "disable", "bob")
    assert disabled.returncode == 0, disabled.stderr
    assert bob.get(bob.host("bob"), "/api/status").status_code == 401


def test_switching_to_path_mode_stops_servers_started_for_subdomains(site):
    started = site.cli("server", "start", "alice")
    assert started.returncode == 0, started.stderr
    assert site.containers("alice", all=False)
    site.stop()  # a restart keeps containers running ...
    assert site.containers("alice", all=False)
    site.overrides["server"] = {"routing": "path"}
    site.start()  # ... but one whose base URL is "/" cannot serve /user/alice/
    assert wait_for(lambda: not site.containers("alice", all=False), timeout=30)
    assert "server.routing changed" in site.log()
    listed = json.loads(site.cli("--json", "server", "list").stdout)
    assert {s["name"]: s["state"] for s in listed}["alice"] == "stopped"
