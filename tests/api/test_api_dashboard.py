"""A course dashboard driving ipydoc through /hub/api/ alone, against the real daemon and a
real container: an admin's token lists the users, starts a student's server, follows its
progress to ready, reaches the server through the proxy, reads the events, stops it.  Every
answer is checked against the daemon's own OpenAPI document."""

from __future__ import annotations

import pytest
import requests
from api_support import Client, follow, make_token, openapi

from support import wait_for

ADMIN_PW, STUDENT_PW = "teacher-password-1", "student-password-1"


@pytest.fixture
def site(make_daemon):
    d = make_daemon(auth={"start_on_login": False})
    d.start()
    d.add_user("teacher", ADMIN_PW, admin=True)
    d.add_user("stu", STUDENT_PW)
    return d


def test_a_dashboard_starts_follows_and_stops_a_students_server(site):
    doc = openapi(site.url)
    token = make_token(site, doc, "teacher", ADMIN_PW, ["admin"])
    api = Client(site.url, doc, token)

    me = api.get("/user").json()
    assert (me["name"], me["admin"], me["kind"]) == ("teacher", True, "token")
    assert set(me["scopes"]) == {"read", "servers", "admin"}

    users = api.get("/users?limit=1").json()
    assert (users["total"], len(users["items"]), users["limit"]) == (2, 1, 1)
    rest = api.get("/users?offset=1").json()
    names = [u["name"] for u in users["items"] + rest["items"]]
    assert sorted(names) == ["stu", "teacher"]
    assert all(u["server"]["state"] == "stopped" for u in users["items"] + rest["items"])

    started = api.post("/users/stu/server", {})
    assert started.status_code == 202
    assert started.json()["progress_url"] == "/hub/api/users/stu/server/progress"
    steps = follow(site.url, "stu", api.headers)
    assert steps[-1]["phase"] == "ready", steps
    assert steps[-1]["url"] == "/user/stu/lab"
    assert len(site.containers("stu", all=False)) == 1

    server = api.get("/users/stu/server").json()
    assert (server["state"], server["ready"]) == ("running", True)
    assert server["image"] == "ipydoc-test-notebook:latest"
    assert [s["user"] for s in api.get("/servers").json()["items"]] == ["stu"]
    assert api.get("/users/stu/servers").json()["items"] == [server]

    # The admin's token is for the hub: the student's server stays the student's.
    r = requests.get(site.url + "/user/stu/api/status", headers=api.headers, timeout=10)
    assert r.status_code == 403

    # A started server again: nothing new, the same answer shape.
    assert api.post("/users/stu/server", {}).json()["state"] == "running"

    events = api.get("/events?user=stu&kind=start-requested").json()
    assert [e["kind"] for e in events["items"]] == ["start-requested"]
    assert "teacher (API token)" in events["items"][0]["detail"]
    cursor = api.get("/events?limit=1").json()["last"]

    stopped = api.delete("/users/stu/server").json()
    assert stopped["stopped"] is True and stopped["server"]["state"] == "stopped"
    wait_for(lambda: not site.containers("stu", all=False), timeout=60)
    later = api.get(f"/events?after={cursor}&user=stu").json()
    assert "stop" in [e["kind"] for e in later["items"]], later
    assert api.delete("/users/stu/server").json()["stopped"] is False
    # The stream of a stopped server ends at once, saying so.
    assert follow(site.url, "stu", api.headers)[-1]["phase"] == "stopped"


def test_the_student_drives_their_own_server_with_a_servers_token(site):
    doc = openapi(site.url)
    token = make_token(site, doc, "stu", STUDENT_PW, ["servers"])
    api = Client(site.url, doc, token)
    assert api.post("/users/stu/server", {"image": "not-offered:latest"}).status_code == 400
    assert api.post("/users/stu/server", {}).status_code == 202
    assert follow(site.url, "stu", api.headers)[-1]["phase"] == "ready"
    # The same token reaches the server through the proxy (it has the servers scope).
    r = requests.get(site.url + "/user/stu/api/status", headers=api.headers, timeout=10)
    assert r.status_code == 200, r.text
    # A save through the proxy lands in the history, which the teacher's dashboard reads.
    text = "print('hand-in 1')\n"
    r = requests.put(site.url + "/user/stu/api/contents/hand-in.py", headers=api.headers,
                     json={"type": "file", "format": "text", "content": text}, timeout=30)
    assert r.status_code in (200, 201), r.text
    teacher = Client(site.url, api.doc, make_token(site, api.doc, "teacher", ADMIN_PW,
                                                   ["admin"]))
    files = wait_for(lambda: teacher.get("/users/stu/history").json()["items"], timeout=60)
    assert [f["path"] for f in files] == ["hand-in.py"]
    versions = teacher.get("/users/stu/history/versions?path=hand-in.py").json()["items"]
    assert len(versions) == 1
    shown = teacher.get(f"/users/stu/history/version?path=hand-in.py&rev="
                        f"{versions[0]['rev'][:8]}").json()
    assert (shown["content"], shown["encoding"], shown["path"]) == (text, "utf-8", "hand-in.py")
    assert teacher.get("/users/stu/history/version?path=hand-in.py&rev=0000000"
                       ).status_code == 404
    assert api.get("/users/stu/history").json()["total"] == 1   # the owner's own
    paused = api.post("/users/stu/server/pause").json()
    assert paused["paused"] is True and paused["server"]["state"] == "paused"
    resumed = api.post("/users/stu/server/resume").json()
    assert resumed["resumed"] is True and resumed["server"]["state"] == "running"
    assert api.delete("/users/stu/server").json()["stopped"] is True
    wait_for(lambda: not site.containers("stu", all=False), timeout=60)
