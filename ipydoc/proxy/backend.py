"""A lean HTTP/1.1 client for the one hop the proxy makes: to a user's Jupyter server.

``twisted.web.client.Agent`` is general (any URL, redirects, TLS, a request object, a
response object, several Deferreds per request) and it cost more CPU per proxied request
than twisted.web's own server side and the parsing of the request together.  This client
does only what the hop needs: keep-alive connections per backend address, a request head
written in one ``write``, the body streamed from a
:class:`~ipydoc.proxy.body.BodyStream`, and a strict response parser that hands the head
and then body bytes to an :class:`Exchange` through plain method calls.

Strict, because a user's container is not trusted: a response whose framing is
ambiguous (two different ``Content-Length`` values, a malformed chunk, an obsolete
folded header line) fails the exchange and the connection is closed rather than reused,
so a server cannot make its answer bleed into the next request on the connection.

Latency: every backend socket gets ``TCP_NODELAY`` (a request head is one small write
and must not wait for an ACK).  Plain request/response traffic needs no more; the
WebSocket splice also re-arms ``TCP_QUICKACK`` after every read, see :func:`ack_now`.
"""

from __future__ import annotations

import socket
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet import error
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.python.failure import Failure

from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.sendnow import send_now

#: Largest response head (status line and headers) a backend may send.
MAX_HEAD = 64 * 1024
#: A connection remembers its last answer's head up to this size and this many header
#: lines (see ``_got_head``): jupyter_server's are under 1 KiB and 15 lines.  With the
#: parse, some 10 KiB at most per idle connection (``pool_size`` of them per server).
_HEAD_KEPT = 2048
_HEADERS_KEPT = 32
#: Largest chunk-size line (with extensions) or trailer section.
MAX_CHUNK_LINE = 4096
MAX_TRAILERS = 16 * 1024

