"""Groups survive ``ipydoc backup`` → wipe → ``ipydoc restore`` on the real daemon: the
groups with their properties (admin, profiles, default limits), every membership with its
source (``manual``, and ``github`` from a login through the loopback GitHub stand-in), the
profiles each user may pick, and admin rights from a group.  After the restore the
sources still act as sources: a login that no longer reports a team leaves that group,
and a manual membership stays."""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

import pytest
import requests

from github_stand_in import PEOPLE, GitHubStandIn
from support import TEST_IMAGE, Daemon, docker

PASSWORD = "a-long-password-1"


@dataclass
class ProfileDaemon(Daemon):
    """A daemon whose config ends with ``[[profiles]]`` tables."""

    profiles: str = ""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as f:
            f.write(self.profiles)


@pytest.fixture
def site(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    d = ProfileDaemon(tmp_path / "site", {
        "auth": {"start_on_login": False},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret", "url": base,
                        "api_url": base + "/api", "orgs": ["acme"],
                        'group_teams."acme/teachers"': "teachers"},
        "groups": {"profiles_for_everyone": ["default"], "default_profile": "default"},
    })
    d.profiles = f"""
[[profiles]]
name = "default"
image = "{TEST_IMAGE}"

[[profiles]]
name = "course"
image = "{TEST_IMAGE}"
mem_limit = "512M"

[[profiles]]
name = "big"
image = "{TEST_IMAGE}"
mem_limit = "2G"
cpu_limit = 2.0
"""
    PEOPLE["Restorer"] = (301, {"acme": "active"}, {"acme/teachers": "active"})
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()
    server.shutdown()
    PEOPLE.pop("Restorer", None)


def ok(d: Daemon, *args: str) -> str:
    r = d.cli(*args)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def github_login(d: Daemon, login: str) -> None:
    GitHubStandIn.next_login = login
    s = requests.Session()
    r = s.get(d.url + "/hub/oauth/github/start", params={"next": "/hub/home"})
    assert r.status_code == 200 and r.url == d.url + "/hub/home", r.text


def picture(d: Daemon) -> dict:
    """Groups, memberships with their sources, what each user may pick, admin rights."""
    groups = json.loads(ok(d, "--json", "group", "list"))
    shown = {g["name"]: json.loads(ok(d, "--json", "group", "show", g["name"]))
             for g in groups}
    for g in shown.values():
        g.pop("created")  # a time: compared apart
    users = sorted(u["name"] for u in json.loads(ok(d, "--json", "user", "list")))
    profiles = {u: sorted(p["name"] for p in json.loads(
        ok(d, "--json", "profile", "list", "--user", u))) for u in users}
    admins = {u: json.loads(ok(d, "--json", "user", "show", u)).get("admin_by_group")
              for u in users}
    return {"groups": shown, "created": {g["name"]: g["created"] for g in groups},
            "profiles": profiles, "admin_by_group": admins}


def test_groups_memberships_sources_and_profiles_survive_backup_and_restore(site, tmp_path):
    d = site
    d.add_user("alice", PASSWORD)
    d.add_user("carol", PASSWORD)
    ok(d, "group", "add", "students", "--profiles", "course", "--mem", "1G")
    ok(d, "group", "add", "staff", "--admin", "--profiles", "course,big", "--cpu", "2",
       "--pids", "500")
    ok(d, "group", "members", "add", "students", "alice")
    ok(d, "group", "members", "add", "staff", "carol")
    github_login(d, "Restorer")  # joins teachers, by github
    ok(d, "group", "set", "teachers", "--profiles", "big")
    ok(d, "group", "members", "add", "students", "restorer")  # and students, by hand

    before = picture(d)
    assert before["groups"]["teachers"]["members"] == {"restorer": "github"}
    assert before["groups"]["students"]["members"] == {"alice": "manual", "restorer": "manual"}
    assert before["groups"]["staff"]["members"] == {"carol": "manual"}
    assert before["groups"]["staff"]["admin"] is True
    assert before["groups"]["students"]["limits"]["mem"] == 1 << 30
    assert before["profiles"] == {"alice": ["course", "default"],
                                  "carol": ["big", "course", "default"],
                                  "restorer": ["big", "course", "default"]}
    assert before["admin_by_group"]["carol"] is True

    archive = tmp_path / "groups.tar.gz"
    summary = json.loads(ok(d, "--json", "backup", str(archive)))
    assert "redis" in summary["parts"]

    d.stop()
    d.cleanup_docker()
    shutil.rmtree(d.root / "state")
    assert not docker("volume", "ls", "-q", "--filter", f"name={d.instance}-home-")
    restored = json.loads(ok(d, "--json", "restore", str(archive)))
    assert restored["keys"]["copied"] > 0
    d.start()

    assert picture(d) == before

    # The sources still work as sources: GitHub no longer reports the team, so the login
    # leaves teachers; the manual membership in students stays.
    PEOPLE["Restorer"] = (301, {"acme": "active"}, {})
    github_login(d, "Restorer")
    after = json.loads(ok(d, "--json", "group", "show", "teachers"))["members"]
    assert after == {}
    students = json.loads(ok(d, "--json", "group", "show", "students"))["members"]
    assert students == {"alice": "manual", "restorer": "manual"}
