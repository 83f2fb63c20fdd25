"""Login sessions: a signed cookie naming a Redis record, revocable at any time.

Every proxied request needs its session, so a validated session is kept in memory for a
few seconds instead of costing a Redis round trip each time.  Every way of ending a
session (logout, revoke, disable, remove) goes through the store, which empties this cache
at once (and has the gate close the WebSockets those sessions have open:
:mod:`ipydoc.access.gate`); with several daemons over one Redis the store also tells the
others (``sessions-ended`` on :mod:`ipydoc.state.bus`), which empty theirs as soon as the
message arrives (milliseconds; measured by tests/cluster and bench/daemons.py).  If the
bus connection was down, it empties the caches when it is back.  Only expiry (days) is
seen up to ``CACHE_SECONDS`` late.

The cache is bounded (``CACHE_MAX`` entries, least recently used out first, counted in
``ipydoc_session_cache_evictions``): a site with many users who once logged in must not
grow it without end, and a lookup is one dict operation whatever its size.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import cached_property

from twisted.web.iweb import IRequest

from ipydoc.access import metrics
from ipydoc.access.collaborators import StoreSource
from ipydoc.access.cookies import SESSION_COOKIE, Signer, cookie_header, new_id, read_cookie
from ipydoc.access.lru import LRU
from ipydoc.state.keys import session_key
from ipydoc.state.store import Store


@dataclass(frozen=True)
class Session:
    id: str
    user: str
    csrf: str

    @cached_property
    def key(self) -> str:
        """The session's Redis key (what its open exchanges are revoked by), hashed once
        per cached session rather than once per request."""
        return session_key(self.id)


CACHE_SECONDS = 5.0
CACHE_MAX = 10_000

class Sessions:
    def __init__(self, store_source: StoreSource, secret: bytes, lifetime: int,
                 cache_max: int = CACHE_MAX) -> None:
        self._store_source = store_source
        self.signer = Signer(secret, "session")
        self.lifetime = lifetime
        # signed cookie → (session, valid until), the least recently used dropped when full
        self._cache: LRU[bytes, tuple[Session, float]] = LRU(
            cache_max, on_evict=metrics.SESSION_CACHE_EVICTIONS.inc)
        self._generation = 0  # bumped when sessions end: a lookup in flight then is not cached
        self._watched: Store | None = None

    def _forget_all(self) -> None:
        self._cache.clear()
        self._generation += 1

    @property
    def store(self) -> Store:
        store = self._store_source.store
        if store is not self._watched:  # the store exists once Redis is up
            store.on_sessions_ended(self._forget_all)
            self._watched = store
        return store

    async def from_request(self, request: IRequest) -> Session | None:
        # The cache is keyed by the signed cookie as sent: a hit skips the HMAC check too.
        # ``__Host-`` over https; sent twice (one planted by a sibling host): no session.
        signed = read_cookie(request, SESSION_COOKIE)
        if signed is None:
            return None
        store = self.store
        now = time.monotonic()
        hit = self._cache.get(signed)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            self._cache.pop(signed)
        session_id = self.signer.unsign(signed)
        if session_id is None:
            return None
        generation = self._generation
        record = await store.get_session(session_id)
        if not record or "user" not in record:
            self._cache.pop(signed)
            return None
        session = Session(session_id, record["user"], record.get("csrf", ""))
        if generation == self._generation:
            self._remember(signed, session, now + CACHE_SECONDS)
        return session

    def recall(self, signed: bytes) -> Session | None:
        """The session cached for ``signed`` (a session cookie as sent), from memory only:
        None if it is not cached, is out of date, or the store changed (its ended sessions
        would not empty this cache yet).  Whatever ends a session empties the cache, so a
        session recalled here is one :meth:`from_request` would also give."""
        if self._store_source.store is not self._watched:
            return None
        hit = self._cache.get(signed)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    def _remember(self, signed: bytes, session: Session, until: float) -> None:
        self._cache.put(signed, (session, until))

    @property
    def evictions(self) -> int:
        """Entries dropped to keep the cache within ``cache_max`` (this instance)."""
        return self._cache.evictions

    @property
    def cached(self) -> int:
        """Sessions held in memory now (at most ``cache_max``)."""
        return len(self._cache)

    async def create(self, request: IRequest, user: str) -> Session:
        session = Session(new_id(), user, secrets.token_urlsafe(32))
        await self.store.create_session(session.id, user, session.csrf, self.lifetime)
        request.responseHeaders.addRawHeader(
            b"Set-Cookie",
            cookie_header(SESSION_COOKIE, self.signer.sign(session.id),
                          secure=request.isSecure(), max_age=self.lifetime).encode())
        return session

    async def end(self, request: IRequest, session: Session) -> None:
        await self.store.delete_session(session.id)
        request.responseHeaders.addRawHeader(
            b"Set-Cookie",
            cookie_header(SESSION_COOKIE, "", secure=request.isSecure(), max_age=0).encode())