_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", None)
#: Deleting these from a header name must leave nothing (RFC 9110 token characters).
_TOKEN_CHARS = (b"!#$%&'*+-.^_`|~0123456789"
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_HEX = b"0123456789abcdefABCDEF"


class BadResponse(Exception):
    """The backend's answer cannot be framed safely."""


@dataclass(slots=True)
class ResponseHead:
    code: int
    phrase: bytes
    #: In arrival order, names as sent; hop-by-hop ones included (the caller filters).
    headers: list[tuple[bytes, bytes]]
    #: The lower-cased name of each of ``headers``, in the same order (made once, in
    #: :func:`parse_head`, for everyone who reads the names).
    lowers: list[bytes]
    #: The status line and header lines as received (without the final blank line).
    raw: bytes
    #: Whether the connection may carry another request after this response.
    keep_alive: bool
    #: Lower-cased tokens of ``Connection:`` (headers named there are hop-by-hop too).
    connection: frozenset[bytes] = frozenset()
    #: The body's length when the framing says it (``Content-Length``), else None.
    length: int | None = None
    #: :func:`ipydoc.proxy.answer_head.client_lines`'s last answer for this head, with
    #: what it depended on (token, own origin, https).  A head may serve several answers
    #: (:meth:`BackendConnection._got_head`), so nobody changes one once parsed.
    client_memo: tuple[bytes, bool, bool, bytes | None] | None = None


class Exchange:
    """What a connection reports about one request; the forwarder subclasses it."""

    def head_received(self, head: ResponseHead) -> None:
        """The status and headers are in; body bytes (if any) follow."""

    def body_received(self, data: bytes) -> None:
        """A piece of the (de-chunked) response body."""

    def response_done(self) -> None:
        """The whole response is in."""

    #: Whether :meth:`whole_response` is called for an answer whose head and whole
    #: ``Content-Length`` body are in at once (else the three calls above are made).
    takes_whole = False

    def whole_response(self, head: ResponseHead, body: bytes) -> None:
        """Head and body are in at once (with ``takes_whole``): answer in one step."""
        raise NotImplementedError

    def exchange_failed(self, reason: Failure, head_seen: bool) -> None:
        """Connection lost, bad framing or aborted; nothing else will be called."""


def ack_now(transport: Any) -> None:
    """Re-arm ``TCP_QUICKACK`` on a backend socket: acknowledge at once, never later.

    A stock jupyter_server writes WebSocket frames (and some responses) as several small
    ``send``s with Nagle's algorithm on: the second frame stays in the server's kernel
    until the first one is acknowledged.  With delayed ACKs the receiver waits up to
    40 ms before acknowledging, so each kernel round trip (``status``, ``execute_input``,
    ``execute_reply``, ...) stalled for ~40 ms.  We are that receiver.  Linux leaves
    quick-ACK mode again on its own after a while, so it is set again after every read;
    one ``setsockopt`` per read is far cheaper than a 40 ms stall.
    """
    if _TCP_QUICKACK is None:
        return
    try:
        transport.socket.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
    except (AttributeError, OSError):
        pass


def tune_backend_socket(transport: Any) -> None:
    """``TCP_NODELAY`` and quick ACKs on a fresh backend connection."""
    try:
        transport.setTcpNoDelay(True)
    except (AttributeError, OSError):
        pass
    ack_now(transport)


# Parser states.
_IDLE, _HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE = range(8)


class BackendConnection(Protocol):
    """One keep-alive connection to a backend; one exchange at a time.

    It is also the producer of the answer for the client's side (the exchange registers
    it there): the client's flow control pauses and resumes reading from the backend
    through it, so the pool knows whether a connection it takes back was left paused.
    """

    #: Reading paused by the client's side (its send buffer was full).
    paused = False
    #: The last head parsed here: (raw, no_body, what parse_head gave).
    _last: tuple[bytes, bool, tuple[ResponseHead, int, int]] | None = None

    def __init__(self, pool: BackendPool, key: tuple[str, int]) -> None:
        self._pool = pool
        self.key = key
        self._state = _IDLE
        self._buf = b""
        self._remaining = 0
        self._trailer_bytes = 0
        self._exchange: Exchange | None = None
        self._head: ResponseHead | None = None
        self._no_body = False
        self._body: BodyStream | None = None
        self._body_chunked = False
        self._body_sent = True
        self._aborted = False
        self._reusable = False
        self.used = 0
        self.idle_since = 0.0

    # -- the request ------------------------------------------------------------------

    def send(self, head: bytes, body: BodyStream | None, exchange: Exchange, *,
             no_body_expected: bool) -> None:
        """Write ``head`` and stream ``body``; the answer goes to ``exchange``."""
        self.used += 1
        self._reusable = False
        self._trailer_bytes = 0
        self._exchange = exchange
        self._head = None
        self._no_body = no_body_expected
        self._state = _HEAD
        self._buf = b""
        transport = self.transport
        if body is None:
            send_now(transport, head)
            self._body_sent = True
            return
        # With a body, the head is queued: it leaves with the first body bytes, and if
        # the client's framing turns out bad in the same read, nothing has left at all.
        transport.write(head)
        self._body = body
        self._body_sent = False
        self._body_chunked = body.length is None or not isinstance(body.length, int)
        transport.registerProducer(body, True)
        body.startProducing(self).addCallbacks(self._body_done, self._body_failed)

    def write(self, data: bytes) -> None:
        """IConsumer for the BodyStream: frame and send a piece of the request body."""
        if not data or self.transport is None:
            return
        if self._body_chunked:
            self.transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self.transport.write(data)

    def registerProducer(self, producer: Any, streaming: bool) -> None:  # IConsumer
        pass

    def unregisterProducer(self) -> None:  # IConsumer
        pass

    # -- IPushProducer, for the client's side --------------------------------------------

    def pauseProducing(self) -> None:
        self.paused = True
        if self.transport is not None:
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.paused = False
        if self.transport is not None:
            self.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def _body_done(self, _: object) -> None:
        if self._body is None:
            return
        if self._body_chunked and self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self._release_body()
        self._body_sent = True
        if self._state == _IDLE and self._exchange is None and self._reusable:
            self._pool.release(self)  # the response had already finished

    def _body_failed(self, reason: Failure) -> None:
        """The client broke off its upload: the backend must not see a short body."""
        self._release_body()
        self.abort()

    def _release_body(self) -> None:
        if self._body is not None and self.transport is not None:
            self.transport.unregisterProducer()
        self._body = None

    def abort(self) -> None:
        """Drop the connection now (client gone, timeout): never reused."""
        self._aborted = True
        if self.transport is not None:
            self.transport.abortConnection()

    # -- the response -----------------------------------------------------------------

    def connectionMade(self) -> None:
        tune_backend_socket(self.transport)
        self._pool.connected(self)

    def dataReceived(self, data: bytes) -> None:
        if self._aborted:
            return
        if self._state == _IDLE:
            self.abort()  # bytes nobody asked for: this connection cannot be trusted
            return
        if self._state == _LENGTH and not self._buf:  # a body going on: no copying
            self._body_bytes(data)
            return
        self._buf += data
        try:
            self._parse()
        except BadResponse as e:
            self._fail(Failure(e))
            self.abort()

    def _parse(self) -> None:
        while self._buf and self._exchange is not None and not self._aborted:
            state = self._state
            if state == _HEAD:
                end = self._buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buf) > MAX_HEAD:
                        raise BadResponse("response head too large")
                    return
                raw, self._buf = self._buf[:end], self._buf[end + 4:]
                self._got_head(raw)
            elif state == _LENGTH:
                data, self._buf = self._buf, b""
                self._body_bytes(data)
            elif state == _UNTIL_CLOSE:
                data, self._buf = self._buf, b""
                self._exchange.body_received(data)
            elif state == _CHUNK_SIZE:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > MAX_CHUNK_LINE:
                        raise BadResponse("chunk-size line too long")
                    return
                line, self._buf = self._buf[:end], self._buf[end + 2:]
                size = _chunk_size(line)
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._remaining = size
                    self._state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                n = self._remaining
                data, self._buf = self._buf[:n], self._buf[n:]
                self._remaining -= len(data)
                if self._remaining == 0:
                    self._state = _CHUNK_END
                self._exchange.body_received(data)
            elif state == _CHUNK_END:
                if len(self._buf) < 2:
                    return
                if self._buf[:2] != b"\r\n":
                    raise BadResponse("chunk not followed by CRLF")
                self._buf = self._buf[2:]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > MAX_TRAILERS:
                        raise BadResponse("trailers too large")
                    return
                line, self._buf = self._buf[:end], self._buf[end + 2:]
                self._trailer_bytes += end + 2
                if self._trailer_bytes > MAX_TRAILERS:
                    raise BadResponse("trailers too large")
                if not line:
                    self._complete()
            else:  # _IDLE with bytes left over: more than the framing said
                raise BadResponse("bytes after the end of the response")

    def _got_head(self, raw: bytes) -> None:
        # A server answering the same request again within the second its ``Date`` holds
        # sends the same head byte for byte (a poller, a burst, the bench): the parse of
        # those bytes is the same, so the last one is used again (one comparison; a
        # different head costs nothing more).  Per connection, so per server.
        last = self._last
        if last is not None and last[0] == raw and last[1] == self._no_body:
            head, framing, length = last[2]
        else:
            parsed = head, framing, length = parse_head(raw, self._no_body)
            self._last = (raw, self._no_body, parsed) if len(raw) <= _HEAD_KEPT \
                and len(head.headers) <= _HEADERS_KEPT else None
        if 100 <= head.code < 200:
            if head.code == 101:
                raise BadResponse("unexpected protocol switch")
            return  # 100 Continue / 103 Early Hints: informational, wait for the real one
        self._head = head
        if framing == _LENGTH and len(self._buf) == length and self._exchange.takes_whole:
            # the whole answer came with its head, and nothing after it (most answers)
            body, self._buf = self._buf, b""
            self._complete(body)
            return
        self._state = framing
        self._remaining = length
        self._exchange.head_received(head)
        if framing == _LENGTH and length == 0:
            self._complete()

    def _body_bytes(self, data: bytes) -> None:
        n = self._remaining
        if len(data) > n:
            data, self._buf = data[:n], data[n:]
        self._remaining -= len(data)
        if data:
            self._exchange.body_received(data)
        if self._remaining == 0 and self._exchange is not None:
            self._complete()

    def _complete(self, whole: bytes | None = None) -> None:
        """The answer is in; ``whole``: its body, when it came with its head (for an
        exchange that ``takes_whole``)."""
        if self._aborted:
            return  # dropped meanwhile (the client left): connectionLost tells the exchange
        exchange, self._exchange = self._exchange, None
        self._state = _IDLE
        head = self._head
        reusable = head is not None and head.keep_alive
        if self._buf:
            reusable = False  # the backend sent more than it framed
        self._reusable = reusable
        if exchange is not None:
            if whole is None:
                exchange.response_done()
            else:
                assert head is not None
                exchange.whole_response(head, whole)
        if self._aborted:
            return  # the exchange dropped it meanwhile (the client left)
        if not reusable:
            self.transport.loseConnection()
        elif self._body_sent:
            self._pool.release(self)
        # else: released once the rest of the request body has gone out (_body_done)

    def _fail(self, reason: Failure) -> None:
        exchange, self._exchange = self._exchange, None
        self._state = _IDLE
        if exchange is not None:
            exchange.exchange_failed(reason, self._head is not None)

    def connectionLost(self, reason: Failure = Failure(error.ConnectionDone())) -> None:
        self._pool.lost(self)
        if self._body is not None:
            self._body.stopProducing()
            self._body = None
        if self._state == _UNTIL_CLOSE and self._exchange is not None and not self._aborted:
            self._complete_on_close()
        else:
            self._fail(reason)

    def _complete_on_close(self) -> None:
        exchange, self._exchange = self._exchange, None
        self._state = _IDLE
        exchange.response_done()


