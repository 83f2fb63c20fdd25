"""Listen entries: which ``server.listen`` strings are TLS, and the endpoint under them.

A ``server.listen`` entry starting ``ssl:`` or ``tls:`` is a TLS listener.  After the
prefix comes either a port with Twisted's ``tcp:`` options (``ssl:443:interface=::``) or
a whole stream endpoint (``tls:systemd:domain=INET6:index=0``); ``privateKey=`` and
``certKey=`` name that listener's own default certificate, otherwise ``server.tls_cert``
and ``tls_key`` are it (:mod:`ipydoc.edge.certificates`).  Options that would set TLS
versions, ciphers or the chain are refused: ipydoc sets those itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_TLS_PREFIXES = ("ssl:", "tls:")
_OWN_CERT_OPTIONS = ("privateKey", "certKey")
_REFUSED_OPTIONS = ("sslmethod", "extraCertChain", "dhParameters")


@dataclass(frozen=True)
class TLSListen:
    """A TLS listen entry: the plain stream endpoint under it and its own cert, if any."""

    endpoint: str
    cert: str = ""
    key: str = ""


def _split(spec: str) -> list[str]:
    """Endpoint string parts, split on colons not escaped with a backslash."""
    return re.split(r"(?<!\\):", spec)


def parse_listen(spec: str) -> TLSListen | None:
    """The TLS listener ``spec`` describes, or None for a plain one.

    Raises ValueError (a message for the config error) for options ipydoc sets itself.
    """
    if not spec.startswith(_TLS_PREFIXES):
        return None
    parts = _split(spec[4:])
    own: dict[str, str] = {}
    kept = []
    for part in parts:
        name, eq, value = part.partition("=")
        if eq and name in _OWN_CERT_OPTIONS:
            own[name] = value.replace("\\:", ":")
        elif eq and name in _REFUSED_OPTIONS:
            raise ValueError(f"{spec!r}: {name}= is not supported here; ipydoc sets TLS "
                             "versions and ciphers itself and reads the chain from the "
                             "certificate file")
        else:
            kept.append(part)
    if not kept or not kept[0]:
        raise ValueError(f"{spec!r}: say where to listen, e.g. ssl:443 or "
                         "tls:systemd:domain=INET6:index=0")
    first = kept[0]
    if first.isdigit() or first.startswith("port="):
        endpoint = ":".join(["tcp", *kept])
    else:
        endpoint = ":".join(kept)  # a whole endpoint string: tcp:..., systemd:..., unix:...
    key = own.get("privateKey", "")
    cert = own.get("certKey", key)
    return TLSListen(endpoint, cert, key)


def https_port(public_url: str, listen: list[str]) -> int:
    """The port HTTP requests are redirected to: ``public_url``'s if it is https, else the
    first TLS listen entry's, else 443."""
    if public_url:
        u = urlsplit(public_url)
        if u.scheme == "https":
            return u.port or 443
    for spec in listen:
        tls = parse_listen(spec)
        if tls is None:
            continue
        match = re.match(r"tcp6?:(?:port=)?(\d+)(?::|$)", tls.endpoint)
        if match:
            return int(match.group(1))
    return 443
