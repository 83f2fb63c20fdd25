"""The lean HTTP/1.1 front end: proxied requests without twisted.web's server side.

With ``proxy.front_end = "lean"`` every connection of the public site starts on a
:class:`LeanChannel`.  It reads each request head itself (:mod:`ipydoc.edge.lean_head`)
and serves the plain case of user traffic — a head every strict rule accepts, framed by
``Content-Length`` (or bodiless), no ``Expect``, no ``Upgrade``, claimed by the gate — with
a :class:`~ipydoc.edge.lean_request.LeanRequest` handed to the same proxy
(:class:`ipydoc.proxy.handler.Proxy`) the twisted.web site uses.  Anything else (a hub
page, a WebSocket handshake, a chunked upload, every malformed or over-long head) makes
it hand the connection, at that request boundary and with the bytes not yet consumed, to
the site's strict twisted.web channel (:class:`~ipydoc.edge.drain.DrainingChannel`),
which serves or refuses it exactly as with ``front_end = "twisted"`` and keeps the
connection from then on.  So a connection may carry user requests and then hub requests;
one that starts with a hub request is twisted.web's at once.

Kept from the strict channel: one request at a time (pipelined heads wait, reading
pauses once they pile up), the request body streamed with backpressure through a
:class:`~ipydoc.proxy.body.BodyStream`, the response head held and sent with the first
body bytes in one ``send``, TCP_NODELAY, ``Connection: close`` handling, the drain
(:mod:`ipydoc.edge.drain` sees a lean connection like any other: ``requests``,
``persistent``, ``transport``), the four timeouts (head and body → 408 with the same
answer and refusal-log line, idle → close, send → abort; :mod:`ipydoc.edge.lean_timers`).
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure

from ipydoc.edge.lean_head import HAND_OVER, INCOMPLETE, Head, read_head
from ipydoc.edge.lean_request import LeanRequest
from ipydoc.edge.limits import RequestLimits
from ipydoc.edge.refusals import client_address
from ipydoc.edge.request_rules import REASONS
from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.sendnow import send_now

#: Pipelined bytes held while a request is served before reading pauses.
PIPELINE_HOLD = 64 * 1024
#: After an idle timeout's close, how long a TLS close may take before an abort.
ABORT_AFTER = 15.0


class LeanChannel(Protocol):
    """One client connection on the lean front end (see the module docstring)."""

    _log = Logger()
    site: Any  # the ProxySite (set by its buildProtocol)
    persistent = True
    _delegate: Any = None
    _request: LeanRequest | None = None
    _body_left = 0
    _pending_head = b""
    _producer: Any = None
    _refused = False
    _closing = False
    _body_paused = False
    _pipe_paused = False
    _reading_paused = False
    _next_call: Any = None
    _in_next = False
    _last_head: Head | None = None  # the previous request's, for read_head to reuse
    # when the current state began (time.monotonic), for LeanClock: a head partly in,
    # the last body bytes, waiting for the client to read, idle between requests.
    _head_began: float | None = None
    _body_seen: float | None = None
    _send_paused: float | None = None
    _idle_since: float | None = None

    def __init__(self, limits: RequestLimits, refusals: Any) -> None:
        self.limits = limits
        self.refusals = refusals
        self.requests: list[LeanRequest] = []
        self._buffer = bytearray()
        self.host: Any = None
        self._peer: Any = None
        self._secure = False
        self._reader: _Reader | None = _Reader(self)

    # -- the connection ---------------------------------------------------------------

    def connectionMade(self) -> None:
        site = self.site
        site.connections.opened(self)
        transport = self.transport
        tcp = transport
        if isinstance(tcp, ProtocolWrapper) and tcp.transport is not None:
            tcp = tcp.transport  # TLS: the TCP connection underneath
        try:
            tcp.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (a unix socket)
        self.host = transport.getHost()
        self._peer = transport.getPeer()
        self._secure = ISSLTransport.providedBy(transport)
        transport.registerProducer(self, True)
        self._idle_since = time.monotonic()
        site.lean_clock.add(self)

    def connectionLost(self, reason: Any) -> None:
        self._reader = None  # it points back here: no cycle left for the collector
        if self._delegate is not None:
            self._delegate.connectionLost(reason)
            return
        self.site.lean_clock.forget(self)
        self.site.connections.closed(self)
        if self._next_call is not None and self._next_call.active():
            self._next_call.cancel()
        requests, self.requests = self.requests, []
        for request in requests:
            request.connection_lost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._delegate is not None:
            self._delegate.dataReceived(data)
            return
        if self._refused:
            return
        if self._body_left:
            take = data[:self._body_left] if len(data) > self._body_left else data
            rest = data[len(take):]
            self._body_left -= len(take)
            self._body_seen = time.monotonic()
            request = self._request
            assert request is not None
            request.content.write(take)
            if not self._body_left:
                self._body_seen = None
                request.body_done()
            if not rest:
                return
            data = rest
        self._buffer += data
        if self._request is None and self._next_call is None:
            if self._in_next:  # a request answered at once, inside _next: not deeper
                self._next_call = self.site.reactor.callLater(0, self._next)
            else:
                self._next()
        else:
            self._check_pipeline()

    def _check_pipeline(self) -> None:
        """Stop reading while pipelined bytes pile up behind a request being served."""
        want = (self._request is not None and not self._body_left
                and len(self._buffer) > PIPELINE_HOLD)
        if want != self._pipe_paused:
            self._pipe_paused = want
            self._update_reading()

    # -- requests ---------------------------------------------------------------------

    def _next(self) -> None:
        """Start the request whose head is at the start of the buffer, if it is in."""
        self._next_call = None
        if self._request is not None or self._refused or self.transport is None \
                or self._closing or not self._buffer:
            return
        limits = self.limits
        head = read_head(self._buffer, limits.max_header_size, limits.max_headers,
                         self._last_head)
        if head is INCOMPLETE:
            if self._head_began is None:
                self._head_began = time.monotonic()
            return
        if head is HAND_OVER:
            self._hand_over()
            return
        assert not isinstance(head, str)
        site = self.site
        request = LeanRequest(self, head.method, head.uri, head.headers, self._peer,
                              self._secure)
        if site.forwarding.applies:
            site.forwarding.apply(request)  # the real client and scheme, before anyone asks
        try:
            claimed = site.gate.claims(request)
        except Exception:
            self._log.failure("gate.claims failed")
            claimed = False
        if not claimed:
            self._hand_over()
            return
        del self._buffer[:head.size]
        self._last_head = head
        self._head_began = self._idle_since = None
        self._request = request
        self.requests.append(request)
        if head.close:
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            self.persistent = False
        request.content = BodyStream(self._reader, head.length, request.hang_up)
        self._body_left = head.length
        if not head.length:
            # Bodiless: the body is complete (``done``) before the gate is asked, so nothing
            # pauses (and at once resumes) the client's reading for it: no epoll_ctl pair.
            request.body_in = True
            site.proxy.handle(request)
        else:
            self._body_seen = time.monotonic()
            site.proxy.handle(request)
            if self._buffer and self._request is request:
                data, self._buffer = bytes(self._buffer), bytearray()
                self._in_next = True
                try:
                    self.dataReceived(data)  # body bytes that came with the head
                finally:
                    self._in_next = False
        if self._pipe_paused or len(self._buffer) > PIPELINE_HOLD:  # (else nothing to do)
            self._check_pipeline()

    def request_done(self, request: LeanRequest) -> None:
        """``request``'s response is complete (and its body was read)."""
        if request is not self._request:
            return
        self._request = None
        self.requests = []
        self._producer = None
        if not self.persistent or self.site.connections.draining:
            self.close()
            return
        self._idle_since = time.monotonic()
        if self._pipe_paused:  # no request now: reading goes on
            self._check_pipeline()
        if self._buffer:  # a pipelined request: next turn, not deeper in this stack
            self._next_call = self.site.reactor.callLater(0, self._next)

    def _hand_over(self) -> None:
        """From here on, twisted.web's strict channel serves this connection."""
        site = self.site
        site.lean_clock.forget(self)
        transport = self.transport
        transport.unregisterProducer()
        delegate = site.twisted_channel()
        self._delegate = delegate
        delegate.makeConnection(transport)  # it joins the site's connections ...
        site.connections.closed(self)       # ... before this one leaves them
        if self._reading_paused:
            self._reading_paused = self._body_paused = self._pipe_paused = False
            transport.resumeProducing()
        data, self._buffer = bytes(self._buffer), bytearray()
        if data:
            delegate.dataReceived(data)

    # -- writing ----------------------------------------------------------------------

    def hold_head(self, head: bytes) -> None:
        self._pending_head = head

    def send(self, data: bytes, last: bool = False) -> None:
        """``data`` (after a held head, if any) to the client, in one send."""
        head, self._pending_head = self._pending_head, b""
        if head:
            data = head + data
        if data and self.transport is not None:
            send_now(self.transport, data)

    def close(self) -> None:
        self.send(b"")
        self._closing = True
        if self.transport is not None:
            self.transport.loseConnection()

    def register_producer(self, producer: Any) -> None:
        """The backend connection a streaming answer comes from (None: no more)."""
        self._producer = producer
        if producer is not None and self._send_paused is not None:
            producer.pauseProducing()

    # the transport's producer: our send buffer is full (pause) or drained (resume)
    def pauseProducing(self) -> None:
        if self._send_paused is None:
            self._send_paused = time.monotonic()
        if self._producer is not None:
            self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self._send_paused = None
        if self._producer is not None:
            self._producer.resumeProducing()

    def stopProducing(self) -> None:
        pass  # the transport is going away: connectionLost follows

    # -- reading (BodyStream pauses us for backpressure) --------------------------------

    def _body_pause(self, paused: bool) -> None:
        self._body_paused = paused
        if paused:
            self._body_seen = None  # held back on purpose: not a slow client
        elif self._body_left:
            self._body_seen = time.monotonic()
        self._update_reading()

    def _update_reading(self) -> None:
        want = self._body_paused or self._pipe_paused
        if want == self._reading_paused or self.transport is None:
            return
        self._reading_paused = want
        if want:
            self.transport.pauseProducing()
        else:
            self.transport.resumeProducing()

    # -- timeouts and refusals ------------------------------------------------------------

    def check_deadlines(self, now: float) -> None:
        limits = self.limits
        if self._delegate is not None or self.transport is None or self._refused:
            return
        if self._head_began is not None and now - self._head_began >= limits.header_timeout:
            self.refuse(408, "The request head took too long to arrive.",
                        why=f"request head not complete in {limits.header_timeout:g} s")
        elif self._body_seen is not None and now - self._body_seen >= limits.body_timeout:
            self.refuse(408, "The request body stopped arriving.",
                        why=f"request body stalled for {limits.body_timeout:g} s")
        elif self._send_paused is not None and now - self._send_paused >= limits.send_timeout:
            self._log.info("client {peer} read nothing for {s}s: disconnecting",
                           peer=str(self._peer), s=limits.send_timeout)
            self.transport.abortConnection()
        elif (self._idle_since is not None and self._request is None and not self._buffer
              and now - self._idle_since >= limits.idle_timeout):
            self._idle_since = None
            self._log.info("Timing out client: {peer}", peer=str(self._peer))
            self.close()
            self.site.reactor.callLater(ABORT_AFTER, self._abort)

    def _abort(self) -> None:
        if self.transport is not None and self.connected:
            self.transport.abortConnection()

    def refuse(self, code: int, message: str, why: str | None = None) -> None:
        """As :meth:`ipydoc.edge.request_rules.StrictChannel.refuse`."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        if self.refusals is not None:
            self.refusals.refused(client_address(self), code, why or message)
        self._head_began = self._body_seen = None
        self.persistent = False
        request = self._request
        if request is None or not (request.startedWriting or request.finished):
            body = message.encode() + b"\n"
            self._pending_head = b""
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n"
                b"\r\n%s" % (code, REASONS.get(code, b"Error"), len(body), body))
        self.close()
        pending, self.requests = self.requests, []
        self._request = None
        for r in pending:
            r.connection_lost(Failure(ConnectionLost(f"request refused: {message}")))


class _Reader:
    """The client side as the request's :class:`BodyStream` pauses it (backpressure)."""

    __slots__ = ("_channel",)

    def __init__(self, channel: LeanChannel) -> None:
        self._channel = channel

    def pauseProducing(self) -> None:
        self._channel._body_pause(True)

    def resumeProducing(self) -> None:
        self._channel._body_pause(False)

    def stopProducing(self) -> None:
        if self._channel.transport is not None:
            self._channel.transport.stopProducing()