def _chunk_size(line: bytes) -> int:
    size = line.split(b";", 1)[0].rstrip(b" \t")
    if not size or len(size) > 16 or size.translate(None, _HEX):
        raise BadResponse("bad chunk size")
    return int(size, 16)


def parse_head(raw: bytes, no_body: bool) -> tuple[ResponseHead, int, int]:
    """Status line and headers (``raw`` without its final blank line); the body framing
    (parser state) and length.  Also the WebSocket handshake's answer is read with it."""
    lines = raw.split(b"\r\n")
    # No CR or LF is left but the line ends split on, and no NUL anywhere: one look at
    # the whole head instead of three per header value and for the reason phrase (which
    # is written back to the client).  (``find``, not ``in``: docs/front_end.md, "bytes in bytes".)
    if raw.find(b"\x00") != -1 or raw.count(b"\n") != len(lines) - 1 \
            or raw.count(b"\r") != len(lines) - 1:
        raise BadResponse("bad header value")
    status = lines[0]
    if not status.startswith(b"HTTP/1.") or len(status) < 12 or status[12:13] not in (b"", b" "):
        raise BadResponse("bad status line")
    version, code_text, phrase = status[5:8], status[9:12], status[13:]
    if not code_text.isdigit():
        raise BadResponse("bad status code")
    code = int(code_text)
    headers: list[tuple[bytes, bytes]] = []
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    connection: list[bytes] = []
    lowers: list[bytes] = []
    known = _LINES.get
    for line in lines[1:]:
        parsed = known(line)
        if parsed is None:
            parsed = _header_line(line)
        pair, lower = parsed
        lowers.append(lower)
        if lower not in _FRAMING:
            headers.append(pair)
            continue
        name, value = pair
        if lower == b"content-length":
            if value.find(b",") != -1:
                lengths.update(v.strip() for v in value.split(b","))
            else:
                lengths.add(value.strip())
        elif lower == b"transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(b",") if c.strip())
        elif lower == b"connection":
            connection.extend(c.strip().lower() for c in value.split(b","))
        headers.append(pair)

    keep_alive = b"close" not in connection and (version == b"1.1" or b"keep-alive" in connection)
    head = ResponseHead(code, phrase, headers, lowers, raw, keep_alive, frozenset(connection))
    if no_body or code in (204, 304) or 100 <= code < 200:
        return head, _LENGTH, 0
    if codings:
        if codings[-1] != b"chunked":
            head.keep_alive = False
            return head, _UNTIL_CLOSE, 0
        if codings.count(b"chunked") != 1:
            raise BadResponse("chunked applied twice")
        return head, _CHUNK_SIZE, 0
    if lengths:
        if len(lengths) != 1:
            raise BadResponse("conflicting Content-Length")
        (text,) = lengths
        if not text.isdigit() or len(text) > 18:
            raise BadResponse("bad Content-Length")
        head.length = int(text)
        return head, _LENGTH, head.length
    head.keep_alive = False
    return head, _UNTIL_CLOSE, 0


