"""Which headers cross the proxy, in each direction.

Hop-by-hop headers describe one connection, not the message, so they never cross
(RFC 9110 section 7.6.1), and neither does any header the sender named in
``Connection:``.  Towards a user's server the browser's credentials for *us* are
removed (``Authorization``, every ``ipydoc-*`` cookie, ``__Host-`` or not) and the server
token is put in their place: the server must never see the hub session, the browser
never the token.  ``X-Forwarded-*`` are the proxy's own: the client's are never passed
on, and the address is the one the daemon believes (the peer, or behind a trusted
proxy the client it names, :mod:`ipydoc.edge.forwarding`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Any

from twisted.web.http_headers import Headers, _nameEncoder
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


#: Twisted's own cache of canonical header names (``b"content-type"`` →
#: ``b"Content-Type"``), bounded by Twisted; read directly by :class:`FastHeaders`.
_CANONICAL: dict[bytes | str, bytes] = _nameEncoder._canonicalHeaderCache


def canonical_name(name: bytes) -> bytes:
    """The name as Twisted's ``Headers`` writes it (``b"etag"`` → ``b"ETag"``)."""
    return _CANONICAL.get(name) or _nameEncoder.encode(name)


def add_checked(headers: Headers, lines: Iterable[tuple[bytes, bytes]]) -> None:
    """``headers.addRawHeader(name, value)`` for each of ``lines``, without Twisted's
    per-value sanitizing, for values one of ipydoc's own head parsers has checked (no CR,
    LF or NUL: :func:`ipydoc.edge.lean_head.read_head`,
    :func:`ipydoc.proxy.backend.parse_head`).  That sanitizing was about 3% of the
    daemon's Python time per proxied request; one call per head, not per line.  Uses
    Twisted's private ``Headers._rawHeaders`` and ``_nameEncoder`` (checked in
    tests/edge/test_twisted_private_api.py)."""
    raw = headers._rawHeaders
    for name, value in lines:
        raw.setdefault(canonical_name(name), []).append(value)


class FastHeaders(Headers):
    """Twisted's ``Headers``, read by ``bytes`` name without a Python call to canonicalize
    the name each time: a name Twisted has canonicalized before is looked up in its cache
    directly.  A lean request's and its response's headers are read a dozen times per
    proxied request (the gate, the forwarding head, the access log, the framing); anything
    else (a ``str`` name, one never seen) goes through Twisted's own methods.

    Once set, ``forwarding`` holds what :func:`ipydoc.proxy.http.forwarded_lines` made of
    these headers, and ``verdict`` what the gate may recall for the next request with them
    (:meth:`ipydoc.access.ladder.Ladder.recall`).  They are never changed once parsed."""

    __slots__ = ("forwarding", "verdict")

    def getRawHeaders(self, name: Any, default: Any = None) -> Any:
        key = _CANONICAL.get(name) if name.__class__ is bytes else None
        if key is None:
            return super().getRawHeaders(name, default)
        return self._rawHeaders.get(key) or default

    def hasHeader(self, name: Any) -> bool:
        key = _CANONICAL.get(name) if name.__class__ is bytes else None
        if key is None:
            return super().hasHeader(name)
        return key in self._rawHeaders

    def removeHeader(self, name: Any) -> None:
        key = _CANONICAL.get(name) if name.__class__ is bytes else None
        if key is None:
            super().removeHeader(name)
        else:
            self._rawHeaders.pop(key, None)


def strip_hub_cookies(values: Iterable[bytes]) -> bytes | None:
    """One ``Cookie:`` value without the hub's cookies, or None if nothing is left."""
    kept = []
    for value in values:
        if value.lower().find(HUB_COOKIE_PREFIX) == -1:  # none of ours in this line
            kept.extend(p for p in [x.strip() for x in value.split(b";")] if p)
            continue
        for part in value.split(b";"):
            part = part.strip()
            if part and not is_hub_cookie(part):
                kept.append(part)
    return b"; ".join(kept) or None


def is_hub_cookie(set_cookie: bytes) -> bool:
    """Whether a ``Set-Cookie`` (or cookie) names one of the hub's cookies, with or
    without a ``__Host-``/``__Secure-`` prefix.  A user's server never sets those: in
    path mode it shares the hub's origin and could plant a session (login CSRF)."""
    name = set_cookie.partition(b"=")[0].strip().lower()
    if name[:2] == b"__":
        if name.startswith(b"__host-"):
            name = name[7:]
        elif name.startswith(b"__secure-"):
            name = name[9:]
    return name.startswith(HUB_COOKIE_PREFIX)


def own_host_cookie(set_cookie: bytes) -> bool:
    """False for a ``Set-Cookie`` from a user's server that names a ``Domain``.

    Host-only cookies stay on the server's own origin.  A ``Domain`` cookie would also go
    to the hub and to other users' hosts (per-user subdomains): a server could plant a
    session cookie in another user's browser ("cookie tossing").  Such cookies are
    dropped rather than rewritten, so nothing is set that the server did not ask for.
    """
    lower = set_cookie.lower()
    if lower.find(b"domain") == -1:  # (most cookies; ``find``: docs/front_end.md)
        return True
    return not any(attr.strip().startswith(b"domain") for attr in lower.split(b";")[1:])


