"""``[spawn]``: which backend and image start a user's server, how long a start may take,
the resource limits and how many starts run at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ipydoc.config.errors import ConfigError
from ipydoc.config.types import parse_size


@dataclass
class SpawnSection:
    backend: str = "docker"
    image: str = "quay.io/jupyter/base-notebook:latest"
    start_timeout: float = 120.0
    mem_limit: str = "2G"
    cpu_limit: float = 1.0
    pids_limit: int = 1024
    images: list[str] = field(default_factory=list)
    concurrency: int = 4
    max_running: int = 0
    #: Named servers a user may have besides their default one (issue 19); 0: none.
    max_named_servers: int = 5
    #: Serve JupyterLab's versioned static files from a per-image cache while a server
    #: starts, and have the start page prefetch them (issue 15 §2: docs/cold_login.md).
    static_cache: bool = True
    #: How long a request that needs a starting server waits for it (0: 503 at once).
    start_wait: float = 30.0
    #: A logged-in user opening the hub's home page starts their stopped server.
    prestart_on_home: bool = False
    #: The login page of a browser that logged in before starts that user's stopped
    #: server while they type their password (docs/cold_login.md).
    prestart_on_login: bool = True
    #: Seconds such a start waits for the login before it is stopped again.
    prestart_grace: float = 120.0


def validate(s: SpawnSection) -> None:
    if s.backend not in ("docker", "swarm"):
        raise ConfigError(f"spawn.backend must be 'docker' or 'swarm', not {s.backend!r}")
    if not s.image:
        raise ConfigError("spawn.image must name an image")
    if s.start_timeout <= 0:
        raise ConfigError("spawn.start_timeout must be positive")
    if s.concurrency < 1:
        raise ConfigError("spawn.concurrency must be at least 1")
    if s.max_running < 0:
        raise ConfigError("spawn.max_running must be 0 (no cap) or positive")
    if isinstance(s.max_named_servers, bool) or not isinstance(s.max_named_servers, int) \
            or s.max_named_servers < 0:
        raise ConfigError("spawn.max_named_servers must be a whole number: 0 (named servers "
                          "off) or the most named servers one user may have")
    if s.prestart_grace <= 0:
        raise ConfigError("spawn.prestart_grace must be a positive number of seconds (how "
                          "long a start from the login page waits for the login)")
    if s.start_wait < 0:
        raise ConfigError("spawn.start_wait must be 0 (no wait) or a positive number of "
                          "seconds")
    if any(not i for i in s.images):
        raise ConfigError("spawn.images must not contain empty names")
    if s.cpu_limit < 0:
        raise ConfigError("spawn.cpu_limit must be 0 (no limit) or positive")
    if s.mem_limit:
        try:
            parse_size(s.mem_limit)
        except ValueError as e:
            raise ConfigError(f"spawn.mem_limit: {e}") from None
