"""A strict HTTP/1.1 front end: what a request must look like, and how fast it must come.

Every byte a browser sends reaches a user's server through this parser, so any
disagreement between it and the server about where one request ends is a request
smuggled past the gate.  twisted.web's ``HTTPChannel`` already refuses most ambiguous
framing (checked against Twisted 26.10: ``Content-Length`` with ``Transfer-Encoding``,
a repeated or non-numeric ``Content-Length``, unknown codings, bad chunk sizes, NUL/CR/LF
in values, a space before a header's colon, HTTP/0.9 and 2.0 request lines);
:class:`StrictChannel` adds what it lets through:

* obsolete line folding (a header line starting with SP/HT) → 400;
* ``Transfer-Encoding`` on HTTP/1.0, ``chunked`` not last (or alone ``identity``) → 400;
  a coding before ``chunked`` that we do not implement (``gzip, chunked``) → 501;
* a ``Content-Length`` or chunk size too large for 63 bits, a chunk-size line ended by a
  bare LF → 400;
* HTTP/1.1 without exactly one ``Host``, and a request target that is not a path
  (absolute-form, authority-form; only ``OPTIONS *`` is kept) → 400;
* a request head over ``max_header_size`` bytes or ``max_headers`` lines → 431.

Each refusal is answered (unless a response is already under way) and the connection
is closed, so nothing the client sent after it can be read as another request.  Each
is also logged, with the client's address and the reason, through a
:class:`~ipydoc.edge.refusals.RefusalLog`.  Answers carry no ``Server`` header.  The
timeouts of :class:`~ipydoc.edge.limits.RequestLimits` are enforced here too.

The request line and the per-head counts are kept by the channel itself
(:attr:`StrictChannel.request_line`), not read from ``HTTPChannel``'s private state.
What no public API offers, and is used here, is pinned in setup.py and checked by
tests/edge/test_twisted_private_api.py: ``HTTPChannel._maybeChooseTransferDecoder``,
``_transferDecoder``, ``_handlingRequest`` and ``_respondToBadRequestAndDisconnect``,
``LineReceiver._buffer``, and ``_ChunkedTransferDecoder`` (subclassed: its
``_dataReceived_CHUNK_LENGTH``, ``_buffer``, ``dataCallback``, ``finishCallback``) with
``_MalformedChunkedDataError``.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet.error import ConnectionLost
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, _ChunkedTransferDecoder, _MalformedChunkedDataError
from twisted.web.http_headers import Headers

from ipydoc.edge.limits import RequestLimits
from ipydoc.edge.refusals import RefusalLog, client_address
from ipydoc.proxy.sendnow import send_now

#: Largest number that fits the 63 bits every HTTP implementation can count to.
MAX_LENGTH_DIGITS = 18   # decimal digits of a Content-Length (< 10**18 < 2**63)
MAX_CHUNK_DIGITS = 15    # hex digits of a chunk size (< 16**15 = 2**60)

REASONS = {
    400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large",
    431: b"Request Header Fields Too Large", 501: b"Not Implemented",
}
#: The headers that set a request body's framing.
_FRAMING = (b"Content-Length", b"Transfer-Encoding")


class StrictChunkedDecoder(_ChunkedTransferDecoder):
    """Twisted's chunked decoder, without huge sizes or bare-LF size lines."""

    def _dataReceived_CHUNK_LENGTH(self) -> bool:
        eol = self._buffer.find(b"\r\n")
        line = self._buffer if eol < 0 else self._buffer[:eol]
        if b"\n" in line:
            raise _malformed("chunk-size line ended by a bare LF")
        size = line.split(b";", 1)[0]
        if len(size.lstrip(b"0")) > MAX_CHUNK_DIGITS:
            raise _malformed("chunk size too large")
        return super()._dataReceived_CHUNK_LENGTH()


def _malformed(why: str) -> Exception:
    return _MalformedChunkedDataError(why)


