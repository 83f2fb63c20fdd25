"""Where the hub and each user's server live: one host with paths, or one host per user.

``server.routing = "path"`` (the default): the hub is ``/hub/`` and a user's server is
``/user/NAME/`` on the same host.  ``"subdomain"``: the hub is the bare ``server.domain``
and ``NAME.<domain>`` is NAME's server with base URL ``/``, so a user's pages (which run
code of that user's choosing) never share an origin, nor cookies, with the hub or with
another user.  Any other ``Host`` gets 404 in that mode.

Named servers (issue 19 §1, :mod:`ipydoc.names`): every method taking ``name`` takes a
*server key*, the user name for the default server or ``USER--SERVER``.  A named server
lives at ``/user/USER/SERVER/`` in path mode and at ``USER--SERVER.<domain>`` (the key
as the DNS label) in subdomain mode; a label starting ``xn--`` (punycode) is never a
server's host.

Every URL the hub hands out for a user's server is built here (:meth:`Routing.user_url`),
so the two modes differ in one place.  The scheme and port of an absolute URL come from
``server.public_url`` when it is set, else from the request (TLS or not, the ``Host``
header's port); hosts always come from ``server.domain``, never from the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest

from ipydoc.edge.redirects import safe_next
from ipydoc.names import SERVER_KEY_SEPARATOR, InvalidName, validate_server_key

_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

#: Paths on a user's host that ipydoc answers itself; they never reach the server.
RESERVED_PREFIX = b"/_ipydoc/"


class DomainError(ValueError):
    pass


def check_domain(domain: str) -> str:
    """``domain`` lower-cased if it is a DNS name with at least two labels."""
    d = domain.lower()
    labels = d.split(".")
    if len(labels) < 2 or len(d) > 200 or not all(_LABEL.fullmatch(x) for x in labels):
        raise DomainError(f"{domain!r} is not a DNS name such as notebooks.example.org "
                          "(letters, digits, hyphens; no scheme, port or trailing dot)")
    return d


def split_host(value: bytes | None) -> tuple[str, str]:
    """A ``Host`` header as (lower-case host, port or ""); ("", "") if malformed."""
    text = (value or b"").decode("latin-1").strip().lower()
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, ""
    if port and not port.isdigit():
        return "", ""
    return host, port


def server_path(key: str) -> str:
    """``/user/USER/`` or ``/user/USER/SERVER/`` for a (validated) server key."""
    user, sep, server = key.partition(SERVER_KEY_SEPARATOR)
    return f"/user/{user}/{server}/" if sep else f"/user/{user}/"


def spawn_path(key: str) -> str:
    """The hub's start page of a server: ``/hub/spawn/USER`` or ``/hub/spawn/USER/SERVER``."""
    user, sep, server = key.partition(SERVER_KEY_SEPARATOR)
    return f"/hub/spawn/{user}/{server}" if sep else f"/hub/spawn/{user}"


@dataclass(frozen=True)
class Routing:
    mode: str = "path"
    domain: str = ""
    public_url: str = ""
    #: Subdomain mode (else path mode).  A field set once, not a property: the gate reads
    #: it several times for every proxied request.
    subdomain: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subdomain", self.mode == "subdomain")

    # -- where a request goes ------------------------------------------------------------
    def classify(self, request: IRequest) -> tuple[str, str]:
        """("hub", ""), ("user", NAME) or ("unknown", "") from the request's ``Host``.

        In path mode everything is the hub's site (the path says the rest)."""
        if not self.subdomain:
            return "hub", ""
        host, _ = split_host(request.getHeader(b"host"))
        if host == self.domain:
            return "hub", ""
        label, dot, rest = host.partition(".")
        if dot and rest == self.domain and not label.startswith("xn--"):
            try:
                return "user", validate_server_key(label)
            except InvalidName:
                pass
        return "unknown", ""

    # -- URLs ------------------------------------------------------------------------------
    def origin(self, host: str, request: IRequest | None = None) -> str:
        """``scheme://host[:port]`` in the site's scheme and port."""
        if self.public_url:
            u = urlsplit(self.public_url)
            return f"{u.scheme}://{host}" + (f":{u.port}" if u.port else "")
        if request is None:
            return f"https://{host}"
        _, port = split_host(request.getHeader(b"host"))
        scheme = "https" if request.isSecure() else "http"
        default = "443" if scheme == "https" else "80"
        return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")

    def hub_origin(self, request: IRequest | None = None) -> str:
        """The hub's origin in subdomain mode ("" in path mode: hub URLs stay paths)."""
        return self.origin(self.domain, request) if self.subdomain else ""

    def user_origin(self, name: str, request: IRequest | None = None) -> str:
        return self.origin(f"{name}.{self.domain}", request) if self.subdomain else ""

    def base_url(self, name: str) -> str:
        """The server's base URL inside its container: ``/``, ``/user/USER/`` or, for a
        named server, ``/user/USER/SERVER/``."""
        return "/" if self.subdomain else server_path(name)

    def user_url(self, name: str, path: str = "", request: IRequest | None = None) -> str:
        """Where a browser reaches ``path`` on ``name``'s server (``lab``, ``api/...``).

        Path mode: ``/user/NAME/PATH`` (``/user/USER/SERVER/PATH`` for a named server:
        a path on this site).  Subdomain mode: ``https://KEY.<domain>/PATH``."""
        return self.user_origin(name, request) + self.base_url(name) + path.lstrip("/")

    def user_target(self, name: str, value: str | None, request: IRequest | None = None,
                    default_path: str = "lab") -> str:
        """A ``next=`` to honour for ``name``: a local path, or (subdomain mode) a URL on
        ``name``'s own host; anything else is the default, ``name``'s JupyterLab."""
        default = self.user_url(name, default_path, request)
        if not value:
            return default
        if self.subdomain:
            origin = self.user_origin(name, request)
            if value.startswith(origin + "/"):
                rest = value[len(origin):]
                return origin + rest if safe_next(rest, "") == rest else default
        return safe_next(value, default)

    def hub_host_for_jupyter(self) -> str:
        """``tornado_settings.hub_host`` for JupyterLab's hub menu (empty: same host)."""
        if not self.subdomain:
            return ""
        return self.origin(self.domain)
