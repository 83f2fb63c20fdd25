"""``[control]``: the control socket, and optionally the control channel on TCP with TLS
and client certificates (ipydoc.control.tls)."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.endpoints import check_endpoint
from ipydoc.config.errors import ConfigError


@dataclass
class ControlSection:
    socket: str = ""
    listen_tls: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""


def validate(c: ControlSection) -> None:
    if not c.listen_tls:
        return
    if c.listen_tls.split(":", 1)[0] in ("ssl", "tls"):
        raise ConfigError("control.listen_tls is a plain stream endpoint such as "
                          "'tcp:9443'; ipydoc adds TLS from control.tls_cert and tls_key")
    check_endpoint("control.listen_tls", c.listen_tls)
    for key in ("tls_cert", "tls_key", "tls_client_ca"):
        if not getattr(c, key):
            raise ConfigError(f"control.{key} must be set when control.listen_tls is set")
