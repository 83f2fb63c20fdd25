"""``[docker]``: the Engine to talk to, where users' files live (volume or bind
directory), the command in the container, and the users' isolated network."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ipydoc.config.errors import ConfigError


@dataclass
class DockerSection:
    host: str = ""
    instance: str = "ipydoc"
    storage: str = "volume"
    volume_prefix: str = "ipydoc-home-"
    bind_root: str = ""
    notebook_dir: str = "/home/jovyan"
    cmd: list[str] = field(default_factory=lambda: ["jupyter", "lab"])
    stop_timeout: int = 10
    # Isolation (ipydoc.backends.docker_network): the users' bridge network, where servers
    # cannot reach each other nor the host (but for host_access ports); "{instance}" is
    # replaced by docker.instance; "" = Docker's default bridge, NOT isolated.
    network: str = "{instance}-users"
    egress: str = "allow"
    host_access: list[int] = field(default_factory=list)

    @property
    def network_name(self) -> str:
        return self.network.replace("{instance}", self.instance)


def validate(d: DockerSection) -> None:
    if d.storage not in ("volume", "bind"):
        raise ConfigError("docker.storage must be 'volume' or 'bind'")
    if d.storage == "bind" and not d.bind_root:
        raise ConfigError("docker.bind_root must be set when docker.storage = 'bind'")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", d.instance):
        raise ConfigError("docker.instance must be lower-case letters, digits and hyphens")
    if not d.cmd:
        raise ConfigError("docker.cmd must not be empty")
    if not d.notebook_dir.startswith("/"):
        raise ConfigError("docker.notebook_dir must be an absolute path")
    _validate_isolation(d)


def _validate_isolation(d: DockerSection) -> None:
    name = d.network_name
    if name in ("bridge", "host", "none", "default"):
        raise ConfigError(f"docker.network = {name!r} is one of Docker's own networks, where "
                          "users' servers reach each other or the host; name a network for "
                          "ipydoc to create (default \"{instance}-users\"), or \"\" for the "
                          "legacy layout (not isolated)")
    if name and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", name):
        raise ConfigError(f"docker.network must be a Docker network name (letters, digits, "
                          f"'_', '.', '-'; \"{{instance}}\" allowed), not {d.network!r}")
    if d.egress not in ("allow", "deny"):
        raise ConfigError(f"docker.egress must be 'allow' or 'deny', not {d.egress!r}")
    for port in d.host_access:
        if not 1 <= port <= 65535:
            raise ConfigError(f"docker.host_access: {port} is not a TCP port (1-65535)")
    if not name and (d.egress != "allow" or d.host_access):
        raise ConfigError("docker.egress and docker.host_access need docker.network: on "
                          "Docker's default bridge (docker.network = \"\") nothing is isolated")
