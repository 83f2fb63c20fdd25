"""The real two-node swarm for the swarm tests: the host's engine is the manager, a second
dockerd in the network namespace ``ipdn2`` is the worker ``ipd-node2``
(``scripts/swarm-two-node.sh``).  A session fixture brings it up when it is not (and then
takes it down at the end), and loads the test image on the worker when it is missing
there, so the tests run from nothing on a fresh machine and skip nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import Daemon  # noqa: E402
from swarm_support import (  # noqa: E402
    SCRIPT,
    WORKER,
    SwarmDaemon,
    cleanup_swarm,
    distribute_image,
    engine,
    node_ids,
    swarm_up,
    worker_ready,
)


@pytest.fixture(scope="session")
def two_node_swarm(notebook_image, tmp_path_factory):
    """The swarm, up, with the test image on both nodes (same ID)."""
    active = engine(None, "info", "--format", "{{.Swarm.LocalNodeState}}", check=False)
    brought_up = not (active == "active" and worker_ready())
    swarm_up()
    image_id = engine(None, "image", "inspect", "--format", "{{.Id}}", notebook_image)
    on_worker = engine(WORKER, "image", "inspect", "--format", "{{.Id}}", notebook_image,
                       check=False)
    if on_worker != image_id:
        distribute_image(notebook_image, tmp_path_factory.mktemp("image-ensure"))
    yield node_ids()
    if brought_up:
        subprocess.run(["bash", str(SCRIPT), "down"], capture_output=True, timeout=180)


@pytest.fixture
def swarm_daemon(tmp_path_factory, two_node_swarm):
    """Factory for daemons on the swarm backend; stops them and removes what they made."""
    made: list[Daemon] = []

    def make(**overrides) -> Daemon:
        sections = {"spawn": {"backend": "swarm"}, "swarm": {"placement": "spread"}}
        for k, v in overrides.items():
            sections.setdefault(k, {}).update(v)
        d = SwarmDaemon(tmp_path_factory.mktemp("ipydoc-swarm"), sections)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
        cleanup_swarm(d)


