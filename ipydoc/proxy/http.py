"""Plain HTTP to a user's server: streamed both ways, over pooled connections.

The hop uses :mod:`ipydoc.proxy.backend` (keep-alive connections per server, a strict
response parser) rather than ``twisted.web.client.Agent``, which spent more CPU per
request than everything else in the daemon together.  The request body is a
:class:`~ipydoc.proxy.body.BodyStream` (the client is paused when the backend is slow);
the response body is pushed to the client with the backend connection registered as the
client's producer (the backend is paused when the client is slow).  When the client
leaves, the backend connection is aborted, so nothing keeps running for nobody.

Every exchange is in the gate's registry (:mod:`ipydoc.proxy.live`) while it runs, so a
revoked session or token also cuts a long answer already streaming.  What the server
says is not trusted: :func:`keep_response_header` drops cookies it must not set and
``Service-Worker-Allowed`` in path mode, and the server token is scrubbed from header
values and textual bodies.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

from ipydoc.proxy import metrics
from ipydoc.proxy.answer_head import CHECKED, client_lines, keep_response_header
from ipydoc.proxy.backend import (
    BackendConnection,
    BackendPool,
    BadResponse,
    Exchange,
    ResponseHead,
)
from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.gate import Forward, Gate
from ipydoc.proxy.headers import (
    HOP_BY_HOP,
    FastHeaders,
    add_checked,
    backend_request_lines,
    secure_cookie,
)
from ipydoc.proxy.live import OpenExchanges
from ipydoc.proxy.replies import error_reply, write_reply
from ipydoc.proxy.scrub import Scrubber, is_textual, scrub_whole

_TIMEOUTS = (error.TimeoutError, error.TCPTimedOutError)

#: Largest response body the gate may ask to see (a contents-API model, not a file).
CAPTURE_LIMIT = 64 * 1024
#: Longest a response waits for the gate's record of it (Redis slow or away).
HOLD_LIMIT = 5.0
#: A textual answer up to this size with a known length is scrubbed whole and sent with
#: its (new) ``Content-Length``; longer ones stream, chunked.
SMALL_BODY = 64 * 1024

#: Methods whose request may be sent again when a reused connection turns out closed.
_RETRYABLE = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE"})
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
#: Bytes a request target must not hold (it goes into the request line as is).
_NOT_IN_TARGET = b" \r\n\x00"


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
        exchanges: OpenExchanges | None = None,
    ) -> None:
        self._reactor = reactor
        self._gate = gate
        self._head_timeout = head_timeout
        self._exchanges = exchanges if exchanges is not None else OpenExchanges()
        self._observed: frozenset[bytes] | None = getattr(gate, "observed_methods", None)
        self._pool = BackendPool(reactor, per_target=pool_size, connect_timeout=connect_timeout)
        self._addresses: dict[str, tuple[str, int]] = {}
        # Requests waiting for an answer's head, by deadline: one sweep a second (or a
        # quarter of the timeout) instead of a timer set and cancelled per request.
        self._waiting: dict[_Relay, float] = {}
        self._sweeper: Any = None
        self._sweep_every = min(1.0, head_timeout / 4)

    def waiting(self, relay: _Relay) -> None:
        self._waiting[relay] = self._reactor.seconds() + self._head_timeout
        if self._sweeper is None:
            self._sweeper = self._reactor.callLater(self._sweep_every, self._sweep)

    def answered(self, relay: _Relay) -> None:
        self._waiting.pop(relay, None)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._reactor.seconds()
        for relay, deadline in list(self._waiting.items()):
            if deadline <= now:
                del self._waiting[relay]
                relay.expire()
        if self._waiting:
            self._sweeper = self._reactor.callLater(self._sweep_every, self._sweep)

    def close(self) -> Deferred[None]:
        """Close backend connections (on shutdown)."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        return self._pool.close()

    def _address(self, target: str) -> tuple[str, int]:
        address = self._addresses.get(target)
        if address is None:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname or not parts.port:
                raise ValueError(f"unsupported server address {target!r}")
            address = self._addresses[target] = (parts.hostname, parts.port)
            if len(self._addresses) > 10_000:
                self._addresses.clear()
        return address

    def forward(self, request: IRequest, fwd: Forward) -> None:
        """Relay ``request``.  Nothing to wait for: the exchange ends on its own (and is
        in the open exchanges until then, for revocation and the drain)."""
        body: BodyStream = request.content
        try:
            host, port = self._address(fwd.target)
            head = request_head(request, fwd.token, body)
        except ValueError:
            body.discard()
            write_reply(request, error_reply(request, 400))
            return
        self._gate.saw_traffic(fwd.user)
        relay = _Relay(self, request, fwd, head, body)
        request.on_gone = relay.client_gone  # SiteRequest calls it if the client leaves
        self._exchanges.add(relay)
        if body.done:  # (most requests) the backend's time to answer starts now
            relay.start_timer()
        else:
            body.when_received(relay.start_timer)
        relay.connect(host, port)


