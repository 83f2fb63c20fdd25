"""What the proxy asks before it forwards anything: the gate.

The proxy knows HTTP; the gate knows users, sessions, routes and tokens.  The proxy calls
``claims`` as soon as a request's headers are in (before any body is read), then
``decide``; only a :class:`Forward` lets bytes through to a server.  A Forward names the
credential that allowed it, so the exchange can be cut when that credential is revoked
(:mod:`ipydoc.proxy.live`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.web.iweb import IRequest


@dataclass(frozen=True)
class Forward:
    """Send the request to ``target`` with ``Authorization: token <token>``."""

    user: str
    target: str          # "http://127.0.0.1:49153", no trailing slash
    token: str
    #: What let the request through (opaque to the proxy: the session's or personal
    #: token's Redis key); open exchanges are closed by it when it is revoked.
    credential: str = ""
    #: The server has an origin to itself (subdomain mode).  In path mode it shares the
    #: hub's origin, so e.g. ``Service-Worker-Allowed`` is not relayed.
    own_origin: bool = False
    #: The hub's start page for this server, coming back to the request's URL: offered
    #: on the error page when the server does not answer (502, 504).  A callable of the
    #: request, so it is only worked out when such a page is actually shown, not for every
    #: request (and holds no request: the request holds it).
    start_url: Callable[[IRequest], str] | None = None


@dataclass(frozen=True)
class Reply:
    """Answer the request here; nothing reaches a server."""

    code: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class Gate(Protocol):
    def claims(self, request: IRequest) -> bool:
        """True if this request is user traffic (path mode: ``/user/<name>/...``)."""

    async def decide(self, request: IRequest) -> Forward | Reply:
        """Authenticate and authorise; the route and token when allowed."""

    def saw_traffic(self, user: str) -> None:
        """Bytes moved for ``user``'s server (records last activity)."""

    def saw_response(self, user: str, method: bytes, path: bytes, code: int) -> Any:
        """The server answered ``method path`` with ``code`` (save tracking).  A Deferred
        returned here holds the rest of the answer until it fires (at most 5 s)."""

    # Optional: ``exchanges`` (an :class:`ipydoc.proxy.live.OpenExchanges`): the proxy
    # registers every open exchange there, so the gate can cut them on revocation.

    # Optional: ``recall(request) -> Forward | None``: the verdict ``decide`` gave a
    # request like this one, if it still holds, from memory and at once (None: ask
    # ``decide``).  The proxy asks it first.

    # Optional: ``observed_methods`` (a set of methods): saw_response and wants_body are
    # called only for requests with one of these methods (absent: for every request).

    # Optional: a gate may also define
    #   wants_body(user, method, path, code) -> bool
    #   saw_body(user, method, path, code, body: bytes | None) -> Deferred | None
    # to be handed the first 64 KiB of a response once it has been relayed (None when the
    # body was longer or broke off), e.g. the model a contents-API rename answers with.
