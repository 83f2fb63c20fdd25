"""One proxied request on the lean front end: the part of ``IRequest`` the gate and proxy use.

The gate (:mod:`ipydoc.access`), the forwarder (:mod:`ipydoc.proxy.http`), the error
replies and the access log read a request through a small surface: method, uri, path,
args, clientproto, request and response ``Headers``, ``setResponseCode``, ``write``,
``end_response``, producers, the client's address, ``isSecure``, ``getHost``.  This class
is that surface and nothing more: no ``twisted.web.server.Request`` (sessions, cookies
parsed for nobody, a ``Date`` made per request, a producer registered through the
channel).  The response is framed as twisted.web frames it (``Content-Length`` if set,
else chunked; none for HEAD, 204 and 304; ``Connection: close`` when the client asked),
so that a client sees the same bytes from either front end, and the head goes out in
one send with the first body bytes (:func:`ipydoc.proxy.sendnow.send_now`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.web.http import RESPONSES, parse_qs
from twisted.web.http_headers import Headers

from ipydoc.proxy.headers import FastHeaders

if TYPE_CHECKING:
    from ipydoc.edge.lean_channel import LeanChannel

_NO_BODY_CODES = (204, 304)
#: The response headers the channel sets when the client asked to close.
_CLOSE = {b"Connection": [b"close"]}
#: twisted.web's ``_hostHeaderExpression``.
_HOST = re.compile(rb"^\[?(?P<host>.*?)\]?(:\d+)?$")


class LeanRequest:
    """A request the lean channel serves; built once its head is in."""

    clientproto = b"HTTP/1.1"
    code = 200
    code_message = b"OK"
    sentLength = 0
    startedWriting = False
    finished = False
    chunked = False
    defaultContentType = None
    forwarded_https = False
    _disconnected = False
    #: The client's body is fully in (set by the channel, at once for a bodiless one).
    body_in = False
    _finish_pending = False
    _no_body = False
    _args: dict[bytes, list[bytes]] | None = None
    #: Called once if the client goes away before the response is finished.
    on_gone: Callable[[], None] | None = None
    content: Any = None

    def __init__(self, channel: LeanChannel, method: bytes, uri: bytes, headers: Headers,
                 client: Any, secure: bool) -> None:
        self.channel: LeanChannel | None = channel
        self.site = channel.site
        self.method = method
        self.uri = uri
        self.path = uri.partition(b"?")[0]
        self.requestHeaders = headers
        self.responseHeaders = FastHeaders()
        self.client = client
        self._secure = secure
        self._notifications: list[Deferred[None]] = []

    # -- what the gate reads ---------------------------------------------------------

    @property
    def args(self) -> dict[bytes, list[bytes]]:
        if self._args is None:
            query = self.uri.partition(b"?")[2]
            self._args = parse_qs(query, 1) if query else {}
        return self._args

    def isSecure(self) -> bool:
        return self.forwarded_https or self._secure

    def getHeader(self, key: bytes | str) -> Any:
        values = self.requestHeaders.getRawHeaders(key)
        return values[-1] if values is not None else None

    def getClientAddress(self) -> Any:
        return self.client

    def getHost(self) -> Any:
        channel = self.channel
        return channel.host if channel is not None else None

    def getRequestHostname(self) -> bytes:
        """As twisted.web's: the ``Host`` header without its port (or brackets)."""
        host = self.getHeader(b"host")
        match = _HOST.match(host) if host is not None else None
        if match is not None:
            return match.group("host")
        return str(getattr(self.getHost(), "host", "")).encode()

    # -- the response ----------------------------------------------------------------

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        self.code = code
        self.code_message = message if message is not None \
            else RESPONSES.get(code, b"Unknown Status")

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        self.responseHeaders.setRawHeaders(name, [value])

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("LeanRequest.write after finish")
        channel = self.channel
        if self._disconnected or channel is None:
            return
        if not self.startedWriting:
            self.startedWriting = True
            channel.hold_head(self._head(channel))
            if self.method == b"HEAD" or self.code in _NO_BODY_CODES:
                self._no_body = True
        if self._no_body:
            return
        self.sentLength += len(data)
        if data:
            channel.send(b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data)
        else:
            channel.send(b"")  # "send the head now": a stream is about to start

    def _head(self, channel: LeanChannel) -> bytes:
        """The response head, framed as twisted.web would; one ``bytes``."""
        out = self.responseHeaders
        site = channel.site
        if site.connections.draining:  # the daemon is stopping: this answer is the last
            out.setRawHeaders(b"connection", [b"close"])
            channel.persistent = False
        elif not channel.persistent:
            out.setRawHeaders(b"connection", [b"close"])
        if site.hsts is not None and self.isSecure():
            out.setRawHeaders(b"strict-transport-security", [site.hsts])
        if (out.getRawHeaders(b"content-length") is None and self.method != b"HEAD"
                and self.code not in _NO_BODY_CODES):
            out.setRawHeaders(b"transfer-encoding", [b"chunked"])
            self.chunked = True
        parts = [b"HTTP/1.1 %d %s\r\n" % (self.code, self.code_message)]
        for name, values in out.getAllRawHeaders():
            for value in values:
                parts.append(b"%s: %s\r\n" % (name, value))
        parts.append(b"\r\n")
        return b"".join(parts)

    def end_response(self) -> None:
        """Finish now, or once the client's body is fully in (as SiteRequest)."""
        if self.finished or self.channel is None:
            return
        if self.body_in:
            self.finish()
        else:
            self._finish_pending = True

    def finish(self) -> None:
        if self.finished or self._disconnected:
            return
        if not self.startedWriting:
            self.write(b"")
        channel = self.channel
        self.finished = True
        if channel is None:
            return
        channel.send(b"0\r\n\r\n" if self.chunked else b"", last=True)
        self._done(channel)

    def respond_whole(self, body: bytes) -> None:
        """``write(body)`` and ``end_response()`` in fewer steps, for an answer with its
        ``Content-Length`` (none needed for HEAD, 204, 304) once the request's own body
        is in: head (as :meth:`_head` makes it) and body in one ``send``.  Anything else
        takes those two calls."""
        channel = self.channel
        no_body = self.method == b"HEAD" or self.code in _NO_BODY_CODES
        if self.startedWriting or self.finished or self._disconnected or channel is None \
                or not self.body_in or not (
                    no_body or self.responseHeaders.hasHeader(b"content-length")):
            self.write(body)
            self.end_response()
            return
        self.startedWriting = True
        self._send_whole(channel, self._head(channel), body, no_body)  # (not chunked)

    def respond_lines(self, code: int, phrase: bytes, lines: bytes, framed: bool,
                      body: bytes) -> bool:
        """:meth:`respond_whole` for an answer whose header lines are made already
        (``lines``: each ending in CRLF, as :meth:`_head` would write them; ``framed``:
        a ``Content-Length`` among them).  The head is the status line, those lines and
        what :meth:`_head` adds after them (``Connection: close``, HSTS), so the bytes are
        the same as by ``setResponseCode``, the headers and :meth:`respond_whole`.
        Returns False, having done nothing, when that would not be one step: response
        headers already set here (a cookie from the gate; the channel's own
        ``Connection: close`` is written first, as there), or not ``respond_whole``'s
        case."""
        channel = self.channel
        no_body = self.method == b"HEAD" or code in _NO_BODY_CODES
        if self.startedWriting or self.finished or self._disconnected or channel is None \
                or not self.body_in or not (no_body or framed):
            return False
        own = self.responseHeaders._rawHeaders
        if own:
            if own != _CLOSE:
                return False
            lines = b"Connection: close\r\n" + lines
        self.code, self.code_message = code, phrase
        site = channel.site
        if site.connections.draining:  # the daemon is stopping: this answer is the last
            channel.persistent = False
        if not channel.persistent and not own:
            lines += b"Connection: close\r\n"
        if site.hsts is not None and self.isSecure():
            lines += b"Strict-Transport-Security: " + site.hsts + b"\r\n"
        self.startedWriting = True
        self._send_whole(channel, b"HTTP/1.1 %d %s\r\n%s\r\n" % (code, phrase, lines), body,
                         no_body)
        return True

    def _send_whole(self, channel: LeanChannel, head: bytes, body: bytes,
                    no_body: bool) -> None:
        """The last step of :meth:`respond_whole` and :meth:`respond_lines`: head and
        body (none for HEAD, 204, 304) in one ``send``, and the request is done."""
        if no_body:
            self._no_body = True
            body = b""
        self.sentLength = len(body)
        self.finished = True
        channel.send(head + body, last=True)
        self._done(channel)

    def _done(self, channel: LeanChannel) -> None:
        for d in self._notifications:
            d.callback(None)
        self._notifications = []
        channel.site.log(self)
        channel.request_done(self)

    def loseConnection(self) -> None:
        if self.channel is not None:
            self.channel.close()

    def notifyFinish(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._notifications.append(d)
        return d

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if self.channel is not None:
            self.channel.register_producer(producer)

    def unregisterProducer(self) -> None:
        if self.channel is not None:
            self.channel.register_producer(None)

    # -- the channel's side ------------------------------------------------------------

    def body_done(self) -> None:
        """The client's body is fully in."""
        self.body_in = True
        self.content.finish()
        if self._finish_pending:
            self.finish()

    def hang_up(self) -> None:
        """An unwanted body goes on and on: stop reading it, close the connection."""
        channel = self.channel
        if channel is None:
            return
        if self._finish_pending and self.chunked:
            channel.send(b"0\r\n\r\n")  # the response itself was complete
        channel.persistent = False
        channel.close()

    def connection_lost(self, reason: Any) -> None:
        self._disconnected = True
        self.channel = None
        gone, self.on_gone = self.on_gone, None
        if gone is not None and not self.finished:
            gone()
        if not self.body_in and self.content is not None:
            self.content.fail(reason)
        for d in self._notifications:
            d.errback(reason)
        self._notifications = []
