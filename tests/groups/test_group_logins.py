"""Groups from the login providers, on the real daemon: GitHub teams through the loopback
GitHub stand-in (``[auth.github] group_teams``) and an OIDC claim through the real
``oidc-provider`` (``[auth.oidc.lab] groups_claim``).  A login joins the mapped groups,
a later login leaves the ones the provider no longer reports, and a manual membership is
never removed by a login; an admin group gives the admin page."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import ThreadingHTTPServer

import pytest
import requests

from github_stand_in import PEOPLE, GitHubStandIn
from support import Daemon

OIDC_DIR = __import__("pathlib").Path(__file__).parents[1] / "oidc"


def groups_of(daemon: Daemon, group: str) -> dict[str, str]:
    r = daemon.cli("group", "show", group, "--json")
    return json.loads(r.stdout)["members"] if r.returncode == 0 else {}


@pytest.fixture(scope="module")
def github_site(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    daemon = Daemon(tmp_path_factory.mktemp("github-groups"), {
        "auth": {"start_on_login": False, "local": False},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret", "url": base,
                        "api_url": base + "/api", "orgs": ["acme"],
                        'group_teams."acme/teachers"': "teachers",
                        'group_teams."acme/tas"': "tas"},
    })
    PEOPLE["Grouper"] = (201, {"acme": "active"},
                         {"acme/teachers": "active", "acme/tas": "active"})
    daemon.start()
    yield daemon
    daemon.stop()
    daemon.cleanup_docker()
    server.shutdown()
    PEOPLE.pop("Grouper", None)


def github_login(daemon: Daemon, login: str) -> requests.Session:
    GitHubStandIn.next_login = login
    s = requests.Session()
    r = s.get(daemon.url + "/hub/oauth/github/start", params={"next": "/hub/home"})
    assert r.status_code == 200 and r.url == daemon.url + "/hub/home", r.text
    return s


def test_github_teams_become_groups_and_follow_each_login(github_site):
    d = github_site
    s = github_login(d, "Grouper")
    assert groups_of(d, "teachers") == {"grouper": "github"}
    assert groups_of(d, "tas") == {"grouper": "github"}
    assert GitHubStandIn.scopes[-1] == "read:org"
    assert s.get(d.url + "/hub/admin").status_code == 403
    # an admin makes teachers an admin group: the member gets the admin page
    assert d.cli("group", "set", "teachers", "--admin").returncode == 0
    assert s.get(d.url + "/hub/admin").status_code == 200
    # tas is also given by hand: a login must not take it away
    assert d.cli("group", "members", "add", "tas", "grouper").returncode == 0
    PEOPLE["Grouper"] = (201, {"acme": "active"}, {})  # left both teams on GitHub
    s = github_login(d, "Grouper")
    assert groups_of(d, "teachers") == {}
    assert groups_of(d, "tas") == {"grouper": "manual"}
    assert s.get(d.url + "/hub/admin").status_code == 403
    events = d.cli("events", "--json", "--user", "grouper").stdout
    assert "github at login: joined" in events and "left teachers" in events


def test_a_github_error_on_a_team_changes_no_membership(github_site):
    d = github_site
    PEOPLE["Grouper"] = (201, {"acme": "active"}, {"acme/teachers": "active"})
    github_login(d, "Grouper")
    assert groups_of(d, "teachers") == {"grouper": "github"}
    PEOPLE["Grouper"] = (201, {"acme": "active"}, {"acme/teachers": 502, "acme/tas": 404})
    github_login(d, "Grouper")  # GitHub could not confirm: memberships stay as they were
    assert groups_of(d, "teachers") == {"grouper": "github"}


@pytest.fixture(scope="module")
def oidc_site(tmp_path_factory):
    if shutil.which("node") is None or not (OIDC_DIR / "node_modules").is_dir():
        pytest.fail("node and tests/oidc/node_modules are needed (scripts/bootstrap.sh --test)")
    from auth.test_login_oidc import SECRET, Provider, rsa_jwk

    root = tmp_path_factory.mktemp("oidc-groups")
    daemon = Daemon(root / "ipydoc")
    provider = Provider(root, f"{daemon.url}/hub/oauth/lab/callback")
    provider.start([rsa_jwk("k1")])
    daemon.overrides = {
        "auth": {"start_on_login": False},
        "auth.oidc.lab": {
            "issuer": provider.url, "client_id": "ipydoc", "client_secret": SECRET,
            "scopes": ["openid", "email", "profile", "groups"], "allow.groups": ["lab"],
            "groups_claim": "groups", "groups_map.staff": "teachers",
            "groups_map.lab": "students", "leeway": 0.0},
    }
    daemon.start()
    yield daemon, provider
    daemon.stop()
    daemon.cleanup_docker()
    provider.stop()


def test_oidc_claim_becomes_groups_and_an_admin_group_gives_admin(oidc_site):
    from auth.test_login_oidc import oidc_login

    daemon, _ = oidc_site
    s, r, _ = oidc_login(oidc_site, "alice", nxt="/hub/home")  # groups: lab, staff
    assert r.status_code == 303, r.text
    assert groups_of(daemon, "teachers") == {"alice": "lab"}
    assert groups_of(daemon, "students") == {"alice": "lab"}
    assert s.get(daemon.url + "/hub/admin").status_code == 403  # no admin claim here
    assert daemon.cli("group", "set", "teachers", "--admin").returncode == 0
    assert s.get(daemon.url + "/hub/admin").status_code == 200
    c, r, _ = oidc_login(oidc_site, "carol", nxt="/hub/home")  # groups: lab
    assert groups_of(daemon, "students") == {"alice": "lab", "carol": "lab"}
    assert "carol" not in groups_of(daemon, "teachers")
    assert c.get(daemon.url + "/hub/admin").status_code == 403
    # removal from the group removes the admin page at once
    assert daemon.cli("group", "members", "remove", "teachers", "alice").returncode == 0
    assert s.get(daemon.url + "/hub/admin").status_code == 403
    # a manual membership survives the next login; the provider's comes back
    assert daemon.cli("group", "members", "add", "teachers", "carol").returncode == 0
    oidc_login(oidc_site, "carol", nxt="/hub/home")
    oidc_login(oidc_site, "alice", nxt="/hub/home")
    assert groups_of(daemon, "teachers") == {"alice": "lab", "carol": "manual"}
