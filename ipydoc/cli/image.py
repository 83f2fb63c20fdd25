"""Handler of ``ipydoc image build|ensure``: make the notebook image available locally
(no daemon needed)."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from importlib import resources

from ipydoc.cli.client import load_config
from ipydoc.cli.errors import EXIT_OK


def image(args: argparse.Namespace) -> int:
    tag = args.tag or load_config(args).spawn.image
    inspect = ["docker", "image", "inspect", "--format", "{{.Id}}", tag]
    if args.action == "ensure":
        if subprocess.run(inspect, capture_output=True).returncode == 0:
            print(f"image {tag} is present")
            return EXIT_OK
        if subprocess.run(["docker", "pull", tag]).returncode == 0:
            return EXIT_OK
        print(f"could not pull {tag}; building it locally", file=sys.stderr)
    script = resources.files("ipydoc.image") / "build.sh"
    recipe = hashlib.sha256(script.read_bytes()).hexdigest()[:16]
    return subprocess.run(["bash", str(script), tag, recipe]).returncode

