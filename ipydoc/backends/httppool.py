"""HTTP client connection pools that do not log every connection they open.

``twisted.web.client``'s factories log "Starting factory ..." at info level for each new
connection; with a pool to every user server and readiness polls every 25 ms that drowns
the log a person reads.  The pool hands each new connection's factory to an endpoint
of ours that turns the factory's public ``noisy`` flag off before connecting, through
public API only (``HTTPConnectionPool.getConnection``, ``IStreamClientEndpoint``).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class _QuietEndpoint:
    """``endpoint``, connecting with the factory's start/stop log lines off."""

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self._endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        factory.noisy = False  # type: ignore[attr-defined]
        return self._endpoint.connect(factory)

    def __repr__(self) -> str:  # the pool names its factory after the endpoint
        return repr(self._endpoint)


class QuietPool(HTTPConnectionPool):
    """An ``HTTPConnectionPool`` whose new connections are not logged."""

    def getConnection(self, key: Hashable, endpoint: IStreamClientEndpoint) -> Deferred[Any]:
        return super().getConnection(key, _QuietEndpoint(endpoint))


def quiet_pool(reactor: Any, persistent: bool = True, per_host: int = 2) -> HTTPConnectionPool:
    pool = QuietPool(reactor, persistent=persistent)
    pool.maxPersistentPerHost = per_host
    return pool
