"""What the proxy counts: forwarded requests by status class with their durations, open
WebSockets, bytes carried each way (``docs/metrics.md``).

The proxy imports nothing else of ipydoc, so its metrics live here, in prometheus_client's
default registry.  A forwarded request costs a few additions to plain numbers, read by a
collector at scrape time (no lock, no label lookup per request; ``bench/proxy.py``
measures the proxy with them).  No user name is ever a
label here (cardinality; per-user series are snapshots, see ``ipydoc.servers.metrics``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

#: Status classes of :data:`_by_class`; index ``code // 100`` (0 = no answer).
CLASSES = ("none", "1xx", "2xx", "3xx", "4xx", "5xx")
#: Upper bounds (seconds) of the duration histogram's buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
           30.0, 60.0)

# Per forwarded request, plain numbers, read at scrape time (:class:`ProxyCollector`):
# a prometheus_client Counter or Histogram takes a lock per increment, which was about 4%
# of the daemon's Python time per proxied request.  Only the reactor thread writes them.
_by_class = [0] * len(CLASSES)
_in_bucket = [0] * (len(BUCKETS) + 1)  # the last: above every bound (+Inf only)
_seconds = [0.0]
_bytes = [0, 0]  # to the server, to the client
#: Forwarded requests whose verdict the gate recalled from memory (the handler adds).
recalled = [0]


class ProxyCollector(Collector):
    """The per-request tallies as ``ipydoc_proxy_requests_total``,
    ``ipydoc_proxy_request_duration_seconds``, ``ipydoc_proxy_recalled_verdicts_total``
    and ``ipydoc_proxy_bytes_total``."""

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "ipydoc_proxy_requests", "HTTP requests forwarded to users' servers, by the "
            "status class of the answer the client got (none: the client left before any "
            "answer)", labels=["code"])
        for label, n in zip(CLASSES, list(_by_class)):
            requests.add_metric([label], n)
        yield requests
        counts, total, cumulative = list(_in_bucket), 0, []
        for bound, n in zip(BUCKETS, counts):
            total += n
            cumulative.append((floatToGoString(bound), total))
        cumulative.append(("+Inf", total + counts[-1]))
        duration = HistogramMetricFamily(
            "ipydoc_proxy_request_duration_seconds", "Forwarded HTTP requests, from the "
            "gate's verdict to the last byte of the answer (streams included)")
        duration.add_metric([], cumulative, sum_value=_seconds[0])
        yield duration
        memory = CounterMetricFamily(
            "ipydoc_proxy_recalled_verdicts", "Forwarded HTTP requests the gate let through "
            "on a verdict recalled from memory (the same header lines as the request before "
            "on a keep-alive connection) instead of climbing its ladder")
        memory.add_metric([], recalled[0])
        yield memory
        carried = CounterMetricFamily(
            "ipydoc_proxy_bytes", "Bytes carried between clients and users' servers "
            "(bodies and WebSocket streams; not the HTTP heads)", labels=["direction"])
        carried.add_metric(["to_server"], _bytes[0])
        carried.add_metric(["to_client"], _bytes[1])
        yield carried


REGISTRY.register(ProxyCollector())

WEBSOCKETS_OPEN = Gauge("ipydoc_proxy_websockets_open",
                        "WebSockets spliced to users' servers right now (this daemon)")
WEBSOCKETS = Counter("ipydoc_proxy_websockets", "WebSockets spliced to users' servers")


def http_done(code: int, seconds: float, to_server: int, to_client: int) -> None:
    """One forwarded request is over: ``code`` as the client got it (0: none)."""
    _by_class[code // 100 if 100 <= code < 600 else 0] += 1
    _in_bucket[bisect_left(BUCKETS, seconds)] += 1
    _seconds[0] += seconds
    if to_server:
        _bytes[0] += to_server
    if to_client:
        _bytes[1] += to_client


def websocket_bytes(to_server: int, to_client: int) -> None:
    """Bytes a WebSocket carried (counted with the HTTP bodies)."""
    _bytes[0] += to_server
    _bytes[1] += to_client


def websocket_opened() -> None:
    WEBSOCKETS.inc()
    WEBSOCKETS_OPEN.inc()


def websocket_closed() -> None:
    WEBSOCKETS_OPEN.dec()
