"""One claimed request, from the gate's verdict to the right forwarder.

The site calls :meth:`Proxy.handle` as soon as a claimed request's headers are in;
the client is paused while the gate decides, so no body byte is read for a request
that may be refused.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest

from ipydoc.proxy import metrics
from ipydoc.proxy.body import BodyStream
from ipydoc.proxy.eager import run_eagerly
from ipydoc.proxy.gate import Forward, Gate, Reply
from ipydoc.proxy.headers import is_websocket_upgrade
from ipydoc.proxy.http import HttpForwarder
from ipydoc.proxy.live import OpenExchanges
from ipydoc.proxy.paths import dot_segment
from ipydoc.proxy.replies import START_ATTR, error_reply, write_reply
from ipydoc.proxy.websocket import WebSocketForwarder

NOT_FORWARDED = "This path is not forwarded: it has '.' or '..' segments."


class Proxy:
    """Asks the gate, then forwards (HTTP or WebSocket) or answers in its place."""

    _log = Logger()

    def __init__(
        self,
        gate: Gate,
        reactor: Any,
        *,
        pool_size: int = 64,
        connect_timeout: float = 10.0,
        head_timeout: float = 300.0,
    ) -> None:
        self._gate = gate
        self._recall = getattr(gate, "recall", None)
        # The gate's registry when it has one (it cuts them on revocation).
        self.exchanges: OpenExchanges = getattr(gate, "exchanges", None) or OpenExchanges()
        self.http = HttpForwarder(
            reactor, gate, pool_size=pool_size,
            connect_timeout=connect_timeout, head_timeout=head_timeout,
            exchanges=self.exchanges,
        )
        self.websocket = WebSocketForwarder(
            reactor, gate, connect_timeout=connect_timeout, head_timeout=head_timeout,
            exchanges=self.exchanges,
        )

    def handle(self, request: IRequest) -> Deferred[None] | None:
        """Proxy ``request`` (whose ``content`` is a :class:`BodyStream`).  A verdict the
        gate recalls is forwarded at once.  Else the gate decides, run eagerly: one that
        decides from memory costs no Deferred (:mod:`ipydoc.proxy.eager`), and then None
        is returned; else the Deferred of the rest (it never fails)."""
        recall = self._recall
        if recall is not None and not request.content.has_body:
            try:
                forward = recall(request)
            except Exception:
                self._log.failure("gate.recall failed")
                forward = None
            # (else _handle refuses it: a target not a path, a '.' or '..' segment)
            if forward is not None and request.uri[:1] == b"/" \
                    and not dot_segment(request.path):
                setattr(request, START_ATTR, forward.start_url)
                metrics.recalled[0] += 1
                self.http.forward(request, forward)
                return None
        return run_eagerly(self._handle(request),
                           lambda failure: self._crashed(failure, request))

    def close(self) -> Deferred[None]:
        """Close idle backend connections (on shutdown)."""
        return self.http.close()

    async def _handle(self, request: IRequest) -> None:
        body: BodyStream = request.content
        if not request.uri.startswith(b"/"):
            body.discard()
            write_reply(request, error_reply(request, 400))
            return
        if dot_segment(request.path):  # never routed on, whatever the gate would say
            body.discard()
            write_reply(request, error_reply(request, 404, NOT_FORWARDED))
            return
        hold = not body.done  # a body still to come waits for the verdict
        if hold:
            body.hold(True)
        try:
            decision = await self._gate.decide(request)
        finally:
            if hold:
                body.hold(False)
        if getattr(request, "_disconnected", False):
            return
        if isinstance(decision, Reply):
            body.discard()
            write_reply(request, decision)
            return
        if not isinstance(decision, Forward):
            raise TypeError(f"gate.decide returned {type(decision).__name__}")
        if decision.start_url:  # remember_start_url, inline
            setattr(request, START_ATTR, decision.start_url)
        if is_websocket_upgrade(request) and not body.has_body:
            await self.websocket.forward(request, decision)
        else:
            self.http.forward(request, decision)  # runs on by itself: nothing to await

    def _crashed(self, failure: Failure, request: IRequest) -> None:
        self._log.failure(
            "proxy failed on {method} {path}", failure,
            method=request.method.decode("latin-1"), path=request.path.decode("latin-1"),
        )
        body = getattr(request, "content", None)
        if isinstance(body, BodyStream):
            body.discard()
        write_reply(request, error_reply(request, 500))
