"""The access log line, without secrets that travel in URLs.

An OAuth/OIDC callback carries a one-time ``code`` and the ``state`` in its query, and
some clients put ``token=`` in a query; twisted.web's combined log format would write them
to the log (the request line and the Referer).  Their values are replaced by ``…`` before the line is formatted.

:func:`mark` adds a word at the end of a request's line (``resumed``: it woke a paused
server, issue 15).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

SECRET_PARAMS = re.compile(
    rb"([?&](?:code|state|token|access_token|id_token|_csrf)=)[^&#\s]*", re.IGNORECASE)


def scrub_uri(uri: bytes) -> bytes:
    if uri.find(b"=") == -1:  # no parameter value at all: the common case, no regex
        return uri
    return SECRET_PARAMS.sub(rb"\1...", uri)


#: Anything that is not printable ASCII, and the quote and backslash, gets escaped.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


#: Bytes a value may hold unescaped: printable ASCII but the quote and the backslash.
_PLAIN = bytes(b for b in range(0x20, 0x7f) if b not in b'"\\')


def _escape(value: bytes) -> str:
    """As twisted.web's ``_escape``: a value can never break out of its quotes or line."""
    if not value.translate(None, _PLAIN):  # nothing to escape (one C pass, no regex)
        return value.decode("ascii")
    text = value.decode("latin-1")
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()), text)


MARK_ATTR = "ipydoc_log_mark"


def mark(request: Any, word: str) -> None:
    """Add ``word`` (a fixed word of ours, never user data) to ``request``'s log line."""
    setattr(request, MARK_ATTR, word)


def fields(request: Any) -> tuple[Any, ...]:
    """What a log line needs from ``request``, taken now (the line is made later)."""
    headers = request.requestHeaders
    return (getattr(request.getClientAddress(), "host", None), request.method, request.uri,
            request.clientproto, request.code, request.sentLength,
            headers.getRawHeaders(b"referer"), headers.getRawHeaders(b"user-agent"),
            getattr(request, MARK_ATTR, None))


def format_line(timestamp: str, f: tuple[Any, ...]) -> str:
    """The combined log format (as twisted.web's ``combinedLogFormatter``), URIs masked."""
    host, method, uri, proto, code, length, referer, agent, word = f
    host = (host or "-").encode("latin-1", "replace")
    uri = scrub_uri(uri)
    referer = scrub_uri(referer[0]) if referer else b"-"
    agent = agent[0] if agent else b"-"
    # One C pass over all of them: a line of plain values needs no _escape call at all.
    if (host + method + uri + proto + referer + agent).translate(None, _PLAIN):
        host, method, uri, proto, referer, agent = (
            _escape(v).encode("latin-1") for v in (host, method, uri, proto, referer, agent))
    line = '"%s" - - %s "%s %s %s" %d %s "%s" "%s"' % (
        host.decode("latin-1"), timestamp, method.decode("latin-1"), uri.decode("latin-1"),
        proto.decode("latin-1"), code, length or "-", referer.decode("latin-1"),
        agent.decode("latin-1"))
    return f"{line} {word}" if word else line


class BatchedLog:
    """The access log's file: lines are collected and written every ``interval`` seconds.

    Each line carries its own timestamp, so nothing is lost by writing them together, and
    the cost per request drops to a list append: an event through the daemon's logging
    (observers, filters, a timestamp and system prefix formatted per event) or a write
    syscall per line was about a tenth of the proxy's CPU for a small request.
    ``close`` (at shutdown) writes what is left.
    """

    def __init__(self, reactor: Any, sink: Callable[[str], None], interval: float = 0.5,
                 on_close: Callable[[], None] | None = None) -> None:
        self._reactor = reactor
        self._sink = sink
        self._interval = interval
        self._on_close = on_close
        self._lines: list[tuple[str, tuple[Any, ...]]] = []  # (timestamp, fields)
        self._call: Any = None

    def add(self, timestamp: str, request: Any) -> None:
        """Note ``request``: its line is formatted with the others at the next flush
        (formatting hundreds of lines in a row is cheaper than one per request)."""
        self._lines.append((timestamp, fields(request)))
        if self._call is None:
            self._call = self._reactor.callLater(self._interval, self.flush)

    def flush(self) -> None:
        self._call = None
        lines, self._lines = self._lines, []
        if lines:
            self._sink("".join(format_line(*x) + "\n" for x in lines))

    def close(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self.flush()
        if self._on_close is not None:
            self._on_close()


_access = Logger(namespace="ipydoc.access")


def to_daemon_log(text: str) -> None:
    """Lines (each ending in a newline) as one event in the daemon's log."""
    _access.info("{lines}", lines=text.rstrip("\n"))


def open_batched(reactor: Any, path: str | None) -> BatchedLog:
    """The daemon's log (``path`` None) or an appended file, written in batches."""
    if path is None:
        return BatchedLog(reactor, to_daemon_log)
    f = open(path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 - closed by close()

    def write(text: str) -> None:
        f.write(text)
        f.flush()

    return BatchedLog(reactor, write, on_close=f.close)