#: Header lines seen before, checked: the raw line → ((name, value), lower-cased name).
#: A server sends mostly the same lines answer after answer (its name, the types, the
#: security headers), so each is split and checked once.  Keyed by the exact bytes, the
#: result is what :func:`_header_line` would give again, whoever's server sent the line
#: (nothing of it reaches anyone else).  Bounded in count (emptied when full) and in
#: size (only lines up to :data:`_LINE_KEPT` bytes; long ones are mostly unique anyway,
#: like a signed cookie): at most about 1 MiB, however hostile the servers.  A server
#: sending new lines every time costs the checks it would have cost anyway.
_LINES: dict[bytes, tuple[tuple[bytes, bytes], bytes]] = {}
_LINES_MAX = 2048
_LINE_KEPT = 256
#: The lower-cased names that frame the answer (read, not only passed on).
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))


def _header_line(line: bytes) -> tuple[tuple[bytes, bytes], bytes]:
    """One header line (CR, LF and NUL already excluded) split and checked; remembered."""
    name, sep, value = line.partition(b":")
    if not sep or not name or name.translate(None, _TOKEN_CHARS):
        raise BadResponse("bad header line")  # also obs-fold and "Name :" forms
    parsed = (name, value.strip(b" \t")), name.lower()
    if len(line) <= _LINE_KEPT:
        if len(_LINES) >= _LINES_MAX:
            _LINES.clear()
        _LINES[line] = parsed
    return parsed