def secure_cookie(set_cookie: bytes) -> bytes:
    """``set_cookie`` with the ``Secure`` attribute, added if the server left it out.

    Behind TLS (ours, or a TLS-terminating proxy named in ``server.trusted_proxies``) a
    user's server only ever sees plain HTTP, so Jupyter sets its ``_xsrf`` cookie without
    ``Secure``; the browser would then also send it over plain http to this host.  When
    the client's request was https, every cookie a user's server sets is made ``Secure``.
    """
    if any(attr.strip().lower() == b"secure" for attr in set_cookie.split(b";")[1:]):
        return set_cookie
    return set_cookie.rstrip().rstrip(b";") + b"; Secure"


def _client_ip(request: IRequest) -> bytes:
    """The client's address as the daemon believes it (behind a trusted proxy: the
    address that proxy names, already put on the request; ipydoc.edge.forwarding)."""
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
    ``Connection: Upgrade`` and ``Upgrade: websocket`` are put back after the hop-by-hop
    sweep (only the protocol we splice, whatever else the client offered).
    Built as bytes in one pass: this runs for every request.
    """
    src = request.requestHeaders
    connection = src.getRawHeaders(b"connection")
    named = connection_tokens(connection) if connection else ()
    lines: list[bytes] = []
    cookies: Sequence[bytes] = ()
    host = None
    for name, values in src.getAllRawHeaders():  # canonical names: b"Cookie", b"Host"
        lower = name.lower()
        if lower == b"host":
            host = values[0]
        elif lower == b"cookie":
            cookies = values
        if lower in _DROPPED or lower.startswith(b"proxy-") or lower in named:
            continue
        for value in values:
            lines.append(name + b": " + value)
    cookie = strip_hub_cookies(cookies) if cookies else None
    if cookie is not None:
        lines.append(b"Cookie: " + cookie)
    lines.append(b"Authorization: token " + token.encode("ascii"))
    lines.append(b"X-Forwarded-For: " + _client_ip(request))  # never the client's own
    lines.append(b"X-Forwarded-Proto: https" if request.isSecure()
                 else b"X-Forwarded-Proto: http")
    if host:
        lines.append(b"X-Forwarded-Host: " + host)
    port = getattr(request.getHost(), "port", None)
    if port is not None:
        lines.append(b"X-Forwarded-Port: %d" % port)
    if websocket:
        lines.append(b"Connection: Upgrade")
        lines.append(b"Upgrade: websocket")  # the one protocol we splice
    return lines


#: What :func:`backend_request_lines` never copies (lower-cased; with ``proxy-*`` and the
#: names listed in ``Connection:``).
_DROPPED = _REPLACED | HOP_BY_HOP


#: RFC 9110 ``tchar``: what a token (a protocol name, a connection option) is made of.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def token_list(values: Iterable[bytes], *, versions: bool = False) -> set[bytes] | None:
    """The lower-cased tokens of a comma-separated header list (``#token``, RFC 9110
    section 5.6.1), or None if an element is not a token.  ``versions`` allows
    ``name/version`` elements (``Upgrade``), each kept whole."""
    out: set[bytes] = set()
    for value in values:
        for element in value.split(b","):
            element = element.strip(b" \t")
            if not element:
                continue  # empty list elements are allowed
            parts = element.split(b"/", 1) if versions else [element]
            if not all(p and _TCHAR.issuperset(p) for p in parts):
                return None
            out.add(element.lower())
    return out


def is_websocket_upgrade(request: IRequest) -> bool:
    """A WebSocket opening handshake (RFC 6455 section 4.1)?  The one rule for the whole
    daemon: the gate (``Origin`` check, error pages) and the proxy (splice or plain
    HTTP) must never disagree about it, or an upgrade could skip the ``Origin`` check.

    A GET whose ``Upgrade`` lists the protocol token ``websocket`` and whose
    ``Connection`` lists the option ``upgrade`` (both as token lists, any case, over all
    lines of each header).  Anything malformed is not an upgrade: it goes on as plain
    HTTP, with ``Upgrade`` and ``Connection`` removed (hop-by-hop).
    """
    if request.method != b"GET":
        return False
    h = request.requestHeaders
    upgrade = h.getRawHeaders(b"upgrade")
    if not upgrade:
        return False
    connection = h.getRawHeaders(b"connection")
    if not connection:
        return False
    protocols = token_list(upgrade, versions=True)
    options = token_list(connection)
    return (protocols is not None and b"websocket" in protocols
            and options is not None and b"upgrade" in options)


#: Methods that change nothing on the server: no ``Origin`` check for them (unless the
#: GET is a WebSocket handshake).
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})


def wants_html(request: IRequest) -> bool:
    """A browser navigating (it asks for HTML), not a script or a WebSocket.  The one rule
    for the gate (redirect to a page rather than answer JSON) and the error pages."""
    accept = b",".join(request.requestHeaders.getRawHeaders(b"accept") or ()).lower()
    return b"text/html" in accept and not is_websocket_upgrade(request)
