"""``ipydoc token list|create|revoke`` against the real daemon, its API and its proxy in
front of a real container: a token made by the CLI is printed once, reaches /hub/api/ and
the user's server; the listing never holds it, nor does the daemon's log; a revoked one
gets 401 on both; the admin scope is only for admins."""

from __future__ import annotations

import json

import pytest
import requests

from support import wait_for

ADMIN_PW, STUDENT_PW = "teacher-password-1", "student-password-1"


@pytest.fixture
def site(make_daemon):
    d = make_daemon(auth={"start_on_login": False})
    d.start()
    d.add_user("teacher", ADMIN_PW, admin=True)
    d.add_user("stu", STUDENT_PW)
    return d


def create(d, *args: str) -> dict:
    r = d.cli("--json", "token", "create", *args)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    return json.loads(r.stdout)


def listing(d, user: str) -> tuple[list[dict], str]:
    r = d.cli("--json", "token", "list", "--user", user)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stdout


def test_a_created_token_reaches_api_and_server_and_a_revoked_one_gets_401(site):
    made = create(site, "--user", "stu", "--scope", "servers", "--note", "grader",
                  "--expires", "1d")
    token, info = made["token"], made["info"]
    assert token.startswith("ipd_") and len(token) == 47
    assert made["user"] == "stu" and info["scopes"] == ["servers"]
    assert info["note"] == "grader" and info["expires"] is not None
    auth = {"Authorization": f"token {token}"}

    me = requests.get(f"{site.url}/hub/api/user", headers=auth, timeout=10)
    assert me.status_code == 200, me.text
    assert (me.json()["name"], me.json()["kind"]) == ("stu", "token")

    # The token starts the user's server and reaches it through the proxy.
    started = requests.post(f"{site.url}/hub/api/users/stu/server", json={}, headers=auth,
                            timeout=30)
    assert started.status_code in (200, 202), started.text
    status = f"{site.url}/user/stu/api/status"
    wait_for(lambda: requests.get(status, headers=auth, timeout=10).status_code == 200,
             timeout=120, interval=0.5)

    items, raw = listing(site, "stu")
    assert [(i["id"], i["note"], i["scopes"]) for i in items] == [(info["id"], "grader",
                                                                   ["servers"])]
    assert token not in raw and "token" not in items[0]
    human = site.cli("token", "list", "--user", "stu")
    assert human.returncode == 0 and info["id"] in human.stdout and token not in human.stdout
    assert token not in site.log()  # shown once, to the CLI, never logged

    r = site.cli("--json", "token", "revoke", "--user", "stu", info["id"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"user": "stu", "id": info["id"], "revoked": True}
    assert requests.get(f"{site.url}/hub/api/user", headers=auth, timeout=10).status_code == 401
    assert requests.get(status, headers=auth, timeout=10).status_code == 401
    assert listing(site, "stu")[0] == []
    again = site.cli("token", "revoke", "--user", "stu", info["id"])
    assert again.returncode == 5, again.stderr  # no such token (any more)

    out = site.cli("--json", "events", "--user", "stu", "-n", "50").stdout
    events = [json.loads(line) for line in out.splitlines() if line.strip()]  # one a line
    kinds = [e["kind"] for e in events]
    assert "token-created" in kinds and "token-revoked" in kinds
    assert all(token not in e.get("detail", "") for e in events)
    assert token not in site.log()


def test_scopes_expiry_and_users_are_checked(site):
    refused = site.cli("token", "create", "--user", "stu", "--scope", "admin")
    assert refused.returncode == 2 and "administrator" in refused.stderr
    assert site.cli("token", "create", "--user", "nobody").returncode == 5
    assert site.cli("token", "list", "--user", "nobody").returncode == 5
    assert site.cli("token", "create", "--user", "stu", "--expires", "soon").returncode == 2
    assert site.cli("token", "create", "--user", "stu", "--expires", "2y").returncode == 2
    assert site.cli("token", "create", "--user", "stu", "--scope", "root").returncode == 2

    # read only: the API answers, the proxy does not let it use the server (403).
    read = create(site, "--user", "stu", "--scope", "read", "--expires", "never")
    assert read["info"]["scopes"] == ["read"] and read["info"]["expires"] is None
    auth = {"Authorization": f"token {read['token']}"}
    assert requests.get(f"{site.url}/hub/api/user", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{site.url}/user/stu/api/status", headers=auth,
                        timeout=10).status_code == 403

    # An admin's token with the admin scope; the default scopes are read and servers.
    admin = create(site, "--user", "teacher", "--scope", "admin")
    assert admin["info"]["scopes"] == ["admin"]
    users = requests.get(f"{site.url}/hub/api/users",
                         headers={"Authorization": f"token {admin['token']}"}, timeout=10)
    assert users.status_code == 200, users.text
    assert sorted(u["name"] for u in users.json()["items"]) == ["stu", "teacher"]
    plain = create(site, "--user", "stu")
    assert plain["info"]["scopes"] == ["read", "servers"]

    # Each user's listing holds their own tokens only; no listing holds a token.
    stu, raw = listing(site, "stu")
    assert {i["id"] for i in stu} == {read["info"]["id"], plain["info"]["id"]}
    assert read["token"] not in raw and plain["token"] not in raw
    assert [i["id"] for i in listing(site, "teacher")[0]] == [admin["info"]["id"]]
    assert site.cli("token", "revoke", "--user", "teacher", read["info"]["id"]).returncode == 5
