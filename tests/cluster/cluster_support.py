"""Two daemons over one real redis-server: the several-daemon layout on one host.

Both daemons share ``server.state_dir`` (the signing secret, the history repositories)
and ``docker.instance`` (so they see the same containers), each has its own port and
control socket; Redis is a plain ``redis-server`` on a free TCP port.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import Daemon, free_port


@dataclass
class RedisServer:
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(self.port),
             "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root)], stdout=subprocess.DEVNULL)
        for _ in range(500):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer")

    def cli(self, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                             capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def cluster_daemons(root: Path, redis: RedisServer, n: int = 2,
                    overrides: dict[str, dict[str, Any]] | None = None) -> list[Daemon]:
    """``n`` daemons over ``redis`` sharing one state dir and Docker instance (not started)."""
    daemons: list[Daemon] = []
    first = None
    for i in range(n):
        own = root / f"d{i}"
        sections: dict[str, dict[str, Any]] = {
            "server": {"state_dir": str(root / "shared-state")},
            "redis": {"url": redis.url},
            "control": {"socket": str(own / "control.sock")},
            "cluster": {"lease_ttl": 3.0, "sweep_interval": 1.0},
            "auth": {"stop_on_logout": False, "start_on_login": False},
        }
        for section, values in (overrides or {}).items():
            sections.setdefault(section, {}).update(values)
        d = Daemon(own, sections)
        if first is None:
            first = d
        else:  # one site: the same containers, volumes and users' network
            d.instance = first.instance
        d.overrides.setdefault("docker", {}).update(
            {"instance": first.instance, "volume_prefix": f"{first.instance}-home-"})
        daemons.append(d)
    return daemons


def stop_all(daemons: list[Daemon]) -> None:
    for d in daemons:
        d.stop()
    daemons[0].cleanup_docker()
