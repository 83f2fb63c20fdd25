"""Prometheus metrics over HTTP (``docs/metrics.md``): ``/hub/metrics`` on the public
site behind a bearer token, and the small site of ``metrics.listen``.

Both answer with prometheus_client's own generator over its default registry (every
``ipydoc_*`` metric, defined in the ``metrics.py`` of the folder it measures, plus the
library's process collector: RSS, open fds, CPU).  Generating runs in the reactor
thread and never waits: the gauges that come from Redis or Docker are snapshots the
refresher (:mod:`ipydoc.servers.metrics_refresh`) keeps current.

``/hub/metrics`` is off (404) unless ``metrics.token_file`` is set; then it answers only
``Authorization: Bearer <token>``, compared in constant time, and 401 to anything else.
The token never travels in a URL.  The listener of ``metrics.listen`` has no
authentication (bind it to loopback or a private network) and answers ``/metrics`` only.
"""

from __future__ import annotations

import hmac
from typing import Any

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import CollectorRegistry
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

#: Seconds a connection to the metrics listener may stay idle (a scrape takes one request).
LISTENER_IDLE_TIMEOUT = 30


def exposition(request: IRequest, registry: CollectorRegistry = REGISTRY) -> bytes:
    """The text format, with the headers a scrape wants."""
    request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return generate_latest(registry)


def _plain(request: IRequest, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return text.encode() + b"\n"


def bearer(request: IRequest) -> bytes | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    values = request.requestHeaders.getRawHeaders(b"authorization") or []
    if len(values) != 1:
        return None
    scheme, _, token = values[0].strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return token.strip() or None


class MetricsPage:
    """``GET /hub/metrics``: the metrics for a scraper that shows the bearer token."""

    app = Klein()

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        if self._token is None:
            return _plain(request, 404, "Not found (metrics.token_file is not set).")
        given = bearer(request)
        if given is None or not hmac.compare_digest(given, self._token):
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="ipydoc metrics"')
            return _plain(request, 401, "A bearer token (metrics.token_file) is needed.")
        return exposition(request)


class _ListenerRoot(Resource):
    """``/metrics`` and nothing else."""

    def getChild(self, path: bytes, request: IRequest) -> Any:
        if path == b"metrics" and not request.postpath:
            return _Exposition()
        return _NotFound()

    def render(self, request: IRequest) -> bytes:
        return _NotFound().render(request)


class _Exposition(Resource):
    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        return exposition(request)


class _NotFound(Resource):
    isLeaf = True

    def render(self, request: IRequest) -> bytes:
        return _plain(request, 404, "Not found: metrics are at /metrics.")


class MetricsSite(server.Site):
    """The site of ``metrics.listen``: no access log (a scrape every few seconds would
    fill the daemon's log), a short idle timeout."""

    noisy = False  # no "Starting factory" lines

    def __init__(self) -> None:
        super().__init__(_ListenerRoot(), timeout=LISTENER_IDLE_TIMEOUT)

    def log(self, request: IRequest) -> None:
        """Scrapes are not logged."""
