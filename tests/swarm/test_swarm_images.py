"""``ipydoc image ensure`` on a swarm config puts the image on every node with a known
engine (streamed from the manager's engine into the node's, by ID), and a service then
runs from it on the worker; nodes without a known engine are reported, not guessed at."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

from support import CLI, TEST_IMAGE, wait_for
from swarm_support import WORKER, WORKER_HOSTNAME, engine


def config(root, image: str, engines: bool = True) -> str:
    path = root / "ipydoc.toml"
    text = f'[spawn]\nbackend = "swarm"\nimage = "{image}"\n[swarm]\n'
    if engines:
        text += f'node_engines."{WORKER_HOSTNAME}" = "{WORKER}"\n'
    path.write_text(text)
    return str(path)


def ipydoc(cfg: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--config", cfg, *args], capture_output=True, text=True,
                          timeout=900)


def fresh_image(tag: str) -> str:
    """A new image (the test image plus one small layer: a new ID), only on the manager."""
    box = f"{tag.replace(':', '-')}-box"
    engine(None, "run", "--name", box, "--entrypoint", "sh", TEST_IMAGE, "-c",
           f"echo {secrets.token_hex(8)} > /tmp/marker")
    try:
        return engine(None, "commit", box, tag).strip()
    finally:
        engine(None, "rm", "-f", box, check=False)


def test_a_missing_image_is_loaded_on_the_worker_and_runs_there(two_node_swarm, tmp_path):
    tag = f"ipydoc-a2-img-{secrets.token_hex(3)}:latest"
    image_id = fresh_image(tag)
    service = f"ipydoc-a2-img-{secrets.token_hex(3)}"
    try:
        assert engine(WORKER, "image", "inspect", image_id, check=False) == "[]"
        cfg = config(tmp_path, tag)
        r = ipydoc(cfg, "image", "ensure")
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"{WORKER_HOSTNAME}: copying {tag}" in r.stdout
        assert "loaded" in r.stdout
        # The worker has the same image, by ID (its tag came along).
        on_worker = engine(WORKER, "image", "inspect", "--format", "{{.Id}}", tag)
        assert on_worker == image_id

        # A second run finds it there and copies nothing; --json says so per node.
        r = ipydoc(cfg, "--json", "image", "ensure")
        assert r.returncode == 0, r.stderr
        nodes = {n["node"]: n for n in json.loads(r.stdout)}
        assert nodes[WORKER_HOSTNAME]["outcome"] == "present"
        assert nodes[WORKER_HOSTNAME]["id"] == two_node_swarm[WORKER_HOSTNAME]
        assert {n["outcome"] for h, n in nodes.items() if h != WORKER_HOSTNAME} == {"source"}

        # A service pinned to the worker runs from the image by ID (no registry involved).
        engine(None, "service", "create", "--detach", "--name", service, "--restart-condition",
               "none", "--label", "ipydoc.managed=1", "--label", "ipydoc.helper=a2-test",
               "--constraint", f"node.id=={two_node_swarm[WORKER_HOSTNAME]}",
               "--entrypoint", "sh", image_id, "-c", "cat /tmp/marker; sleep 300")

        def running() -> bool:
            out = engine(None, "service", "ps", "--format", "{{.CurrentState}} {{.Error}}",
                         service, check=False)
            assert "Rejected" not in out and "Failed" not in out, out
            return out.startswith("Running")

        wait_for(running, timeout=120, interval=0.5)
    finally:
        engine(None, "service", "rm", service, check=False)
        deadline = time.monotonic() + 60
        while engine(WORKER, "ps", "-aq", "--filter", f"ancestor={image_id}", check=False):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        engine(WORKER, "rmi", "-f", image_id, check=False)
        engine(None, "rmi", "-f", image_id, check=False)


def test_nodes_without_a_known_engine_are_reported(two_node_swarm, tmp_path):
    cfg = config(tmp_path, TEST_IMAGE, engines=False)
    r = ipydoc(cfg, "--json", "image", "ensure")
    assert r.returncode == 0, r.stderr
    nodes = {n["node"]: n for n in json.loads(r.stdout)}
    assert nodes[WORKER_HOSTNAME]["outcome"] == "unchecked"
    assert nodes[WORKER_HOSTNAME]["message"] == (
        f"cannot check {WORKER_HOSTNAME}: no engine in swarm.node_engines; with "
        "swarm.pull = true it pulls from your registry")


def test_an_unreachable_node_engine_fails_clearly(two_node_swarm, tmp_path):
    tag = f"ipydoc-a2-img-{secrets.token_hex(3)}:latest"
    image_id = fresh_image(tag)
    try:
        cfg = tmp_path / "ipydoc.toml"
        cfg.write_text(f'[spawn]\nbackend = "swarm"\nimage = "{tag}"\n[swarm]\n'
                       f'node_engines."{WORKER_HOSTNAME}" = "unix://{tmp_path}/nothing.sock"\n')
        r = ipydoc(str(cfg), "image", "ensure")
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"{WORKER_HOSTNAME}" in r.stdout and "failed" in r.stdout
        assert "nothing.sock" in r.stdout  # says which engine it could not reach
    finally:
        engine(None, "rmi", "-f", image_id, check=False)
