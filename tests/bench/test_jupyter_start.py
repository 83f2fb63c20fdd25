"""bench/jupyter_start.py measures a real start of the notebook image, and the image keeps
the start-up cuts of ipydoc/image/build.sh (no jupyter_lsp, no notebook_shim, a readonly
extension manager, ``jupyter SUB`` straight to ``jupyter-SUB``) with everything a hub
user needs still there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import jupyter_start  # noqa: E402


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
