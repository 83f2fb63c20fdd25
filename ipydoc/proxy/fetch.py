"""A bounded HTTP/1.1 client for the daemon's own requests to a user's server.

The daemon reads users' servers on its own account: readiness polls (``/api/status``),
the culler's activity read (``/api/status``, ``/api/kernels``), and the history worker's
contents reads and restores.  A user controls everything in their container (a
``jupyter_server_config.py`` in their home can replace the server by any program), so
every byte of these answers is hostile.  ``treq``/``Agent`` read whole bodies, inflate
gzip without bound and only time the wait for the headers; this client never trusts the
server:

* it asks for ``Accept-Encoding: identity`` and refuses an answer with any other
  ``Content-Encoding`` (it never inflates anything, so no gzip bomb);
* the body has a byte budget: a ``Content-Length`` over it is refused before any body
  byte is read, and the connection is aborted the moment the received bytes (de-chunked,
  and the raw bytes with their framing) pass it, whatever the server declared;
* one deadline covers the whole exchange (connect, head, body): when it passes the
  connection is aborted, so a trickling body cannot hold a caller;
* every failure is one exception type, :class:`FetchError`, whose ``reason`` says which
  rule was broken (callers decide: retry, or give up on a hostile answer).

It is built on the proxy's strict HTTP/1.1 parser (:mod:`ipydoc.proxy.backend`: no
ambiguous framing, a 64 KiB cap on the head); every request uses a fresh connection with
``Connection: close`` (these requests are rare, and nothing a hostile server sends after
the answer can reach the next one).  Only ``ipydoc.proxy`` is imported, like the rest of
the proxy package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from twisted.internet import error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import ClientFactory
from twisted.python.failure import Failure

from ipydoc.proxy.backend import MAX_HEAD, BackendConnection, Exchange, ResponseHead

#: Raw bytes allowed beyond the body budget: the head and chunked framing of an honest
#: server fit easily; a server padding its chunks with extensions does not.
RAW_SLACK = MAX_HEAD + 64 * 1024

#: ``reason`` values of :class:`FetchError`.  ``connect``/``closed`` may be transient
#: (the server restarts); the others mean the answer broke a rule and would again.
CONNECT, CLOSED, DEADLINE, TOO_LARGE, ENCODING, BAD_RESPONSE = (
    "connect", "closed", "deadline", "too-large", "encoding", "bad-response")
#: Reasons that a hostile (or broken) answer earns; retrying reads the same answer.
BUDGET_REASONS = frozenset({DEADLINE, TOO_LARGE, ENCODING, BAD_RESPONSE})


class FetchError(Exception):
    """A request to a user's server failed; ``reason`` is one of the constants above."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail

    @property
    def budget(self) -> bool:
        """True when the answer broke a limit (size, encoding, deadline, framing)."""
        return self.reason in BUDGET_REASONS


@dataclass(frozen=True)
class FetchResponse:
    code: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        lower = name.lower()
        for k, v in self.headers:
            if k.lower() == lower:
                return v
        return None

    def json(self) -> Any:
        """The body as JSON; :class:`FetchError` (``bad-response``) when it is not."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as e:
            raise FetchError(BAD_RESPONSE, f"not JSON ({type(e).__name__})") from None


class _Conn(BackendConnection):
    """A backend connection that also counts raw bytes (framing included)."""

    raw_budget = 0
    on_raw_overflow: Any = None

    def __init__(self, pool: Any, key: tuple[str, int]) -> None:
        super().__init__(pool, key)
        self.raw = 0

    def dataReceived(self, data: bytes) -> None:
        self.raw += len(data)
        if self.raw > self.raw_budget and not self._aborted:
            if self.on_raw_overflow is not None:
                self.on_raw_overflow()
            self.abort()
            return
        super().dataReceived(data)


class _OneShot(ClientFactory):
    """Factory and "pool" of one connection: connected → the Deferred; never kept."""

    noisy = False

    def __init__(self, key: tuple[str, int], raw_budget: int) -> None:
        self.key = key
        self.raw_budget = raw_budget
        self.d: Deferred[_Conn] = Deferred()
        self.conn: _Conn | None = None

    def buildProtocol(self, addr: Any) -> _Conn:
        conn = _Conn(self, self.key)
        conn.raw_budget = self.raw_budget
        self.conn = conn
        return conn

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        if not self.d.called:
            self.d.errback(reason)

    # the BackendPool interface BackendConnection calls
    def connected(self, conn: BackendConnection) -> None:
        if not self.d.called:
            self.d.callback(conn)

    def release(self, conn: BackendConnection) -> None:
        if conn.transport is not None:
            conn.transport.loseConnection()

    def lost(self, conn: BackendConnection) -> None:
        pass


class _Collect(Exchange):
    """Gathers one answer within the budget; settles ``d`` exactly once."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.d: Deferred[FetchResponse] = Deferred()
        self.conn: _Conn | None = None
        self._head: ResponseHead | None = None
        self._chunks: list[bytes] = []
        self._size = 0

    def refuse(self, reason: str, detail: str) -> None:
        self._chunks = []  # at once: nothing of a refused body stays in memory
        if not self.d.called:
            self.d.errback(FetchError(reason, detail))
        if self.conn is not None:
            self.conn.abort()

    def head_received(self, head: ResponseHead) -> None:
        self._head = head
        for name, value in head.headers:
            if name.lower() == b"content-encoding" and \
                    value.strip().lower() not in (b"", b"identity"):
                self.refuse(ENCODING, f"Content-Encoding {value[:40]!r} was not asked for")
                return
        if head.length is not None and head.length > self.budget:
            self.refuse(TOO_LARGE, f"Content-Length {head.length} is over {self.budget} bytes")

    def body_received(self, data: bytes) -> None:
        if self.d.called:
            return
        self._size += len(data)
        if self._size > self.budget:
            self.refuse(TOO_LARGE, f"body over {self.budget} bytes")
            return
        self._chunks.append(data)

    def response_done(self) -> None:
        if self.d.called or self._head is None:
            return
        body, self._chunks = b"".join(self._chunks), []
        self.d.callback(FetchResponse(self._head.code, list(self._head.headers), body))
        if self.conn is not None and self.conn.transport is not None:
            self.conn.transport.loseConnection()

    def exchange_failed(self, reason: Failure, head_seen: bool) -> None:
        if self.d.called:
            return
        self._chunks = []
        if reason.check(error.ConnectionDone, error.ConnectionLost):
            self.d.errback(FetchError(CLOSED, "the server closed the connection"
                                      + (" mid-answer" if head_seen else " before answering")))
        else:
            self.d.errback(FetchError(BAD_RESPONSE, reason.getErrorMessage()[:200]))


