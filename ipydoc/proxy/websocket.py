"""WebSocket upgrades: hand-written handshake, then a byte-for-byte splice.

twisted.web.client cannot do an HTTP upgrade, so the handshake is written to a raw
TCP connection by hand (same header rules as plain HTTP).  On ``101`` the client's
transport is taken away from twisted.web's ``HTTPChannel`` (the way autobahn's
``WebSocketResource`` does it) and the two transports are joined: each is the other's
streaming producer, so a slow reader on either side pauses the other.  Frames are
never parsed; whatever one side sends, the other receives.

What the server answers is filtered like any HTTP answer: the ``101`` head is rebuilt
with :func:`~ipydoc.proxy.answer_head.keep_response_header` and the server token taken out of
its values; a refusal (any other status) is relayed as HTTP through the same filter,
with a textual body scrubbed of the token.  Each WebSocket is in the gate's registry
of open exchanges (:mod:`ipydoc.proxy.live`) from the handshake until either side
closes, so revoking its session or token closes it at once.

Latency: both sockets get ``TCP_NODELAY`` and both re-arm ``TCP_QUICKACK`` after every
read (:func:`~ipydoc.proxy.backend.ack_now` explains the 40 ms this saves per message
with a stock jupyter_server, which writes its frames with Nagle's algorithm on).  What
one side sends is passed on with :func:`~ipydoc.proxy.sendnow.send_now`: in the same
turn of the reactor when nothing is queued, instead of on the next one (backpressure
is unchanged: what the kernel does not take is queued and pauses the other side).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.client import URI
from twisted.web.http import _ChunkedTransferDecoder
from twisted.web.iweb import IRequest

from ipydoc.proxy import metrics
from ipydoc.proxy.answer_head import keep_response_header
from ipydoc.proxy.backend import BadResponse, ack_now, parse_head, tune_backend_socket
from ipydoc.proxy.gate import Forward, Gate
from ipydoc.proxy.headers import backend_request_lines, is_hop_by_hop, secure_cookie
from ipydoc.proxy.live import OpenExchanges
from ipydoc.proxy.replies import error_reply, write_reply
from ipydoc.proxy.scrub import Scrubber, is_textual
from ipydoc.proxy.sendnow import send_now

MAX_HEAD = 64 * 1024
MAX_REFUSAL_BODY = 1024 * 1024
ACTIVITY_INTERVAL = 1.0


@dataclass
class _Head:
    raw: bytes
    code: int
    phrase: bytes
    headers: list[tuple[bytes, bytes]]
    rest: bytes

    def get(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]


class WebSocketForwarder:
    """Opens the backend side of a WebSocket and splices it to the client."""

    _log = Logger()

    def __init__(
        self, reactor: Any, gate: Gate, *, connect_timeout: float, head_timeout: float,
        exchanges: OpenExchanges | None = None,
    ) -> None:
        self._reactor = reactor
        self._gate = gate
        self._connect_timeout = connect_timeout
        self._head_timeout = head_timeout
        self._exchanges = exchanges if exchanges is not None else OpenExchanges()

    async def forward(self, request: IRequest, fwd: Forward) -> None:
        link = _Link(fwd, request)
        self._exchanges.add(link)
        try:
            await self._forward(request, fwd, link)
        finally:
            if link.backend is None or not link.spliced:
                self._exchanges.remove(link)  # else: when the backend side closes

    async def _forward(self, request: IRequest, fwd: Forward, link: _Link) -> None:
        target = URI.fromBytes(fwd.target.encode("ascii"))
        if target.scheme != b"http":
            write_reply(request, error_reply(request, 502, "Unsupported server address."))
            return
        backend = link.backend = _Backend(_request_head(request, fwd.token))
        endpoint = HostnameEndpoint(
            self._reactor, target.host, target.port, timeout=self._connect_timeout
        )
        opening = link.opening = Deferred.fromCoroutine(self._open(endpoint, backend))
        opening.addTimeout(self._head_timeout, self._reactor)
        request.notifyFinish().addErrback(lambda _: opening.cancel())
        self._gate.saw_traffic(fwd.user)
        try:
            head = await opening
        except Exception as e:
            if getattr(request, "_disconnected", False) or link.revoked:
                return
            code = 504 if isinstance(e, (error.TimeoutError, error.TCPTimedOutError)) else 502
            self._log.info(
                "websocket backend {code} for {user} {path}: {why}",
                code=code, user=fwd.user, path=request.path.decode("latin-1"),
                why=type(e).__name__,
            )
            write_reply(request, error_reply(request, code))
            return
        if getattr(request, "_disconnected", False) or link.revoked:
            backend.transport.loseConnection()
            return
        self._gate.saw_response(fwd.user, request.method, request.path, head.code)
        if head.code == 101:
            link.client = request.channel.transport
            link.spliced = True
            backend.closed.addCallback(lambda _: self._exchanges.remove(link))
            metrics.websocket_opened()
            backend.closed.addCallback(lambda _: metrics.websocket_closed())
            _splice(request, backend, _switching_head(head, fwd, request.isSecure()),
                    _Activity(self._reactor, self._gate, fwd.user))
        else:
            await _relay_refusal(request, backend, head, fwd)

    async def _open(self, endpoint: HostnameEndpoint, backend: _Backend) -> _Head:
        await connectProtocol(endpoint, backend)
        return await backend.head


class _Link:
    """One WebSocket in the registry of open exchanges, from handshake to close."""

    def __init__(self, fwd: Forward, request: IRequest) -> None:
        self.user = fwd.user
        self.credential = fwd.credential
        self._request = request
        self.opening: Deferred[_Head] | None = None
        self.backend: _Backend | None = None
        self.client: Any = None  # the client transport, once spliced
        self.spliced = False
        self.revoked = False

    @property
    def websocket(self) -> bool:
        """Spliced: open as long as the tab is (a handshake still under way is a request)."""
        return self.spliced

    def revoke(self) -> None:
        """The credential was revoked: drop both connections now (no close frame: the
        proxy never parses frames, so it cannot tell where one could go)."""
        self.revoked = True
        if self.opening is not None and not self.opening.called:
            self.opening.cancel()
        if self.backend is not None and self.backend.transport is not None:
            self.backend.transport.abortConnection()
        client = self.client or getattr(self._request.channel, "transport", None)
        if client is not None:
            client.abortConnection()

    def drain_close(self) -> None:
        """The daemon is stopping (ipydoc.edge.drain): close both sides cleanly, after what
        is already queued, so the client reconnects to the next process.  No close frame
        (frames are not parsed); a handshake still in flight is closed once spliced."""
        if not self.spliced or self.backend is None or self.backend.transport is None:
            return
        for transport in (self.client, self.backend.transport):
            if transport is not None:
                transport.unregisterProducer()
                transport.loseConnection()


class _Activity:
    """Reports WebSocket traffic to the gate, at most once per interval."""

    def __init__(self, reactor: Any, gate: Gate, user: str) -> None:
        self._reactor, self._gate, self._user = reactor, gate, user
        self._last = float("-inf")

    def touch(self) -> None:
        now = self._reactor.seconds()
        if now - self._last >= ACTIVITY_INTERVAL:
            self._last = now
            self._gate.saw_traffic(self._user)


class _Backend(Protocol):
    """The backend connection: sends the handshake, reads the answer head, then pipes."""

    def __init__(self, request_head: bytes) -> None:
        self._out = request_head
        self._buf = b""
        self.head: Deferred[_Head] = Deferred(lambda _: self._abort())
        self._sink: Any = None  # callable(bytes) once the head is consumed
        #: Fires (with None) when the backend connection is gone.
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        tune_backend_socket(self.transport)
        self.transport.write(self._out)

    def dataReceived(self, data: bytes) -> None:
        ack_now(self.transport)
        if self._sink is not None:
            self._sink(data)
            return
        self._buf += data
        if self.head.called:
            return  # after the head, before a sink: kept (and the transport paused)
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                self._abort()
            return
        raw, rest = self._buf[: end + 4], self._buf[end + 4 :]
        self._buf = b""
        try:
            head = _parse_head(raw, rest)
        except ValueError:
            self._abort()
            return
        self.transport.pauseProducing()  # until someone takes the bytes that follow
        self.head.callback(head)

    def take(self, sink: Any) -> bytes:
        """Send further bytes to ``sink``; returns bytes that arrived in between."""
        self._sink = sink
        early, self._buf = self._buf, b""
        self.transport.resumeProducing()
        return early

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        if not self.head.called:
            self.head.errback(reason)
        self.closed.callback(None)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()


class _ClientEnd(Protocol):
    """Takes the client's transport over from twisted.web after the 101."""

    def __init__(self, backend: ITransport, activity: _Activity) -> None:
        self._backend = backend
        self._activity = activity

    def dataReceived(self, data: bytes) -> None:
        ack_now(_socket_transport(self.transport))
        self._activity.touch()
        metrics.websocket_bytes(len(data), 0)
        send_now(self._backend, data)

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        self._backend.unregisterProducer()
        self._backend.loseConnection()


