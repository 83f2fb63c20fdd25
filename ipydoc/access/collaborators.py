"""What access needs from other parts of the daemon, as Protocols.

The concrete classes live above access (the history service) or are built once Redis is
up (the store): access names only what it calls, so it imports nothing upward.
"""

from __future__ import annotations

from typing import Protocol

from twisted.internet.defer import Deferred

from ipydoc.state.store import Store


class StoreSource(Protocol):
    """Whatever holds the store once Redis is up (the daemon's Redis service)."""

    store: Store


class SaveObserver(Protocol):
    """Told about saves the proxy sees (the history service, when versioning is on)."""

    #: The request methods whose answers can be saves; no other answer is shown to it.
    methods: frozenset[bytes]

    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        """A rename's answer names the new path, which the request line does not."""

    def note(self, user: str, method: bytes, path: bytes, code: int,
             body: bytes | None = None) -> Deferred[None] | None:
        """Record a save; the Deferred fires once it is safely queued."""
