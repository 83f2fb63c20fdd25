"""``[cull]``: when idle or old servers are stopped (ipydoc.servers.culler)."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError


@dataclass
class CullSection:
    idle_timeout: float = 0.0
    max_age: float = 0.0
    interval: float = 60.0
    ignore_kernel_activity: bool = False
    exempt_admins: bool = False


def validate(c: CullSection) -> None:
    for key in ("idle_timeout", "max_age"):
        if getattr(c, key) < 0:
            raise ConfigError(f"cull.{key} must be 0 (off) or positive (seconds)")
    if c.interval <= 0:
        raise ConfigError("cull.interval must be positive (seconds)")
