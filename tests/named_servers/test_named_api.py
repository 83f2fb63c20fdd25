"""The REST API for named servers (issue 19 §1) and for removing a user, against the real
daemon and containers; every answer is checked against the daemon's own OpenAPI
document (tests/api/api_support.py).  ``spawn.max_named_servers`` is 1 here.  Tests run
in file order on one daemon and build on each other.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "api"))

from api_support import API, Client, make_token, openapi, redis_cli  # noqa: E402

from support import Daemon, docker, progress_steps, running_site, wait_for  # noqa: E402

PW = {"ada": "ada-named-api-1", "alice": "alice-named-api-1", "bob": "bob-named-api-1",
      "carl": "carl-named-api-1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from running_site(tmp_path_factory.mktemp("named-api"), {
        "auth": {"start_on_login": False}, "spawn": {"max_named_servers": 1}}, PW,
        admins=("ada",))


@pytest.fixture(scope="module")
def api(site):
    """name → a Client with a ``servers`` token (ada's: ``admin``)."""
    doc = openapi(site.url)
    return {name: Client(site.url, doc, make_token(site, doc, name, pw,
                                                   ["admin"] if name == "ada" else ["servers"]))
            for name, pw in PW.items()}


def follow(site: Daemon, client: Client, path: str) -> list[dict]:
    return progress_steps(site.url + API + path, headers=client.headers)


def containers(site: Daemon, user: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=ipydoc.instance={site.instance}",
                  "--filter", f"label=ipydoc.user={user}").split()


def test_a_user_with_no_named_server_lists_the_default_one(api):
    r = api["alice"].get("/users/alice/servers")
    assert r.status_code == 200
    (default,) = r.json()["items"]
    assert default["name"] == "" and default["user"] == "alice"
    assert default["state"] == "stopped" and default["url"] == "/user/alice/lab"
    # A named server that does not exist yet reads as stopped, at its own URLs.
    gpu = api["alice"].get("/users/alice/servers/gpu").json()
    assert gpu["name"] == "gpu" and gpu["state"] == "stopped"
    assert gpu["url"] == "/user/alice/gpu/lab"
    assert gpu["progress_url"] == API + "/users/alice/servers/gpu/progress"


@pytest.mark.parametrize("bad", ["lab", "Bad", "a--b", "x" * 30, "-gpu", "api"])
def test_server_names_are_checked_where_they_come_in(api, bad):
    r = api["alice"].post(f"/users/alice/servers/{bad}", {})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name", r.text


def test_start_a_named_server_and_follow_its_progress(site, api):
    r = api["alice"].post("/users/alice/servers/gpu", {})
    assert r.status_code == 202, r.text
    assert r.json()["name"] == "gpu"
    steps = follow(site, api["alice"], "/users/alice/servers/gpu/progress")
    assert steps[-1]["phase"] == "ready", steps
    assert steps[-1]["url"] == "/user/alice/gpu/lab"
    items = api["alice"].get("/users/alice/servers").json()["items"]
    assert [(s["name"], s["state"]) for s in items] == [("", "stopped"), ("gpu", "running")]
    assert api["alice"].get("/users/alice/server").json()["state"] == "stopped"
    # Everyone's running servers, for an admin: the named one with its owner.
    every = api["ada"].get("/servers").json()["items"]
    assert {(s["user"], s["name"]) for s in every} == {("alice", "gpu")}
    events = api["alice"].get("/events?user=alice&kind=start-requested").json()["items"]
    assert any("server gpu" in e["detail"] for e in events), events


def test_the_maximum_of_named_servers_is_refused_clearly(api):
    r = api["alice"].post("/users/alice/servers/second", {})
    assert r.status_code == 409, r.text
    assert "max_named_servers" in r.json()["error"]["message"]
    # Starting the one she has is no new server: not refused.
    assert api["alice"].post("/users/alice/servers/gpu", {}).status_code == 202


def test_another_user_cannot_touch_a_named_server(api):
    for method, path in (("GET", "/users/alice/servers/gpu"),
                         ("POST", "/users/alice/servers/gpu/pause"),
                         ("DELETE", "/users/alice/servers/gpu"),
                         ("GET", "/users/alice/servers")):
        r = api["bob"].call(method, path)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
    assert api["alice"].get("/users/alice/servers/gpu").json()["state"] == "running"


def test_pause_and_resume_a_named_server(api):
    r = api["alice"].post("/users/alice/servers/gpu/pause")
    assert r.status_code == 200 and r.json()["paused"] is True, r.text
    assert r.json()["server"]["state"] == "paused"
    assert api["alice"].get("/users/alice/server").json()["state"] == "stopped"
    r = api["alice"].post("/users/alice/servers/gpu/resume")
    assert r.status_code == 200 and r.json()["resumed"] is True, r.text
    assert r.json()["server"]["state"] == "running"


def test_remove_is_for_a_named_server_that_exists(api):
    r = api["alice"].delete("/users/alice/server?remove=true")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_field"
    r = api["alice"].delete("/users/alice/servers/nope?remove=true")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_stop_then_remove_a_named_server(site, api):
    r = api["alice"].delete("/users/alice/servers/gpu")
    assert r.status_code == 200 and r.json()["stopped"] is True
    assert "removed" not in r.json()
    assert api["alice"].get("/users/alice/servers/gpu").json()["state"] == "stopped"
    assert redis_cli(site, "EXISTS", "ipydoc:server:alice--gpu") == "1"  # kept: stopped
    r = api["alice"].delete("/users/alice/servers/gpu?remove=true")
    assert r.status_code == 200 and r.json()["removed"] is True, r.text
    assert redis_cli(site, "EXISTS", "ipydoc:server:alice--gpu") == "0"
    names = [s["name"] for s in api["alice"].get("/users/alice/servers").json()["items"]]
    assert names == [""]
    # Room again under the maximum.
    r = api["alice"].post("/users/alice/servers/second", {})
    assert r.status_code == 202, r.text
    assert follow(site, api["alice"], "/users/alice/servers/second/progress")[-1]["phase"] \
        == "ready"
    # JupyterHub's form: the body {"remove": true}; it stops, then removes.
    r = api["alice"].call("DELETE", "/users/alice/servers/second", {"remove": True})
    assert r.status_code == 200 and r.json()["stopped"] is True and r.json()["removed"]
    wait_for(lambda: not docker("ps", "-q", "--filter", f"label=ipydoc.instance={site.instance}",
                                "--filter", "label=ipydoc.server=second"), timeout=30)


def test_deleting_a_user_is_for_admins_and_stops_every_server(site, api):
    carl = api["carl"]
    assert carl.post("/users/carl/servers/big", {}).status_code == 202
    assert follow(site, carl, "/users/carl/servers/big/progress")[-1]["phase"] == "ready"
    assert containers(site, "carl")
    r = api["bob"].delete("/users/carl")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = api["ada"].delete("/users/ada")
    assert r.status_code == 409 and "your own" in r.json()["error"]["message"]
    r = api["ada"].delete("/users/carl")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["removed"] == "carl" and body["servers_stopped"] == ["carl--big"]
    assert body["reserved"] is True
    wait_for(lambda: not docker("ps", "-q", "--filter", f"label=ipydoc.instance={site.instance}",
                                "--filter", "label=ipydoc.user=carl"), timeout=30)
    assert api["ada"].get("/users/carl").status_code == 404
    # carl's token died with the account; the name stays reserved while his files are kept.
    assert carl.get("/user").status_code == 401
    r = api["ada"].post("/users", {"name": "carl", "password": "another-password-1"})
    assert r.status_code == 409 and "purge" in r.json()["error"]["message"]
    assert api["ada"].delete("/users/nobody").status_code == 404
