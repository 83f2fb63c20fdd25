"""``ipydoc server move NAME NODE`` on the real two-node swarm: alice's files (text,
binary, a subdirectory, modes, owners, a symlink) arrive byte for byte on the other node,
her server runs there and serves them through the daemon, the old volume stays; and the
refusals."""

from __future__ import annotations

import json
import subprocess

from support import CLI, TEST_IMAGE, login, wait_for
from swarm_support import WORKER, engine, service, task_of

PW = "correct horse battery"

# Made inside the volume as root, then owned like a notebook user's home (numeric owners
# 1000:100, one file 0:0) with a few distinct modes.
MAKE_FILES = (
    "cd /v && printf 'hello from alice\\n' > notes.txt && head -c 3000000 /dev/urandom > "
    "data.bin && mkdir -p sub/deeper && head -c 777 /dev/urandom > sub/deeper/small.bin && "
    "printf 'x = 1\\n' > sub/code.py && chown -R 1000:100 . && chmod 600 notes.txt && "
    "chmod 750 sub && chmod 755 sub/code.py && printf root > rootfile && chmod 640 rootfile && "
    "ln -s notes.txt link-to-notes"
)
# Path, type, mode, owner, size and symlink target of the home and of what MAKE_FILES
# made (the server writes its own files too, on both nodes), then those files' sha256.
OURS = "notes.txt data.bin sub rootfile link-to-notes"
LISTING = (f"cd /v && {{ find . -maxdepth 0 -printf '%p %y %m %U:%G\\n'; find {OURS} "
           "-printf '%p %y %m %U:%G %s %l\\n'; } | sort && "
           f"find {OURS} -type f -exec sha256sum {{}} + | sort")


def node_engine(node_id: str, nodes: dict[str, str]) -> str | None:
    """The engine of a node: the worker's socket, or None for this host's (the manager)."""
    return WORKER if node_id == nodes["ipd-node2"] else None


def in_volume(host: str | None, volume: str, script: str) -> str:
    return engine(host, "run", "--rm", "-u", "0", "-v", f"{volume}:/v", "--entrypoint", "sh",
                  TEST_IMAGE, "-c", script)


def ipydoc(d, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--config", str(d.config_path), *args], capture_output=True,
                          text=True, timeout=600)


def test_alice_moves_to_the_other_node_byte_for_byte(swarm_daemon, two_node_swarm):
    d = swarm_daemon()
    d.start()
    d.add_user("alice", PW)
    r = ipydoc(d, "server", "start", "alice")
    assert r.returncode == 0, r.stderr
    source = task_of(d, "alice")["NodeID"]
    hostnames = {v: k for k, v in two_node_swarm.items()}
    target = next(n for n in two_node_swarm.values() if n != source)
    volume = f"{d.instance}-home-alice"
    in_volume(node_engine(source, two_node_swarm), volume, MAKE_FILES)
    before = in_volume(node_engine(source, two_node_swarm), volume, LISTING)
    assert "data.bin" in before and "sub/deeper/small.bin" in before

    r = ipydoc(d, "--json", "server", "move", "alice", hostnames[target])
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert (report["from"], report["to"]) == (hostnames[source], hostnames[target])
    assert report["was_running"] and report["running"], report
    assert report["bytes"] > 3_000_000 and len(report["sha256"]) == 64

    # Every file, directory, mode, owner and symlink is on the target, byte for byte.
    after = in_volume(node_engine(target, two_node_swarm), volume, LISTING)
    assert after == before
    # The old volume is kept, untouched, on the source node.
    assert in_volume(node_engine(source, two_node_swarm), volume, LISTING) == before
    # Her server runs on the target node, pinned there, and serves the moved files.
    task = task_of(d, "alice")
    assert task["NodeID"] == target
    session, r = login(d.url, "alice", PW)
    assert r.status_code == 303, r.text
    got = session.get(f"{d.url}/user/alice/api/contents/notes.txt?content=1&type=file",
                      timeout=30)
    assert got.status_code == 200, got.text
    assert got.json()["content"] == "hello from alice\n"
    # The move is in the events log, with what was verified.
    r = ipydoc(d, "--json", "events", "--user", "alice", "--kind", "move")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert len(events) == 1, events
    assert f"{report['bytes']} bytes verified" in json.dumps(events[0])
    # No helper service is left behind.
    helpers = engine(None, "service", "ls", "-q", "--filter", "label=ipydoc.helper")
    assert not [h for h in helpers.split()
                if d.instance in engine(None, "service", "inspect", h, check=False)]

    # Moving her again to where she is now is refused and changes nothing.
    r = ipydoc(d, "server", "move", "alice", hostnames[target])
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"alice is already on {hostnames[target]}" in r.stderr
    assert task_of(d, "alice")["NodeID"] == target

    # Moving her back overwrites the old volume kept there: what she saved since is
    # there, what was only in the stale copy is not.
    in_volume(node_engine(target, two_node_swarm), volume, "echo later > /v/later.txt")
    in_volume(node_engine(source, two_node_swarm), volume, "echo stale > /v/stale.txt")
    now = in_volume(node_engine(target, two_node_swarm), volume, LISTING)
    r = ipydoc(d, "--json", "server", "move", "alice", two_node_swarm[hostnames[source]])
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["to"] == hostnames[source]
    assert task_of(d, "alice")["NodeID"] == source
    back = node_engine(source, two_node_swarm)
    assert in_volume(back, volume, LISTING) == now
    assert in_volume(back, volume, "cat /v/later.txt") == "later"
    assert "stale.txt" not in in_volume(back, volume, "ls -a /v")


