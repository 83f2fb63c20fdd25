"""``[cull]``: when idle or old servers are paused or stopped (ipydoc.servers.culler)."""

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
    pause_after: float = 0.0     # seconds idle before a pause (0 = never)


def validate(c: CullSection) -> None:
    for key in ("idle_timeout", "max_age"):
        if getattr(c, key) < 0:
            raise ConfigError(f"cull.{key} must be 0 (off) or positive (seconds)")
    if c.pause_after < 0:
        raise ConfigError("cull.pause_after must be 0 (never pause) or positive (seconds "
                          "idle before an idle server is paused)")
    if c.pause_after > 0 and 0 < c.idle_timeout <= c.pause_after:
        raise ConfigError(f"cull.pause_after ({c.pause_after:g} s) must be shorter than "
                          f"cull.idle_timeout ({c.idle_timeout:g} s): a server is paused "
                          "first and stopped later")
    if c.interval <= 0:
        raise ConfigError("cull.interval must be positive (seconds)")
