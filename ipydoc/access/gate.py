"""The gate in front of user servers: who may reach ``/user/<name>/``, and where it goes.

Rules, in order: the path names a valid user; the request carries a live session (or a
personal API token, ``Authorization: token ipd_...``, see :mod:`ipydoc.access.tokens`); that
user owns the route; a state-changing method or WebSocket upgrade comes from
this site (``Origin``); the server runs.  Browsers get redirects and pages, API clients
and WebSockets get 401/403/503 with a JSON message.  Activity is kept in memory and
written to Redis in batches, so traffic costs no Redis write per request.

A personal token is looked up in Redis on every request (no cache), so revoking it, its
expiry, or disabling its user takes effect at once.  It is never forwarded: the proxy
replaces ``Authorization`` with the server token.  Token requests skip the ``Origin``
check: a browser never attaches the header by itself, so there is nothing to forge.

Revocation reaches what is already open.  Each :class:`Forward` names its credential
(the Redis key of the session, or of the personal token), and the proxy keeps every open
exchange (WebSockets above all) in :attr:`UserGate.exchanges` under it.  Whenever the
store ends sessions (logout, ``session revoke``, ``user disable``/``remove``, a password
change, a new login replacing an old session) and after a token is revoked,
:meth:`UserGate.recheck_exchanges` asks Redis once per open credential whether it still
holds and cuts the exchanges of those that do not: one round of Redis reads per
revocation, nothing per request.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

import txredisapi
from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Sessions
from ipydoc.access.tokens import from_authorization, token_hash, well_formed
from ipydoc.edge.routing import Routing
from ipydoc.names import InvalidName, validate_name
from ipydoc.proxy.gate import Forward, Reply
from ipydoc.proxy.headers import is_websocket_upgrade
from ipydoc.proxy.live import OpenExchanges
from ipydoc.servers.manager import ServerManager
from ipydoc.state.redis_service import UNAVAILABLE
from ipydoc.state.store import Store, session_key, token_key

SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS"}
PREFIX = b"/user/"
TOKEN_TOUCH_INTERVAL = 60.0  # seconds between writes of a token's last_used
RECHECK_ROUNDS = 3  # at most this many checks in a row (exchanges opened meanwhile)

#: The proxy's rule (one function for the gate, the proxy and the error pages).
is_websocket = is_websocket_upgrade


def wants_html(request: IRequest) -> bool:
    accept = request.getHeader(b"accept") or b""
    return b"text/html" in accept and not is_websocket_upgrade(request)


def request_origin(request: IRequest) -> str:
    host = (request.getHeader(b"host") or b"").decode("latin-1").lower()
    return f"{'https' if request.isSecure() else 'http'}://{host}"


def json_reply(code: int, message: str, **extra: Any) -> Reply:
    body = json.dumps({"status": code, "message": message, **extra}).encode()
    return Reply(code, body, "application/json")


def redirect(location: str) -> Reply:
    return Reply(302, b"", "text/plain; charset=utf-8", {"Location": location})


class UserGate:
    log = Logger()

    def __init__(self, sessions: Sessions, manager: ServerManager,
                 public_url: str = "") -> None:
        self.sessions = sessions
        self.manager = manager
        self.extra_origins = {public_url.rstrip("/").lower()} if public_url else set()
        self.activity: dict[str, float] = {}
        self.history: Any = None  # ipydoc.history.service.History, when versioning is on
        self._token_touched: dict[str, float] = {}
        #: Open exchanges by credential and user (the proxy fills it; see the module doc).
        self.exchanges = OpenExchanges()
        self._watched: Store | None = None
        self._rechecking = False
        self._recheck_again = False
        self._recheck_waiters: list[Deferred[None]] = []
        # Subdomain mode (ipydoc.edge.routing, ipydoc.access.subdomain): set by the daemon.
        self.routing: Routing = Routing()
        self.hosts: Any = None  # ipydoc.access.user_hosts.HostSessions

    def claims(self, request: IRequest) -> bool:
        if self.routing.subdomain:  # every host but the hub's own: user hosts, unknown → 404
            return (self.routing.classify(request)[0] != "hub"  # (and old /user/ links)
                    or request.path.startswith(PREFIX))
        return request.path.startswith(PREFIX)

    def origin_ok(self, request: IRequest) -> bool:
        origin = request.getHeader(b"origin")
        if origin is None:
            return True  # not a browser-driven cross-site request (browsers always send it)
        text = origin.decode("latin-1").lower()
        if text == "null" or not urlsplit(text).netloc:
            return False
        return text == request_origin(request) or text in self.extra_origins

    async def decide(self, request: IRequest) -> Forward | Reply:
        try:
            return await self._decide(request)
        except txredisapi.ConnectionError as e:  # TimeoutError is one too
            self.log.warn("gate: redis unavailable: {e}", e=e)
            body = json.dumps({"status": 503, "message": UNAVAILABLE}).encode()
            return Reply(503, body, "application/json", {"Retry-After": "5"})

    async def _decide(self, request: IRequest) -> Forward | Reply:
        if self.routing.subdomain:
            from ipydoc.access.subdomain import decide_user_host, moved_to_user_host

            kind, host_user = self.routing.classify(request)
            if kind == "hub":
                return moved_to_user_host(self.routing, request)
            if kind != "user":
                return json_reply(404, "no such site")
            return await decide_user_host(self, request, host_user)
        segment = request.path[len(PREFIX):].split(b"/", 1)[0]
        try:
            name = validate_name(segment.decode("ascii"))
        except (UnicodeDecodeError, InvalidName):
            return json_reply(404, "no such user server")
        if request.path == PREFIX + segment:  # /user/alice → /user/alice/ (the base URL)
            query = request.uri[len(request.path):]
            return redirect((request.path + b"/" + query).decode("latin-1"))
        personal = from_authorization(request.getHeader(b"authorization"))
        if personal is not None:
            return await self._decide_by_token(name, personal)
        session = await self.sessions.from_request(request)
        if session is None:
            if wants_html(request) and request.method in (b"GET", b"HEAD"):
                nxt = quote(request.uri.decode("latin-1"), safe="/")
                return redirect(f"/hub/login?next={nxt}")
            return json_reply(401, "not logged in: log in at /hub/login")
        if session.user != name:
            return json_reply(403, f"this server belongs to another user; yours is /user/{session.user}/")
        if (request.method not in SAFE_METHODS or is_websocket(request)) and not self.origin_ok(request):
            return json_reply(403, "cross-origin request refused (Origin is not this site)")
        route = self.manager.routes.get(name)
        if route is None:
            starting = self.manager.is_starting(name)
            if wants_html(request) and request.method in (b"GET", b"HEAD"):
                nxt = quote(request.uri.decode("latin-1"), safe="/")
                return redirect(f"/hub/spawn/{name}?next={nxt}")
            return json_reply(503, "your server is starting" if starting else
                              f"your server is not running: start it at /hub/spawn/{name}")
        return self.forward(name, route, session_key(session.id))

    async def _decide_by_token(self, name: str, token: str) -> Forward | Reply:
        store = self.sessions.store
        digest = token_hash(token) if well_formed(token) else ""
        record = await store.get_token(digest) if digest else None
        if record is None:
            return json_reply(401, "invalid, expired or revoked token")
        user = await store.get_user(record["user"])
        if user is None or user.disabled:
            return json_reply(403, "the token's account is disabled")
        if user.name != name:
            return json_reply(403, f"this server belongs to another user; the token's is "
                                   f"/user/{user.name}/")
        route = self.manager.routes.get(name)
        if route is None:
            return json_reply(503, "your server is starting" if self.manager.is_starting(name)
                              else f"your server is not running: start it at /hub/spawn/{name}")
        now = time.time()
        if now - self._token_touched.get(digest, 0.0) >= TOKEN_TOUCH_INTERVAL:
            if len(self._token_touched) > 10_000:
                self._token_touched.clear()
            self._token_touched[digest] = now
            await store.touch_token(digest, now)
        return self.forward(name, route, token_key(digest))

    def forward(self, name: str, route: Any, credential: str) -> Forward:
        """Let a request through to ``name``'s server on behalf of ``credential``."""
        store = self.sessions.store
        if store is not self._watched:  # the store exists once Redis is up
            store.on_sessions_ended(self.recheck_exchanges)
            self._watched = store
        return Forward(name, route.url, route.token, credential, self.routing.subdomain)

    # -- revocation of what is open ------------------------------------------------------
    def recheck_exchanges(self) -> Deferred[None]:
        """Cut every open exchange whose credential no longer holds (session ended, token
        revoked or expired, account disabled or removed).  Fires when done; calls made
        while a check runs are folded into one more round."""
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
                    kind = "token" if credential.startswith(token_key("")) else "session"
                    self.log.info("closed {n} open connection(s) of {users}: {kind} revoked",
                                  n=n, users=", ".join(sorted(users)), kind=kind)

    @staticmethod
    async def _holds(store: Store, credential: str) -> bool:
        prefix = token_key("")
        if credential.startswith(prefix):
            record = await store.get_token(credential[len(prefix):])
            if record is None:
                return False
            user = await store.get_user(record["user"])
            return user is not None and not user.disabled
        return bool(await store.redis.exists(credential))

    def saw_traffic(self, user: str) -> None:
        self.activity[user] = time.time()

    def saw_response(self, user: str, method: bytes, path: bytes,
                     code: int) -> Deferred[None] | None:
        """Saves (contents PUT/PATCH/DELETE) go to the history queue (ipydoc.history);
        the Deferred fires once the entry is in Redis (the proxy holds the answer till
        then, so a save the browser saw succeed is never forgotten)."""
        if self.history is not None and not self.history.wants_body(user, method, path, code):
            return self.history.note(user, method, path, code)
        return None

    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        """A rename's answer names the new path, which the request line does not."""
        return self.history is not None and self.history.wants_body(user, method, path, code)

    def saw_body(self, user: str, method: bytes, path: bytes, code: int,
                 body: bytes | None) -> Deferred[None] | None:
        if self.history is not None:
            return self.history.note(user, method, path, code, body=body)
        return None

    def take_activity(self) -> dict[str, float]:
        stamps, self.activity = self.activity, {}
        return stamps
