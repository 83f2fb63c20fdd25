"""Handler of ``ipydoc image build|ensure``: make the notebook image available locally
(no daemon needed) and, with ``spawn.backend = "swarm"``, on every node of the swarm
(:mod:`ipydoc.backends.swarm_images`)."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from importlib import resources
from typing import Any

from ipydoc.cli.client import load_config
from ipydoc.cli.errors import EXIT_OK, EXIT_REFUSED, CliError
from ipydoc.cli.progress import run_script


def image(args: argparse.Namespace) -> int:
    config = _config_if_any(args) if args.tag else load_config(args)
    tag = args.tag or config.spawn.image
    code = _local(args, tag)
    if code != EXIT_OK or config is None or config.spawn.backend != "swarm":
        return code
    return _to_swarm_nodes(args, tag, config.swarm)


def _config_if_any(args: argparse.Namespace) -> Any:
    """The config when one is found (``--tag`` needs none: then there is no swarm)."""
    try:
        return load_config(args)
    except CliError:
        return None


def _local(args: argparse.Namespace, tag: str) -> int:
    """The image on this machine's engine: present, pulled, or built."""
    inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", tag]
    if args.action == "ensure":
        if subprocess.run(inspect, capture_output=True).returncode == 0:
            if not args.json:
                print(f"image {tag} is present")
            return EXIT_OK
        if subprocess.run(["docker", "pull", tag]).returncode == 0:
            return EXIT_OK
        print(f"could not pull {tag}; building it locally", file=sys.stderr)
    script = resources.files("ipydoc.image") / "build.sh"
    recipe = hashlib.sha256(script.read_bytes()).hexdigest()[:16]
    return run_script(args, ["bash", str(script), tag, recipe])  # a bar on a terminal


def _to_swarm_nodes(args: argparse.Namespace, tag: str, swarm: Any) -> int:
    """Load the image onto every node with a known engine; exit 1 if one failed."""
    if swarm.pull:
        if not args.json:
            print(f"swarm.pull = true: each node pulls {tag} from your registry when it "
                  "starts a server (push it there)")
        return EXIT_OK
    from twisted.internet import defer, reactor

    from ipydoc.backends.base import BackendError
    from ipydoc.backends.swarm_images import ImageDistributor, ImageEngine

    def progress(node: str, message: str) -> None:
        if not args.json:
            print(message, flush=True)

    outcome: list[Any] = []

    async def work() -> Any:
        manager = ImageEngine(reactor)
        try:
            return await ImageDistributor(reactor, manager, swarm.node_engines,
                                          progress=progress).distribute(tag)
        except BackendError as e:
            raise CliError(e.message, EXIT_REFUSED) from None
        finally:
            await manager.close()

    def start() -> None:
        d = defer.Deferred.fromCoroutine(work())
        d.addBoth(lambda r: (outcome.append(r), reactor.stop()))

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if hasattr(outcome[0], "raiseException"):
        outcome[0].raiseException()
    nodes = outcome[0]
    if args.json:
        print(json.dumps([{"node": n.node, "id": n.node_id, "outcome": n.outcome,
                           "message": n.message, "bytes": n.bytes} for n in nodes]))
    else:
        for n in nodes:
            print(f"{n.node:20} {n.outcome:9} {n.message}")
    return EXIT_OK if all(n.ok or n.outcome == "unchecked" for n in nodes) else EXIT_REFUSED
