"""One start in flight: how a stop (or the loss of the start lease to another daemon)
ends it at its next wait, and the failure a start reports."""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.defer import CancelledError

T = TypeVar("T")


class StartFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class StartHandle:
    """One start in flight, which a stop can end at its next wait."""

    def __init__(self) -> None:
        self.stop_requested = False
        self.lease_lost = False
        self._waiting: defer.Deferred[Any] | None = None

    def request_stop(self) -> None:
        self.stop_requested = True
        if self._waiting is not None:
            self._waiting.cancel()

    def lose_lease(self) -> None:
        """The start lease expired and another daemon may run this start now."""
        self.lease_lost = True
        if self._waiting is not None:
            self._waiting.cancel()

    def check(self) -> None:
        if self.lease_lost:
            raise StartFailed("superseded", "another ipydoc daemon took this start over; "
                                            "reload the page")
        if self.stop_requested:
            raise StartFailed("stopped", "the server was stopped while it was starting")

    async def wait(self, d: defer.Deferred[T]) -> T:
        """``await d``, unless a stop comes first (then ``d`` is cancelled)."""
        if self.stop_requested:
            d.cancel()
            d.addErrback(lambda _: None)
            self.check()
        self._waiting = d
        try:
            return await d
        except CancelledError:
            self.check()
            raise
        finally:
            self._waiting = None
