"""bench/jupyter_start.py measures a real start of the notebook image, and the image keeps
the start-up cuts of ipydoc/image/build.sh (no jupyter_lsp, no notebook_shim, a readonly
extension manager, ``jupyter SUB`` straight to ``jupyter-SUB``) with everything a hub
user needs still there."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import jupyter_start  # noqa: E402

from support import wait_for  # noqa: E402


def run_in_image(image: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "run", "--rm", image, *argv], capture_output=True,
                          text=True, timeout=120)


def test_one_start_times_every_stage_and_a_kernel(notebook_image: str) -> None:
    r = jupyter_start.one_start(notebook_image, [], ["jupyter", "lab"], with_kernel=True)
    stages = ["create", "start", "to_first_log", "to_running", "to_200", "cpu", "kernel"]
    assert all(r[k] is not None and r[k] > 0 for k in stages), r
    # total runs from `docker start` to the 200, so it holds the stages after create.
    assert r["total"] >= r["start"] + r["to_first_log"] + r["to_running"]


def test_image_serves_without_the_extensions_a_hub_does_not_use(notebook_image: str) -> None:
    ext = run_in_image(notebook_image, "jupyter", "server", "extension", "list")
    listing = re.sub(r"\x1b\[[0-9;]*m", "", ext.stdout + ext.stderr)
    lines = dict(re.findall(r"^\s*(\S+)\s+(enabled|disabled)\s*$", listing, re.M))
    assert lines == {"jupyter_lsp": "disabled", "notebook_shim": "disabled",
                     "jupyterlab": "enabled", "jupyter_server_terminals": "enabled"}, listing
    # The shortcut runs jupyter-SUB; anything else still reaches jupyter_core's dispatcher.
    assert "python3" in run_in_image(notebook_image, "jupyter", "kernelspec", "list").stdout
    assert "jupyter_core" in run_in_image(notebook_image, "jupyter", "--version").stdout
    paths = run_in_image(notebook_image, "jupyter", "--paths")
    assert "/opt/conda/etc/jupyter" in paths.stdout
    unknown = run_in_image(notebook_image, "jupyter", "no-such-command")
    assert unknown.returncode != 0 and "usage: jupyter" in unknown.stderr + unknown.stdout


def test_lab_in_the_image_runs_the_readonly_extension_manager(notebook_image: str) -> None:
    """JupyterLab reads ``LabApp`` settings from its own config files only (a section in the
    server's config.d is ignored): the page a user's browser gets must name the readonly
    manager, which neither installs nor asks PyPI anything from the container."""
    name = f"ipydoc-test-labmgr-{secrets.token_hex(4)}"
    port = jupyter_start.free_port()
    token = secrets.token_hex(16)
    try:
        subprocess.run(["docker", "run", "-d", "--name", name, "-e", "JUPYTER_TOKEN",
                        "-p", f"127.0.0.1:{port}:8888", notebook_image,
                        *jupyter_start.spec_args("u", ["jupyter", "lab"])],
                       env=dict(os.environ, JUPYTER_TOKEN=token), check=True,
                       capture_output=True, timeout=120)

        def lab_page() -> str | None:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/user/u/lab",
                                 headers={"Authorization": f"token {token}"}, timeout=5)
            except requests.RequestException:
                return None
            return r.text if r.status_code == 200 else None

        page = wait_for(lab_page, timeout=120)
        config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', page,
                                      re.S).group(1))
        assert config["extensionManager"]["name"] == "read-only", config["extensionManager"]
        assert config["extensionManager"]["can_install"] is False
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def test_bodies_times_docker_start_for_every_shape_and_cleans_up(notebook_image: str,
                                                                 capsys) -> None:
    tag = jupyter_start.bodies(notebook_image, 1)
    rows = re.findall(r"^\| ([a-z ]+) \| (\d+\.\d{3}) \|", capsys.readouterr().out, re.M)
    assert [label for label, _ in rows] == list(jupyter_start.BODIES)
    assert all(float(t) > 0 for _, t in rows)
    left = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"name=ipydoc-jstart-{tag}"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"name=ipydoc-jstart-net-{tag}"],
                          capture_output=True, text=True, timeout=60).stdout.split()
    assert left == [] and nets == []