def _splice(request: IRequest, backend: _Backend, head: bytes, activity: _Activity) -> None:
    """Join the client and backend transports; twisted.web lets go of the client."""
    channel = request.channel
    client = channel.transport
    taken_over = getattr(channel, "taken_over", None)  # the site stops tracking it
    if taken_over is not None:
        taken_over()
    early = b"".join(channel._dataBuffer)  # bytes the channel read after the head
    channel._dataBuffer = []
    channel.setTimeout(None)
    channel.transport = None
    client.unregisterProducer()  # the HTTPChannel was the client's producer
    end = _ClientEnd(backend.transport, activity)
    if isinstance(client, ProtocolWrapper):  # TLS
        client.wrappedProtocol = end
    else:
        client.protocol = end
    end.makeConnection(client)
    tune_backend_socket(_socket_transport(client))  # same latency rules towards the browser

    def to_client(data: bytes) -> None:
        activity.touch()
        metrics.websocket_bytes(0, len(data))
        send_now(client, data)

    def backend_closed(_: None) -> None:
        client.unregisterProducer()
        client.loseConnection()

    client.write(head)
    client.write(backend.take(to_client))
    backend.closed.addCallback(backend_closed)
    client.registerProducer(backend.transport, True)
    backend.transport.registerProducer(client, True)
    if early:
        backend.transport.write(early)
    client.resumeProducing()


