"""HTTP client connection pools that do not log every connection they open.

``twisted.web.client``'s factories log "Starting factory ..." at info level for each new
connection; with a pool to every user server and readiness polls every 25 ms that drowns
the log a person reads.
"""

from __future__ import annotations

from typing import Any

from twisted.web.client import HTTPConnectionPool, _HTTP11ClientFactory


class _QuietFactory(_HTTP11ClientFactory):
    noisy = False


def quiet_pool(reactor: Any, persistent: bool = True, per_host: int = 2) -> HTTPConnectionPool:
    pool = HTTPConnectionPool(reactor, persistent=persistent)
    pool._factory = _QuietFactory
    pool.maxPersistentPerHost = per_host
    return pool
