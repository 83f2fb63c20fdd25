"""``[proxy]``: how long the proxy waits for a user's server (ipydoc.proxy)."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError


@dataclass
class ProxySection:
    backend_connect_timeout: float = 10.0
    backend_response_timeout: float = 300.0


def validate(p: ProxySection) -> None:
    for key in ("backend_connect_timeout", "backend_response_timeout"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"proxy.{key} must be positive (seconds)")
