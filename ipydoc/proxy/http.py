"""Plain HTTP to a user's server: streamed both ways, over pooled connections.

``twisted.web.client.Agent`` with a persistent ``HTTPConnectionPool`` keeps backend
connections warm.  The request body is a :class:`~ipydoc.proxy.body.BodyStream`
(the client is paused when the backend is slow); the response body is pushed to the
client with the backend connection registered as the client's producer (the backend
is paused when the client is slow).  When the client leaves, the backend request is
cancelled or its connection stopped, so nothing keeps running for nobody.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IRequest, IResponse

from ipydoc.httppool import quiet_pool
from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.gate import Forward, Gate
from ipydoc.proxy.headers import backend_request_headers, strip_hop_by_hop
from ipydoc.proxy.replies import error_reply, write_reply
from ipydoc.proxy.scrub import Scrubber, is_textual

_TIMEOUTS = (error.TimeoutError, error.TCPTimedOutError)
_NO_BODY = (204, 304)


#: Largest response body the gate may ask to see (a contents-API model, not a file).
CAPTURE_LIMIT = 64 * 1024


class HttpForwarder:
    """Forwards one request at a time to ``Forward.target`` and relays the answer."""

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        gate: Gate,
        *,
        pool_size: int,
        connect_timeout: float,
        head_timeout: float,
    ) -> None:
        self._reactor = reactor
        self._gate = gate
        self._head_timeout = head_timeout
        self._pool = quiet_pool(reactor, persistent=True, per_host=pool_size)
        self._pool.cachedConnectionTimeout = 120
        self._agent = Agent(reactor, connectTimeout=connect_timeout, pool=self._pool)

    def close(self) -> Deferred[None]:
        """Close idle backend connections (on shutdown)."""
        return self._pool.closeCachedConnections()

    async def forward(self, request: IRequest, fwd: Forward) -> None:
        body: BodyStream = request.content
        url = fwd.target.encode("ascii") + request.uri
        headers = backend_request_headers(request, fwd.token)
        try:
            pending = self._agent.request(
                request.method, url, headers, body if body.has_body else None
            )
        except ValueError:  # a method or URI the client library refuses to send
            body.discard()
            write_reply(request, error_reply(request, 400))
            return
        self._gate.saw_traffic(fwd.user)

        state = _Exchange(pending)
        request.notifyFinish().addErrback(lambda _: state.abort())
        body.received.addCallback(
            lambda _: state.start_timer(self._reactor, self._head_timeout)
        )
        try:
            response: IResponse = await pending
        except Exception as e:
            state.stop_timer()
            if getattr(request, "_disconnected", False):
                return
            code = 504 if state.timed_out or _is_timeout(e) else 502
            if not isinstance(e, (error.ConnectError, CancelledError)) and not _is_timeout(e):
                self._log.failure("forwarding to {user}'s server", user=fwd.user)
            self._log.info(
                "backend {code} for {user} {method} {path}: {why}",
                code=code, user=fwd.user, method=request.method.decode("latin-1"),
                path=request.path.decode("latin-1"), why=_why(e),
            )
            body.discard()
            write_reply(request, error_reply(request, code))
            return
        state.stop_timer()
        self._gate.saw_response(fwd.user, request.method, request.path, response.code)
        wants_body = getattr(self._gate, "wants_body", None)
        keep = CAPTURE_LIMIT if wants_body and wants_body(
            fwd.user, request.method, request.path, response.code) else 0
        body = await self._relay(request, response, state, fwd.token.encode(), keep)
        if keep:
            self._gate.saw_body(fwd.user, request.method, request.path, response.code, body)

    async def _relay(self, request: IRequest, response: IResponse, state: _Exchange,
                     token: bytes, keep: int = 0) -> bytes | None:
        """Stream the response to the client; with ``keep``, also return its first
        ``keep`` bytes (None if the body was longer or broke off)."""
        request.defaultContentType = None  # never invent a Content-Type
        request.setResponseCode(response.code, response.phrase)
        out = strip_hop_by_hop(response.headers, _connection_header(response))
        for name, values in out.getAllRawHeaders():
            request.responseHeaders.setRawHeaders(name, list(values))
        scrubber = None
        if token and is_textual(response.headers.getRawHeaders(b"content-type", [None])[0]):
            scrubber = Scrubber(token)  # the body may shrink: no Content-Length
            request.responseHeaders.removeHeader(b"content-length")
        elif (
            response.length is not UNKNOWN_LENGTH
            and request.method != b"HEAD"
            and response.code not in _NO_BODY
        ):
            request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % response.length])

        done: Deferred[None] = Deferred()
        relay = _Relay(request, done, scrubber, keep)
        response.deliverBody(relay)
        state.abort = relay.stop
        await done
        reason = relay.reason
        if getattr(request, "_disconnected", False):
            return None
        if reason.check(ResponseDone, PotentialDataLoss):
            request.end_response()
            return relay.kept
        # Headers are out; a short close is the only honest way to say "broken".
        self._log.info("backend response broke off: {why}", why=_why(reason.value))
        request.loseConnection()
        return None


class _Exchange:
    """The moving parts of one forwarded request that a client disconnect must stop."""

    def __init__(self, pending: Deferred[IResponse]) -> None:
        self.abort = pending.cancel
        self.timed_out = False
        self._pending = pending
        self._timer: Any = None

    def start_timer(self, reactor: Any, seconds: float) -> None:
        """The body is in: the backend now has ``seconds`` to start answering."""
        if not self._pending.called:
            self._timer = reactor.callLater(seconds, self._expire)

    def stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()

    def _expire(self) -> None:
        self.timed_out = True
        self._pending.cancel()


class _Relay(Protocol):
    """Response body to client; the backend transport is the client's producer."""

    def __init__(self, request: IRequest, done: Deferred[None],
                 scrubber: Scrubber | None = None, keep: int = 0) -> None:
        self._request = request
        self._done = done
        self._scrubber = scrubber
        self._keep = keep
        #: The body as sent, when ``keep`` > 0 and it fitted; else None.
        self.kept: bytes | None = b"" if keep else None
        self._registered = False
        self.reason: Failure = Failure(ResponseDone())

    def connectionMade(self) -> None:
        if not getattr(self._request, "_disconnected", False):
            self._request.registerProducer(self.transport, True)
            self._registered = True

    def dataReceived(self, data: bytes) -> None:
        if self.kept is not None:
            self.kept = self.kept + data if len(self.kept) + len(data) <= self._keep else None
        if self._scrubber is not None:
            data = self._scrubber.feed(data)
        if data:
            self._request.write(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if self._scrubber is not None and not getattr(self._request, "_disconnected", False):
            rest = self._scrubber.flush()
            if rest:
                self._request.write(rest)
        if self._registered and not getattr(self._request, "_disconnected", False):
            self._request.unregisterProducer()
        self._registered = False
        self.reason = reason
        self._done.callback(None)

    def stop(self) -> None:
        """The client left: drop the backend connection (never reused)."""
        if self.transport is not None:
            self.transport.stopProducing()


def _connection_header(response: IResponse) -> list[bytes]:
    """The backend's ``Connection:`` values, which Twisted's parser keeps apart.

    Best effort through private attributes of ``twisted.web._newclient``: used only
    to drop headers the backend named as hop-by-hop.
    """
    try:
        proto = response._transport._producer.protocol  # type: ignore[attr-defined]
        proto = getattr(proto, "_wrappedProtocol", proto)
        return list(proto._parser.connHeaders.getRawHeaders(b"connection") or ())
    except AttributeError:
        return []


def _is_timeout(e: BaseException) -> bool:
    if isinstance(e, _TIMEOUTS):
        return True
    reasons = getattr(e, "reasons", None) or ()
    return any(isinstance(r, Failure) and r.check(*_TIMEOUTS) for r in reasons)


def _why(e: BaseException) -> str:
    """A one-line cause, without headers or bodies (they may hold secrets)."""
    reasons = getattr(e, "reasons", None)
    if reasons:
        return ", ".join(type(r.value).__name__ for r in reasons if isinstance(r, Failure))
    if isinstance(e, CancelledError):
        return "cancelled"
    return type(e).__name__
