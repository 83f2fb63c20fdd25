"""Subdomain mode: how a login on the hub becomes a credential for ``NAME.<domain>``.

The hub's session cookie is host-only on the bare domain, so browsers never send it to a
user's host (whose pages run that user's code).  Each user host gets its own host-only
cookie, ``ipydoc-user``, through a handoff bound to the browser that asked for it:

1. ``NAME.<domain>/anything`` without a valid ``ipydoc-user`` sets a host-only **state
   cookie** ``ipydoc-handoff`` (a random value; 15 min; an existing one is kept, so two
   tabs can sign in at once) and redirects to
   ``<domain>/hub/handoff?to=NAME&next=/anything&state=STATE``;
2. the hub checks its session belongs to NAME (or to a guest NAME's server is shared
   with: issue 19 §3) and stores a random **handoff token** (30 s, single use, bound to
   that hub session and to the hash of the state and the host; Redis keeps only hashes) and redirects to ``NAME.<domain>/_ipydoc/handoff?token=...&next=...``;
3. that endpoint takes the token out of Redis atomically (GET+DEL in one MULTI) — a
   replay, a late use or the token shown at another user's host is refused — checks that
   this browser's state cookie is the one the token was issued for, creates a **host
   session** bound to the hub session, sets its cookie and redirects to ``next`` (a path
   on the same host).

Without the state, a user could fetch a handoff URL for her own host and send another
person's browser through it: that browser would be signed in to her server and run her
pages (which could pose as the hub, or as that person's server).  The state cookie is
host-only on NAME's host, which no one else can write before the browser holds a host
session there; over https it is ``__Host-`` (as every ipydoc cookie: :mod:`ipydoc.access.cookies`),
so not even a sibling host can plant one, and one sent twice is no state at all.

A host session is valid only while its hub session lives (logout, ``user disable``,
``session revoke``, expiry all end it: it is checked on every lookup, with the same few
seconds of cache as hub sessions, emptied whenever the store ends sessions) and only
at the host that set it (a host-only cookie).  A guest's host session names the guest,
so the ladder's owner step checks the share on every request: revoking it refuses the
next one.  The ``/_ipydoc/`` path prefix on user hosts belongs to ipydoc.

Redis keys (see :mod:`ipydoc.state.keys`): ``ipydoc:handoff:{sha256(token)}`` (string
``"NAME SESSIONKEY sha256(STATE HOST)"``, 30 s) and ``ipydoc:host-session:{sha256(id)}``
(hash ``user``, ``session``, ``created``; expires with the hub session).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from twisted.web.iweb import IRequest

from ipydoc.access.collaborators import StoreSource
from ipydoc.access.cookies import Signer, cookie_header, new_id, read_cookie
from ipydoc.access.lru import LRU
from ipydoc.access.sessions import Session
from ipydoc.names import SERVER_KEY_SEPARATOR
from ipydoc.state.keys import session_key
from ipydoc.state.store import Store

USER_COOKIE = "ipydoc-user"
STATE_COOKIE = "ipydoc-handoff"
STATE_SECONDS = 900  # from the user's host through a login at the hub and back
HANDOFF_SECONDS = 30
HANDOFF_PATH = b"/_ipydoc/handoff"
CACHE_SECONDS = 5.0
CACHE_MAX = 10_000

#: What :func:`new_state` makes (``secrets.token_urlsafe(32)``).
_STATE = re.compile(r"[A-Za-z0-9_-]{43}")


def new_state() -> str:
    return secrets.token_urlsafe(32)


def well_formed_state(state: str | bytes | None) -> str | None:
    """``state`` as text if it looks like one of ours, else None."""
    if isinstance(state, bytes):
        state = state.decode("latin-1")
    return state if state and _STATE.fullmatch(state) else None


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def bound_hash(state: str, host: str) -> str:
    """What a handoff token is bound to: the browser's state at that host, and the host."""
    return state_hash(f"{state} {host}")


