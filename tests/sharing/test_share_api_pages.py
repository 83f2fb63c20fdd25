"""Shares through the REST API and the home page (issue 19 §3), against the running daemon.

The API's share endpoints answer in the shapes the daemon's own OpenAPI document
declares (every answer is checked against it), follow the API's rules (a token's scope,
the owner or an admin, CSRF for cookie requests) and the checks of the CLI (a known user
or group, a mode, a named server that exists).  Home shows the owner a form to share and
a button to revoke, and the guest the servers shared with them; the forms follow the
CSRF and Origin rule.  No server is started here (tests/sharing/test_sharing.py uses them).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "api"))
from api_support import Client, make_token, openapi, session_client  # noqa: E402

from support import Daemon, csrf_of, login  # noqa: E402

PW = {"alice": "alice-share-api-pw", "bob": "bob-share-api-pw", "carol": "carol-share-api-pw",
      "root": "root-share-api-pw"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = Daemon(tmp_path_factory.mktemp("share-api"), {"auth": {"start_on_login": False}})
    d.start()
    for name, pw in PW.items():
        d.add_user(name, pw, admin=name == "root")
    assert d.cli("group", "add", "course").returncode == 0
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def doc(site):
    return openapi(site.url)


@pytest.fixture(scope="module")
def clients(site, doc):
    def token_client(name: str, scopes: list[str]) -> Client:
        return Client(site.url, doc, token=make_token(site, doc, name, PW[name], scopes))

    return {"alice": token_client("alice", ["read", "servers"]),
            "alice_read": token_client("alice", ["read"]),
            "bob": token_client("bob", ["read", "servers"]),
            "root": token_client("root", ["admin"])}


def test_api_share_add_list_remove(site, clients):
    alice, bob = clients["alice"], clients["bob"]
    r = alice.post("/users/alice/server/shares", {"user": "bob", "mode": "view"})
    assert r.status_code == 201
    assert {k: r.json()[k] for k in ("server", "owner", "kind", "guest", "mode")} == \
        {"server": "alice", "owner": "alice", "kind": "user", "guest": "bob", "mode": "view"}
    r = alice.post("/users/alice/server/shares", {"group": "course"})
    assert r.status_code == 201 and r.json()["mode"] == "rw"
    r = alice.get("/users/alice/server/shares")
    assert [(s["kind"], s["guest"], s["mode"]) for s in r.json()["items"]] == \
        [("user", "bob", "view"), ("group", "course", "rw")]
    # bob sees what is shared with him, not alice's list
    r = bob.get("/users/bob/shared")
    assert [(s["server"], s["mode"]) for s in r.json()["items"]] == [("alice", "view")]
    assert bob.get("/users/alice/server/shares").status_code == 403
    assert bob.post("/users/alice/server/shares", {"user": "bob"}).status_code == 403
    # the mode of an existing share changes
    r = alice.post("/users/alice/server/shares", {"user": "bob", "mode": "rw"})
    assert r.status_code == 201 and r.json()["mode"] == "rw"
    # revoke one, then the rest
    r = alice.delete("/users/alice/server/shares", params={"user": "bob"})
    assert r.status_code == 200 and [s["guest"] for s in r.json()["removed"]] == ["bob"]
    assert alice.delete("/users/alice/server/shares",
                        params={"user": "bob"}).status_code == 404
    r = alice.delete("/users/alice/server/shares", params={"all": "true"})
    assert [s["guest"] for s in r.json()["removed"]] == ["course"]
    assert alice.get("/users/alice/server/shares").json()["items"] == []


def test_api_share_refusals(site, clients):
    alice = clients["alice"]
    cases = [({"user": "nobody"}, 404), ({"group": "nogroup"}, 404),
             ({"user": "alice"}, 400), ({"user": "bob", "mode": "admin"}, 400),
             ({"user": "bob", "group": "course"}, 400), ({}, 400),
             ({"user": "Bad_Name"}, 400)]
    for body, status in cases:
        r = alice.post("/users/alice/server/shares", body)
        assert r.status_code == status, (body, r.text)
    # a named server that was never started does not exist yet
    r = alice.post("/users/alice/servers/gpu/shares", {"user": "bob"})
    assert r.status_code == 404 and "gpu" in r.json()["error"]["message"]
    assert alice.get("/users/alice/servers/Bad/shares").status_code == 400
    # scope: a read token lists but does not share
    assert clients["alice_read"].get("/users/alice/server/shares").status_code == 200
    r = clients["alice_read"].post("/users/alice/server/shares", {"user": "bob"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "missing_scope"
    assert alice.delete("/users/alice/server/shares").status_code == 400
    # an admin acts on anyone's server
    r = clients["root"].post("/users/alice/server/shares", {"user": "carol"})
    assert r.status_code == 201 and "root" in r.json()["by"]
    assert clients["root"].delete("/users/alice/server/shares",
                                  params={"user": "carol"}).status_code == 200


def test_api_cookie_requests_need_csrf(site, doc):
    s, r = login(site.url, "alice", PW["alice"])
    bare = Client(site.url, doc, session=s)
    r = bare.post("/users/alice/server/shares", {"user": "bob"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf"
    good = session_client(site, doc, "alice", PW["alice"])
    assert good.post("/users/alice/server/shares", {"user": "bob"}).status_code == 201
    assert good.delete("/users/alice/server/shares", params={"user": "bob"}).status_code == 200


def form(session: requests.Session, site, path: str, data: dict,
         origin: str | None = None) -> requests.Response:
    return session.post(site.url + path, data={"_csrf": csrf_of(session, site.url), **data},
                        headers={"Origin": origin or site.url}, allow_redirects=False)


def test_home_page_shares(site):
    alice, _ = login(site.url, "alice", PW["alice"])
    bob, _ = login(site.url, "bob", PW["bob"])
    home = alice.get(site.url + "/hub/home").text
    assert 'id="add-share"' in home and 'id="no-shares"' in home
    # another site's form cannot share
    assert form(alice, site, "/hub/shares/alice", {"kind": "user", "guest": "bob"},
                origin="https://evil.example").status_code == 403
    # bob cannot share alice's server
    assert form(bob, site, "/hub/shares/alice", {"kind": "user", "guest": "bob"}
                ).status_code == 403
    r = form(alice, site, "/hub/shares/alice", {"kind": "user", "guest": "bob",
                                                "mode": "view"})
    assert r.status_code == 303 and r.headers["Location"].startswith("/hub/home")
    home = alice.get(site.url + "/hub/home").text
    assert re.search(r'data-share="alice user:bob"', home)
    assert "view only" in home
    # a bad guest is explained
    r = form(alice, site, "/hub/shares/alice", {"kind": "user", "guest": "nobody"})
    assert r.status_code == 404 and "no user nobody" in r.text
    # bob's home: shared with me, with its link
    bob_home = bob.get(site.url + "/hub/home").text
    assert 'id="shared-with-me"' in bob_home and 'href="/user/alice/lab"' in bob_home
    # revoking asks first (no JavaScript), then revokes
    fields = {"server": "", "kind": "user", "guest": "bob"}
    r = form(alice, site, "/hub/unshare/alice", fields)
    assert r.status_code == 200 and "Stop sharing with bob?" in r.text
    r = form(alice, site, "/hub/unshare/alice", {**fields, "confirmed": "1"})
    assert r.status_code == 303
    assert 'id="no-shares"' in alice.get(site.url + "/hub/home").text
    assert 'id="shared-with-me"' not in bob.get(site.url + "/hub/home").text
    r = form(alice, site, "/hub/unshare/alice", {**fields, "confirmed": "1"})
    assert r.status_code == 404


def test_cli_lists_and_validates(site):
    r = site.cli("share", "add", "alice", "bob", "--group", "course")
    assert r.returncode == 2 and "not both" in r.stderr
    r = site.cli("share", "add", "alice")
    assert r.returncode == 2
    r = site.cli("share", "add", "alice", "nobody")
    assert r.returncode == 5 and "no user nobody" in r.stderr
    r = site.cli("share", "add", "alice", "bob", "--server", "lab")
    assert r.returncode == 2 and "Jupyter's own paths" in r.stderr
    assert site.cli("share", "add", "alice", "--group", "course", "--mode", "view"
                    ).returncode == 0
    r = site.cli("share", "list")
    assert r.returncode == 0 and "group course" in r.stdout and "view" in r.stdout
    r = site.cli("share", "remove", "alice", "--all")
    assert r.returncode == 0 and "revoked: alice for group course (view)" in r.stdout
    assert site.cli("share", "list", "alice").stdout.strip() == "no shares"
