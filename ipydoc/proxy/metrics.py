"""What the proxy counts: forwarded requests by status class with their durations, open
WebSockets, bytes carried each way (``docs/metrics.md``).

The proxy imports nothing else of ipydoc, so its metrics live here, in prometheus_client's
default registry.  Every labelled child is bound once at import: a forwarded request
costs one counter increment, one histogram observation and two byte counts, with no
label lookup (``bench/proxy.py`` measures the proxy with them).  No user name is ever a
label here (cardinality; per-user series are snapshots, see ``ipydoc.servers.metrics``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "ipydoc_proxy_requests", "HTTP requests forwarded to users' servers, by the status "
    "class of the answer the client got (none: the client left before any answer)",
    ["code"])
#: Status class → bound child; index ``code // 100`` (0 = no answer).
_BY_CLASS = tuple(REQUESTS.labels(c) for c in ("none", "1xx", "2xx", "3xx", "4xx", "5xx"))

DURATION = Histogram(
    "ipydoc_proxy_request_duration_seconds", "Forwarded HTTP requests, from the gate's "
    "verdict to the last byte of the answer (streams included)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
             30.0, 60.0))

BYTES = Counter("ipydoc_proxy_bytes", "Bytes carried between clients and users' servers "
                "(bodies and WebSocket streams; not the HTTP heads)", ["direction"])
TO_SERVER = BYTES.labels("to_server")
TO_CLIENT = BYTES.labels("to_client")

WEBSOCKETS_OPEN = Gauge("ipydoc_proxy_websockets_open",
                        "WebSockets spliced to users' servers right now (this daemon)")
WEBSOCKETS = Counter("ipydoc_proxy_websockets", "WebSockets spliced to users' servers")


def http_done(code: int, seconds: float, to_server: int, to_client: int) -> None:
    """One forwarded request is over: ``code`` as the client got it (0: none)."""
    _BY_CLASS[code // 100 if 100 <= code < 600 else 0].inc()
    DURATION.observe(seconds)
    if to_server:
        TO_SERVER.inc(to_server)
    if to_client:
        TO_CLIENT.inc(to_client)


def websocket_opened() -> None:
    WEBSOCKETS.inc()
    WEBSOCKETS_OPEN.inc()


def websocket_closed() -> None:
    WEBSOCKETS_OPEN.dec()