class StrictChannel(HTTPChannel):
    """``HTTPChannel`` with the stricter parsing and the timeouts described above."""

    _log = Logger()
    _head_timer: Any = None
    _body_timer: Any = None
    _send_timer: Any = None
    _idle_saved: float | None = None
    _in_body = False
    _reading_paused = False
    _refused = False
    #: The current request's (method, target, version), set as its request line is in.
    request_line: tuple[bytes, bytes, bytes] = (b"", b"", b"")
    # The current request head, as far as it is in (reset by allContentReceived, where
    # HTTPChannel resets its own): a line of it is in; its request line is in; its size
    # in bytes and header count so far; which header set the body's framing.
    _head_started = False
    _in_head = False
    _head_size = 0
    _header_count = 0
    _framing: bytes | None = None

    def __init__(self, limits: RequestLimits, refusals: RefusalLog | None = None) -> None:
        super().__init__()
        self.limits = limits
        self.refusals = refusals
        self.maxHeaders = limits.max_headers
        self.totalHeadersSize = limits.max_header_size
        self.MAX_LENGTH = limits.max_header_size
        self.reader: _Reader | None = _Reader(self)

    # -- connection and timers --------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        tcp = self.transport
        if isinstance(tcp, ProtocolWrapper) and tcp.transport is not None:
            tcp = tcp.transport  # TLS: the TCP connection underneath
        try:
            tcp.setTcpNoDelay(True)
        except (AttributeError, OSError):
            pass  # not TCP (e.g. a unix socket handed over by systemd)
        self._start_head_timer()

    def connectionLost(self, reason: Any) -> None:
        for name in ("_head_timer", "_body_timer", "_send_timer"):
            self._cancel(name)
        self.reader = None  # it points back here: no cycle left for the collector
        super().connectionLost(reason)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        # A head that arrives whole in one read (nearly all of them) needs no timer: it is
        # armed only if the head is still incomplete once this read has been parsed, with
        # what is left of header_timeout since its first byte.
        head_began = None
        if self.line_mode and not self._handlingRequest:
            head_began = time.monotonic()
        elif self._in_body:
            self._arm_body_timer()
        super().dataReceived(data)
        if head_began is not None and self._head_timer is None and self._mid_head():
            left = self.limits.header_timeout - (time.monotonic() - head_began)
            self._head_timer = self.callLater(max(left, 0.0), self._head_too_slow)

    def _mid_head(self) -> bool:
        """Part of a request head is in, not all of it: a line of it, or a part of a line
        (``LineReceiver._buffer``)."""
        return (not self._refused and self.transport is not None and self.line_mode
                and not self._handlingRequest
                and (self._head_started or bool(self._buffer)))

    def pauseProducing(self) -> None:
        """Our send buffer is full: the client has this long to start reading again."""
        super().pauseProducing()
        if self._send_timer is None:
            self._send_timer = self.callLater(self.limits.send_timeout, self._send_stalled)

    def resumeProducing(self) -> None:
        self._cancel("_send_timer")
        super().resumeProducing()

    def _start_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.callLater(self.limits.header_timeout, self._head_too_slow)

    def _arm_body_timer(self) -> None:
        if not self._in_body or self._reading_paused:
            self._cancel("_body_timer")
        elif self._body_timer is not None and self._body_timer.active():
            self._body_timer.reset(self.limits.body_timeout)  # cheaper than a new call
        else:
            self._body_timer = self.callLater(self.limits.body_timeout, self._body_too_slow)

    def _cancel(self, name: str) -> None:
        call = getattr(self, name)
        setattr(self, name, None)
        if call is not None and call.active():
            call.cancel()

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport is not None:
            self.refuse(408, "The request head took too long to arrive.",
                        why=f"request head not complete in {self.limits.header_timeout:g} s")

    def _body_too_slow(self) -> None:
        self._body_timer = None
        if self.transport is not None:
            self.refuse(408, "The request body stopped arriving.",
                        why=f"request body stalled for {self.limits.body_timeout:g} s")

    def _send_stalled(self) -> None:
        self._send_timer = None
        if self.transport is not None:
            self._log.info("client {peer} read nothing for {s}s: disconnecting",
                           peer=_peer(self), s=self.limits.send_timeout)
            self.transport.abortConnection()

    # -- writing: one send per response where possible -----------------------------------
    # The head is built as one ``bytes`` (``HTTPChannel`` hands the transport four pieces
    # per header, each checked and queued separately) and held until the first body bytes
    # (or the end of the request), then both go out in one ``send_now``: straight to the
    # socket when nothing is queued, instead of a queue, an epoll round and two epoll_ctl.
    # TCP_NODELAY (set on connect) keeps a small final chunk from waiting for an ACK.

    _pending_head = b""

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        if not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        parts = [b"%s %s %s\r\n" % (version, code, reason)]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"\r\n")
        self._pending_head = b"".join(parts)

    def write(self, data: bytes) -> None:
        head, self._pending_head = self._pending_head, b""
        if self.transport is not None:
            send_now(self.transport, head + data if head else data)

    def writeSequence(self, iovec: Any) -> None:
        head, self._pending_head = self._pending_head, b""
        if self.transport is not None:
            send_now(self.transport, head + b"".join(iovec))

    def flush_head(self) -> None:
        """Send a response head that no body bytes followed (yet)."""
        if self._pending_head:
            self.write(b"")

    def requestDone(self, request: Any) -> None:
        self.flush_head()
        super().requestDone(request)

    def loseConnection(self) -> None:
        self.flush_head()
        super().loseConnection()

    # -- parsing ----------------------------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._in_head and line[:1] in (b" ", b"\t"):
            self.refuse(400, "Folded header lines (obs-fold) are not accepted.")
            return
        self._head_size += len(line)
        if self._head_size > self.totalHeadersSize:
            self.refuse(431, "The request head is too large.")
            return
        if self.persistent:  # (after a last request, HTTPChannel drops what follows)
            self._head_started = True
        request_line = not self._in_head  # else a header, or the blank line ending them
        requests = len(self.requests)
        super().lineReceived(line)
        if request_line and len(self.requests) > requests and not self._refused:
            # HTTPChannel accepted this as a request line: the same three parts it read.
            self._in_head = True
            parts = line.split(b" ")
            if len(parts) != 3:
                self.refuse(400, "The request is malformed.")
                return
            self.request_line = (parts[0], parts[1], parts[2])

    def lineLengthExceeded(self, line: bytes) -> None:
        self.refuse(431, "A request header line is too long.")

    def headerReceived(self, line: bytes) -> bool:
        if self._refused:
            return False
        if self._header_count >= self.maxHeaders:
            self.refuse(431, "The request has too many header lines.")
            return False
        ok = super().headerReceived(line)
        if ok:
            self._header_count += 1
        return ok

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        framing = self._framing
        if framing is not None and header in _FRAMING:
            # twisted.web refuses these too, without saying why: say it (in the log).
            if framing == header:
                why = f"{header.decode()} given twice"
            else:
                why = "Content-Length and Transfer-Encoding together (request smuggling?)"
            self.refuse(400, "The request's framing is ambiguous.", why=why)
            self.length = None
            return False
        if header == b"Content-Length" and len(data.lstrip(b"0")) > MAX_LENGTH_DIGITS:
            self.refuse(400, "Content-Length is too large.")
            self.length = None
            return False
        if header == b"Transfer-Encoding":
            codings = [c.strip().lower() for c in data.split(b",")]
            if self.request_line[2] != b"HTTP/1.1":
                self.refuse(400, "Transfer-Encoding needs HTTP/1.1.")
            elif codings[-1] != b"chunked":
                self.refuse(400, "Transfer-Encoding must end with chunked.")
            elif len(codings) > 1:
                self.refuse(501, "Only the chunked transfer coding is implemented.")
            if self._refused:
                self.length = None
                return False
        ok = super()._maybeChooseTransferDecoder(header, data)
        if ok and header in _FRAMING:
            self._framing = header
        decoder = self._transferDecoder
        if ok and type(decoder) is _ChunkedTransferDecoder:
            self._transferDecoder = StrictChunkedDecoder(
                decoder.dataCallback, decoder.finishCallback)
        return ok

    def allHeadersReceived(self) -> None:
        self._cancel("_head_timer")
        why = self._head_problem()
        if why:
            self.refuse(400, why)
            return
        if self.length != 0:
            # Reading a body: the body timer replaces the idle timer until it is in.
            self._in_body = True
            self._idle_saved = self.setTimeout(None)
            self._arm_body_timer()
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        if self._refused:
            return
        self._end_body()
        # Before HTTPChannel's: it may handle the request, and a pipelined next one, now.
        self._head_started = self._in_head = False
        self._head_size = self._header_count = 0
        self._framing = None
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().rawDataReceived(data)

    def _end_body(self) -> None:
        self._cancel("_body_timer")
        self._in_body = False
        self._reading_paused = False
        if self._idle_saved is not None:
            self.setTimeout(self._idle_saved)
            self._idle_saved = None

    def _head_problem(self) -> str:
        request = self.requests[-1]
        method, target, version = self.request_line
        if not target.startswith(b"/") and not (target == b"*" and method == b"OPTIONS"):
            return "The request target must be a path (origin-form)."
        hosts = request.requestHeaders.getRawHeaders(b"host") or []
        if version == b"HTTP/1.1" and len(hosts) != 1:
            return "An HTTP/1.1 request needs exactly one Host header."
        if len(hosts) > 1:
            return "More than one Host header."
        return ""

    # -- refusing -----------------------------------------------------------------------

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(400, "The request is malformed.")

    def refuse(self, code: int, message: str, why: str | None = None) -> None:
        """Answer ``code`` (unless a response has started) and close the connection;
        log it (``why``, else ``message``) with the client's address."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        if self.refusals is not None:
            self.refusals.refused(client_address(self), code, why or message)
        self._cancel("_head_timer")
        self._end_body()
        self.persistent = False
        request = self.requests[-1] if self.requests else None
        if request is None or not (request.startedWriting or request.finished):
            body = message.encode() + b"\n"
            self.transport.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n"
                b"\r\n%s" % (code, REASONS.get(code, b"Error"), len(body), body))
        # else a response is under way: closing early is the only way left to say no.
        self.loseConnection()
        # A request the proxy is already forwarding must stop now (backend aborted,
        # nothing more written), not when the last byte has left.
        pending, self.requests = self.requests, []
        for r in pending:
            r.connectionLost(Failure(ConnectionLost(f"request refused: {message}")))


class _Reader:
    """The client transport as the proxy's request-body stream pauses it.

    Time spent paused on purpose (backpressure) is not a slow client: the body timer
    stops while paused and starts again on resume.
    """

    def __init__(self, channel: StrictChannel) -> None:
        self._channel = channel

    def pauseProducing(self) -> None:
        ch = self._channel
        ch._reading_paused = True
        ch._cancel("_body_timer")
        if ch.transport is not None:
            ch.transport.pauseProducing()

    def resumeProducing(self) -> None:
        ch = self._channel
        ch._reading_paused = False
        ch._arm_body_timer()
        if ch.transport is not None:
            ch.transport.resumeProducing()

    def stopProducing(self) -> None:
        if self._channel.transport is not None:
            self._channel.transport.stopProducing()


def _peer(channel: HTTPChannel) -> str:
    try:
        return str(channel.transport.getPeer())
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"


def channel_factory(limits: RequestLimits, refusals: RefusalLog | None = None) -> Any:
    """A ``Site.protocol`` replacement: strict channels, all logging their refusals
    through ``refusals``.  No ``_GenericHTTPChannelProtocol`` around them: it is there
    to switch to HTTP/2 after ALPN, and the site speaks HTTP/1.1 only."""

    def build() -> StrictChannel:
        return StrictChannel(limits, refusals)

    return build
