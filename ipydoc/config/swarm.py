"""``[swarm]``: running users' servers as Docker Swarm services (``spawn.backend = "swarm"``,
:mod:`ipydoc.backends.swarm`): where a new user is placed, how images reach the nodes,
shared storage instead of pinning, and how often tasks are watched."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ipydoc.config.errors import ConfigError

PLACEMENTS = ("memory", "spread")
_ENGINE_URL = re.compile(r"(unix:///\S+|(tcp|http|https)://\S+)")


@dataclass
class SwarmSection:
    # "memory": a new user goes to the ready node with the most free memory (node memory
    # minus the memory limits of our services there); "spread": fewest ipydoc servers.
    placement: str = "memory"
    # false: services name the image by its ID as the manager has it (no registry pull,
    # the same bytes on every node; the image must be loaded on each node). true: by name,
    # each node pulls it from its registry.
    pull: bool = False
    # A volume driver with shared storage (NFS, ...): users' files are reachable from
    # every node, so nobody is pinned.  "" = local volumes, each user pinned to a node.
    volume_driver: str = ""
    volume_options: dict[str, str] = field(default_factory=dict)
    # hostname -> Docker engine URL of that node (image distribution, stats, purge).
    node_engines: dict[str, str] = field(default_factory=dict)
    # Seconds between two looks at our tasks while we have services.
    task_poll: float = 0.5


def validate(s: SwarmSection) -> None:
    if s.placement not in PLACEMENTS:
        raise ConfigError(f"swarm.placement must be 'memory' or 'spread', not {s.placement!r}")
    if s.volume_options and not s.volume_driver:
        raise ConfigError("swarm.volume_options needs swarm.volume_driver")
    if s.volume_driver and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_./:-]{0,127}", s.volume_driver):
        raise ConfigError(f"swarm.volume_driver is not a volume driver name: {s.volume_driver!r}")
    for host, url in s.node_engines.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}", host):
            raise ConfigError(f"swarm.node_engines: {host!r} is not a node hostname")
        if not _ENGINE_URL.fullmatch(url):
            raise ConfigError(f"swarm.node_engines.{host} must be unix:///PATH or "
                              f"tcp://HOST:PORT, not {url!r}")
    if not 0.05 <= s.task_poll <= 60:
        raise ConfigError("swarm.task_poll must be between 0.05 and 60 seconds")