def test_move_refusals(swarm_daemon, two_node_swarm):
    d = swarm_daemon()
    d.start()
    d.add_user("bob", PW)
    r = ipydoc(d, "server", "move", "nobody", "ipd-node2")
    assert r.returncode == 5 and "no user nobody" in r.stderr, r.stderr
    r = ipydoc(d, "server", "move", "bob", "ipd-node9")
    assert r.returncode == 5, r.stderr
    assert "no node ipd-node9 in the swarm" in r.stderr and "ipd-node2" in r.stderr
    r = ipydoc(d, "server", "move", "bob", "ipd-node2")
    assert r.returncode == 1, r.stderr
    assert "bob has no node yet (never started)" in r.stderr


def test_move_needs_the_swarm_backend(make_daemon):
    d = make_daemon()
    d.start()
    d.add_user("carol", PW)
    r = ipydoc(d, "server", "move", "carol", "ipd-node2")
    assert r.returncode == 6, r.stdout + r.stderr
    assert "server move needs spawn.backend = swarm" in r.stderr


def test_a_start_asked_during_the_copy_waits_for_the_move(swarm_daemon, two_node_swarm):
    """The move holds the user's start lease from the stop to the re-pin: a start asked
    meanwhile (here: the CLI, as a second daemon would) never runs the server on the files
    being copied; once the move is done the server runs on the target, with the files."""
    d = swarm_daemon()
    d.start()
    d.add_user("alice", PW)
    assert ipydoc(d, "server", "start", "alice").returncode == 0
    source = task_of(d, "alice")["NodeID"]
    target = next(n for n in two_node_swarm.values() if n != source)
    volume = f"{d.instance}-home-alice"
    # Enough data that the copy takes a moment.
    in_volume(node_engine(source, two_node_swarm), volume,
              "head -c 200000000 /dev/urandom > /v/big.bin && chown 1000:100 /v/big.bin")
    mover = subprocess.Popen([*CLI, "--config", str(d.config_path), "--json", "server",
                              "move", "alice", target], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    # Once the helpers are up the copy runs: ask for a start then.
    wait_for(lambda: mover.poll() is not None or engine(
        None, "service", "ls", "-q", "--filter", "label=ipydoc.helper", "--filter",
        f"label=ipydoc.instance={d.instance}", check=False), timeout=120)
    assert mover.poll() is None, mover.communicate()  # the copy is still running
    during = subprocess.Popen([*CLI, "--config", str(d.config_path), "server", "start",
                               "alice"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    # While the move runs, alice has no service (nothing runs on her files being copied).
    # A service seen then is the re-pinned one: pinned to the target, and its task (still
    # pending, so maybe not yet on a node) on the target once assigned.
    while mover.poll() is None:
        found = service(d, "alice")
        if found is not None:
            pinned = found["Spec"]["TaskTemplate"].get("Placement", {}).get("Constraints", [])
            assert f"node.id=={target}" in pinned, pinned
            for task_id in engine(None, "service", "ps", "-q", f"{d.instance}-alice",
                                  check=False).split():
                task = json.loads(engine(None, "inspect", task_id))[0]
                assert task.get("NodeID") in (None, "", target), task
    out, err = mover.communicate(timeout=600)
    assert mover.returncode == 0, out + err
    report = json.loads(out)
    assert report["running"] and report["bytes"] > 200_000_000, report
    during.communicate(timeout=300)
    # However the start asked during the move ended, the server runs on the target now,
    # with the moved files, and there is exactly one service.
    assert task_of(d, "alice")["NodeID"] == target
    size = in_volume(node_engine(target, two_node_swarm), volume, "stat -c %s /v/big.bin")
    assert int(size) == 200_000_000
