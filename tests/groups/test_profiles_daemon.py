"""Groups and profiles on the real daemon, Docker engine and notebook image: a profile with
a read-only course-material volume and its own limits, refused on every path to a user
whose groups do not offer it (start form, CLI, the control channel itself), and admin
rights from an admin group (CLI and the admin page's group forms)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.protocols import amp

from ipydoc.control import commands as c

from support import TEST_IMAGE, Daemon, docker, login, wait_for

PASSWORD = "a-long-password"


@dataclass
class ProfileDaemon(Daemon):
    """A daemon whose config ends with ``[[profiles]]`` tables (TOML the helper's
    section writer cannot express)."""

    profiles: str = ""

    def write_config(self) -> None:
        super().write_config()
        with open(self.config_path, "a") as f:
            f.write(self.profiles)


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = ProfileDaemon(tmp_path_factory.mktemp("profiles"), {
        "auth": {"start_on_login": False, "stop_on_logout": False},
        "groups": {"profiles_for_everyone": ["default"], "default_profile": "default"},
    })
    material = f"{d.instance}-material"
    docker("volume", "create", material)
    docker("run", "--rm", "--user", "0", "-v", f"{material}:/m", "--entrypoint", "sh",
           TEST_IMAGE, "-c", "echo 'week 1: read chapter 2' > /m/readme.txt")
    d.profiles = f"""
[[profiles]]
name = "default"
image = "{TEST_IMAGE}"

