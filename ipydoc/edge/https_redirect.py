"""The plain-HTTP site of ``server.redirect_listen``: every request goes to https.

The redirect keeps the request's host (when it is a plausible name or address, else
the public host) and path; GET and HEAD get 301, other methods 308 so they keep their
method and body.  The body itself is read and dropped, never spooled.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from twisted.web import server
from twisted.web.resource import Resource

_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\]")


class _RedirectEverything(Resource):
    isLeaf = True

    def __init__(self, port: int, fallback_host: str) -> None:
        super().__init__()
        self.port = port
        self.fallback_host = fallback_host

    def render(self, request: Any) -> bytes:
        host = _hostname(request.getRequestHostname().decode("ascii", "replace")) \
            if request.requestHeaders.hasHeader(b"host") else ""
        host = host or self.fallback_host
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        if not host:
            request.setResponseCode(400)
            return b"Use https.\n"
        uri = request.uri.decode("ascii", "replace")
        if not uri.startswith("/"):  # absolute-form: keep only path and query
            u = urlsplit(uri)
            uri = (u.path or "/") + (f"?{u.query}" if u.query else "")
        port = "" if self.port == 443 else f":{self.port}"
        location = f"https://{host}{port}{uri}"
        request.setResponseCode(301 if request.method in (b"GET", b"HEAD") else 308)
        request.setHeader(b"location", location.encode("ascii", "replace"))
        return f"Moved to {location}\n".encode("ascii", "replace")


def _hostname(host: str) -> str:
    """The host part of a Host header, if it is a plausible name or address; else ''."""
    host = host.strip().lower()
    return host if _HOST.fullmatch(host) else ""


class _DiscardBodyRequest(server.Request):
    """The redirect needs no body: read and drop it instead of spooling it to a file."""

    def gotLength(self, length: int | None) -> None:
        super().gotLength(0)

    def handleContentChunk(self, data: bytes) -> None:
        pass


def redirect_site(port: int, fallback_host: str, reactor: Any) -> server.Site:
    """A site answering every request with a redirect to the same host and path on https."""
    site = server.Site(_RedirectEverything(port, fallback_host), reactor=reactor, timeout=60)
    site.requestFactory = _DiscardBodyRequest
    site.displayTracebacks = False
    return site
