"""Which headers cross the proxy, in each direction.

Hop-by-hop headers describe one connection, not the message, so they never cross
(RFC 9110 section 7.6.1), and neither does any header the sender named in
``Connection:``.  Towards a user's server the browser's credentials for *us* are
removed (``Authorization``, every ``ipydoc-*`` cookie) and the server token is put in
their place: the server must never see the hub session, the browser never the token.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def _is_hop(name: bytes, named: set[bytes]) -> bool:
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
        if not _is_hop(name, named):
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


def _client_ip(request: IRequest) -> bytes:
    addr = request.getClientAddress()
    return str(getattr(addr, "host", "unix")).encode("ascii", "replace")


def backend_request_headers(
    request: IRequest, token: str, *, websocket: bool = False
) -> Headers:
    """The headers to send to a user's server for ``request``.

    ``Host`` is kept as the browser sent it: jupyter_server checks ``Origin``
    against it.  For a WebSocket handshake ``Connection: Upgrade`` and the client's
    ``Upgrade`` value are put back after the hop-by-hop sweep.
    """
    src = request.requestHeaders
    out = strip_hop_by_hop(src)
    out.removeHeader(b"authorization")
    out.removeHeader(b"expect")  # the 100-continue was answered by us already
    out.removeHeader(b"content-length")  # framing is the client library's job
    out.removeHeader(b"cookie")
    cookie = strip_hub_cookies(src.getRawHeaders(b"cookie") or ())
    if cookie is not None:
        out.setRawHeaders(b"cookie", [cookie])
    out.setRawHeaders(b"authorization", [b"token " + token.encode("ascii")])

    forwarded_for = b", ".join([*(src.getRawHeaders(b"x-forwarded-for") or ()), _client_ip(request)])
    out.setRawHeaders(b"x-forwarded-for", [forwarded_for])
    out.setRawHeaders(b"x-forwarded-proto", [b"https" if request.isSecure() else b"http"])
    host = src.getRawHeaders(b"host")
    if host:
        out.setRawHeaders(b"x-forwarded-host", [host[0]])
    port = getattr(request.getHost(), "port", None)
    if port is not None:
        out.setRawHeaders(b"x-forwarded-port", [b"%d" % port])

    if websocket:
        out.setRawHeaders(b"connection", [b"Upgrade"])
        out.setRawHeaders(b"upgrade", [src.getRawHeaders(b"upgrade", [b"websocket"])[0]])
    return out


def is_websocket_upgrade(request: IRequest) -> bool:
    """A WebSocket opening handshake (RFC 6455 section 4.1)?"""
    if request.method != b"GET":
        return False
    h = request.requestHeaders
    upgrade = b",".join(h.getRawHeaders(b"upgrade") or ()).lower()
    return b"websocket" in upgrade and b"upgrade" in connection_tokens(
        h.getRawHeaders(b"connection") or ()
    )
