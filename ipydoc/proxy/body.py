"""A request body that flows to the backend while the browser is still sending it.

twisted.web writes every body chunk into ``request.content`` (normally a temporary
file) and only then calls ``process()``.  A :class:`BodyStream` takes the place of that
file: it is the sink ``handleContentChunk`` writes to *and* the ``IBodyProducer`` the
backend client reads from.  Backpressure works by pausing the client's transport; a
chunk that still arrives while paused (twisted.web may resume the transport behind our
back) is kept and the transport paused again, so at most a read or two is held.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IConsumer, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

#: How much of an unwanted body (nobody will read it) we drain before hanging up.
DISCARD_LIMIT = 1024 * 1024


@implementer(IBodyProducer)
class BodyStream:
    """Request body sink on one side, push producer for the backend on the other."""

    _log = Logger()
    # Defaults (class attributes: most requests have no body, and are built fast).
    _consumer: IConsumer | None = None
    _producing: Deferred[None] | None = None
    _deciding = False
    _consumer_paused = True  # nobody reads until startProducing
    _client_paused = False
    _discarding = False
    _discarded = 0
    done = False
    #: Body bytes taken from the client to pass on (not the discarded ones): metrics.
    taken = 0
    _failure: Failure | None = None
    _on_received: Callable[[], None] | None = None

    def __init__(
        self,
        client: IPushProducer,
        length: int | None,
        on_discard_overflow: Callable[[], None],
        on_start: Callable[[], None] | None = None,
    ) -> None:
        """``length`` 0: no body, so the stream is complete (``done``) from the start."""
        self._client = client
        self._on_start = on_start
        self.length = UNKNOWN_LENGTH if length is None else length
        self._pending: list[bytes] = []
        if length == 0:
            self.has_body = False
            self.done = True
            self._on_overflow = _nothing
        else:
            self.has_body = True
            self._on_overflow = on_discard_overflow

    # -- the client side (twisted.web calls these) ---------------------------------

    def write(self, data: bytes) -> None:
        """A body chunk from the client (``Request.handleContentChunk``)."""
        if self._discarding:
            self._discarded += len(data)
            if self._discarded > DISCARD_LIMIT:
                self._on_overflow()
            return
        self.taken += len(data)
        if self._consumer is not None and not self._consumer_paused:
            self._consumer.write(data)
        else:
            self._pending.append(data)
        self._update()

    def finish(self) -> None:
        """The client sent the last byte of the body."""
        if self.done:
            return
        self.done = True
        self._on_overflow = _nothing  # no more bytes can come: let go of the request
        self._update()
        if self._consumer is not None and not self._discarding:
            self._flush()
        call, self._on_received = self._on_received, None
        if call is not None:
            call()

    def when_received(self, call: Callable[[], None]) -> None:
        """Call ``call`` once the whole body is in (now, if it is; one caller, the
        forwarder's timer).  Not a Deferred: most requests have no body, and one per
        request was made, fired and chained for nothing."""
        if self.done:
            call()
        else:
            self._on_received = call

    def fail(self, reason: Failure) -> None:
        """The client went away before the body was complete."""
        self.done = True
        self._on_overflow = _nothing
        self._failure = reason
        d, self._producing = self._producing, None
        if d is not None:
            d.errback(reason)

    def close(self) -> None:
        """Called by twisted.web like ``file.close``; nothing to release."""

    def hold(self, deciding: bool) -> None:
        """Pause (or stop pausing) the client while the gate is deciding."""
        self._deciding = deciding
        self._update()

    def discard(self) -> None:
        """No one will read the body: drain and drop what is left of it."""
        self._discarding = True
        self._pending = []
        self._update()

    # -- the backend side (twisted.web.client calls these) --------------------------

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        if self._failure is not None:
            return fail(self._failure)
        self._consumer = consumer
        self._consumer_paused = False
        if self._on_start is not None:
            self._on_start()  # e.g. "100 Continue": the backend is ready for the body
        d: Deferred[None] = Deferred()
        self._producing = d
        self._flush()  # fires ``d`` itself when the whole body was already here
        if self.done and not self._pending and self._producing is d:
            self._producing = None
            d.callback(None)
        self._update()
        return d

    def pauseProducing(self) -> None:
        self._consumer_paused = True
        self._update()

    def resumeProducing(self) -> None:
        self._consumer_paused = False
        self._flush()
        self._update()

    def stopProducing(self) -> None:
        """The backend connection is gone; the Deferred must now never fire."""
        self._producing = None
        self._consumer = None
        self.discard()

    # -- internals --------------------------------------------------------------------

    def _flush(self) -> None:
        while self._pending and self._consumer is not None and not self._consumer_paused:
            self._consumer.write(self._pending.pop(0))
        if self.done and not self._pending and self._producing is not None:
            d, self._producing = self._producing, None
            d.callback(None)

    def _update(self) -> None:
        """Pause the client iff someone needs it paused and the body is not over."""
        want = not self.done and not self._discarding and (
            self._deciding or self._consumer_paused or bool(self._pending)
        )
        if want:
            # Re-pause even if we think we are paused: twisted.web's channel may have
            # resumed the transport when its own write buffer drained.
            self._client.pauseProducing()
        elif self._client_paused:
            self._client.resumeProducing()
        self._client_paused = want


def _nothing() -> None:
    """The overflow callback of a body that is over.  The real one is the request's
    ``hang_up``, and the request holds this stream: dropping it breaks that cycle, so a
    request is freed when its exchange ends rather than by the cyclic collector."""