def _switching_head(head: _Head, fwd: Forward, secure: bool) -> bytes:
    """The ``101`` head for the client (with any bytes that followed it): the server's
    headers through the same filter as any answer's, ``Connection``/``Upgrade`` kept."""
    token = fwd.token.encode()
    lines = [b"HTTP/1.1 101 " + (head.phrase or b"Switching Protocols")]
    named = {t.strip().lower() for v in head.get(b"connection") for t in v.split(b",")}
    for name, value in head.headers:
        lower = name.lower()
        if lower not in (b"connection", b"upgrade") and is_hop_by_hop(lower, named):
            continue
        if not keep_response_header(lower, value, fwd):
            continue
        if lower == b"set-cookie" and secure:
            value = secure_cookie(value)
        if token and token in value:
            value = value.replace(token, b"")
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n" + head.rest


async def _relay_refusal(request: IRequest, backend: _Backend, head: _Head,
                         fwd: Forward) -> None:
    """The backend said no to the upgrade: pass its (small) answer on as HTTP, through
    the same header filter and token scrubber as any plain answer."""
    body = bytearray()
    done: Deferred[None] = Deferred()
    length = head.get(b"content-length")
    chunked = b"chunked" in b",".join(head.get(b"transfer-encoding")).lower()
    decoder = _ChunkedTransferDecoder(body.extend, lambda rest: done.callback(None)) if chunked else None

    def sink(data: bytes) -> None:
        if done.called:
            return
        if decoder is not None:
            decoder.dataReceived(data)
        else:
            body.extend(data)
            if length and len(body) >= int(length[0]):
                done.callback(None)
        if len(body) > MAX_REFUSAL_BODY and not done.called:
            backend.transport.abortConnection()

    backend.closed.addCallback(lambda _: None if done.called else done.callback(None))
    if head.code in (204, 304) or (length and int(length[0]) == 0):
        done.callback(None)
    else:
        sink(head.rest + backend.take(sink))
    await done
    backend.transport.loseConnection()
    if getattr(request, "_disconnected", False):
        return
    request.defaultContentType = None
    request.setResponseCode(head.code, head.phrase)
    token = fwd.token.encode()
    named = {t.strip().lower() for v in head.get(b"connection") for t in v.split(b",")}
    content_type = None
    out = request.responseHeaders
    for name, value in head.headers:
        lower = name.lower()
        if (is_hop_by_hop(lower, named) or lower == b"content-length"
                or not keep_response_header(lower, value, fwd)):
            continue
        if lower == b"content-type":
            content_type = value
        elif lower == b"set-cookie" and request.isSecure():
            value = secure_cookie(value)
        if token and token in value:
            value = value.replace(token, b"")
        out.addRawHeader(name, value)
    data = bytes(body)
    if token and is_textual(content_type):
        scrubber = Scrubber(token)
        data = scrubber.feed(data) + scrubber.flush()
    out.setRawHeaders(b"content-length", [b"%d" % len(data)])
    request.write(data)
    request.end_response()  # type: ignore[attr-defined]


def _socket_transport(transport: Any) -> Any:
    """The TCP transport under a TLS wrapper (or the transport itself)."""
    if isinstance(transport, ProtocolWrapper) and transport.transport is not None:
        return transport.transport
    return transport


def _request_head(request: IRequest, token: str) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (request.method, request.uri),
             *backend_request_lines(request, token, websocket=True)]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _parse_head(raw: bytes, rest: bytes) -> _Head:
    try:
        head, _, _ = parse_head(raw[:-4], no_body=True)
    except BadResponse as e:
        raise ValueError(str(e)) from None
    return _Head(raw, head.code, head.phrase, head.headers, rest)
