"""An Engine ``/events`` stream that reconnects by itself: the part the Docker backend's
and the Swarm backend's event followers share.

The stream drops whenever dockerd restarts or the socket hiccups; it is opened again with
a backoff from 0.5 s to 10 s, and ``on_open(reconnected)`` is called on every
(re)connection, so the caller reconciles what it may have missed.  Subclasses say how to
open their stream (filters, what an event does) in :meth:`ReconnectingStream._open`.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent

log = Logger()

FIRST_BACKOFF = 0.5
LONGEST_BACKOFF = 10.0


class ReconnectingStream:
    """Follows one events stream for :meth:`ipydoc.backends.base.Backend.follow`."""

    #: Names the stream in log lines ("Docker events", "swarm events").
    what = "events"

    def __init__(self, reactor: Any, api: Any) -> None:
        self.reactor = reactor
        self.api = api
        self._listener: Callable[[BackendEvent], None] | None = None
        self._on_open: Callable[[bool], None] | None = None
        self._opened_before = False
        self._following = False
        self._stream: Deferred | None = None
        self._retry: Any = None
        self._backoff = FIRST_BACKOFF

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        """Call ``listener`` for each event from now on; ``on_open(reconnected)`` each
        time the stream is connected."""
        self._listener = listener
        self._on_open = on_open
        if self._following:
            return
        self._following = True
        self._backoff = FIRST_BACKOFF
        self._connect()

    def stop_following(self) -> None:
        self._following = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    # -- for subclasses ---------------------------------------------------------------

    def _open(self, opened: Callable[[], None]) -> Deferred:
        """Open the stream (``self.api.events(...)``), calling ``opened`` once connected."""
        raise NotImplementedError

    def _connected(self, reconnected: bool) -> None:
        """After ``on_open``, on each (re)connection."""

    # -- reconnecting -----------------------------------------------------------------

    def _connect(self) -> None:
        self._retry = None
        if not self._following:
            return

        def opened() -> None:
            self._backoff = FIRST_BACKOFF
            reconnected, self._opened_before = self._opened_before, True
            if reconnected:
                log.info("{what} stream at {host} reconnected", what=self.what,
                         host=self.api.host)
            if self._on_open is not None:
                self._on_open(reconnected)
            self._connected(reconnected)

        d = self._stream = self._open(opened)
        d.addCallbacks(self._ended, self._failed)

    def _ended(self, _: Any) -> None:
        self._stream = None
        if self._following:
            log.info("the {what} stream ended; reconnecting", what=self.what)
            self._schedule()

    def _failed(self, f: Any) -> None:
        self._stream = None
        if f.check(CancelledError) or not self._following:
            return
        msg = f.value.message if f.check(BackendError) else f.getErrorMessage()
        log.warn("{what}: {msg}; retrying in {s:g} s", what=self.what, msg=msg,
                 s=self._backoff)
        self._schedule()

    def _schedule(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, LONGEST_BACKOFF)
        self._retry = self.reactor.callLater(delay, self._connect)
