"""The daemon's reactor: Twisted's epoll reactor without a log context per I/O event.

For every readable or writable socket, Twisted's ``EPollReactor.doPoll`` calls the
handler through ``twisted.python.log.callWithLogger``: it asks the protocol for its
``logPrefix()`` and pushes a context dictionary, so that a *legacy* ``log.msg`` made
inside the handler is tagged with that prefix.  ipydoc logs with ``twisted.logger``,
which never reads that context, yet the proxy paid for it on every event (two per
proxied request at least): 7-9 µs per proxied request, 3-4% of the daemon's CPU
(``bench/proxy.py --baseline``, docs/front_end.md).

:class:`LeanEPollReactor` dispatches the same events to the same
``_doReadOrWrite`` (which still catches and logs any exception and drops the
connection that raised it), only without that wrapper.  The one visible difference: a
legacy log line from inside an I/O handler (e.g. Twisted's "Unhandled Error") carries the
system ``-`` instead of the protocol's prefix.

:func:`install` puts it in place when nothing has installed a reactor yet; ``twistd
--reactor NAME`` (installed before ipydoc's options are read) is left as chosen.  The
private names it uses (``_poller``, ``_selectables``, ``_doReadOrWrite``, ``_topHandler``,
``_started``) are checked in
``tests/edge/test_twisted_private_api.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from twisted.internet.base import _topHandler
from twisted.internet.epollreactor import EPollReactor
from twisted.logger import Logger

_log = Logger()


class LeanEPollReactor(EPollReactor):
    """``EPollReactor`` whose ``doPoll`` calls each event's handler directly, and counts
    the events it handled (read by :mod:`ipydoc.edge.scheduling`)."""

    #: Socket events (readable or writable descriptors) handled so far.
    events = 0
    #: When :attr:`events` reaches this, :attr:`on_events` is called once and this is
    #: reset: :mod:`ipydoc.edge.scheduling` acts the moment a rate is certain, not at
    #: the end of its window (one comparison per round).
    events_alarm = sys.maxsize
    on_events: Callable[[], None] | None = None

    def mainLoop(self) -> None:
        """Twisted's loop, with its handler of unexpected errors entered once, not on
        every round (two calls per round, a round or two per proxied request).  An error
        that reaches it is still logged ("Unexpected error in main loop") and the loop
        goes on, as in Twisted's."""
        while self._started:
            with _topHandler:
                while self._started:
                    self.runUntilCurrent()
                    t2 = self.timeout()
                    t = self.running and t2
                    self.doIteration(t)
        _log.info("Main loop terminated.")

    def doPoll(self, timeout: float | None) -> None:
        try:
            # as Twisted: at most one event per watched descriptor, -1 waits indefinitely
            events = self._poller.poll(-1 if timeout is None else timeout,
                                       len(self._selectables))
        except InterruptedError:
            return
        self.events = seen = self.events + len(events)
        if seen >= self.events_alarm:
            self.events_alarm = sys.maxsize
            if self.on_events is not None:
                self.on_events()
        handle = self._doReadOrWrite
        selectables = self._selectables
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:  # removed by an earlier event of this round
                handle(selectable, fd, event)

    doIteration = doPoll


def install() -> bool:
    """Install :class:`LeanEPollReactor` unless a reactor is installed already; whether it
    did.  Call it before anything imports ``twisted.internet.reactor``."""
    if "twisted.internet.reactor" in sys.modules:
        return False
    from twisted.internet.main import installReactor

    installReactor(LeanEPollReactor())
    return True
