"""Subdomain mode, attacks on the sign-in handoff and on cookies (issue 12, item 6).

Real daemon, Redis and Docker, plain http (``nb.test`` virtual hosts on 127.0.0.1, as in
test_subdomain.py, whose host-only cookie jar is reused).  Mounted here:

* a handoff URL fetched by alice for her own host, sent to another browser (bob's,
  logged in or not): that browser must get no cookie for alice's host and must not reach
  her server, while alice's own browser still signs in and works;
* cookie tossing over http: a session cookie name that arrives twice (the real one and
  one planted with ``Domain=`` by a script on some user's host) is no session, at the
  hub and at a user's host.

The https side (``__Host-`` names) is in test_forwarded.py.  Tests run in file order on
one daemon and build on each other.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from subdomain_support import (
    STATE,
    Browser,
    hand_off,
    login,
    set_cookies,
    subdomain_site,
    wait_running,
)

ALICE_PW = "alice-binding-pw"
BOB_PW = "bob-binding-pw-1"
SESSION, USER = "ipydoc-session", "ipydoc-user"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from subdomain_site(tmp_path_factory.mktemp("binding"),
                              {"alice": ALICE_PW, "bob": BOB_PW},
                              auth={"stop_on_logout": False})


@pytest.fixture(scope="module")
def people(site):
    alice, bob = Browser(site.port), Browser(site.port)
    assert login(alice, "alice", ALICE_PW).status_code == 303
    assert login(bob, "bob", BOB_PW).status_code == 303
    wait_running(alice, "alice")
    return {"alice": alice, "bob": bob}


def cookie_names(r: requests.Response) -> set[str]:
    return {c.split("=", 1)[0] for c in set_cookies(r)}


def test_the_state_cookie_is_host_only_and_the_handoff_carries_it(site, people):
    alice = people["alice"]
    r = alice.get(alice.host("alice"), "/lab", html=True, cookies={})
    assert r.status_code == 302
    [cookie] = [c for c in set_cookies(r) if c.startswith(STATE + "=")]
    attrs = {p.strip().split("=")[0].lower() for p in cookie.split(";")[1:]}
    assert {"path", "httponly", "samesite", "max-age"} <= attrs and "domain" not in attrs
    state = alice.jar[alice.host("alice")][STATE]
    assert parse_qs(urlsplit(r.headers["Location"]).query)["state"] == [state]
    # a hub handoff without a state (an old link) goes back to the host, which sets one
    back = alice.go(f"{alice.origin()}/hub/handoff?to=alice&next=/lab/tree")
    assert back.status_code == 302
    assert back.headers["Location"] == f"{alice.origin('alice')}/lab/tree"


def test_alices_handoff_url_signs_in_no_other_browser(site, people):
    alice, bob = people["alice"], people["bob"]
    target = hand_off(alice, "alice", "/api/status")  # alice stops here and mails it out
    # bob, logged in to the hub as himself, opens it
    r = bob.go(target)
    assert r.status_code == 403, r.text
    assert "another browser" in r.text
    assert not set_cookies(r)
    assert USER not in bob.jar.get(bob.host("alice"), {})
    assert bob.get(bob.host("alice"), "/api/status").status_code == 401
    # a logged-out browser that has been to alice's host before (so it has a state
    # cookie there, just not hers) fares no better, with a fresh token of alice's
    stranger = Browser(site.port)
    first = stranger.get(stranger.host("alice"), "/lab", html=True)
    assert first.status_code == 302 and STATE in stranger.jar[stranger.host("alice")]
    target = hand_off(alice, "alice", "/api/status")
    r = stranger.go(target)
    assert r.status_code == 403 and not set_cookies(r)
    assert USER not in stranger.jar[stranger.host("alice")]
    assert stranger.get(stranger.host("alice"), "/api/status").status_code == 401
    # nor can alice hand her state to bob through the hub: the hub asks bob's session
    state = alice.jar[alice.host("alice")][STATE]
    via_hub = bob.go(f"{bob.origin()}/hub/handoff?to=alice&next=/lab&state={state}")
    assert via_hub.status_code == 403 and "_ipydoc" not in via_hub.headers.get("Location", "")
    out = Browser(site.port).go(f"{bob.origin()}/hub/handoff?to=alice&next=/lab&state={state}")
    assert out.status_code == 302 and out.headers["Location"].startswith("/hub/login?")


def test_alices_own_browser_still_signs_in_end_to_end(site, people):
    alice = people["alice"]
    r = alice.go(hand_off(alice, "alice", "/lab"))
    assert r.status_code == 302 and r.headers["Location"] == "/lab"
    assert cookie_names(r) == {USER}
    lab = alice.get(alice.host("alice"), "/lab", html=True)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    status = alice.get(alice.host("alice"), "/api/status")
    assert status.status_code == 200 and "last_activity" in status.json()
    # two tabs signing in at once share the browser's state: both tokens work
    one, two = hand_off(alice, "alice"), None
    alice_state = alice.jar[alice.host("alice")][STATE]
    r = alice.get(alice.host("alice"), "/lab", html=True,
                  cookies={STATE: alice_state})  # the second tab, same browser
    assert alice.jar[alice.host("alice")][STATE] == alice_state  # kept, not replaced
    two = alice.go(r.headers["Location"]).headers["Location"]
    assert alice.go(one, cookies={STATE: alice_state}).status_code == 302
    assert alice.go(two, cookies={STATE: alice_state}).status_code == 302


def test_a_state_cookie_sent_twice_redeems_nothing(site, people):
    alice = people["alice"]
    target = hand_off(alice, "alice")
    state = alice.jar[alice.host("alice")][STATE]
    u = urlsplit(target)
    r = alice.get(u.netloc, f"{u.path}?{u.query}", cookies={},
                  headers={"Cookie": f"{STATE}={state}; {STATE}={state}"})
    assert r.status_code == 403 and not set_cookies(r)


def test_a_session_cookie_sent_twice_is_no_session_at_the_hub(site, people):
    alice, bob = people["alice"], people["bob"]
    hub = alice.host()
    mine, planted = alice.jar[hub][SESSION], bob.jar[bob.host()][SESSION]
    # control: each cookie alone is a session
    assert alice.get(hub, "/hub/home", cookies={SESSION: mine}).status_code == 200
    assert "bob" in alice.get(hub, "/hub/home", cookies={SESSION: planted}).text
    # bob's cookie planted beside alice's (a script on a user's host can write one with
    # Domain=nb.test), in either order: neither is believed
    for header in (f"{SESSION}={mine}; {SESSION}={planted}",
                   f"{SESSION}={planted}; {SESSION}={mine}",
                   f"{SESSION}={mine}; {SESSION}={mine}"):
        home = alice.get(hub, "/hub/home", cookies={}, headers={"Cookie": header})
        assert home.status_code == 302 and home.headers["Location"].startswith("/hub/login")
        tokens = alice.get(hub, "/hub/token", cookies={}, headers={"Cookie": header})
        assert tokens.status_code == 302
        assert tokens.headers["Location"].startswith("/hub/login")


def test_a_host_cookie_sent_twice_is_no_session_at_the_gate(site, people):
    alice = people["alice"]
    host = alice.host("alice")
    mine = alice.jar[host][USER]
    assert alice.get(host, "/api/status", cookies={USER: mine}).status_code == 200
    twice = {"Cookie": f"{USER}={mine}; {USER}=planted-by-a-sibling-host"}
    assert alice.get(host, "/api/status", cookies={}, headers=twice).status_code == 401
    page = alice.get(host, "/lab", cookies={}, headers=twice, html=True)
    assert page.status_code == 302 and "/hub/handoff?to=alice" in page.headers["Location"]
