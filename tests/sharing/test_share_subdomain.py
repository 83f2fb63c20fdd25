"""Sharing in subdomain mode (issue 19 §3), with the real daemon, Redis and Docker: the
ladder is the same for both modes, so a guest's personal token reaches a shared server
at the owner's host (``alice.nb.test``) and is refused without a share; a guest's
browser is handed over to the owner's host only while shared, and the host session it
gets there is refused as soon as the share is revoked."""

from __future__ import annotations

import json

import pytest
import requests

from subdomain_support import DOMAIN, STATE, Browser, hand_off, login, subdomain_site
from support import wait_for

PW = {"alice": "alice-sub-share-pw", "bob": "bob-sub-share-pw"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from subdomain_site(tmp_path_factory.mktemp("share-sub"), PW,
                              auth={"start_on_login": False})


def test_a_guest_token_reaches_a_shared_server_at_its_host(site):
    r = site.cli("--json", "token", "create", "--user", "bob", "--scope", "servers")
    assert r.returncode == 0, r.stderr
    token = json.loads(r.stdout)["token"]
    assert site.cli("server", "start", "alice").returncode == 0

    def status() -> int:
        return requests.get(f"http://127.0.0.1:{site.port}/api/status", timeout=30,
                            headers={"Host": f"alice.{DOMAIN}:{site.port}",
                                     "Authorization": f"token {token}"}).status_code

    assert status() == 403
    assert site.cli("share", "add", "alice", "bob").returncode == 0
    wait_for(lambda: status() == 200, 30)
    # bob's browser is handed over to alice's host and works there as her guest
    b = Browser(site.port)
    assert login(b, "bob", PW["bob"]).status_code == 303
    r = b.go(hand_off(b, "alice", "/api/status"))
    assert r.status_code == 302 and r.headers["Location"] == "/api/status"
    assert b.get(b.host("alice"), "/api/status").status_code == 200
    # a handoff the hub issued for bob's own host is no good at alice's, even shown with
    # the state it was bound to: it is bound to the host too
    own = hand_off(b, "bob", "/api/status")
    at_alice = own.replace(b.host("bob"), b.host("alice"), 1)
    assert at_alice != own
    bob_state = b.jar[b.host("bob")][STATE]
    assert b.go(at_alice, cookies={STATE: bob_state}).status_code == 403
    assert site.cli("share", "remove", "alice", "bob").returncode == 0
    assert status() == 403
    # revoked: his host session there is refused, and the hub no longer hands him over
    wait_for(lambda: b.get(b.host("alice"), "/api/status").status_code == 403, 30)
    r = b.get(b.host("alice"), "/lab", html=True, cookies={})
    assert r.status_code == 302
    assert b.go(r.headers["Location"]).status_code == 403
