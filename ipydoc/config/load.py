"""Configuration: one TOML file, every key known, typed and defaulted.

A mistake in the file stops the daemon before it does anything, with a message that names
the key (``spawn.start_timeout must be a number``), because a typo silently ignored is a
setting silently not applied.  Each section is a dataclass with its own ``validate`` in
its own module (``ipydoc.config.server`` for ``[server]``, …); this module reads the file,
fills the sections (:mod:`ipydoc.config.types`) and validates them.  The example
``etc/ipydoc.toml`` documents every key; keep the two in step.

Nothing here imports the reactor or ``twisted.web``: the CLI reads the same file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ipydoc.config import (
    auth,
    cluster,
    control,
    cull,
    docker,
    history,
    metrics,
    profiles,
    proxy,
    redis,
    server,
    spawn,
    swarm,
)
from ipydoc.config.auth import AuthSection
from ipydoc.config.cluster import ClusterSection
from ipydoc.config.control import ControlSection
from ipydoc.config.cull import CullSection
from ipydoc.config.docker import DockerSection
from ipydoc.config.errors import ConfigError
from ipydoc.config.history import HistorySection
from ipydoc.config.metrics import MetricsSection
from ipydoc.config.profiles import GroupsSection, Profile, read_profiles
from ipydoc.config.proxy import ProxySection
from ipydoc.config.redis import RedisSection
from ipydoc.config.server import ServerSection
from ipydoc.config.spawn import SpawnSection
from ipydoc.config.swarm import SwarmSection
from ipydoc.config.types import fill, parse_size

DEFAULT_CONFIG_PATHS = ("/etc/ipydoc/ipydoc.toml", "etc/ipydoc.toml")


@dataclass
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    redis: RedisSection = field(default_factory=RedisSection)
    control: ControlSection = field(default_factory=ControlSection)
    auth: AuthSection = field(default_factory=AuthSection)
    spawn: SpawnSection = field(default_factory=SpawnSection)
    docker: DockerSection = field(default_factory=DockerSection)
    swarm: SwarmSection = field(default_factory=SwarmSection)
    cull: CullSection = field(default_factory=CullSection)
    history: HistorySection = field(default_factory=HistorySection)
    proxy: ProxySection = field(default_factory=ProxySection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    groups: GroupsSection = field(default_factory=GroupsSection)
    profiles: list[Profile] = field(default_factory=list)  # [[profiles]]
    path: str = ""

    @property
    def state_path(self) -> Path:
        return Path(self.server.state_dir)

    @property
    def control_socket(self) -> Path:
        return Path(self.control.socket) if self.control.socket else self.state_path / "control.sock"

    @property
    def mem_limit_bytes(self) -> int | None:
        return parse_size(self.spawn.mem_limit) if self.spawn.mem_limit else None


def _validate(cfg: Config) -> None:
    """Each section's own checks; the first problem found is the error."""
    server.validate(cfg.server)
    proxy.validate(cfg.proxy)
    control.validate(cfg.control)
    redis.validate(cfg.redis)
    spawn.validate(cfg.spawn)
    cull.validate(cfg.cull)
    auth.validate(cfg.auth)
    docker.validate(cfg.docker)
    swarm.validate(cfg.swarm)
    history.validate(cfg.history)
    cluster.validate(cfg.cluster)
    metrics.validate(cfg.metrics)
    profiles.validate(cfg.profiles, cfg.groups, cfg.docker.notebook_dir)


def from_dict(data: dict[str, Any], path: str = "") -> Config:
    """Build and validate a Config from parsed TOML."""
    cfg = Config(path=path)
    sections = {f.name: f for f in fields(Config) if f.name != "path"}
    for name, value in data.items():
        if name == "profiles":  # the one array of tables
            cfg.profiles = read_profiles(value)
            continue
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sections)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        fill(getattr(cfg, name), name, value)
    _validate(cfg)
    return cfg


def load(path: str | os.PathLike[str]) -> Config:
    """Read, check and return the configuration at ``path``; ConfigError names the problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    try:
        return from_dict(data, str(p.resolve()))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def find_config(explicit: str | None) -> str:
    """The config path: ``--config``, else ``$IPYDOC_CONFIG``, else the first default that exists."""
    if explicit:
        return explicit
    if os.environ.get("IPYDOC_CONFIG"):
        return os.environ["IPYDOC_CONFIG"]
    for candidate in DEFAULT_CONFIG_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise ConfigError(
        "no configuration file: pass --config FILE or set IPYDOC_CONFIG "
        f"(looked for {', '.join(DEFAULT_CONFIG_PATHS)})"
    )
