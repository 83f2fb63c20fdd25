"""The hub's pages for named servers (issue 19 §1), real daemon and containers: home's
form starts a new named server (its name checked where it comes in, the maximum said on
home), home lists every server of the user with state, open, stop and remove; the
named server's start page; the admin page lists every named server with its owner and
stops one.  Every form keeps the one CSRF + Origin rule.  ``spawn.max_named_servers`` is
1 here.  Tests run in file order on one daemon.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from support import Daemon, login, running_site, wait_for

PW = {"ada": "ada-named-pages-1", "alice": "alice-named-pages-1", "bob": "bob-named-pages-1"}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from running_site(tmp_path_factory.mktemp("named-pages"), {
        "auth": {"start_on_login": False}, "spawn": {"max_named_servers": 1}}, PW,
        admins=("ada",))


@pytest.fixture(scope="module")
def sessions(site):
    out = {}
    for name, pw in PW.items():
        s, r = login(site.url, name, pw)
        assert r.status_code == 303
        out[name] = s
    return out


def csrf(session: requests.Session, base: str, page: str = "/hub/home") -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', session.get(base + page).text).group(1)


def post(site: Daemon, session: requests.Session, path: str, data: dict | None = None,
         **kw) -> requests.Response:
    data = {"_csrf": csrf(session, site.url), **(data or {})}
    return session.post(site.url + path, data=data, allow_redirects=False,
                        headers={"Origin": site.url, **kw.pop("headers", {})}, **kw)


def named_row(html: str, server: str) -> str:
    m = re.search(rf'<tr data-server="{server}">(.*?)</tr>', html, re.S)
    return m.group(1) if m else ""


def follow_ready(site: Daemon, session: requests.Session, user: str, server: str) -> None:
    with session.get(f"{site.url}/hub/api/users/{user}/servers/{server}/progress",
                     stream=True, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                step = json.loads(line[6:])
                if step["phase"] in ("ready", "failed", "stopped"):
                    assert step["phase"] == "ready", step
                    return
    raise AssertionError("no final step")


def test_home_offers_a_new_named_server(sessions, site):
    home = sessions["alice"].get(site.url + "/hub/home").text
    assert 'id="new-server"' in home and 'action="/hub/servers/alice"' in home
    assert "At most 1." in home
    assert 'id="named"' not in home  # none yet


@pytest.mark.parametrize("typed, words", [
    ("lab", "one of Jupyter's own paths"),
    ("Has Space", "lower-case letters"),
    ("a" * 30, "at most 29 characters"),
    ("", "non-empty"),
])
def test_a_bad_server_name_is_refused_on_home_with_the_rule(sessions, site, typed, words):
    r = post(site, sessions["alice"], "/hub/servers/alice", {"server": typed})
    assert r.status_code == 400
    assert 'id="new-server-error"' in r.text and words in r.text.replace("&#39;", "'")


def test_forms_keep_the_csrf_and_origin_rule(sessions, site):
    alice = sessions["alice"]
    r = alice.post(site.url + "/hub/servers/alice", data={"server": "gpu"},
                   headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 403 and "form expired" in r.text
    r = post(site, alice, "/hub/servers/alice", {"server": "gpu"},
             headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # bob cannot start a server of alice's (nor see her start page).
    r = post(site, sessions["bob"], "/hub/servers/alice", {"server": "gpu"})
    assert r.status_code == 403
    assert sessions["bob"].get(site.url + "/hub/spawn/alice/gpu").status_code == 403
    assert "data-server" not in alice.get(site.url + "/hub/home").text


def test_the_form_starts_the_named_server_and_home_lists_it(sessions, site):
    alice = sessions["alice"]
    r = post(site, alice, "/hub/servers/alice", {"server": "gpu"})
    assert r.status_code == 303
    assert r.headers["Location"] == "/hub/spawn/alice/gpu?next=/user/alice/gpu/lab"
    follow_ready(site, alice, "alice", "gpu")
    home = alice.get(site.url + "/hub/home").text
    row = named_row(home, "gpu")
    assert "running" in row and 'href="/user/alice/gpu/lab"' in row
    assert 'action="/hub/stop/alice/gpu"' in row
    assert "/hub/remove/alice/gpu" not in row  # only a stopped one is removed
    # The default server is its own: still stopped.
    assert re.search(r'id="state" class="badge state-stopped"', home)
    # Its start page, while it runs, goes on to it.
    r = alice.get(site.url + "/hub/spawn/alice/gpu", allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"] == "/user/alice/gpu/lab"
    assert alice.get(site.url + "/user/alice/gpu/api/status").status_code == 200


def test_the_maximum_is_said_on_home(sessions, site):
    r = post(site, sessions["alice"], "/hub/servers/alice", {"server": "other"})
    assert r.status_code == 409
    assert "max_named_servers" in r.text and 'id="new-server-error"' in r.text


def test_the_admin_page_lists_named_servers_and_stops_one(sessions, site):
    ada = sessions["ada"]
    page = ada.get(site.url + "/hub/admin").text
    row = re.search(r'<tr data-server="alice--gpu">(.*?)</tr>', page, re.S).group(1)
    assert "alice" in row and "gpu" in row and "running" in row
    action = "/hub/admin/servers/alice/gpu/stop"
    assert f'action="{action}"' in row
    # bob is no admin; without confirmed=1 a confirmation page, nothing done.
    assert post(site, sessions["bob"], action, {"confirmed": "1"}).status_code == 403
    confirm = post(site, ada, action, {}, )
    assert confirm.status_code == 200 and "Stop the server gpu of alice?" in confirm.text
    assert alice_state(sessions, site) == "running"
    r = post(site, ada, action, {"confirmed": "1"})
    assert r.status_code == 303
    wait_for(lambda: alice_state(sessions, site) == "stopped", timeout=30)


def alice_state(sessions, site) -> str:
    r = sessions["alice"].get(site.url + "/hub/api/users/alice/servers/gpu")
    return r.json()["state"]


def test_a_stopped_named_server_has_its_start_page_and_can_be_removed(sessions, site):
    alice = sessions["alice"]
    page = alice.get(site.url + "/hub/spawn/alice/gpu")
    assert page.status_code == 200
    assert 'data-progress="/hub/api/users/alice/servers/gpu/progress"' in page.text
    assert 'action="/hub/spawn/alice/gpu"' in page.text and "gpu" in page.text
    row = named_row(alice.get(site.url + "/hub/home").text, "gpu")
    assert "stopped" in row and 'action="/hub/remove/alice/gpu"' in row
    confirm = post(site, alice, "/hub/remove/alice/gpu")
    assert confirm.status_code == 200 and "Remove the server gpu?" in confirm.text
    assert named_row(alice.get(site.url + "/hub/home").text, "gpu")
    r = post(site, alice, "/hub/remove/alice/gpu", {"confirmed": "1"})
    assert r.status_code == 303 and "done=server-removed" in r.headers["Location"]
    home = alice.get(site.url + r.headers["Location"]).text
    assert not named_row(home, "gpu") and "Removed the server" in home
    # Removing what is not there says so.
    r = post(site, alice, "/hub/remove/alice/gpu", {"confirmed": "1"})
    assert r.status_code == 409
