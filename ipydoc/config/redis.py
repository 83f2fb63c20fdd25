"""``[redis]``: an external Redis by URL, or (empty) the daemon's own ``redis-server``."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError
from ipydoc.state.redis_url import parse


@dataclass
class RedisSection:
    url: str = ""
    command: str = "redis-server"


def validate(r: RedisSection) -> None:
    if r.url:
        try:
            parse(r.url)
        except ValueError as e:
            raise ConfigError(f"{e} (or empty: the daemon's own redis-server)") from None
