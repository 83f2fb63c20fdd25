"""Which headers cross the proxy, in each direction.

Hop-by-hop headers describe one connection, not the message, so they never cross
(RFC 9110 section 7.6.1), and neither does any header the sender named in
``Connection:``.  Towards a user's server the browser's credentials for *us* are
removed (``Authorization``, every ``ipydoc-*`` cookie) and the server token is put in
their place: the server must never see the hub session, the browser never the token.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

#: Cookies whose name starts with this belong to the hub and stay with it.
HUB_COOKIE_PREFIX = b"ipydoc-"


def connection_tokens(values: Iterable[bytes]) -> set[bytes]:
    """The lower-cased header names listed in ``Connection:`` values."""
    return {t.strip().lower() for v in values for t in v.split(b",") if t.strip()}


def is_hop_by_hop(name: bytes, named: Collection[bytes] = ()) -> bool:
    """Whether header ``name`` stays on this hop (``named``: the ``Connection:`` tokens)."""
    n = name.lower()
    return n in HOP_BY_HOP or n.startswith(b"proxy-") or n in named


def strip_hop_by_hop(headers: Headers, extra_connection: Iterable[bytes] = ()) -> Headers:
    """A copy of ``headers`` without hop-by-hop headers.

    ``extra_connection`` carries ``Connection:`` values that were not left in
    ``headers`` (Twisted's client parser keeps them apart).
    """
    named = connection_tokens(
        [*(headers.getRawHeaders(b"connection") or ()), *extra_connection]
    )
    out = Headers()
    for name, values in headers.getAllRawHeaders():
        if not is_hop_by_hop(name, named):
            out.setRawHeaders(name, list(values))
    return out


def strip_hub_cookies(values: Iterable[bytes]) -> bytes | None:
    """One ``Cookie:`` value without the hub's cookies, or None if nothing is left."""
    kept = []
    for value in values:
        for part in value.split(b";"):
            part = part.strip()
            if part and not part.lower().startswith(HUB_COOKIE_PREFIX):
                kept.append(part)
    return b"; ".join(kept) or None


def own_host_cookie(set_cookie: bytes) -> bool:
    """False for a ``Set-Cookie`` from a user's server that names a ``Domain``.

    Host-only cookies stay on the server's own origin.  A ``Domain`` cookie would also go
    to the hub and to other users' hosts (per-user subdomains): a server could plant a
    session cookie in another user's browser ("cookie tossing").  Such cookies are
    dropped rather than rewritten, so nothing is set that the server did not ask for.
    """
    lower = set_cookie.lower()
    if b"domain" not in lower:
        return True
    return not any(attr.strip().startswith(b"domain") for attr in lower.split(b";")[1:])


def _client_ip(request: IRequest) -> bytes:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "unix")).encode("ascii", "replace")


#: Request headers the proxy drops and sets itself (besides hop-by-hop ones).
_REPLACED = frozenset({
    b"authorization", b"cookie", b"expect", b"content-length",
    b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-port",
})


def backend_request_lines(
    request: IRequest, token: str, *, websocket: bool = False
) -> list[bytes]:
    """The header lines (``Name: value``) to send to a user's server for ``request``.

    ``Host`` is kept as the browser sent it: jupyter_server checks ``Origin`` against
    it.  ``Expect`` is gone (a 100-continue is answered by us), and so is
    ``Content-Length``: framing is the proxy's job.  For a WebSocket handshake
    ``Connection: Upgrade`` and the client's ``Upgrade`` value are put back after the
    hop-by-hop sweep.  Built as bytes in one pass: this runs for every request.
    """
    src = request.requestHeaders
    raw = dict(src.getAllRawHeaders())  # canonical names: b"Cookie", b"X-Forwarded-For"
    named = connection_tokens(raw.get(b"Connection", ())) if b"Connection" in raw else ()
    lines: list[bytes] = []
    for name, values in raw.items():
        if name.lower() in _REPLACED or is_hop_by_hop(name, named):
            continue
        for value in values:
            lines.append(name + b": " + value)
    cookie = strip_hub_cookies(raw.get(b"Cookie", ()))
    if cookie is not None:
        lines.append(b"Cookie: " + cookie)
    lines.append(b"Authorization: token " + token.encode("ascii"))
    lines.append(b"X-Forwarded-For: " + b", ".join([*raw.get(b"X-Forwarded-For", ()),
                                                     _client_ip(request)]))
    lines.append(b"X-Forwarded-Proto: https" if request.isSecure()
                 else b"X-Forwarded-Proto: http")
    host = raw.get(b"Host")
    if host:
        lines.append(b"X-Forwarded-Host: " + host[0])
    port = getattr(request.getHost(), "port", None)
    if port is not None:
        lines.append(b"X-Forwarded-Port: %d" % port)
    if websocket:
        lines.append(b"Connection: Upgrade")
        lines.append(b"Upgrade: " + (raw.get(b"Upgrade") or [b"websocket"])[0])
    return lines


def is_websocket_upgrade(request: IRequest) -> bool:
    """A WebSocket opening handshake (RFC 6455 section 4.1)?"""
    if request.method != b"GET":
        return False
    h = request.requestHeaders
    upgrade = b",".join(h.getRawHeaders(b"upgrade") or ()).lower()
    return b"websocket" in upgrade and b"upgrade" in connection_tokens(
        h.getRawHeaders(b"connection") or ()
    )
