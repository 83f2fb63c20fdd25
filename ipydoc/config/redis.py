"""``[redis]``: an external Redis by URL, or (empty) the daemon's own ``redis-server``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ipydoc.config.errors import ConfigError


@dataclass
class RedisSection:
    url: str = ""
    command: str = "redis-server"


def validate(r: RedisSection) -> None:
    if r.url and urlsplit(r.url).scheme not in ("redis", "unix"):
        raise ConfigError("redis.url must be redis://HOST:PORT/DB or unix:///PATH?db=N (or empty)")