class HostSessions:
    """Handoff tokens and the per-user-host sessions they turn into."""

    def __init__(self, store_source: StoreSource, secret: bytes,
                 guest_may_enter: Callable[[str, str], Awaitable[bool]] | None = None
                 ) -> None:
        self._store_source = store_source
        #: (user, server key) → may this user, not the owner, sign in at that host (a
        #: share: issue 19 §3); None: owners only.
        self.guest_may_enter = guest_may_enter
        self.signer = Signer(secret, "user-host")
        self._cache: LRU[str, tuple[tuple[str, str], float]] = LRU(CACHE_MAX)
        self._generation = 0
        self._watched: Store | None = None

    @property
    def store(self) -> Store:
        store = self._store_source.store
        if store is not self._watched:
            store.on_sessions_ended(self._forget_all)
            self._watched = store
        return store

    def _forget_all(self) -> None:
        self._cache.clear()
        self._generation += 1

    async def may_enter(self, user: str, host: str) -> bool:
        """May ``user`` sign in at the host of server key ``host``: its owner
        (``alice--gpu.<domain>`` is alice's too: issue 19 §1) or a guest of that server (a
        share: issue 19 §3, checked again on every request there)."""
        if user == host.partition(SERVER_KEY_SEPARATOR)[0]:
            return True
        return self.guest_may_enter is not None and await self.guest_may_enter(user, host)

    # -- the hub's side ------------------------------------------------------------------
    async def issue(self, session: Session, state: str, host: str) -> str:
        """A fresh one-time token handing ``session``'s user to the host of server key
        ``host`` (their own, or one shared with them), in the browser whose state cookie
        there is ``state``; it is bound to both, so it is good at no other host."""
        token = secrets.token_urlsafe(32)
        await self.store.put_handoff(token, session.user, session_key(session.id),
                                     bound_hash(state, host), HANDOFF_SECONDS)
        return token

    # -- the user host's side ------------------------------------------------------------
    async def redeem(self, token: str, host_user: str, state: str | None) -> tuple[str, int] | None:
        """Consume ``token`` (whatever happens next) at the host of ``host_user`` (a
        server key: the user's default server or one of their named ones), in a browser
        whose state cookie is ``state``; the new host session's signed cookie value and
        lifetime (the hub session's remaining seconds), or None if the token is unknown,
        used, expired, someone else's, was issued to another browser, or its hub session
        has ended."""
        if not token or len(token) > 100:
            return None
        store = self.store
        taken = await store.take_handoff(token)
        if taken is None:
            return None
        user, hub_key, bound = taken
        if not hub_key or not bound or state is None:
            return None
        if not hmac.compare_digest(bound_hash(state, host_user), bound):
            return None  # a token this browser did not ask for, or for another host
        if not await self.may_enter(user, host_user):
            return None
        if await store.hub_session_user(hub_key) != user:
            return None
        ttl = await store.hub_session_ttl(hub_key)
        if ttl is None or ttl <= 0:
            return None
        host_id = new_id()
        await store.create_host_session(host_id, user, hub_key, ttl)
        return self.signer.sign(host_id), ttl

    async def user_of(self, request: IRequest) -> str | None:
        """The user whose host session the request's ``ipydoc-user`` cookie names, if
        it and its hub session are alive."""
        found = await self.session_of(request)
        return found[0] if found is not None else None

    def host_id(self, request: IRequest) -> str | None:
        """The id of the host session the request's ``ipydoc-user`` cookie names, if it
        is one this site signed (alive or not)."""
        return self.signer.unsign(read_cookie(request, USER_COOKIE))

    def recall(self, host_id: str) -> tuple[str, str] | None:
        """What :meth:`session_of` holds in memory for ``host_id``, from memory only:
        None if it is not cached, is out of date, or the store changed.  Whatever ends a
        hub session empties the cache, so what is recalled here ``session_of`` would
        also give (:meth:`ipydoc.access.ladder.Ladder.recall`)."""
        if self._store_source.store is not self._watched:
            return None
        hit = self._cache.get(host_id)
        if hit is None or hit[1] <= time.monotonic():
            return None
        return hit[0]

    async def session_of(self, request: IRequest) -> tuple[str, str] | None:
        """:meth:`user_of`, with the Redis key of the hub session the host session
        follows (what the proxy's open connections are revoked by)."""
        host_id = self.host_id(request)
        if host_id is None:
            return None
        now = time.monotonic()
        hit = self._cache.get(host_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        generation = self._generation
        store = self.store
        found = await store.host_session(host_id)
        if found is None or await store.hub_session_user(found[1]) != found[0]:
            self._cache.pop(host_id)
            return None
        if generation == self._generation:
            self._cache.put(host_id, (found, now + CACHE_SECONDS))
        return found

    @staticmethod
    def cookie(value: str, *, secure: bool, max_age: int | None) -> str:
        return cookie_header(USER_COOKIE, value, secure=secure, max_age=max_age)

    @staticmethod
    def state_of(request: IRequest) -> str | None:
        """The browser's state cookie on this host, if it sent exactly one of ours."""
        return well_formed_state(read_cookie(request, STATE_COOKIE))

    @staticmethod
    def state_cookie(state: str, *, secure: bool) -> str:
        return cookie_header(STATE_COOKIE, state, secure=secure, max_age=STATE_SECONDS)
