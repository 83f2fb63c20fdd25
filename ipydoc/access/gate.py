"""The gate in front of user servers: what the proxy asks before it forwards anything.

The rule itself (name, credential, owner, Origin, route, forward) is
:mod:`ipydoc.access.ladder`; this is the object the proxy holds
(:class:`ipydoc.proxy.gate.Gate`): it says which requests are user traffic, runs the
ladder (a Redis outage is a 503 with ``Retry-After``, never a crash), hands traffic to
the activity record (:mod:`ipydoc.servers.activity`) and saves to the history service,
and cuts open exchanges when their credential is revoked.

Revocation reaches what is already open.  Each :class:`Forward` names its credential
(the Redis key of the session, or of the personal token), and the proxy keeps every open
exchange (WebSockets above all) in :attr:`UserGate.exchanges` under it.  Whenever the
store ends sessions (logout, ``session revoke``, ``user disable``/``remove``, a password
change, a new login replacing an old session) and after a token is revoked,
:meth:`UserGate.recheck_exchanges` asks Redis once per open credential whether it still
holds and cuts the exchanges of those that do not: one round of Redis reads per
revocation, nothing per request.

A share revoked (issue 19 §3: :mod:`ipydoc.access.shares`) cuts the guest's exchanges
to that server only (:meth:`UserGate.recheck_server`), on every daemon (``shares-changed``
on the bus).

Several daemons: a revocation on one daemon reaches the others over the pub/sub bus
(:mod:`ipydoc.state.bus`): ending sessions is told by the store itself
(``sessions-ended``: caches emptied, then this recheck), a token revoked is told by
:meth:`UserGate.recheck_exchanges` (``credentials-changed``), so every daemon cuts what
it has open within a message's delay.
"""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access import metrics
from ipydoc.access.collaborators import SaveObserver
from ipydoc.access.ladder import Ladder
from ipydoc.access.origin import origin_allowed, request_origin
from ipydoc.access.path_mode import PREFIX, PathMode
from ipydoc.access.sessions import Sessions
from ipydoc.access.shares import OWNER, RW, VIEW, ShareRule
from ipydoc.access.subdomain import SubdomainMode
from ipydoc.access.tokens import TokenCheck
from ipydoc.access.user_hosts import HostSessions
from ipydoc.edge.routing import Routing
from ipydoc.proxy.gate import Forward, Reply
from ipydoc.proxy.live import OpenExchanges
from ipydoc.servers.activity import Activity
from ipydoc.servers.manager import ServerManager
from ipydoc.servers.static_cache import StaticCache
from ipydoc.state.keys import TOKEN_PREFIX
from ipydoc.state.redis_service import UNAVAILABLE, StoreUnavailable
from ipydoc.state.store import Store

RECHECK_ROUNDS = 3  # at most this many checks in a row (exchanges opened meanwhile)