[[profiles]]
name = "course"
display_name = "Statistics 101"
description = "course material in ~/course"
image = "{TEST_IMAGE}"
mem_limit = "512M"
cpu_limit = 0.5
pids_limit = 300
environment = {{ COURSE = "stats101" }}
[[profiles.volumes]]
source = "{material}"
target = "/home/jovyan/course"
"""
    d.start()
    try:
        yield d
    finally:
        d.stop()
        d.cleanup_docker()
        docker("volume", "rm", "-f", material, check=False)


def cli_json(site, *args: str):
    r = site.cli(*args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def csrf(s: requests.Session, url: str) -> str:
    return re.search(r'name="_csrf" value="([^"]+)"', s.get(url).text).group(1)


def test_profile_list(site):
    profiles = cli_json(site, "profile", "list")
    assert [p["name"] for p in profiles] == ["default", "course"]
    course = profiles[1]
    assert course["title"] == "Statistics 101" and course["env"] == ["COURSE"]
    assert "stats101" not in json.dumps(profiles)  # values are never shown
    assert course["volumes"] == [{"source": f"{site.instance}-material",
                                  "target": "/home/jovyan/course", "read_only": True}]


def test_a_user_outside_the_group_cannot_pick_the_profile(site):
    site.add_user("ann", PASSWORD)
    assert [p["name"] for p in cli_json(site, "profile", "list", "--user", "ann")] == \
        ["default"]
    # the CLI
    r = site.cli("server", "start", "ann", "--profile", "course")
    assert r.returncode == 2, r.stdout
    assert "the profile 'course' is not offered to you" in r.stderr
    r = site.cli("server", "start", "ann", "--profile", "nope")
    assert r.returncode == 2 and "there is no profile 'nope'" in r.stderr
    # the form
    s, _ = login(site.url, "ann", PASSWORD)
    page = s.get(site.url + "/hub/spawn/ann").text
    assert "Statistics 101" not in page
    token = csrf(s, site.url + "/hub/home")
    r = s.post(site.url + "/hub/spawn/ann", data={"_csrf": token, "profile": "course"},
               headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 403
    assert "not offered to you" in r.text.replace("&#39;", "'")
    assert site.containers("ann") == []
    assert site.cli("server", "show", "ann", "--json").returncode == 0
    assert json.loads(site.cli("server", "show", "ann", "--json").stdout)["state"] == "stopped"


@pytest_twisted.ensureDeferred
async def test_the_control_channel_refuses_it_too(site):
    site.add_user("amp-user", PASSWORD)
    ep = UNIXClientEndpoint(reactor, str(site.root / "state" / "control.sock"))
    proto = await connectProtocol(ep, amp.AMP())
    try:
        with pytest.raises(c.InvalidInput, match="not offered to you"):
            await proto.callRemote(c.ServerStart, name="amp-user", wait=False,
                                   profile="course")
    finally:
        proto.transport.loseConnection()
    assert site.containers("amp-user") == []


def test_a_group_member_starts_the_profile_with_its_volume_and_limits(site):
    site.add_user("bea", PASSWORD)
    assert site.cli("group", "add", "students", "--profiles", "course").returncode == 0
    r = site.cli("group", "members", "add", "students", "bea")
    assert r.returncode == 0, r.stderr
    s, _ = login(site.url, "bea", PASSWORD)
    page = s.get(site.url + "/hub/spawn/bea").text
    assert 'value="course"' in page and "Statistics 101" in page
    token = csrf(s, site.url + "/hub/home")
    r = s.post(site.url + "/hub/spawn/bea", data={"_csrf": token, "profile": "course"},
               headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    wait_for(lambda: cli_json(site, "server", "show", "bea")["state"] == "running", 90, 0.3)
    (cid,) = site.containers("bea", all=False)
    info = json.loads(docker("inspect", cid))[0]
    host = info["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (512 << 20, 5 * 10**8, 300)
    course = [m for m in info["Mounts"] if m["Destination"] == "/home/jovyan/course"]
    assert course and course[0]["RW"] is False
    assert "COURSE=stats101" in info["Config"]["Env"]
    assert "stats101" not in site.log()  # environment values are never logged
    assert docker("exec", cid, "cat", "/home/jovyan/course/readme.txt").strip() == \
        "week 1: read chapter 2"
    wrote = subprocess.run(["docker", "exec", cid, "sh", "-c",
                            "echo x > /home/jovyan/course/mine.txt"],
                           capture_output=True, text=True)
    assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr
    # the record, the CLI and the pages show the profile
    assert cli_json(site, "server", "show", "bea")["profile"] == "course"
    listed = {x["name"]: x for x in cli_json(site, "server", "list")}
    assert listed["bea"]["profile"] == "course"
    assert "PROFILE" in site.cli("server", "list").stdout
    home = s.get(site.url + "/hub/home").text
    assert re.search(r'id="profile">course<', home)
    assert "300 processes" in home and "0.5 CPUs" in home  # the profile's limits
    # removed from the group: the profile is refused again (the running server stays)
    site.cli("group", "members", "remove", "students", "bea")
    r = site.cli("server", "start", "bea", "--profile", "course")
    assert r.returncode == 2 and "not offered" in r.stderr
    assert site.cli("server", "stop", "bea").returncode == 0


def test_admin_through_an_admin_group(site):
    site.add_user("root", PASSWORD, admin=True)
    site.add_user("tess", PASSWORD)
    s, _ = login(site.url, "tess", PASSWORD)
    assert s.get(site.url + "/hub/admin").status_code == 403
    assert site.cli("group", "add", "staff", "--admin").returncode == 0
    assert site.cli("group", "members", "add", "staff", "tess").returncode == 0
    page = s.get(site.url + "/hub/admin")
    assert page.status_code == 200 and 'id="groups"' in page.text
    shown = cli_json(site, "group", "show", "staff")
    assert shown["admin"] is True and shown["members"] == {"tess": "manual"}
    tess = cli_json(site, "user", "show", "tess")
    assert (tess["admin"], tess["admin_by_group"], tess["groups"]) == \
        (False, True, {"staff": "manual"})
    assert site.cli("group", "members", "remove", "staff", "tess").returncode == 0
    assert s.get(site.url + "/hub/admin").status_code == 403


def test_admin_page_group_forms(site):
    site.add_user("gwen", PASSWORD)
    s, _ = login(site.url, "root", PASSWORD)
    token = csrf(s, site.url + "/hub/admin")
    post = lambda path, **data: s.post(site.url + path, data=data,  # noqa: E731
                                       headers={"Origin": site.url}, allow_redirects=False)
    # no CSRF token: refused, nothing made
    r = s.post(site.url + "/hub/admin/groups", data={"name": "lab"},
               headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 403
    assert "lab" not in [g["name"] for g in cli_json(site, "group", "list")]
    r = post("/hub/admin/groups", _csrf=token, name="lab", profile="no-such")
    assert r.status_code == 400 and "No such profile: no-such" in r.text
    r = post("/hub/admin/groups", _csrf=token, name="lab", profile="course", admin="1")
    assert r.status_code in (302, 303), r.text
    assert cli_json(site, "group", "show", "lab")["profiles"] == ["course"]
    assert post("/hub/admin/groups/lab/members", _csrf=token, user="gwen").status_code == 303
    assert cli_json(site, "group", "show", "lab")["members"] == {"gwen": "manual"}
    page = s.get(site.url + "/hub/admin").text
    assert 'data-member="gwen"' in page
    g, _ = login(site.url, "gwen", PASSWORD)
    assert g.get(site.url + "/hub/admin").status_code == 200  # lab is an admin group
    assert post("/hub/admin/groups/lab/members/gwen/remove", _csrf=token).status_code == 303
    assert g.get(site.url + "/hub/admin").status_code == 403
    r = post("/hub/admin/groups/lab/remove", _csrf=token)
    assert r.status_code == 200 and "Delete the group lab?" in r.text  # confirmation
    assert post("/hub/admin/groups/lab/remove", _csrf=token, confirmed="1").status_code == 303
    assert "lab" not in [x["name"] for x in cli_json(site, "group", "list")]


def test_group_cli_errors(site):
    assert site.cli("group", "add", "staff").returncode == 1  # exists
    r = site.cli("group", "set", "staff", "--profiles", "gpu")
    assert r.returncode == 2 and "no such profile: gpu" in r.stderr
    assert site.cli("group", "show", "nope").returncode == 5
    assert site.cli("group", "members", "add", "staff", "nobody").returncode == 5
    r = site.cli("group", "set", "staff", "--mem", "1G", "--cpu", "2")
    assert r.returncode == 0, r.stderr
    assert cli_json(site, "group", "show", "staff")["limits"] == \
        {"mem": 1 << 30, "cpu": 2.0, "pids": None}
    assert "mem=1G" in site.cli("group", "list").stdout
