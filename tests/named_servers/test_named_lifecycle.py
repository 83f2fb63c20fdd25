"""Named servers for real (issue 19 §1): a real daemon, Docker and jupyter_server.

alice starts her default server and a named one, ``gpu``: two containers with their own
tokens on her one volume; each is paused, stopped and removed on its own; the per-user
maximum refuses one more; a daemon restart keeps both routed; removing alice removes both.
"""

from __future__ import annotations

import json

import requests

from support import csrf_of, docker, login, wait_for

PW = "named-servers-pw-1"


def cli_ok(d, *args: str) -> str:
    out = d.cli(*args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def containers_of(d, user: str) -> dict[str, dict]:
    """The inspected containers of ``user`` in this daemon's instance, by server name."""
    found = {}
    for cid in d.containers(user):
        c = json.loads(docker("inspect", cid))[0]
        found[c["Config"]["Labels"].get("ipydoc.server", "")] = c
    return found


def env_of(c: dict) -> dict[str, str]:
    return dict(item.split("=", 1) for item in c["Config"]["Env"])


def listed(d) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads(cli_ok(d, "--json", "server", "list"))}


def test_default_and_named_server_run_side_by_side_and_live_on_their_own(make_daemon):
    d = make_daemon(spawn={"max_named_servers": 1, "max_running": 2, "mem_limit": "768M"})
    d.start()
    d.add_user("alice", PW)
    cli_ok(d, "server", "start", "alice")
    cli_ok(d, "server", "start", "alice", "--server", "gpu")

    # Two containers: the owner's labels, the key in the name, own tokens, same volume.
    found = containers_of(d, "alice")
    assert set(found) == {"", "gpu"}
    default, gpu = found[""], found["gpu"]
    assert gpu["Name"].endswith("alice--gpu") and default["Name"].endswith("alice")
    assert gpu["Config"]["Labels"]["ipydoc.user"] == "alice"
    assert gpu["Config"]["Labels"]["ipydoc.base_url"] == "/user/alice/gpu/"
    assert default["Config"]["Labels"]["ipydoc.base_url"] == "/user/alice/"
    tokens = {env_of(c)["JUPYTER_TOKEN"] for c in (default, gpu)}
    assert len(tokens) == 2 and all(len(t) >= 32 for t in tokens)
    assert env_of(gpu)["IPYDOC_USER"] == "alice" and env_of(gpu)["IPYDOC_SERVER"] == "gpu"
    for c in (default, gpu):
        assert c["HostConfig"]["Memory"] == 768 * 1024 * 1024
        assert c["HostConfig"]["NetworkMode"] == default["HostConfig"]["NetworkMode"]
        assert not any(t in " ".join(c["Config"]["Cmd"]) for t in tokens)  # never in argv
    volumes = {m["Name"] for c in (default, gpu) for m in c["Mounts"] if m["Type"] == "volume"}
    assert volumes == {f"{d.instance}-home-alice"}

    # A file written in one is seen in the other (one volume for the user's servers).
    docker("exec", gpu["Id"], "sh", "-c", "echo from-gpu > /home/jovyan/shared.txt")
    assert docker("exec", default["Id"], "cat", "/home/jovyan/shared.txt") == "from-gpu"

    # The named server's Jupyter answers at its own base URL, with its own token only.
    servers = listed(d)
    assert (servers["alice--gpu"]["owner"], servers["alice--gpu"]["server"]) == ("alice", "gpu")
    assert (servers["alice"]["owner"], servers["alice"]["server"]) == ("alice", "")
    url = servers["alice--gpu"]["url"]
    auth = {"Authorization": f"token {env_of(gpu)['JUPYTER_TOKEN']}"}
    assert requests.get(f"{url}/user/alice/gpu/api/status", headers=auth,
                        timeout=10).status_code == 200
    other = {"Authorization": f"token {env_of(default)['JUPYTER_TOKEN']}"}
    assert requests.get(f"{url}/user/alice/gpu/api/contents", headers=other,
                        timeout=10).status_code == 403
    table = cli_ok(d, "server", "list")
    assert "SERVER" in table.splitlines()[0]
    assert any(line.split()[:3] == ["alice", "running", "gpu"] for line in table.splitlines())

    # Pause and resume one: the other never stops.
    assert json.loads(cli_ok(d, "--json", "server", "pause", "alice", "--server", "gpu"))["paused"]
    state = containers_of(d, "alice")
    assert state["gpu"]["State"]["Paused"] and not state[""]["State"]["Paused"]
    assert listed(d)["alice--gpu"]["state"] == "paused"
    assert json.loads(cli_ok(d, "--json", "server", "resume", "alice", "--server", "gpu"))[
        "resumed"]
    assert not containers_of(d, "alice")["gpu"]["State"]["Paused"]
    pause_events = [json.loads(x) for x in cli_ok(d, "--json", "events", "--kind", "pause")
                    .splitlines() if x.strip()]
    assert pause_events[-1]["user"] == "alice"
    assert pause_events[-1]["detail"].startswith("server gpu:")

    # The maximum (1): a second named server is refused, exit 2, nothing is started.
    more = d.cli("server", "start", "alice", "--server", "big")
    assert more.returncode == 2, more.stderr
    assert "spawn.max_named_servers = 1" in more.stderr
    assert set(containers_of(d, "alice")) == {"", "gpu"}

    # A daemon restart keeps both running and routed (reconcile adopts the named one).
    assert d.stop() in (0, -15)
    assert set(containers_of(d, "alice")) == {"", "gpu"}
    d.start()
    routes = {r["name"]: r for r in json.loads(cli_ok(d, "--json", "route", "list"))}
    assert routes["alice"]["served"] and routes["alice--gpu"]["served"]
    assert listed(d)["alice--gpu"]["state"] == "running"
    assert requests.get(f"{url}/user/alice/gpu/api/status", headers=auth,
                        timeout=10).status_code == 200

    # The site-wide cap counts every server: alice's two fill spawn.max_running = 2.
    d.add_user("bob", PW)
    full = d.cli("server", "start", "bob")
    assert full.returncode == 1 and "the hub is full: 2 servers" in full.stderr, full.stderr
    assert d.containers("bob") == []

    # Stopping the named server leaves the default one running.
    cli_ok(d, "server", "stop", "alice", "--server", "gpu")
    assert set(containers_of(d, "alice")) == {""}
    servers = listed(d)
    assert servers["alice--gpu"]["state"] == "stopped" and servers["alice"]["state"] == "running"
    assert "alice--gpu" not in {r["name"] for r in json.loads(cli_ok(d, "--json", "route",
                                                                     "list"))}

    # Removing: refused for the default server; a stopped named one goes (files stay).
    refused = d.cli("server", "remove", "alice", "--server", "nope")
    assert refused.returncode == 5, refused.stderr
    cli_ok(d, "server", "remove", "alice", "--server", "gpu")
    assert "alice--gpu" not in listed(d)
    assert docker("exec", containers_of(d, "alice")[""]["Id"], "cat",
                  "/home/jovyan/shared.txt") == "from-gpu"

    # With gpu removed a new named server fits; `user remove` takes every container.
    cli_ok(d, "server", "start", "alice", "--server", "big")
    assert set(containers_of(d, "alice")) == {"", "big"}
    out = json.loads(cli_ok(d, "--json", "user", "remove", "alice", "--yes"))
    assert out["server_stopped"] is True
    wait_for(lambda: not d.containers("alice"), 30)
    assert set(listed(d)) == {"bob"}  # only bob's refused start is left


