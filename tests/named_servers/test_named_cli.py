"""``ipydoc server ... --server NAME`` (issue 19 §1) against a real daemon: bad names and
the maximum exit 2 with a clear message before anything starts; a running named server
cannot be removed; show, logs and list speak of the named server."""

from __future__ import annotations

import json

import pytest

PW = "named-cli-pw-123"


def cli_ok(d, *args: str) -> str:
    out = d.cli(*args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


@pytest.fixture
def site(make_daemon):
    d = make_daemon(spawn={"max_named_servers": 2})
    d.start()
    d.add_user("dora", PW)
    return d


@pytest.mark.parametrize("server, says", [
    ("lab", "one of Jupyter's own paths"),
    ("Big_GPU", "lower-case letters"),
    ("a" * 30, "at most 29 characters"),
    ("two--parts", "lower-case letters"),
])
def test_bad_server_names_exit_2_saying_why(site, server, says):
    for action in ("start", "stop", "pause", "resume", "show", "logs"):
        out = site.cli("server", action, "dora", "--server", server)
        assert out.returncode == 2, (action, out.stdout, out.stderr)
        assert says in out.stderr
    assert site.containers("dora") == []


def test_a_server_is_named_only_with_server_and_its_owner_must_exist(site):
    out = site.cli("server", "start", "dora--gpu")  # a key is not a user name
    assert out.returncode == 2 and "invalid user name 'dora--gpu'" in out.stderr
    out = site.cli("server", "start", "nobody", "--server", "gpu")
    assert out.returncode == 5 and "no user nobody" in out.stderr


def test_named_servers_off_refuses_every_named_start(make_daemon):
    d = make_daemon(spawn={"max_named_servers": 0})
    d.start()
    d.add_user("erin", PW)
    out = d.cli("server", "start", "erin", "--server", "gpu")
    assert out.returncode == 2, out.stderr
    assert "named servers are off on this hub (spawn.max_named_servers = 0)" in out.stderr
    assert d.containers("erin") == []
    assert json.loads(cli_ok(d, "--json", "server", "list")) == []


def test_a_running_named_server_is_not_removed_and_the_cli_names_it(site):
    out = cli_ok(site, "server", "start", "dora", "--server", "gpu")
    assert out.startswith("server gpu of dora is running")
    shown = json.loads(cli_ok(site, "--json", "server", "show", "dora", "--server", "gpu"))
    assert (shown["name"], shown["owner"], shown["server"]) == ("dora--gpu", "dora", "gpu")
    assert shown["backend"]["running"] is True and "token" not in shown
    user = json.loads(cli_ok(site, "--json", "user", "show", "dora"))
    assert [(s["server"], s["state"]) for s in user["servers"]] == [("gpu", "running")]
    shown = cli_ok(site, "user", "show", "dora").splitlines()
    assert [line.split(None, 1)[1] for line in shown if line.startswith("named_servers:")] \
        == ["gpu (running)"]
    logs = json.loads(cli_ok(site, "--json", "server", "logs", "dora", "--server", "gpu"))
    assert logs["name"] == "dora--gpu" and "/user/dora/gpu/" in logs["text"]

    refused = site.cli("server", "remove", "dora", "--server", "gpu")
    assert refused.returncode == 1, refused.stderr
    assert "the server gpu of dora is running; stop it first" in refused.stderr
    missing = site.cli("server", "remove", "dora")
    assert missing.returncode == 2 and "--server" in missing.stderr

    out = cli_ok(site, "server", "stop", "dora", "--server", "gpu")
    assert out.startswith("stopped the server gpu of dora")
    assert "was not running" in cli_ok(site, "server", "stop", "dora", "--server", "gpu")
    removed = json.loads(cli_ok(site, "--json", "server", "remove", "dora", "--server", "gpu"))
    assert removed == {"name": "dora--gpu", "owner": "dora", "server": "gpu", "removed": True}
    assert site.containers("dora") == []
    events = [json.loads(x) for x in cli_ok(site, "--json", "events", "--kind",
                                            "server-remove").splitlines() if x.strip()]
    assert [(e["user"], e["detail"]) for e in events] == [("dora", "server gpu: removed "
                                                                    "(files kept)")]


def test_two_first_starts_at_once_do_not_both_slip_under_the_maximum(make_daemon):
    from concurrent.futures import ThreadPoolExecutor

    from support import wait_for

    d = make_daemon(spawn={"max_named_servers": 1})
    d.start()
    d.add_user("fay", PW)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda s: d.cli("server", "start", "fay", "--server", s),
                             ["one", "two"]))
    assert sorted(o.returncode for o in outs) in ([0, 1], [0, 2]), [o.stderr for o in outs]
    refused = next(o for o in outs if o.returncode)
    assert "spawn.max_named_servers = 1" in refused.stderr
    servers = wait_for(lambda: [s["server"] for s in json.loads(
        cli_ok(d, "--json", "server", "list"))], 30)
    assert len(servers) == 1 and servers[0] in ("one", "two")
    assert len(d.containers("fay")) == 1
