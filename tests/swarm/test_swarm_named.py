"""Named servers on the real two-node swarm (issue 19 §1): a user's named server is a
service of its own, pinned to the node of the user's files, so it shares the volume with
the default server; another user's servers may be on the other node."""

from __future__ import annotations

import subprocess

from kernel_client import run_code
from support import CLI, login, wait_for
from swarm_support import service, task_of

PW = "correct horse battery"


def run(d, session, path: str, code: str) -> str:
    return run_code(session, d.url, path, code)


def cli(d, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "--config", str(d.config_path), *args], capture_output=True,
                          text=True, timeout=300)


def test_a_named_server_runs_beside_the_default_one_on_the_node_of_the_files(
        swarm_daemon, two_node_swarm):
    d = swarm_daemon(auth={"start_on_login": False})
    d.start()
    for name in ("alice", "bob"):
        d.add_user(name, PW)
        assert cli(d, "server", "start", name).returncode == 0
    nodes = {name: task_of(d, name)["NodeID"] for name in ("alice", "bob")}
    assert nodes["alice"] != nodes["bob"], nodes  # spread: the next new user's node
    out = cli(d, "server", "start", "alice", "--server", "gpu")
    assert out.returncode == 0, out.stdout + out.stderr

    # Its own service, the owner's labels, pinned to alice's node (not spread to bob's).
    spec = service(d, "alice--gpu")["Spec"]
    assert spec["Labels"]["ipydoc.user"] == "alice"
    assert spec["Labels"]["ipydoc.server"] == "gpu"
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == [f"node.id=={nodes['alice']}"]
    assert task_of(d, "alice--gpu")["NodeID"] == nodes["alice"]
    mounts = {m["Source"] for m in spec["TaskTemplate"]["ContainerSpec"]["Mounts"]}
    assert f"{d.instance}-home-alice" in mounts

    # The same files: written through the named server, read through the default one.
    session, r = login(d.url, "alice", PW)
    assert r.status_code == 303, r.text
    assert run(d, session, "alice/gpu",
               "open('/home/jovyan/from-gpu.txt', 'w').write('hello') and 'ok'") == "'ok'"
    assert run(d, session, "alice",
               "open('/home/jovyan/from-gpu.txt').read()") == "'hello'"

    # Stopping the named server leaves the default one running.
    assert cli(d, "server", "stop", "alice", "--server", "gpu").returncode == 0
    wait_for(lambda: service(d, "alice--gpu") is None, timeout=60)
    assert service(d, "alice") is not None
    assert run(d, session, "alice", "6*7") == "42"
