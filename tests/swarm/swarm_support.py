"""Helpers for the swarm tests: the two engines of the real two-node swarm
(``scripts/swarm-two-node.sh``), bringing it up, cleaning up a daemon's services and
volumes on both nodes, and looking at a user's service and task."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from support import CLI, Daemon

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "swarm-two-node.sh"
WORKER = "unix:///tmp/n2/docker.sock"
WORKER_HOSTNAME = "ipd-node2"
WORKER_PIDFILE = Path("/tmp/n2/docker.pid")


def engine(host: str | None, *args: str, check: bool = True, input: bytes | None = None,
           timeout: float = 300) -> str:
    """``docker [-H host] args``: its stdout."""
    argv = ["docker", *(["-H", host] if host else []), *args]
    out = subprocess.run(argv, capture_output=True, input=input, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode(errors="replace").strip()


def toml_value(v: object) -> str:
    """A config value as TOML (tables inline: JSON objects are not TOML)."""
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(v)


class SwarmDaemon(Daemon):
    """A :class:`Daemon` whose config may hold tables (``swarm.node_engines``)."""

    def write_config(self) -> None:
        super().write_config()
        lines = []
        for line in self.config_path.read_text().splitlines():
            key, sep, value = line.partition(" = ")
            if sep and value.startswith("{"):
                line = f"{key} = {toml_value(json.loads(value))}"
            lines.append(line)
        self.config_path.write_text("\n".join(lines) + "\n")


def worker_ready() -> bool:
    if subprocess.run(["docker", "-H", WORKER, "info"], capture_output=True).returncode:
        return False
    rows = engine(None, "node", "ls", "--format", "{{.Hostname}} {{.Status}}", check=False)
    return f"{WORKER_HOSTNAME} Ready" in rows.splitlines()


def swarm_up() -> None:
    """The two-node swarm, up (idempotent), with the worker Ready."""
    subprocess.run(["bash", str(SCRIPT), "up"], check=True, capture_output=True, timeout=180)
    deadline = time.monotonic() + 90
    while not worker_ready():
        if time.monotonic() > deadline:
            raise RuntimeError("the swarm worker did not become Ready")
        time.sleep(0.5)


def node_ids() -> dict[str, str]:
    """hostname → node id."""
    rows = engine(None, "node", "ls", "--format", "{{.Hostname}} {{.ID}}").splitlines()
    return dict(row.split() for row in rows)


def distribute_image(image: str, root: Path) -> str:
    """Put ``image`` on every node with ``ipydoc image ensure`` on a swarm config (it
    streams the image into the worker's engine: :mod:`ipydoc.backends.swarm_images`);
    the command's output."""
    config = root / "ipydoc.toml"
    config.write_text(f'[spawn]\nbackend = "swarm"\nimage = "{image}"\n[swarm]\n'
                      f'node_engines."{WORKER_HOSTNAME}" = "{WORKER}"\n')
    out = subprocess.run([*CLI, "--config", str(config), "image", "ensure"],
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"ipydoc image ensure {image}: {out.stdout}{out.stderr}")
    return out.stdout


def cleanup_swarm(d: Daemon) -> None:
    """Remove the services of ``d``'s instance, then (once their containers are gone)
    its users' volumes on both nodes."""
    services = engine(None, "service", "ls", "-q", "--filter",
                      f"label=ipydoc.instance={d.instance}", check=False).split()
    if services:
        engine(None, "service", "rm", *services, check=False)
    for host in (None, WORKER):
        if host == WORKER and not worker_ready():
            continue
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            left = engine(host, "ps", "-aq", "--filter", f"label=ipydoc.instance={d.instance}",
                          check=False).split()
            if not left:
                break
            engine(host, "rm", "-f", *left, check=False)
            time.sleep(0.3)
        vols = engine(host, "volume", "ls", "-q", "--filter", f"name={d.instance}-home-",
                      check=False).split()
        if vols:
            engine(host, "volume", "rm", "-f", *vols, check=False)


def service(d: Daemon, name: str) -> dict | None:
    out = engine(None, "service", "inspect", f"{d.instance}-{name}", check=False)
    found = json.loads(out) if out.startswith("[") else []
    return found[0] if found else None


def task_of(d: Daemon, name: str) -> dict:
    """The running task of NAME's service."""
    out = engine(None, "service", "ps", "-q", "--filter", "desired-state=running",
                 f"{d.instance}-{name}")
    ids = out.split()
    assert len(ids) == 1, out
    return json.loads(engine(None, "inspect", ids[0]))[0]
