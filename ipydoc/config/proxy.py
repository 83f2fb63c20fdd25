"""``[proxy]``: how long the proxy waits for a user's server (ipydoc.proxy), and which
front end reads the requests it forwards (ipydoc.edge.lean_channel)."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError


@dataclass
class ProxySection:
    backend_connect_timeout: float = 10.0
    backend_response_timeout: float = 300.0
    #: "lean": ipydoc's own HTTP/1.1 reader serves proxied requests (hub pages, WebSocket
    #: handshakes and anything unusual still go to twisted.web); "twisted": twisted.web
    #: serves every request.
    front_end: str = "lean"


FRONT_ENDS = ("lean", "twisted")


def validate(p: ProxySection) -> None:
    for key in ("backend_connect_timeout", "backend_response_timeout"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"proxy.{key} must be positive (seconds)")
    if p.front_end not in FRONT_ENDS:
        raise ConfigError(f"proxy.front_end must be one of {', '.join(map(repr, FRONT_ENDS))}, "
                          f"not {p.front_end!r}")
