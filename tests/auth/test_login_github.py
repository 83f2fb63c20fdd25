"""GitHub login against a small loopback stand-in of the GitHub endpoints ipydoc uses
(authorize, access_token, /user, organisation and team memberships), with the real
daemon pointed at it through ``[auth.github] url`` and ``api_url`` (as for GitHub
Enterprise).  The stand-in answers as GitHub documents; what ipydoc decides is the test.
"""

from __future__ import annotations

import json
import threading
from http.server import ThreadingHTTPServer

import pytest
import requests

from github_stand_in import PEOPLE, GitHubStandIn
from support import Daemon


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    daemon = Daemon(tmp_path_factory.mktemp("github"), {
        "auth": {"start_on_login": False, "local": False},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret", "url": base,
                        "api_url": base + "/api", "orgs": ["acme"], "teams": ["acme/lab"],
                        "admin_teams": ["acme/admins"]},
    })
    daemon.start()
    yield daemon
    daemon.stop()
    daemon.cleanup_docker()
    server.shutdown()


def github_login(daemon: Daemon, login: str, nxt: str = "/hub/home"):
    GitHubStandIn.next_login = login
    s = requests.Session()
    r = s.get(daemon.url + "/hub/oauth/github/start", params={"next": nxt})
    return s, r


def test_login_page_offers_github_only(site):
    page = requests.get(site.url + "/hub/login").text
    assert "Log in with GitHub" in page and 'name="password"' not in page
    r = requests.post(site.url + "/hub/login", data={"username": "x", "password": "y"})
    assert r.status_code == 403


def test_org_member_gets_in_named_after_the_login(site):
    s, r = github_login(site, "Octo-Cat")
    assert r.status_code == 200 and r.url == site.url + "/hub/home", r.text
    assert 'title="Logged in as octo-cat"' in r.text
    assert GitHubStandIn.scopes[-1] == "read:org"
    shown = json.loads(site.cli("user", "show", "octo-cat", "--json").stdout)
    assert shown["admin"] is True  # member of acme/admins
    assert "gho_" not in site.log() and "gh-secret" not in site.log()


def test_team_member_gets_in_without_being_admin(site):
    s, r = github_login(site, "teamie")
    assert r.status_code == 200 and 'title="Logged in as teamie"' in r.text
    assert json.loads(site.cli("user", "show", "teamie", "--json").stdout)["admin"] is False


def test_non_member_is_refused(site):
    s, r = github_login(site, "stranger")
    assert r.status_code == 403
    assert ("You are not a member of the GitHub organisation acme or the GitHub team "
            "acme/lab, which this site requires.") in r.text
    assert s.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    assert "stranger" not in site.cli("user", "list").stdout


def test_pending_invitation_is_refused(site):
    _, r = github_login(site, "invitee")
    assert r.status_code == 403
    assert "Your invitation to the GitHub organisation acme is still pending" in r.text


def test_api_error_is_refused_with_a_message(site):
    _, r = github_login(site, "flaky")
    assert r.status_code == 403
    assert "GitHub could not confirm that you are a member of the GitHub organisation acme" \
        in r.text
    assert "GitHub user flaky: GitHub could not confirm" in site.log()


def test_removed_member_loses_access_at_next_login(site):
    s, r = github_login(site, "teamie")
    assert r.status_code == 200
    PEOPLE["teamie"] = (105, {"acme": 404}, {"acme/lab": 404})
    _, r = github_login(site, "teamie")
    assert r.status_code == 403 and "You are not a member" in r.text
