"""``[proxy]``: how long the proxy waits for a user's server (ipydoc.proxy), which
front end reads the requests it forwards (ipydoc.edge.lean_channel), and how its thread
is scheduled under load (ipydoc.edge.scheduling)."""

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
    #: "adaptive": SCHED_BATCH from ``busy_events`` socket events a second (back below
    #: half of it), normal otherwise; "normal": never; "batch": always.
    scheduling: str = "adaptive"
    busy_events: int = 1000


FRONT_ENDS = ("lean", "twisted")
#: The values of ``scheduling`` (as ``ipydoc.edge.scheduling.MODES``, repeated so that
#: reading the file, as the CLI does, loads no service or metric; a test compares them).
SCHEDULING = ("adaptive", "normal", "batch")


def validate(p: ProxySection) -> None:
    for key in ("backend_connect_timeout", "backend_response_timeout"):
        if getattr(p, key) <= 0:
            raise ConfigError(f"proxy.{key} must be positive (seconds)")
    if p.front_end not in FRONT_ENDS:
        raise ConfigError(f"proxy.front_end must be one of {', '.join(map(repr, FRONT_ENDS))}, "
                          f"not {p.front_end!r}")
    if p.scheduling not in SCHEDULING:
        raise ConfigError(f"proxy.scheduling must be one of {', '.join(map(repr, SCHEDULING))}, "
                          f"not {p.scheduling!r}")
    if p.busy_events <= 0:
        raise ConfigError("proxy.busy_events must be positive (socket events a second), "
                          f"not {p.busy_events!r}")