class _Relay(Exchange):
    """One forwarded request: connection, response head, body and the ways it can end."""

    websocket = False
    takes_whole = True
    # Defaults (class attributes: one object per request, built fast).
    _conn: BackendConnection | None = None
    _connecting: Deferred[BackendConnection] | None = None
    _timer = False  # registered with the forwarder's sweep
    _timed_out = False
    _scrubber: Scrubber | None = None
    _small: list[bytes] | None = None
    _token = b""  # the server token, as bytes (set with the answer's head)
    _keep = 0
    _kept: bytes | None = None
    _code = 0
    _registered = False
    _retried = False
    _lost_quietly = False
    _noted: Any = None
    _body_noted = False
    _finished = False

    def __init__(self, fwd_: HttpForwarder, request: IRequest, fwd: Forward, head: bytes,
                 body: BodyStream) -> None:
        self._forwarder = fwd_
        self._request = request
        self._fwd = fwd
        self.user = fwd.user  # for the registry of open exchanges
        self.credential = fwd.credential
        self._head = head
        self._body = body
        self._started = perf_counter()

    # -- connecting and sending ---------------------------------------------------------

    def connect(self, host: str, port: int) -> None:
        pool = self._forwarder._pool
        conn = pool.take(host, port)
        if conn is not None:
            self._send(conn)
            return
        d = pool.connect(host, port)
        self._connecting = d
        d.addCallbacks(self._send, self._connect_failed, errbackArgs=(host, port))

    def _send(self, conn: BackendConnection) -> None:
        self._connecting = None
        if self._finished:  # the client left while we were connecting
            self._forwarder._pool.release(conn)
            return
        self._conn = conn
        body = self._body if self._body.has_body else None
        conn.send(self._head, body, self, no_body_expected=self._request.method == b"HEAD")

    def _connect_failed(self, reason: Failure, host: str, port: int) -> None:
        self._connecting = None
        if self._finished:
            return
        self._error(reason)

    def start_timer(self) -> None:
        """The body is in: the backend now has ``head_timeout`` to start answering."""
        if not self._finished and self._code == 0:
            self._timer = True
            self._forwarder.waiting(self)

    def _stop_timer(self) -> None:
        if self._timer:
            self._timer = False
            self._forwarder.answered(self)

    def expire(self) -> None:
        """No answer within ``head_timeout``: give up with 504."""
        self._timer = False
        self._timed_out = True
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._conn is not None:
            self._conn.abort()

    def revoke(self) -> None:
        """The credential that let this through was revoked: cut both sides now."""
        if self._finished:
            return
        client = getattr(self._request.channel, "transport", None)
        self.client_gone()
        if client is not None:
            client.abortConnection()

    def client_gone(self) -> None:
        """The client disconnected: drop the backend side too."""
        if self._finished:
            return
        self._stop_timer()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._conn is not None:
            self._conn.abort()
        self._end()

    # -- the response -------------------------------------------------------------------

    def head_received(self, head: ResponseHead) -> None:
        self._stop_timer()
        request, fwd, gate = self._request, self._fwd, self._forwarder._gate
        self._code = head.code
        observed = self._forwarder._observed
        if observed is None or request.method in observed:
            self._noted = gate.saw_response(fwd.user, request.method, request.path, head.code)
            wants_body = getattr(gate, "wants_body", None)
            if wants_body and wants_body(fwd.user, request.method, request.path, head.code):
                self._keep = CAPTURE_LIMIT
                self._kept = b""
        if self._scrubs_whole(head, self._client_head(head)):
            self._small = []  # collected whole, scrubbed, sent with its exact length
        if self._conn is not None and self._conn.transport is not None:
            request.registerProducer(self._conn, True)  # it tells the pool if left paused
            self._registered = True

    def _scrubs_whole(self, head: ResponseHead, content_type: bytes | None) -> bool:
        """Whether the body is scrubbed of the token whole (a textual answer of known,
        small length); a longer textual one gets a streaming scrubber and loses its
        ``Content-Length`` (the body may shrink) here."""
        token = self._token
        if not token or not is_textual(content_type):
            return False
        if head.length is not None and head.length <= SMALL_BODY:
            return True
        self._scrubber = Scrubber(token)
        self._request.responseHeaders.removeHeader(b"content-length")
        return False

    def _scrubbed(self, body: bytes) -> bytes:
        """A small body scrubbed whole, with its new length (if the token was in it; else
        the server's ``Content-Length`` stands, framed exact)."""
        if body.find(self._token) != -1:  # (``find``, not ``in``: docs/front_end.md)
            body = scrub_whole(body, self._token)
            self._request.responseHeaders.setRawHeaders(b"content-length",
                                                        [b"%d" % len(body)])
        return body

    def _client_head(self, head: ResponseHead) -> bytes | None:
        """The status and the headers that may reach the client, on the request; returns
        the ``Content-Type``."""
        request, fwd = self._request, self._fwd
        request.defaultContentType = None  # never invent a Content-Type
        request.setResponseCode(head.code, head.phrase)
        named = head.connection
        content_type = None
        token = self._token = fwd.token.encode()
        secure = request.isSecure()
        kept = []
        for (name, value), lower in zip(head.headers, head.lowers):
            if lower in HOP_BY_HOP or lower.startswith(b"proxy-") or lower in named:
                continue  # is_hop_by_hop, inline: this runs for every header of every answer
            if lower == b"content-type":
                content_type = value
            elif lower in CHECKED:
                if not keep_response_header(lower, value, fwd):
                    continue
                if secure and lower == b"set-cookie":
                    value = secure_cookie(value)
            if token and value.find(token) != -1:
                value = value.replace(token, b"")
            kept.append((name, value))
        add_checked(request.responseHeaders, kept)  # parse_head checked them: no CR, LF, NUL
        return content_type

    def whole_response(self, head: ResponseHead, body: bytes) -> None:
        """Head and body in one read (most answers): with a lean request that nobody
        records, answered in one step and one ``send`` (most of those with the client's
        header lines made in one pass, :func:`client_lines`); else as three calls."""
        if self._finished:
            return
        request = self._request
        respond = getattr(request, "respond_whole", None)
        observed = self._forwarder._observed
        if respond is None or observed is None or request.method in observed:
            self.head_received(head)
            if body:
                self.body_received(body)
            self.response_done()
            return
        self._stop_timer()
        self._code = head.code
        token = self._token = self._fwd.token.encode()
        # Else the usual way: the token in the body (scrubbed, a new length), or a body
        # too long to scrub whole (streamed); a whole answer came in one read, so rarely.
        # (``find``, not ``in``: docs/front_end.md, "bytes in bytes")
        if (not token or body.find(token) == -1) and len(body) <= SMALL_BODY:
            lines = client_lines(head, self._fwd, token, request.isSecure())
            if lines is not None and request.respond_lines(
                    head.code, head.phrase, lines, head.length is not None, body):
                self._end()
                return
        if self._scrubs_whole(head, self._client_head(head)):
            body = self._scrubbed(body)
        elif self._scrubber is not None:  # streamed, scrubbed on the way (rare here)
            if body:
                self.body_received(body)
            self._send_rest()
            return
        respond(body)
        self._end()

    def body_received(self, data: bytes) -> None:
        if self._kept is not None:
            self._kept = self._kept + data if len(self._kept) + len(data) <= self._keep else None
        if self._small is not None:
            self._small.append(data)
            return
        if self._scrubber is not None:
            data = self._scrubber.feed(data)
        if data and not self._finished:
            self._request.write(data)

    def response_done(self) -> None:
        """The backend's answer is complete.  If the gate is recording it (a save goes to
        the history queue in Redis), the rest of the answer waits for that record: once
        the browser hears "saved", the version is on its way even if the daemon dies."""
        if self._finished:
            return
        self._unregister()
        if self._noted is None and not self._keep:  # nothing recorded: most answers
            self._send_rest()
            return
        waits = [self._noted] if isinstance(self._noted, Deferred) else []
        if self._keep and self._small is not None:  # the whole answer is still here
            waits.append(self._note_body())
        waits = [d for d in waits if isinstance(d, Deferred) and not d.called]
        if waits:
            _all_or_timeout(waits, self._forwarder._reactor, HOLD_LIMIT).addCallback(
                lambda _: self._send_rest())
            return
        self._send_rest()

    def _send_rest(self) -> None:
        request = self._request
        if self._finished:
            return
        if self._small is not None:
            request.write(self._scrubbed(b"".join(self._small)))  # one write, not chunked
        elif self._scrubber is not None:
            rest = self._scrubber.flush()
            if rest:
                request.write(rest)
        request.end_response()
        self._end()
        if self._keep and not self._body_noted:
            self._note_body()

    def _note_body(self) -> Deferred[None] | None:
        """Hand the gate the answer it asked to see (None if it was too long)."""
        self._body_noted = True
        request, fwd = self._request, self._fwd
        return self._forwarder._gate.saw_body(fwd.user, request.method, request.path,
                                              self._code, self._kept)

    def exchange_failed(self, reason: Failure, head_seen: bool) -> None:
        if self._finished:
            return
        self._unregister()
        conn, self._conn = self._conn, None
        self._lost_quietly = reason.check(BadResponse) is None  # closed, said nothing
        if not head_seen and not self._timed_out and self._may_retry(conn):
            self._retried = True
            host, port = conn.key
            self.connect(host, port)
            return
        if head_seen and self._request.startedWriting:
            # Headers are out; a short close is the only honest way to say "broken".
            self._forwarder._log.info("backend response broke off: {why}", why=_why(reason.value))
            self._request.loseConnection()
            self._end()
            return
        if head_seen:  # a small body being collected: nothing sent yet, answer 502
            self._request.responseHeaders = Headers()
        self._error(reason)

    def _may_retry(self, conn: BackendConnection | None) -> bool:
        """A reused connection the server had closed meanwhile: send once more."""
        return (conn is not None and conn.used > 1 and not self._retried
                and self._lost_quietly
                and not self._body.has_body and self._request.method in _RETRYABLE)

    def _error(self, reason: Failure) -> None:
        self._stop_timer()
        request, fwd = self._request, self._fwd
        e = reason.value
        code = 504 if self._timed_out or _is_timeout(e) else 502
        if not isinstance(e, (error.ConnectError, error.ConnectionDone, error.ConnectionLost,
                              CancelledError)) and not _is_timeout(e):
            self._forwarder._log.info("bad answer from {user}'s server: {why}",
                                      user=fwd.user, why=_why(e))
        self._forwarder._log.info(
            "backend {code} for {user} {method} {path}: {why}",
            code=code, user=fwd.user, method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"), why=_why(e),
        )
        self._body.discard()
        write_reply(request, error_reply(request, code))
        self._end()

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            if not getattr(self._request, "_disconnected", False):
                self._request.unregisterProducer()

    def _end(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._timer:  # (most answers stopped it when their head came)
            self._stop_timer()
        self._forwarder._exchanges.remove(self)
        request = self._request
        # on_gone is this relay's client_gone: a cycle (request, relay, Forward) that
        # only the cyclic collector would free, a few dozen objects per request.
        request.on_gone = None
        metrics.http_done(request.code if request.startedWriting else self._code,
                          perf_counter() - self._started, self._body.taken, request.sentLength)


def _all_or_timeout(waits: list[Deferred[Any]], reactor: Any, seconds: float) -> Deferred[None]:
    """Fires (with None, never an error) when all ``waits`` have, or after ``seconds``."""
    out: Deferred[None] = Deferred()

    def fire(_: object = None) -> None:
        if not out.called:
            out.callback(None)

    timer = reactor.callLater(seconds, fire)
    done = DeferredList(waits, consumeErrors=True)
    done.addBoth(fire)
    out.addBoth(lambda r: timer.cancel() if timer.active() else None)
    return out


def request_head(request: IRequest, token: str, body: BodyStream) -> bytes:
    """The request line and headers for the user's server, framing included."""
    method, uri = request.method, request.uri
    # (one ``translate`` rather than four ``in``: docs/front_end.md, "bytes in bytes")
    if not uri.startswith(b"/") or len(uri.translate(None, _NOT_IN_TARGET)) != len(uri):
        raise ValueError("bad request target")
    lines = [b"%s %s HTTP/1.1" % (method, uri), forwarded_lines(request, token)]
    if body.has_body:
        if isinstance(body.length, int):
            lines.append(b"Content-Length: %d" % body.length)
        else:
            lines.append(b"Transfer-Encoding: chunked")
    elif method in _BODY_METHODS:
        lines.append(b"Content-Length: 0")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def forwarded_lines(request: IRequest, token: str) -> bytes:
    """:func:`backend_request_lines`, joined.  The lean front end hands the same parsed
    headers to every request of a connection whose header lines did not change
    (:func:`ipydoc.edge.lean_head.read_head`); they keep the lines made from them, for
    the same token, client address, scheme and local address, as ``forwarding``."""
    src = request.requestHeaders
    if src.__class__ is not FastHeaders:
        return b"\r\n".join(backend_request_lines(request, token))
    client, secure, host = request.getClientAddress(), request.isSecure(), request.getHost()
    try:
        memo = src.forwarding
    except AttributeError:
        memo = None
    if memo is not None and memo[0] == token and memo[1] is client and memo[2] == secure \
            and memo[3] is host:
        return memo[4]
    joined = b"\r\n".join(backend_request_lines(request, token))
    src.forwarding = (token, client, secure, host, joined)
    return joined


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
    text = str(e) if e.__class__.__module__ == "ipydoc.proxy.backend" else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
