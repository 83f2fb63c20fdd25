"""The swarm backend under the real daemon on the real two-node swarm: placement on both
nodes, kernels through one proxy, files kept across stop and start."""

from __future__ import annotations

import json

from kernel_client import run_code
from support import csrf_of, follow_progress, login, wait_for
from swarm_support import WORKER_HOSTNAME, engine, service, task_of

PW = "correct horse battery"


def start(d, name: str):
    """Log ``name`` in (which starts the server) and wait until it is ready."""
    session, r = login(d.url, name, PW)
    assert r.status_code == 303, r.text
    steps = follow_progress(session, d.url, name, timeout=120)
    assert steps[-1]["phase"] == "ready", steps
    return session


def run(d, session, name: str, code: str) -> str:
    return run_code(session, d.url, name, code)


def stop(d, session, name: str) -> None:
    r = session.post(f"{d.url}/hub/stop/{name}", data={"_csrf": csrf_of(session, d.url)},
                     headers={"Origin": d.url}, allow_redirects=False)
    assert r.status_code in (302, 303), r.text
    wait_for(lambda: service(d, name) is None, timeout=60)


def test_alice_and_bob_on_two_nodes_through_one_daemon(swarm_daemon, two_node_swarm):
    d = swarm_daemon()
    d.start()
    for name in ("alice", "bob"):
        d.add_user(name, PW)
    sessions = {name: start(d, name) for name in ("alice", "bob")}
    nodes = {name: task_of(d, name)["NodeID"] for name in ("alice", "bob")}
    assert nodes["alice"] != nodes["bob"], nodes  # spread: one server per node
    assert set(nodes.values()) == set(two_node_swarm.values())
    hostnames = {v: k for k, v in two_node_swarm.items()}
    print("placement:", {name: hostnames[n] for name, n in nodes.items()})
    for name, session in sessions.items():
        assert run(d, session, name, "6*7") == "42"
        # The service is pinned to the node of the user's files, and says who it is.
        spec = service(d, name)["Spec"]
        assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={nodes[name]}"]
        assert spec["Labels"]["ipydoc.user"] == name
        assert spec["Labels"]["ipydoc.instance"] == d.instance
        # The token is in the environment only, never in the command line.
        container = spec["TaskTemplate"]["ContainerSpec"]
        assert any(e.startswith("JUPYTER_TOKEN=") for e in container["Env"])
        token = next(e.split("=", 1)[1] for e in container["Env"]
                     if e.startswith("JUPYTER_TOKEN="))
        assert not any(token in a for a in container["Args"])
        assert container["CapabilityDrop"] == ["ALL"]
    # The CLI sees both as running, each at the address of its own node.
    r = d.cli("--json", "server", "list")
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert {rows[n]["state"] for n in ("alice", "bob")} == {"running"}
    addrs = {n["ID"]: n["Status"]["Addr"] for n in json.loads(
        engine(None, "node", "inspect", *two_node_swarm.values()))}
    for name in ("alice", "bob"):
        assert rows[name]["url"].startswith(f"http://{addrs[nodes[name]]}:"), rows[name]


def test_files_survive_stop_and_start_on_the_worker(swarm_daemon, two_node_swarm):
    d = swarm_daemon(swarm={"placement": "spread"})
    d.start()
    d.add_user("alice", PW)
    session = start(d, "alice")
    node = task_of(d, "alice")["NodeID"]
    where = {v: k for k, v in two_node_swarm.items()}[node]
    print("alice is on", where)
    assert run(d, session, "alice", "open('kept.txt','w').write('still here'); 6*7") == "42"
    stop(d, session, "alice")
    # The volume stays on her node.
    host = None if where != WORKER_HOSTNAME else "unix:///tmp/n2/docker.sock"
    assert f"{d.instance}-home-alice" in engine(host, "volume", "ls", "-q").split()
    session = start(d, "alice")
    assert task_of(d, "alice")["NodeID"] == node  # pinned where the files are
    assert run(d, session, "alice", "open('kept.txt').read()") == "'still here'"


def test_a_restarted_daemon_adopts_running_services(swarm_daemon):
    d = swarm_daemon()
    d.start()
    d.add_user("alice", PW)
    session = start(d, "alice")
    before = service(d, "alice")["ID"]
    d.stop()
    assert service(d, "alice")["ID"] == before  # servers outlive the daemon
    d.start()
    # Reconcile at start found the service through list(): url and token from its spec.
    assert "1 running servers adopted" in d.log()
    assert run(d, session, "alice", "6*7") == "42"
    stop(d, session, "alice")


def test_purge_removes_the_volume_on_the_users_node(swarm_daemon, two_node_swarm):
    d = swarm_daemon(swarm={"placement": "spread",
                            "node_engines": {WORKER_HOSTNAME: "unix:///tmp/n2/docker.sock"}})
    d.start()
    for name in ("alice", "bob"):
        d.add_user(name, PW)
    sessions = {name: start(d, name) for name in ("alice", "bob")}
    hostnames = {v: k for k, v in two_node_swarm.items()}
    for name, session in sessions.items():
        where = hostnames[task_of(d, name)["NodeID"]]
        host = "unix:///tmp/n2/docker.sock" if where == WORKER_HOSTNAME else None
        volume = f"{d.instance}-home-{name}"
        stop(d, session, name)
        assert volume in engine(host, "volume", "ls", "-q").split()
        # Removed with files kept: the name stays reserved, with where the files are.
        r = d.cli("user", "remove", name)
        assert r.returncode == 0, r.stderr
        assert volume in d.cli("user", "removed").stdout
        r = d.cli("user", "purge", name, "--yes")
        assert r.returncode == 0, r.stdout + r.stderr
        assert volume not in engine(host, "volume", "ls", "-q").split(), where