def test_culler_stops_an_idle_named_server_and_keeps_the_busy_default_one(make_daemon):
    d = make_daemon(cull={"idle_timeout": 8.0, "interval": 1.0, "ignore_kernel_activity": True})
    d.start()
    d.add_user("carol", PW)
    session, r = login(d.url, "carol", PW)
    assert r.status_code == 303, r.text
    cli_ok(d, "server", "start", "carol")
    cli_ok(d, "server", "start", "carol", "--server", "scratch")

    def busy_default_and_gpu_gone() -> bool:
        # Traffic through the proxy to the default server only.
        assert session.get(f"{d.url}/user/carol/api/status", timeout=10).status_code == 200
        return "scratch" not in containers_of(d, "carol")

    wait_for(busy_default_and_gpu_gone, 90, 1.0)
    servers = listed(d)
    assert servers["carol--scratch"]["state"] == "stopped"
    assert servers["carol"]["state"] == "running"
    culls = [json.loads(x) for x in cli_ok(d, "--json", "events", "--kind", "cull")
             .splitlines() if x.strip()]
    assert [(e["user"], e["detail"].split(":")[0]) for e in culls] == [("carol", "server scratch")]
    assert set(containers_of(d, "carol")) == {""}


def test_logout_stops_every_server_of_the_user(make_daemon):
    """``auth.stop_on_logout`` stops the named servers too, not only the default one (the
    same ``stop_all`` as disabling an account on the admin page, the API and the CLI)."""
    d = make_daemon(spawn={"max_running": 3}, auth={"start_on_login": False})
    d.start()
    d.add_user("dora", PW)
    cli_ok(d, "server", "start", "dora")
    cli_ok(d, "server", "start", "dora", "--server", "gpu")
    session, r = login(d.url, "dora", PW)
    assert r.status_code == 303, r.text
    r = session.post(f"{d.url}/hub/logout", data={"_csrf": csrf_of(session, d.url)},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    wait_for(lambda: not d.containers("dora"), 60)
    assert {k: s["state"] for k, s in listed(d).items()} == {"dora": "stopped",
                                                             "dora--gpu": "stopped"}
    stops = [json.loads(x) for x in cli_ok(d, "--json", "events", "--kind", "stop")
             .splitlines() if x.strip()]
    assert sum("logout" in e["detail"] for e in stops) == 2, stops