class UserGate:
    log = Logger()

    def __init__(self, sessions: Sessions, manager: ServerManager, routing: Routing,
                 hosts: HostSessions, activity: Activity, *,
                 saves: SaveObserver | None = None, public_url: str = "",
                 static: StaticCache | None = None, start_wait: float = 0.0,
                 shares: ShareRule | None = None) -> None:
        self.sessions = sessions
        self.manager = manager
        self.routing = routing
        self._activity = activity
        self._saves = saves  # the history service, when versioning is on
        #: The methods whose answers saw_response and wants_body need to see (the proxy
        #: calls neither for any other: a GET's answer is never a save).
        self.observed_methods: frozenset[bytes] = saves.methods if saves is not None \
            else frozenset()
        self.extra_origins = frozenset({public_url.rstrip("/").lower()} if public_url else ())
        mode = (SubdomainMode(routing, hosts, manager) if routing.subdomain
                else PathMode(sessions, self.extra_origins, manager))
        #: Who may use a server besides its owner (issue 19 §3); a change cuts what a
        #: guest who lost their share has open to that server.
        self.shares = shares if shares is not None else ShareRule(sessions)
        self.shares.on_change(self.recheck_server)
        self.ladder = Ladder(mode, TokenCheck(sessions), manager, routing, static, start_wait,
                             shares=self.shares, sessions=sessions,
                             hosts=hosts if routing.subdomain else None)
        #: A verdict recalled from memory (:meth:`Ladder.recall`) or None: ask ``decide``.
        self.recall = self.ladder.recall
        #: Open exchanges by credential and user (the proxy fills it; see the module doc).
        self.exchanges = OpenExchanges()
        self._watched: Store | None = None
        self._rechecking = False
        self._recheck_again = False
        self._recheck_waiters: list[Deferred[None]] = []

    def claims(self, request: IRequest) -> bool:
        if self.routing.subdomain:  # every host but the hub's own: user hosts, unknown → 404
            return (self.routing.classify(request)[0] != "hub"  # (and old /user/ links)
                    or request.path.startswith(PREFIX))
        return request.path.startswith(PREFIX)

    def origin_ok(self, request: IRequest) -> bool:
        """The hub's own rule for its forms: ``Origin`` absent, this site, or
        ``server.public_url``."""
        return origin_allowed(request, {request_origin(request), *self.extra_origins})

    async def decide(self, request: IRequest) -> Forward | Reply:
        try:
            verdict = await self.ladder.decide(request)
        except StoreUnavailable as e:  # a Redis timeout is one too
            self.log.warn("gate: redis unavailable: {e}", e=e)
            body = json.dumps({"status": 503, "message": UNAVAILABLE}).encode()
            return Reply(503, body, "application/json", {"Retry-After": "5"})
        if isinstance(verdict, Forward):
            store = self.sessions.store
            if store is not self._watched:  # the store exists once Redis is up
                store.on_sessions_ended(self._recheck_here)
                if store.bus is not None:
                    store.bus.listen(self._told)
                self._watched = store
        return verdict

    # -- revocation of what is open ------------------------------------------------------
    def recheck_exchanges(self) -> Deferred[None]:
        """Cut every open exchange whose credential no longer holds (session ended, token
        revoked or expired, account disabled or removed), here and on the other daemons.
        Fires when done here; calls made while a check runs are folded into one more
        round."""
        store = self.sessions.store
        if store.bus is not None:
            store.bus.tell("credentials-changed")
        return self._recheck_here()

    def _told(self, kind: str, name: str) -> Deferred[None] | None:
        if kind == "credentials-changed":
            return self._recheck_here()
        return None

    def _recheck_here(self) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        self._recheck_waiters.append(done)
        if self._rechecking:
            self._recheck_again = True
        else:
            self._rechecking = True
            Deferred.fromCoroutine(self._recheck_rounds())
        return done

    async def _recheck_rounds(self) -> None:
        try:
            for _ in range(RECHECK_ROUNDS):
                self._recheck_again = False
                added = self.exchanges.added
                await self._recheck()
                # Another revocation came, or an exchange was opened by a decision that
                # may have read Redis before the revocation: look once more.
                if not self._recheck_again and self.exchanges.added == added:
                    break
        except Exception:  # never leave the waiters hanging
            self.log.failure("checking open connections after a revocation")
        finally:
            self._rechecking = False
            waiters, self._recheck_waiters = self._recheck_waiters, []
            for d in waiters:
                d.callback(None)

    async def _recheck(self) -> None:
        credentials = self.exchanges.credentials()
        if not credentials or self._watched is None:
            return
        store = self._watched
        checks = [Deferred.fromCoroutine(self._holds(store, c)) for c in credentials]
        results = await DeferredList(checks, consumeErrors=True)
        for credential, (ok, holds) in zip(credentials, results):
            if not ok:
                self.log.warn("cannot check a credential of open connections: {e}",
                              e=holds.value)
                continue
            if not holds:
                users = self.exchanges.users(credential)
                n = self.exchanges.close_credential(credential)
                if n:
                    kind = "token" if credential.startswith(TOKEN_PREFIX) else "session"
                    self.log.info("closed {n} open connection(s) of {users}: {kind} revoked",
                                  n=n, users=", ".join(sorted(users)), kind=kind)

    def recheck_server(self, key: str) -> Deferred[None]:
        """Server ``key``'s shares changed (here or on another daemon): cut what each
        credential open to it may no longer have (no share: everything; view-only: its
        WebSockets).  One read per guest credential open to ``key``, nothing otherwise."""
        return Deferred.fromCoroutine(self._recheck_server(key))

    async def _recheck_server(self, key: str) -> None:
        for _ in range(RECHECK_ROUNDS):  # again if an exchange opened meanwhile
            added = self.exchanges.added
            await self._recheck_server_once(key)
            if self.exchanges.added == added:
                break

    async def _recheck_server_once(self, key: str) -> None:
        store = self.sessions.store
        for credential in sorted(self.exchanges.credentials_on(key)):
            try:
                user = await store.credential_user(credential)
                mode = await self.shares.access(user, key) if user else None
            except Exception as e:  # noqa: BLE001 - the next one may still be checked
                self.log.warn("cannot check a guest's open connections: {e}", e=e)
                continue
            if mode in (OWNER, RW):
                continue
            n = self.exchanges.close_on(credential, key, websockets_only=mode == VIEW)
            if n:
                metrics.SHARE_CUTS.inc(n)
                self.log.info("closed {n} open connection(s) of {user} to {key}: share "
                              "{what}", n=n, user=user or "?", key=key,
                              what="now view-only" if mode == VIEW else "revoked")

    @staticmethod
    async def _holds(store: Store, credential: str) -> bool:
        if credential.startswith(TOKEN_PREFIX):
            record = await store.get_token(credential[len(TOKEN_PREFIX):])
            if record is None:
                return False
            user = await store.get_user(record["user"])
            return user is not None and not user.disabled
        return await store.session_alive(credential)

    # -- what the proxy reports ------------------------------------------------------------
    def saw_traffic(self, user: str) -> None:
        self._activity.saw(user)
        if self.manager.is_paused(user):
            # A WebSocket opened before the pause speaks again (a user back at an open
            # notebook): thaw the server; the bytes wait in its socket meanwhile.
            d = Deferred.fromCoroutine(self.manager.resume(user, "websocket"))
            d.addErrback(lambda f: self.log.failure("resuming {user}'s server", f, user=user))

    def saw_response(self, user: str, method: bytes, path: bytes,
                     code: int) -> Deferred[None] | None:
        """Saves (contents PUT/PATCH/DELETE) go to the history queue (ipydoc.history);
        the Deferred fires once the entry is in Redis (the proxy holds the answer till
        then, so a save the browser saw succeed is never forgotten)."""
        if self._saves is not None and not self._saves.wants_body(user, method, path, code):
            return self._saves.note(user, method, path, code)
        return None

    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        """A rename's answer names the new path, which the request line does not."""
        return self._saves is not None and self._saves.wants_body(user, method, path, code)

    def saw_body(self, user: str, method: bytes, path: bytes, code: int,
                 body: bytes | None) -> Deferred[None] | None:
        if self._saves is not None:
            return self._saves.note(user, method, path, code, body=body)
        return None
