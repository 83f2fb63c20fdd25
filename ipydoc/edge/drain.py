"""Graceful drain on stop: finish what is in flight, hand everything else to the next process.

When the daemon stops (SIGTERM, ``systemctl stop``, a supervisor replacing it), the web
service first stops listening, then drains the site before history, servers and Redis stop:

1. a request in flight completes normally (hub pages, proxied requests, uploads,
   downloads); its response carries ``Connection: close`` (or, if its head was already
   out, the connection closes after it);
2. a kept-alive connection that is idle may still bring one more request during a short
   grace (:data:`IDLE_GRACE`): it is served, with ``Connection: close``.  Connections
   still idle after the grace are closed.  (nginx closes idle connections at once on a
   graceful stop; a client whose request was already on its way then sees a reset.  A
   client that sees the close *before* it reuses the connection, as urllib3 and browsers
   check, opens a new one: so the grace only has to cover requests already in transit.)
3. proxied WebSockets and long hub streams (the start progress page's server-sent
   events) are closed at once so that their clients reconnect to the next process:
   a WebSocket by a clean TCP close of both sides (the proxy never parses frames, so it
   cannot put a close frame between two of them; JupyterLab reconnects its kernel and
   terminal connections on any close, 1006 included), a stream by ending its response;
4. after ``server.drain_timeout`` seconds whatever is left is aborted, and the stop goes
   on.  ``drain_timeout = 0``: no drain, every connection is closed as the process ends.

The site tracks its connections in a :class:`Connections` set (one add and one discard per
connection, nothing per request); :class:`DrainingChannel` keeps it up to date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.task import deferLater
from twisted.logger import Logger

from ipydoc.edge.request_rules import StrictChannel

#: How long an idle kept-alive connection may still bring one last request.
IDLE_GRACE = 1.0
#: How often the drain looks whether everything is closed.
POLL = 0.05

_log = Logger()


class Connections:
    """The site's open HTTP connections and long streams; whether the site is draining."""

    def __init__(self) -> None:
        self.channels: set[StrictChannel] = set()
        #: Requests of long streams, each with how to end it early (``when_draining``).
        self.streams: dict[Any, Callable[[], None]] = {}
        self.draining = False
        self._on_empty: Callable[[], None] | None = None

    def opened(self, channel: StrictChannel) -> None:
        self.channels.add(channel)

    def closed(self, channel: StrictChannel) -> None:
        self.channels.discard(channel)
        if self._on_empty is not None and not self.channels:
            call, self._on_empty = self._on_empty, None
            call()

    def when_empty(self, call: Callable[[], None]) -> None:
        """Call ``call`` once the last open connection has closed (the site's logs stay
        open while it drains)."""
        self._on_empty = call

    def in_flight(self) -> int:
        """Requests received and not yet answered, on every connection."""
        return sum(len(ch.requests) for ch in self.channels)


class DrainingChannel(StrictChannel):
    """A strict channel that its site's :class:`Connections` knows of while it is open.

    Built by :meth:`ipydoc.edge.site.ProxySite`'s protocol factory, which sets ``site``.
    """

    site: Any

    def connectionMade(self) -> None:
        self.site.connections.opened(self)
        super().connectionMade()

    def connectionLost(self, reason: Any) -> None:
        self.site.connections.closed(self)
        super().connectionLost(reason)

    def taken_over(self) -> None:
        """The connection left HTTP (a WebSocket splice): no longer this site's to drain."""
        self.site.connections.closed(self)


class Exchanges(Protocol):
    """The proxy's registry of open exchanges (:class:`ipydoc.proxy.live.OpenExchanges`)."""

    def all(self) -> list[Any]: ...


def _websockets(exchanges: Exchanges | None) -> list[Any]:
    """Open exchanges that end only when closed (WebSockets): they have ``drain_close``."""
    if exchanges is None:
        return []
    return [e for e in exchanges.all() if hasattr(e, "drain_close")]


def _idle(channel: StrictChannel) -> bool:
    """No request on it, not even the start of one."""
    return not channel.requests and channel.transport is not None


def _close_all(items: Iterable[Any], how: Callable[[Any], None]) -> None:
    for item in list(items):
        try:
            how(item)
        except Exception:  # noqa: BLE001 - one bad connection must not stop the drain
            _log.failure("closing a connection during the drain")


async def drain(connections: Connections, exchanges: Exchanges | None, reactor: Any,
                timeout: float, grace: float | None = None) -> int:
    """Drain the site (see the module docstring); returns how many connections were
    aborted at the deadline.  Call it once the listeners have stopped."""
    if timeout <= 0:
        return 0
    connections.draining = True
    started = time.monotonic()
    sockets = _websockets(exchanges)
    _log.info("draining: {conns} connections open, {reqs} requests in flight, {ws} "
              "websockets and {streams} streams to close; at most {t:g} s",
              conns=len(connections.channels), reqs=connections.in_flight(),
              ws=len(sockets), streams=len(connections.streams), t=timeout)
    for channel in list(connections.channels):
        if channel.requests:  # a response on its way: the connection ends after it
            channel.persistent = False
    _close_all(sockets, lambda e: e.drain_close())
    _close_all(connections.streams.values(), lambda end: end())
    connections.streams.clear()
    deadline = started + timeout
    grace_over = started + min(IDLE_GRACE if grace is None else grace, timeout)
    idle_closed = False
    while True:
        now = time.monotonic()
        if not idle_closed and now >= grace_over:
            idle_closed = True
            # Nothing to send on them: close at once.  (A TLS loseConnection would wait
            # for the client's close_notify, which an idle pooled client never sends.)
            _close_all([c for c in connections.channels if _idle(c)],
                       lambda c: c.transport.abortConnection())
        # WebSockets whose handshake was in flight when the drain began.
        _close_all(_websockets(exchanges), lambda e: e.drain_close())
        if not connections.channels and not _websockets(exchanges):
            break  # nothing left open (idle connections too): no need to wait for the grace
        if now >= deadline:
            break
        await deferLater(reactor, POLL, lambda: None)
    left = list(connections.channels)
    stuck = _websockets(exchanges)
    _close_all(left, lambda c: c.transport.abortConnection() if c.transport else None)
    _close_all(stuck, lambda e: e.revoke())
    aborted = len(left) + len(stuck)
    _log.info("drain done in {s:.2f} s: {aborted} connections aborted",
              s=time.monotonic() - started, aborted=aborted)
    return aborted