class _Connector(ClientFactory):
    """One connection attempt, reported through a Deferred."""

    noisy = False

    def __init__(self, pool: BackendPool, key: tuple[str, int], d: Deferred[BackendConnection]):
        self._pool, self._key, self._d = pool, key, d

    def buildProtocol(self, addr: Any) -> BackendConnection:
        conn = BackendConnection(self._pool, self._key)
        conn.factory = self
        return conn

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self._d.called:
            self._d.errback(reason)

    def connected(self, conn: BackendConnection) -> None:
        if not self._d.called:
            self._d.callback(conn)


class BackendPool:
    """Idle keep-alive connections per backend address, newest first."""

    def __init__(self, reactor: Any, *, per_target: int, connect_timeout: float,
                 idle_timeout: float = 120.0) -> None:
        self._reactor = reactor
        self._per_target = per_target
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._idle: dict[tuple[str, int], deque[BackendConnection]] = {}
        self._active: set[BackendConnection] = set()
        self._sweeper: Any = None

    def take(self, host: str, port: int) -> BackendConnection | None:
        """An idle connection to ``host:port``, most recently used first, or None."""
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            t = conn.transport
            if t is not None and t.connected and not t.disconnecting:
                self._active.add(conn)
                return conn
        return None

    def connect(self, host: str, port: int) -> Deferred[BackendConnection]:
        """A new connection to ``host:port`` (cancel the Deferred to give up)."""
        return self._connect((host, port))

    def _connect(self, key: tuple[str, int]) -> Deferred[BackendConnection]:
        connector: Any = None

        def cancel(d: Deferred[BackendConnection]) -> None:
            if connector is not None:
                connector.disconnect()

        d: Deferred[BackendConnection] = Deferred(cancel)
        factory = _Connector(self, key, d)
        connector = self._reactor.connectTCP(key[0], key[1], factory,
                                             timeout=self._connect_timeout)
        return d

    def connected(self, conn: BackendConnection) -> None:
        self._active.add(conn)
        factory = getattr(conn, "factory", None)
        if isinstance(factory, _Connector):
            factory.connected(conn)

    def release(self, conn: BackendConnection) -> None:
        """The exchange is over and the connection clean: keep it for the next one."""
        self._active.discard(conn)
        transport = conn.transport
        if transport is None or not transport.connected or transport.disconnecting:
            return
        if conn.paused:  # a slow client left it paused
            conn.resumeProducing()
        idle = self._idle.get(conn.key)
        if idle is None:
            idle = self._idle[conn.key] = deque()
        if len(idle) >= self._per_target:
            transport.loseConnection()
            return
        conn.idle_since = self._reactor.seconds()
        idle.append(conn)
        if self._sweeper is None:
            self._sweeper = self._reactor.callLater(self._idle_timeout / 4, self._sweep)

    def lost(self, conn: BackendConnection) -> None:
        self._active.discard(conn)
        idle = self._idle.get(conn.key)
        if idle is not None:
            try:
                idle.remove(conn)
            except ValueError:
                pass
            if not idle:
                del self._idle[conn.key]

    def _sweep(self) -> None:
        """Close connections idle for longer than ``idle_timeout`` (a backend restarts)."""
        self._sweeper = None
        limit = self._reactor.seconds() - self._idle_timeout
        for idle in list(self._idle.values()):
            for conn in [c for c in idle if c.idle_since < limit]:
                conn.transport.loseConnection()
        if self._idle:
            self._sweeper = self._reactor.callLater(self._idle_timeout / 4, self._sweep)

    def close(self) -> Deferred[None]:
        """Close idle connections, abort active ones (shutdown)."""
        if self._sweeper is not None and self._sweeper.active():
            self._sweeper.cancel()
        self._sweeper = None
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.transport.loseConnection()
        for conn in list(self._active):
            conn.abort()
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d

