"""Open proxied exchanges, by credential and by user (the server), so that revoking one
closes them.

A WebSocket (a kernel, a terminal) or a long streamed answer outlives the request
that the gate checked: ending the session or revoking the token that let it through
must also cut what is already open, not only refuse what comes next.  The forwarders
add each exchange here when it starts and remove it when it ends (two set operations,
no timer, no Redis); whoever ends credentials (:mod:`ipydoc.access.gate`) calls
:meth:`OpenExchanges.close_credential` or :meth:`OpenExchanges.close_user`; a share
revoked cuts one credential's exchanges to one server (:meth:`OpenExchanges.close_on`).

A credential is an opaque string chosen by the gate (the Redis key of the session or
token): the proxy only groups by it.
"""

from __future__ import annotations

from typing import Protocol


class Exchange(Protocol):
    """What the registry holds: an open, cuttable exchange."""

    user: str
    credential: str
    #: A spliced WebSocket (long-lived, open while a tab is) rather than a request.
    websocket: bool

    def revoke(self) -> None:
        """Close both sides now (the credential that let it through is gone)."""


class OpenExchanges:
    """Live exchanges grouped by credential and by user."""

    def __init__(self) -> None:
        self._by_credential: dict[str, set[Exchange]] = {}
        self._by_user: dict[str, set[Exchange]] = {}
        #: Bumped on every add: a check that began before it may have missed one.
        self.added = 0

    def add(self, exchange: Exchange) -> None:
        self.added += 1
        if exchange.credential:
            self._by_credential.setdefault(exchange.credential, set()).add(exchange)
        self._by_user.setdefault(exchange.user, set()).add(exchange)

    def remove(self, exchange: Exchange) -> None:
        for index, key in ((self._by_credential, exchange.credential),
                           (self._by_user, exchange.user)):
            group = index.get(key)
            if group is not None:
                group.discard(exchange)
                if not group:
                    del index[key]

    def all(self) -> list[Exchange]:
        """Every open exchange (for the drain on stop: ipydoc.edge.drain)."""
        return [e for group in self._by_user.values() for e in group]

    def credentials(self) -> list[str]:
        """The credentials that have something open."""
        return list(self._by_credential)

    def users(self, credential: str) -> set[str]:
        """Whose exchanges ``credential`` has open (for log lines)."""
        return {e.user for e in self._by_credential.get(credential, ())}

    def requests(self, user: str) -> int:
        """``user``'s HTTP requests under way (WebSockets not counted): a server with
        one must not be paused, whatever its idle time says (a long download)."""
        return sum(1 for e in self._by_user.get(user, ()) if not e.websocket)

    def count(self, user: str | None = None) -> int:
        if user is not None:
            return len(self._by_user.get(user, ()))
        return sum(len(g) for g in self._by_user.values())

    def credentials_on(self, user: str) -> set[str]:
        """The credentials with something open to ``user``'s server (the exchanges' user
        is the server the gate forwarded to: a guest's exchanges are under the owner's
        server, with the guest's credential)."""
        return {e.credential for e in self._by_user.get(user, ()) if e.credential}

    def close_on(self, credential: str, user: str, *, websockets_only: bool = False) -> int:
        """Cut what ``credential`` has open to ``user``'s server only (a share revoked:
        the guest keeps their own server); with ``websockets_only``, only WebSockets (a
        share turned view-only).  How many were open."""
        return self._close({e for e in self._by_credential.get(credential, ())
                            if e.user == user and (e.websocket or not websockets_only)})

    def close_credential(self, credential: str) -> int:
        """Cut everything ``credential`` let through; how many were open."""
        return self._close(self._by_credential.get(credential))

    def close_user(self, user: str) -> int:
        """Cut everything open for ``user``; how many were open."""
        return self._close(self._by_user.get(user))

    def _close(self, group: set[Exchange] | None) -> int:
        victims = list(group or ())
        for exchange in victims:
            self.remove(exchange)
            exchange.revoke()
        return len(victims)
