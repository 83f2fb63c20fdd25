"""The one web site: hub pages under ``/hub/``, user traffic to the proxy.

twisted.web reads a whole request body (into memory or a temporary file) before it
looks at the request.  That is fine for hub forms, so hub bodies are capped, and
wrong for notebooks and uploads going to a user's server.  :class:`SiteRequest`
therefore decides at ``gotLength`` time — headers in, no body byte read yet — whether
the gate claims the request; if it does, the proxy starts right there and the body
streams through a :class:`~ipydoc.proxy.body.BodyStream` instead of being spooled.

This relies on the order in which ``HTTPChannel`` calls its request (checked against
Twisted 26.10, pinned in setup.py): ``gotLength`` once the headers are in, body chunks
then to ``handleContentChunk``, ``requestReceived`` after the last one.  The request line
is not known to the request before ``requestReceived``: the strict channel keeps it
(:attr:`~ipydoc.edge.request_rules.StrictChannel.request_line`).  Only HTTP/1.1 channels
are used (no h2), so these hold.

The access log is the site's own (:mod:`ipydoc.edge.access_log`), written through the
public ``log(request)`` hook, not through ``HTTPFactory``'s log file.

That is the ``twisted`` front end.  With ``proxy.front_end = "lean"`` (the default) every
connection starts on :class:`~ipydoc.edge.lean_channel.LeanChannel`, which serves plain
user traffic itself (no ``Request`` per proxied request) and hands the connection to
this site's strict channel (:meth:`ProxySite.twisted_channel`) at the first request it
does not serve: hub pages, WebSocket handshakes, anything unusual (docs/front_end.md).

Behind a TLS-terminating proxy the request's client address and ``isSecure`` are what
the site's :class:`~ipydoc.edge.forwarding.Forwarding` rules make of the peer,
``server.public_url`` and a trusted proxy's ``X-Forwarded-*`` (set in ``gotLength``,
before anything reads them).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger
from twisted.web import http, pages, server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.util import Redirect

from ipydoc.edge import access_log
from ipydoc.edge.drain import Connections, DrainingChannel
from ipydoc.edge.forwarding import Forwarding
from ipydoc.edge.hsts import with_hsts
from ipydoc.edge.lean_channel import LeanChannel
from ipydoc.edge.lean_timers import LeanClock
from ipydoc.edge.limits import RequestLimits
from ipydoc.edge.refusals import RefusalLog, client_address
from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.gate import Gate
from ipydoc.proxy.handler import Proxy
from ipydoc.proxy.replies import SERVER

#: The front ends (``proxy.front_end``): :mod:`ipydoc.edge.lean_channel` or twisted.web.
FRONT_ENDS = ("lean", "twisted")
#: Largest request body the hub (not the proxy) accepts.
HUB_BODY_LIMIT = 1024 * 1024


class SiteRequest(server.Request):
    """A request that is routed (proxy or hub) as soon as its headers are in."""

    _log = Logger()
    _proxied = False
    _rejected = False
    _body_done = False
    _finish_pending = False
    _hub_bytes = 0
    #: https as the browser sees it (public_url, a trusted proxy): ipydoc.edge.forwarding.
    forwarded_https = False

    def isSecure(self) -> bool:
        return self.forwarded_https or super().isSecure()

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        """twisted.web names itself and its version in ``Server`` on every hub page;
        say only ``ipydoc`` (a user's server's own ``Server`` passes through elsewhere)."""
        if (name if isinstance(name, bytes) else name.encode()).lower() == b"server":
            value = SERVER
        super().setHeader(name, value)

    def gotLength(self, length: int | None) -> None:
        self._read_request_line()
        site: ProxySite = self.channel.site
        site.forwarding.apply(self)  # the real client and scheme, before anyone asks
        try:
            claimed = site.gate.claims(self)
        except Exception:
            self._log.failure("gate.claims failed")
            claimed = False
        if claimed:
            self._proxied = True
            # Answer "Expect: 100-continue" ourselves, once the backend wants the body:
            # twisted.web would send it right away, even after a refusal.
            expect = self.requestHeaders.getRawHeaders(b"expect") or [b""]
            self.requestHeaders.removeHeader(b"expect")
            on_start = self._send_continue if expect[0].lower() == b"100-continue" else None
            # The strict channel's reader: time the proxy holds the client back is not
            # counted against it as a slow body (ipydoc.edge.request_rules).
            client = getattr(self.channel, "reader", None) or self.channel.transport
            self.content = BodyStream(client, length, self._hang_up, on_start)
            site.proxy.handle(self)
        elif length is not None and length > site.hub_body_limit:
            super().gotLength(0)
            self.requestHeaders.removeHeader(b"expect")
            self._too_large()
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            return
        if not self._proxied:
            self._hub_bytes += len(data)
            if self._hub_bytes > self.channel.site.hub_body_limit:
                self._too_large()
                return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        if not self._proxied:
            return super().requestReceived(command, path, version)
        self._body_done = True
        self.content.finish()
        if self._finish_pending:
            self.finish()

    def end_response(self) -> None:
        """Finish the response now, or once the client's body is fully in.

        ``HTTPChannel`` cannot finish a request while it is still parsing its body,
        and the backend (or gate) may answer before the upload is over.
        """
        if self.finished or self.channel is None:  # (None: the connection is gone)
            return
        if self._body_done:
            self.finish()
        else:
            self._finish_pending = True

    #: Called once if the client goes away before the response is finished (the proxy
    #: aborts the backend side); cheaper than a ``notifyFinish`` Deferred per request.
    on_gone: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        if not self.startedWriting and self.channel is not None \
                and self.channel.site.connections.draining:
            # The daemon is stopping (ipydoc.edge.drain): this answer is the connection's last.
            self.responseHeaders.setRawHeaders(b"connection", [b"close"])
            self.channel.persistent = False
        super().write(data)
        if not data:  # "send the head now" (a stream about to start): do not hold it
            flush = getattr(self.channel, "flush_head", None)
            if flush is not None:
                flush()

    def when_draining(self, end: Callable[[], None]) -> Callable[[], None]:
        """A long stream (server-sent events) says how to end itself early when the daemon
        stops, so that its client reconnects to the next process; returns how to forget it."""
        connections: Connections = self.channel.site.connections
        if connections.draining:
            end()
            return lambda: None
        connections.streams[self] = end

        def forget() -> None:
            connections.streams.pop(self, None)
        return forget

    def connectionLost(self, reason: Any) -> None:
        # Disconnected first: the body's failure resumes the forwarder synchronously,
        # and it must see a gone client (no error reply, no traceback), not a bad backend.
        super().connectionLost(reason)
        gone, self.on_gone = self.on_gone, None
        if gone is not None and not self.finished:
            gone()
        if self._proxied and not self._body_done:
            self.content.fail(reason)

    def _read_request_line(self) -> None:
        """What ``requestReceived`` would set, set early so the gate can read it."""
        channel = self.channel
        self.method, self.uri, self.clientproto = channel.request_line
        self.path, _, query = self.uri.partition(b"?")
        # Twisted's bytes parser, as Request.requestReceived uses: urllib's fails on a
        # percent-encoded non-ASCII value (?path=%C3%A9) and the connection dropped.
        self.args = http.parse_qs(query, 1) if query else {}
        self.site = channel.site

    def _send_continue(self) -> None:
        if not self.startedWriting and self.channel is not None and self.clientproto == b"HTTP/1.1":
            self.channel.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _hang_up(self) -> None:
        """An unwanted body goes on and on: stop reading it, close the connection."""
        if self.channel is None:  # the connection is gone
            return
        if self._finish_pending and self.chunked:
            self.channel.write(b"0\r\n\r\n")  # the response itself was complete
        self.channel.persistent = False
        self.loseConnection()

    def _too_large(self) -> None:
        self._rejected = True
        refusals = getattr(self.channel, "refusals", None)
        if refusals is not None:
            client = client_address(self.channel)
            real = self.getClientAddress()  # behind a trusted proxy: the forwarded client
            if getattr(real, "port", None) == 0:
                client = f"{real.host} (via {client})"
            refusals.refused(client, 413,
                             f"hub request body over {self.channel.site.hub_body_limit} bytes")
        body = b"Request body too large.\n"
        self.setResponseCode(413)
        self.responseHeaders.setRawHeaders(b"content-type", [b"text/plain; charset=utf-8"])
        self.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(body)])
        self.responseHeaders.setRawHeaders(b"connection", [b"close"])
        self.write(body)
        self.channel.persistent = False
        self.loseConnection()


class ProxySite(server.Site):
    """A ``Site`` whose requests go to the proxy when the gate claims them."""

    requestFactory = SiteRequest
    #: Trusted proxies and the public scheme (ipydoc.edge.forwarding); none by default.
    forwarding = Forwarding()

    def __init__(
        self, resource: IResource, gate: Gate, proxy: Proxy, *, reactor: Any,
        hub_body_limit: int = HUB_BODY_LIMIT,
        limits: RequestLimits | None = None,
        access: str = "daemon",
        front_end: str = "lean",
    ) -> None:
        if front_end not in FRONT_ENDS:
            raise ValueError(f"front_end must be one of {FRONT_ENDS}, not {front_end!r}")
        limits = limits or RequestLimits()
        super().__init__(resource, reactor=reactor, timeout=limits.idle_timeout)
        #: "daemon", "off", or a file (absolute, as twisted.web makes a ``logPath``).
        self._access = access if access in ("daemon", "off") else os.path.abspath(access)
        self._access_log: access_log.BatchedLog | None = None
        self._stamp = ""  # the log's time of now, refreshed every second (not per request)
        self._stamp_call: Any = None
        #: Every refused request is logged here, rate-limited (ipydoc.edge.refusals).
        self.refusals = RefusalLog(reactor)
        #: Open connections, for the drain on stop (ipydoc.edge.drain).
        self.connections = Connections()

        def channel() -> DrainingChannel:  # strict parsing, caps, timeouts; tracked
            return DrainingChannel(limits, self.refusals)

        def lean() -> LeanChannel:  # proxied requests without twisted.web (edge.lean_channel)
            return LeanChannel(limits, self.refusals)
        self._strict_channel = channel
        #: Which front end reads requests first: "lean" or "twisted" (proxy.front_end).
        self.front_end = front_end
        self.protocol = lean if front_end == "lean" else channel
        #: The lean channels' timeouts (one sweep, no timer per request).
        self.lean_clock = LeanClock(reactor, limits)
        self.gate = gate
        self.proxy = proxy
        self.hub_body_limit = hub_body_limit

    #: ``Strict-Transport-Security`` for responses over TLS (None: none); :meth:`use_hsts`.
    hsts: bytes | None = None

    def use_hsts(self, value: bytes) -> None:
        """Send HSTS ``value`` on every response over TLS, from either front end."""
        self.hsts = value
        self.requestFactory = with_hsts(self.requestFactory, value)

    def twisted_channel(self) -> DrainingChannel:
        """A strict twisted.web channel of this site, as ``buildProtocol`` makes one (the
        lean front end hands it the connections it does not serve)."""
        channel = self._strict_channel()
        channel.factory = self
        channel.callLater = self.reactor.callLater
        channel.timeOut = self.timeOut
        channel.requestFactory = self.requestFactory
        channel.site = self
        return channel

    def acceptableProtocols(self) -> list[bytes]:
        """HTTP/1.1 only: the streaming request relies on ``HTTPChannel``."""
        return [b"http/1.1"]

    def stopFactory(self) -> None:
        if self.connections.draining and self.connections.channels:
            # Not listening, still draining (ipydoc.edge.drain): log its last requests too.
            if self._access_log is not None:
                self._access_log.flush()
            self.connections.when_empty(self.stopFactory)
            return
        self.refusals.stop()  # what is still counted goes to the log
        self.lean_clock.stop()
        if self._stamp_call is not None and self._stamp_call.active():
            self._stamp_call.cancel()
        self._stamp_call = None
        if self._access_log is not None:
            self._access_log.close()  # what is still batched goes out
            self._access_log = None
        super().stopFactory()

    def startFactory(self) -> None:
        """The access log goes out in batches (:class:`~ipydoc.edge.access_log.BatchedLog`),
        with one-time codes and tokens in URLs masked; ``"off"`` keeps none (a line per
        request is not free: ~10% of the proxy's CPU for a small request)."""
        super().startFactory()
        if self._access != "off" and self._access_log is None:
            path = None if self._access == "daemon" else self._access
            self._access_log = access_log.open_batched(self.reactor, path)
            self._refresh_stamp()

    def log(self, request: IRequest) -> None:
        if self._access_log is not None:
            self._access_log.add(self._stamp, request)

    def _refresh_stamp(self) -> None:
        """The log's time of now, as twisted.web writes it, once a second."""
        self._stamp = http.datetimeToLogString(self.reactor.seconds())
        self._stamp_call = self.reactor.callLater(1, self._refresh_stamp)


class _Root(Resource):
    def getChild(self, path: bytes, request: IRequest) -> IResource:
        return pages.notFound()


def make_root(hub_resource: IResource) -> Resource:
    """``/hub/...`` to the hub, ``/`` redirected to ``/hub/``, anything else 404."""
    root = _Root()
    root.putChild(b"hub", hub_resource)
    root.putChild(b"", Redirect(b"/hub/"))
    return root


def make_site(
    hub_resource: IResource,
    gate: Gate,
    reactor: Any,
    *,
    pool_size: int = 64,
    connect_timeout: float = 10.0,
    head_timeout: float = 300.0,
    hub_body_limit: int = HUB_BODY_LIMIT,
    limits: RequestLimits | None = None,
    access_log: str = "daemon",
    forwarding: Forwarding | None = None,
    front_end: str = "lean",
) -> ProxySite:
    """The site to listen with; call ``site.proxy.close()`` on shutdown."""
    proxy = Proxy(
        gate, reactor, pool_size=pool_size,
        connect_timeout=connect_timeout, head_timeout=head_timeout,
    )
    site = ProxySite(
        make_root(hub_resource), gate, proxy, reactor=reactor, hub_body_limit=hub_body_limit,
        limits=limits, access=access_log, front_end=front_end,
    )
    if forwarding is not None:
        site.forwarding = forwarding
    return site