class Fetcher:
    """Makes bounded requests to users' servers (see the module docstring)."""

    def __init__(self, reactor: Any, *, connect_timeout: float = 10.0) -> None:
        self._reactor = reactor
        self._connect_timeout = connect_timeout

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                params: dict[str, str] | None = None, body: bytes = b"",
                max_body: int, timeout: float) -> Deferred[FetchResponse]:
        """``method url`` within ``max_body`` bytes of answer and ``timeout`` seconds in
        all.  Fires with a :class:`FetchResponse` or fails with :class:`FetchError`;
        cancelling it aborts the connection."""
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not an http:// URL: {url!r}")
        host, port = parts.hostname, parts.port or 80
        target = parts.path or "/"
        query = "&".join(q for q in (parts.query, urlencode(params or {})) if q)
        if query:
            target += "?" + query
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}",
                 "Accept-Encoding: identity", "Connection: close", "User-Agent: ipydoc"]
        for k, v in (headers or {}).items():
            if "\r" in k + v or "\n" in k + v:
                raise ValueError("header with a line break")
            lines.append(f"{k}: {v}")
        if body or method in ("PUT", "POST", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

        collect = _Collect(max_body)
        factory = _OneShot((host, port), max_body + RAW_SLACK)
        connector = self._reactor.connectTCP(host, port, factory,
                                             timeout=min(self._connect_timeout, timeout))

        def connected(conn: _Conn) -> None:
            collect.conn = conn
            conn.on_raw_overflow = lambda: collect.refuse(
                TOO_LARGE, f"over {max_body} bytes with framing")
            if collect.d.called:  # the deadline passed while connecting
                conn.abort()
                return
            conn.send(head, None, collect, no_body_expected=method == "HEAD")

        def not_connected(f: Failure) -> None:
            if not collect.d.called:
                collect.d.errback(FetchError(CONNECT, f.getErrorMessage()[:200]))

        factory.d.addCallbacks(connected, not_connected)

        def stop(reason: str, detail: str) -> None:
            collect.refuse(reason, detail)  # first: it names why, not the disconnect
            if collect.conn is None:
                connector.disconnect()

        timer = self._reactor.callLater(timeout, stop, DEADLINE,
                                        f"no complete answer within {timeout:.3g} s")

        def cancel(_: Deferred[FetchResponse]) -> None:
            stop("cancelled", "the caller gave up")

        result: Deferred[FetchResponse] = Deferred(cancel)

        def settle(outcome: Any) -> None:
            if timer.active():
                timer.cancel()
            conn = collect.conn
            if conn is not None:  # break the cycles: no garbage collection needed
                conn.on_raw_overflow = None
            collect._chunks = []
            if result.called:
                return
            if isinstance(outcome, Failure):
                if outcome.check(FetchError) and outcome.value.reason == "cancelled":
                    result.errback(Failure(CancelledError()))
                else:
                    result.errback(outcome)
            else:
                result.callback(outcome)

        collect.d.addBoth(settle)
        return result

    def get(self, url: str, **kw: Any) -> Deferred[FetchResponse]:
        return self.request("GET", url, **kw)
