"""The ``Origin`` rule: a state-changing request made with a browser's cookie must come
from a page of the site it targets.

Browsers send ``Origin`` with every cross-site request (and with every POST, PUT, PATCH,
DELETE and WebSocket handshake), so a request without it was not driven by another
site's page.  ``null`` (sandboxed frames, opaque redirects) and anything that is not a
``scheme://host`` are refused.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlsplit

from twisted.web.iweb import IRequest

from ipydoc.proxy.headers import SAFE_METHODS, is_websocket_upgrade


def request_origin(request: IRequest) -> str:
    """``scheme://host`` of the request as it reached us (its ``Host`` header)."""
    host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
    return f"{'https' if request.isSecure() else 'http'}://{host}"


def changes_state(request: IRequest) -> bool:
    """Not a safe method, or a WebSocket handshake (a GET that opens a channel)."""
    return request.method not in SAFE_METHODS or is_websocket_upgrade(request)


def origin_allowed(request: IRequest, allowed: Collection[str]) -> bool:
    """The request's ``Origin`` is absent or one of ``allowed`` (lower-case origins)."""
    origin = request.getHeader(b"origin")
    if origin is None:
        return True  # not a browser-driven cross-site request (browsers always send it)
    text = origin.decode("latin-1").lower()
    if text == "null" or not urlsplit(text).netloc:
        return False
    return text in allowed
