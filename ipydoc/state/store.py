"""Redis state: the one source of truth, and its key schema.

Every key starts with ``ipydoc:``; ``{name}`` is always a validated user name
(:mod:`ipydoc.names`), so it can never contain ``:`` and split a key.

=================================  ======  ===================================================
key                                type    contents
=================================  ======  ===================================================
``ipydoc:users``                   zset    every user name, score 0 (lexical order → paging)
``ipydoc:user:{name}``             hash    ``password`` (argon2id), ``admin`` (0/1),
                                           ``disabled`` (0/1), ``created`` (unix time)
``ipydoc:session:{sha256(id)}``    hash    ``user``, ``created``, ``csrf``; expires with the
                                           session.  Only a hash of the cookie's id is stored.
``ipydoc:user-sessions:{name}``    set     the session keys of a user (revoke them all)
``ipydoc:server:{name}``           hash    ``state`` (starting/running/stopping/stopped/
                                           failed), ``id``, ``url``, ``token``, ``image``,
                                           ``started``, ``error``, ``updated``
``ipydoc:servers``                 set     names that have a server record
``ipydoc:routes``                  hash    name → backend URL, only for servers that answer
``ipydoc:activity``                hash    name → last proxied traffic (unix time)
``ipydoc:events``                  stream  ``kind``, ``user``, ``detail`` (capped at about
                                           10,000 entries); read by ``ipydoc events``
``ipydoc:token:{sha256(token)}``   hash    a personal API token: ``user``, ``note``,
                                           ``created``, ``expires`` (unix time, empty: never),
                                           ``last_used``; the key expires with the token.
                                           Only a hash of the token is stored.
``ipydoc:user-tokens:{name}``      set     the token hashes of a user (list, revoke all)
``ipydoc:limits:{name}``           hash    an admin's per-user overrides of the spawn limits:
                                           ``mem`` (bytes), ``cpu`` (CPUs), ``pids``; a
                                           missing field means the config's value, ``0``
                                           means no limit (``ipydoc user set-limits``)
``ipydoc:user-options:{name}``     hash    ``image``: the user's last choice among
                                           ``spawn.images`` (the start page's user_options)
``ipydoc:history-queue:{name}``    list    saves seen by the proxy, not yet committed: JSON
                                           ``{"op": save/rename/delete, "path", "time",
                                           "message"?, "attempts"?, "error"?}``, oldest first
                                           (RPUSH; the history service pops an entry only
                                           after committing it or dead-lettering it; at most
                                           ``history.max_queue`` entries, appended by a script
                                           that refuses or coalesces when full)
``ipydoc:history-dead:{name}``     list    queue entries given up on (``history-dead-letter``
                                           events): JSON ``{"entry", "reason", "time",
                                           "attempts"}``, oldest first, the newest 100 kept
``ipydoc:history-push:{name}``     hash    the remote mirror: ``state`` (ok/failing),
                                           ``rev`` (last pushed), ``error``, ``attempts``,
                                           ``updated``, ``created`` (repo made through the API)
``ipydoc:handoff:{sha256(token)}`` string  subdomain mode: a one-time token from the hub to
                                           a user's host, ``"NAME SESSIONKEY
                                           sha256(STATE)"`` (the browser's state cookie
                                           there); 30 s
                                           (:mod:`ipydoc.access.user_hosts`)
``ipydoc:host-session:{sha256(id)}`` hash  subdomain mode: the ``ipydoc-user`` cookie of
                                           NAME's host: ``user``, ``session`` (the hub
                                           session's key; dead with it), ``created``
``ipydoc:login-fails:user:{name}`` string  failed logins of an account name (existing or
                                           not) in the current ``auth.login_window``; expires
                                           with it (:mod:`ipydoc.access.login_limits`)
``ipydoc:login-fails:addr:{addr}`` string  the same per client address (IPv4, IPv6 ``/64``)
``ipydoc:login-state:{sha256(st)}`` string  a login at a provider in progress (JSON: provider,
                                           nonce, PKCE verifier, next, redirect_uri, hash of
                                           the browser-binding cookie); 10 minutes, taken
                                           once by the callback (:mod:`ipydoc.auth.login_state`)
``ipydoc:login-states``            zset    the outstanding login states (member: the key's
                                           hash, score: expiry in ms); capped at
                                           ``auth.oauth_pending_max`` (:mod:`.login_state`)
``ipydoc:oauth-starts:addr:{addr}`` string  provider logins started from one client address in
                                           the current 10 minutes (``auth.oauth_starts_per_address``)
``ipydoc:identity:{p}:{sha256(sub)}`` string  the account name owned by provider ``p``'s subject
                                           ``sub`` (OIDC ``sub``, GitHub numeric id)
``ipydoc:user-identity:{name}``    string  JSON ``provider``, ``subject``, ``created`` (the
                                           account's): the identity that owns the account
                                           (:mod:`ipydoc.auth.identities`)
``ipydoc:removed:{name}``          hash    a removed account whose files are kept: the name is
                                           reserved (no account may be made with it) until
                                           ``ipydoc user purge``; ``removed``, ``by``,
                                           ``files``, ``versions``, ``mirror``, and the
                                           account's ``password``, ``admin``, ``disabled``,
                                           ``created`` for ``ipydoc user restore``
                                           (:mod:`ipydoc.control.removal`)
=================================  ======  ===================================================

A personal token is named outside Redis by its ``id``: the first 16 hex digits of its
hash (shown on the tokens page; revoking takes the id, never the token).

Sessions are listed per user from ``user-sessions:{name}`` (entries whose session key has
expired are dropped from the set as they are met) and over all users with ``SCAN``.
Outside Redis a session is named by its ``sid``: the hex hash in its key, which identifies
it without revealing the cookie (the CLI shows 16 digits and accepts any unique prefix of
8 or more).

A server's record and its route change together in one MULTI/EXEC so a reader never sees
a route without a running server or the other way round.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

P = "ipydoc:"
USERS = P + "users"
SERVERS = P + "servers"
ROUTES = P + "routes"
ACTIVITY = P + "activity"
EVENTS = P + "events"
EVENTS_MAXLEN = 10_000

# KEYS: user, users zset, reservation (removed:{name}).  -1: the name is reserved.
ADD_USER_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'password') == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'password', ARGV[2], 'admin', ARGV[3],
           'disabled', '0')
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 1
"""

# KEYS: user, users zset, reservation.  Brings a removed account back as it was.
RESTORE_USER_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'password') == 1 then return 0 end
local r = redis.call('HMGET', KEYS[3], 'password', 'admin', 'disabled', 'created')
if not r[1] then return -1 end
redis.call('HSET', KEYS[1], 'created', r[4], 'password', r[1], 'admin', r[2] or '0',
           'disabled', r[3] or '0')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('DEL', KEYS[3])
return 1
"""

SERVER_STATES = ("starting", "running", "stopping", "stopped", "failed")


class NameReserved(Exception):
    """The name belonged to a removed account whose files are kept (:mod:`ipydoc.control.removal`)."""


def removed_key(name: str) -> str:
    return f"{P}removed:{name}"


def user_key(name: str) -> str:
    return f"{P}user:{name}"


def session_key(session_id: str) -> str:
    return f"{P}session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def user_sessions_key(name: str) -> str:
    return f"{P}user-sessions:{name}"


def server_key(name: str) -> str:
    return f"{P}server:{name}"


def token_key(token_hash: str) -> str:
    return f"{P}token:{token_hash}"


def user_tokens_key(name: str) -> str:
    return f"{P}user-tokens:{name}"


def history_queue_key(name: str) -> str:
    return f"{P}history-queue:{name}"


def history_push_key(name: str) -> str:
    return f"{P}history-push:{name}"


def history_dead_key(name: str) -> str:
    return f"{P}history-dead:{name}"


def limits_key(name: str) -> str:
    return f"{P}limits:{name}"


def user_options_key(name: str) -> str:
    return f"{P}user-options:{name}"


LIMIT_FIELDS = {"mem": int, "cpu": float, "pids": int}


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    admin: bool
    disabled: bool
    created: float

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "admin": self.admin, "disabled": self.disabled,
                "created": self.created}


@dataclass(frozen=True)
class Server:
    name: str
    state: str
    id: str = ""
    url: str = ""
    token: str = ""
    image: str = ""
    started: float | None = None
    error: str = ""
    updated: float | None = None

    def public(self) -> dict[str, Any]:
        """What may be shown to people: everything but the token."""
        return {"name": self.name, "state": self.state, "id": self.id[:12], "url": self.url,
                "image": self.image, "started": self.started, "error": self.error,
                "updated": self.updated}


def _float(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


def _queue_entry(raw: str) -> dict[str, Any]:
    """A history queue entry; a broken one (never written by us) reads as ``invalid``."""
    try:
        entry = json.loads(raw)
    except ValueError:
        entry = None
    return entry if isinstance(entry, dict) else {"op": "invalid", "path": "", "time": 0}


class Store:
    """Typed operations on the key schema above, over a txredisapi connection pool."""

    log = Logger()

    def __init__(self, redis: Any, clock: Any = None) -> None:
        self.redis = redis
        self._now = clock.seconds if clock is not None else time.time
        self._event_listeners: list[Callable[[], None]] = []
        self._session_listeners: list[Callable[[], None]] = []

    # -- users ---------------------------------------------------------------------------
    async def add_user(self, name: str, password_hash: str, admin: bool) -> bool:
        """Create a user; False if the name is taken (nothing is changed then).

        Raises :class:`NameReserved` when a removed account's files still hold the name.
        """
        # one script: a Redis crash between "name taken" and "account written" must not
        # leave a half-made user that blocks the name
        created = await self.redis.execute_command(
            "EVAL", ADD_USER_SCRIPT, "3", user_key(name), USERS, removed_key(name),
            repr(self._now()), password_hash, "1" if admin else "0", name)
        if int(created) == -1:
            raise NameReserved(name)
        return int(created) == 1

    async def get_user(self, name: str) -> User | None:
        h = await self.redis.hgetall(user_key(name))
        if not h or "password" not in h:
            return None
        return User(name, h["password"], h.get("admin") == "1", h.get("disabled") == "1",
                    float(h.get("created", 0)))

    async def list_users(self, offset: int = 0, limit: int = 100) -> tuple[list[User], int]:
        total = await self.redis.zcard(USERS)
        if limit <= 0:
            return [], total
        names = await self.redis.zrange(USERS, offset, offset + limit - 1)
        return await self.get_users(names), total

    async def get_users(self, names: list[str]) -> list[User]:
        """The users of ``names`` that exist, in that order (fetched concurrently)."""
        from twisted.internet.defer import Deferred, gatherResults

        found = await gatherResults([Deferred.fromCoroutine(self.get_user(n)) for n in names],
                                    consumeErrors=True) if names else []
        return [u for u in found if u is not None]

    async def update_user(self, name: str, **values: Any) -> bool:
        """Set ``password``/``admin``/``disabled`` of an existing user; False if none."""
        if not await self.redis.hexists(user_key(name), "password"):
            return False
        known = {"password", "admin", "disabled"}
        if not set(values) <= known:
            raise ValueError(f"unknown user fields {sorted(set(values) - known)}")
        flat = {k: (("1" if v else "0") if isinstance(v, bool) else str(v))
                for k, v in values.items()}
        await self.redis.hmset(user_key(name), flat)
        return True

    async def remove_user(self, name: str, reservation: dict[str, str] | None = None) -> bool:
        """Delete the account, its sessions, server record, route and activity.

        The caller stops the server first; user files are not touched here.  With
        ``reservation`` (files are kept) the name's ``removed:{name}`` record is written in
        the same transaction, so the name is never free while the old files exist.
        False if there was no such user (records of a server are still cleaned up).
        """
        existed = bool(await self.redis.hexists(user_key(name), "password"))
        await self.revoke_sessions(name)
        await self.revoke_tokens(name)
        t = await self.redis.multi()
        if reservation is not None:
            t.hmset(removed_key(name), reservation)
        t.delete(user_key(name))
        t.zrem(USERS, name)
        t.delete(server_key(name))
        t.srem(SERVERS, name)
        t.hdel(ROUTES, name)
        t.hdel(ACTIVITY, name)
        t.delete(limits_key(name))
        t.delete(user_options_key(name))
        await t.commit()
        return existed

    async def get_reservation(self, name: str) -> dict[str, str] | None:
        """The ``removed:{name}`` record of a removed account whose files are kept."""
        h = await self.redis.hgetall(removed_key(name))
        return dict(h) if h else None

    async def restore_user(self, name: str) -> int:
        """Bring a removed account back from its reservation: 1 done, 0 the account
        exists, -1 no reservation."""
        return int(await self.redis.execute_command(
            "EVAL", RESTORE_USER_SCRIPT, "3", user_key(name), USERS, removed_key(name), name))

    async def list_reservations(self) -> list[dict[str, Any]]:
        """Removed accounts whose files are kept, by name: ``name``, ``removed``, ``by``,
        ``files``, ``versions``, ``mirror`` (never the password hash).  SCAN: admin only."""
        out = []
        for key in sorted(await self._scan(f"{P}removed:*")):
            h = await self.redis.hgetall(key)
            if h:
                out.append({"name": key.rsplit(":", 1)[1], "removed": _float(h.get("removed")),
                            "by": h.get("by", ""), "files": h.get("files", ""),
                            "versions": int(h.get("versions") or 0),
                            "mirror": h.get("mirror", "")})
        return out

    async def forget_removed(self, name: str, extra_keys: list[str]) -> None:
        """After a purge: drop the name's reservation, its history queue and mirror state,
        every other ``history-*:{name}`` key (dead letters and the like), and
        ``extra_keys`` (the identity binding); the name is free afterwards."""
        keys = {removed_key(name), history_queue_key(name), history_push_key(name),
                *extra_keys, *await self._scan(f"{P}history-*:{name}")}
        await self.redis.delete(sorted(keys))

    # -- sessions ------------------------------------------------------------------------
    async def create_session(self, session_id: str, user: str, csrf: str, lifetime: int) -> None:
        key = session_key(session_id)
        t = await self.redis.multi()
        t.hmset(key, {"user": user, "created": repr(self._now()), "csrf": csrf})
        t.expire(key, lifetime)
        t.sadd(user_sessions_key(user), key)
        await t.commit()

    async def get_session(self, session_id: str) -> dict[str, str] | None:
        h = await self.redis.hgetall(session_key(session_id))
        return h or None

    async def delete_session(self, session_id: str) -> None:
        key = session_key(session_id)
        user = await self.redis.hget(key, "user")
        t = await self.redis.multi()
        t.delete(key)
        if user:
            t.srem(user_sessions_key(user), key)
        await t.commit()
        self._sessions_ended()

    def on_sessions_ended(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever sessions are deleted (for caches of sessions)."""
        self._session_listeners.append(listener)

    def _sessions_ended(self) -> None:
        for listener in list(self._session_listeners):
            listener()

    async def revoke_sessions(self, user: str) -> int:
        """End every session of ``user``; how many were live."""
        keys = list(await self.redis.smembers(user_sessions_key(user)))
        if not keys:
            return 0
        live = await self.redis.execute_command("EXISTS", *keys)
        await self.redis.delete([*keys, user_sessions_key(user)])
        self._sessions_ended()
        return int(live)

    async def _session_info(self, key: str) -> dict[str, Any] | None:
        h = await self.redis.hgetall(key)
        if not h or "user" not in h:
            return None
        ttl = await self.redis.ttl(key)
        return {"sid": key.rsplit(":", 1)[1], "user": h["user"],
                "created": _float(h.get("created")), "expires_in": int(ttl)}

    async def list_sessions(self, user: str | None = None) -> list[dict[str, Any]]:
        """Live sessions (``sid``, ``user``, ``created``, ``expires_in``), oldest first.

        For one user from their set (dropping expired entries), else over all sessions.
        """
        if user is not None:
            keys = sorted(await self.redis.smembers(user_sessions_key(user)))
        else:
            keys = sorted(await self._scan(f"{P}session:*"))
        out: list[dict[str, Any]] = []
        gone = []
        for key in keys:
            info = await self._session_info(key)
            if info is None:
                gone.append(key)
            else:
                out.append(info)
        if user is not None and gone:
            await self.redis.srem(user_sessions_key(user), *gone)
        out.sort(key=lambda i: (i["created"] or 0, i["sid"]))
        return out

    async def _scan(self, pattern: str) -> set[str]:
        keys: set[str] = set()
        cursor = "0"
        while True:
            cursor, batch = await self.redis.scan(cursor, pattern, 1000)
            keys.update(batch)
            if str(cursor) == "0":
                return keys

    async def find_sessions(self, sid: str) -> list[str]:
        """Session keys whose ``sid`` (key hash) starts with ``sid`` (8 to 64 hex digits)."""
        if not 8 <= len(sid) <= 64 or any(ch not in "0123456789abcdef" for ch in sid):
            return []
        if len(sid) == 64:
            key = f"{P}session:{sid}"
            return [key] if await self.redis.exists(key) else []
        return sorted(await self._scan(f"{P}session:{sid}*"))

    async def revoke_session(self, key: str) -> str | None:
        """End the session stored at ``key`` (from :meth:`find_sessions`); its user."""
        user = await self.redis.hget(key, "user")
        t = await self.redis.multi()
        t.delete(key)
        if user:
            t.srem(user_sessions_key(user), key)
        await t.commit()
        self._sessions_ended()
        return user

    # -- servers and routes --------------------------------------------------------------
    async def get_server(self, name: str) -> Server | None:
        h = await self.redis.hgetall(server_key(name))
        if not h:
            return None
        return Server(name, h.get("state", "stopped"), h.get("id", ""), h.get("url", ""),
                      h.get("token", ""), h.get("image", ""), _float(h.get("started")),
                      h.get("error", ""), _float(h.get("updated")))

    async def set_server(self, name: str, state: str, *, route: bool = False,
                         **fields_: Any) -> None:
        """Write a server's state (and fields) and add or drop its route, atomically.

        ``route=True`` publishes ``fields_['url']`` as the route; any other state drops it.
        Fields not given keep their stored value, except that leaving ``running`` clears
        the token, so a stale token is never injected.
        """
        if state not in SERVER_STATES:
            raise ValueError(f"unknown server state {state!r}")
        values = {k: ("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
                  for k, v in fields_.items()}
        values["state"] = state
        values["updated"] = repr(self._now())
        key = server_key(name)
        t = await self.redis.multi()
        t.hmset(key, values)
        t.sadd(SERVERS, name)
        if route:
            t.hset(ROUTES, name, values["url"])
        else:
            t.hdel(ROUTES, name)
        if state in ("stopped", "failed"):
            t.hdel(key, "token")
            t.hdel(key, "url")
        await t.commit()

    async def list_servers(self) -> list[Server]:
        names = sorted(await self.redis.smembers(SERVERS))
        servers = [await self.get_server(n) for n in names]
        return [s for s in servers if s is not None]

    async def routes(self) -> dict[str, str]:
        return dict(await self.redis.hgetall(ROUTES))

    # -- activity and events -------------------------------------------------------------
    async def record_activity(self, stamps: dict[str, float]) -> None:
        if stamps:
            await self.redis.hmset(ACTIVITY, {k: repr(v) for k, v in stamps.items()})

    async def activity(self) -> dict[str, float]:
        return {k: float(v) for k, v in (await self.redis.hgetall(ACTIVITY)).items()}

    async def add_event(self, kind: str, user: str = "", detail: str = "") -> None:
        await self.redis.execute_command(
            "XADD", EVENTS, "MAXLEN", "~", str(EVENTS_MAXLEN), "*",
            "kind", kind, "user", user, "detail", detail)
        for listener in list(self._event_listeners):
            listener()

    def on_event_added(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` after each event this process adds; returns an unsubscriber.

        Lets a reader waiting for new events (``ipydoc events``) wake at once instead of
        polling; readers still poll now and then for events written by other processes.
        """
        self._event_listeners.append(listener)
        return lambda: self._event_listeners.remove(listener) \
            if listener in self._event_listeners else None

    @staticmethod
    def _entries(raw: Any) -> list[dict[str, str]]:
        out = []
        for entry_id, flat in raw or []:
            item = dict(zip(flat[::2], flat[1::2]))
            item["id"] = entry_id
            item["time"] = int(str(entry_id).split("-")[0]) / 1000
            out.append(item)
        return out

    async def recent_events(self, count: int = 50) -> list[dict[str, str]]:
        """The newest ``count`` events, newest first."""
        raw = await self.redis.execute_command("XREVRANGE", EVENTS, "+", "-", "COUNT", str(count))
        return self._entries(raw)

    async def events_after(self, after: str, count: int = 100) -> list[dict[str, str]]:
        """Up to ``count`` events newer than the id ``after`` (e.g. ``0-0``), oldest first."""
        raw = await self.redis.execute_command("XRANGE", EVENTS, f"({after}", "+",
                                               "COUNT", str(count))
        return self._entries(raw)

    async def last_event_id(self) -> str:
        raw = await self.redis.execute_command("XREVRANGE", EVENTS, "+", "-", "COUNT", "1")
        return str(raw[0][0]) if raw else "0-0"

    # -- personal API tokens -------------------------------------------------------------
    async def create_token(self, user: str, token_hash: str, note: str,
                           expires: float | None) -> dict[str, Any]:
        """Store a new token (by its hash) for ``user``; ``expires`` is a unix time or None."""
        key = token_key(token_hash)
        now = self._now()
        t = await self.redis.multi()
        t.hmset(key, {"user": user, "note": note, "created": repr(now),
                      "expires": repr(float(expires)) if expires else "", "last_used": ""})
        if expires:
            t.expire(key, max(1, int(expires - now) + 1))
        t.sadd(user_tokens_key(user), token_hash)
        await t.commit()
        return self._token_info(token_hash, await self.redis.hgetall(key))

    @staticmethod
    def _token_info(token_hash: str, h: dict[str, str]) -> dict[str, Any]:
        return {"id": token_hash[:16], "user": h.get("user", ""), "note": h.get("note", ""),
                "created": _float(h.get("created")), "expires": _float(h.get("expires")),
                "last_used": _float(h.get("last_used"))}

    async def get_token(self, token_hash: str) -> dict[str, Any] | None:
        """The live token stored under ``token_hash``, or None (unknown, revoked, expired)."""
        h = await self.redis.hgetall(token_key(token_hash))
        if not h or "user" not in h:
            return None
        info = self._token_info(token_hash, h)
        if info["expires"] is not None and info["expires"] <= self._now():
            return None  # the key's own expiry may lag by up to a second
        return info

    async def touch_token(self, token_hash: str, when: float) -> None:
        key = token_key(token_hash)
        if await self.redis.exists(key):
            await self.redis.hset(key, "last_used", repr(when))

    async def list_tokens(self, user: str) -> list[dict[str, Any]]:
        """``user``'s live tokens (``id``, ``note``, ``created``, ``expires``, ``last_used``),
        newest first; hashes of expired tokens are dropped from the user's set."""
        hashes = sorted(await self.redis.smembers(user_tokens_key(user)))
        out, gone = [], []
        for token_hash in hashes:
            info = await self.get_token(token_hash)
            if info is None or info["user"] != user:
                gone.append(token_hash)
            else:
                out.append(info)
        if gone:
            await self.redis.srem(user_tokens_key(user), *gone)
        out.sort(key=lambda i: (-(i["created"] or 0), i["id"]))
        return out

    async def revoke_token(self, user: str, token_id: str) -> bool:
        """Revoke ``user``'s token whose id is ``token_id``; False if there is none."""
        if len(token_id) != 16 or any(ch not in "0123456789abcdef" for ch in token_id):
            return False
        for token_hash in await self.redis.smembers(user_tokens_key(user)):
            if token_hash.startswith(token_id):
                t = await self.redis.multi()
                t.delete(token_key(token_hash))
                t.srem(user_tokens_key(user), token_hash)
                await t.commit()
                return True
        return False

    async def revoke_tokens(self, user: str) -> int:
        """Revoke every token of ``user``; how many there were."""
        hashes = list(await self.redis.smembers(user_tokens_key(user)))
        if hashes:
            await self.redis.delete([*(token_key(h) for h in hashes), user_tokens_key(user)])
        return len(hashes)

    # -- per-user limits and options -----------------------------------------------------
    async def get_limits(self, name: str) -> dict[str, Any]:
        """An admin's overrides for ``name``: ``mem``/``cpu``/``pids`` present only when
        set; a value of None means "no limit" (stored as 0)."""
        raw = await self.redis.hgetall(limits_key(name))
        out: dict[str, Any] = {}
        for k, kind in LIMIT_FIELDS.items():
            if raw.get(k) not in (None, ""):
                v = kind(raw[k])
                out[k] = v if v else None
        return out

    async def set_limits(self, name: str, values: dict[str, Any], clear: tuple[str, ...] = ()
                         ) -> dict[str, Any]:
        """Set (``values``; None or 0 = no limit) and drop (``clear``) overrides at once."""
        unknown = (set(values) | set(clear)) - set(LIMIT_FIELDS)
        if unknown:
            raise ValueError(f"unknown limit fields {sorted(unknown)}")
        t = await self.redis.multi()
        if values:
            t.hmset(limits_key(name), {k: str(v or 0) for k, v in values.items()})
        for k in clear:
            t.hdel(limits_key(name), k)
        await t.commit()
        return await self.get_limits(name)

    async def get_image_choice(self, name: str) -> str:
        return await self.redis.hget(user_options_key(name), "image") or ""

    async def set_image_choice(self, name: str, image: str) -> None:
        await self.redis.hset(user_options_key(name), "image", image)

    # -- history (ipydoc.history) ----------------------------------------------------------
    # KEYS: queue.  ARGV: entry JSON, cap, op, path.  Appends unless the queue holds ``cap``
    # entries; then a save is 'coalesced' (dropped) when the newest queued entry touching
    # its path is a save of it that is not at the head (the head's read may be done
    # already), so that later read covers it; otherwise 'full' (nothing is removed).
    HISTORY_ENQUEUE_SCRIPT = """
local n = redis.call('LLEN', KEYS[1])
if n < tonumber(ARGV[2]) then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  return 'queued'
end
if ARGV[3] ~= 'save' then return 'full' end
local path = ARGV[4]
local function related(p)
  if type(p) ~= 'string' then return false end
  return p == path or string.sub(path, 1, #p + 1) == p .. '/'
      or string.sub(p, 1, #path + 1) == path .. '/'
end
local items = redis.call('LRANGE', KEYS[1], 1, -1)
for i = #items, 1, -1 do
  local ok, e = pcall(cjson.decode, items[i])
  if ok and type(e) == 'table' then
    if e['op'] == 'save' and e['path'] == path then return 'coalesced' end
    if related(e['path']) or related(e['to']) then return 'full' end
  end
end
return 'full'
"""
    # KEYS: queue, dead.  ARGV: the head as read, dead-letter record, how many to keep.
    HISTORY_DEAD_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LPOP', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return 1
"""
    # KEYS: queue.  ARGV: the head as read, its replacement.
    HISTORY_REPLACE_HEAD_SCRIPT = """
if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[1] then return 0 end
redis.call('LSET', KEYS[1], 0, ARGV[2])
return 1
"""
    HISTORY_DEAD_KEEP = 100

    async def history_enqueue(self, name: str, entry: dict[str, Any],
                              cap: int = 0) -> str:
        """Append ``entry`` atomically unless ``cap`` entries are queued: ``queued``,
        ``coalesced`` (a save covered by a queued save of the same path) or ``full``."""
        if cap <= 0:
            await self.redis.rpush(history_queue_key(name), json.dumps(entry))
            return "queued"
        return str(await self.redis.execute_command(
            "EVAL", self.HISTORY_ENQUEUE_SCRIPT, "1", history_queue_key(name),
            json.dumps(entry), str(cap), str(entry.get("op", "")), str(entry.get("path", ""))))

    async def history_peek(self, name: str, count: int = 200) -> list[dict[str, Any]]:
        return [_queue_entry(item) for item in await self.history_peek_raw(name, count)]

    async def history_peek_raw(self, name: str, count: int = 200) -> list[str]:
        """The oldest ``count`` entries as stored (for the compare-and-set calls below)."""
        return list(await self.redis.lrange(history_queue_key(name), 0, count - 1) or [])

    async def history_replace_head(self, name: str, old: str, new: str) -> bool:
        """Rewrite the oldest entry (its attempt count) if it is still ``old``."""
        return bool(await self.redis.execute_command(
            "EVAL", self.HISTORY_REPLACE_HEAD_SCRIPT, "1", history_queue_key(name), old, new))

    async def history_dead_letter(self, name: str, old: str, reason: str,
                                  attempts: int) -> bool:
        """Move the oldest entry (if it is still ``old``) to the dead letters, atomically."""
        record = json.dumps({"entry": _queue_entry(old), "reason": reason,
                             "time": self._now(), "attempts": attempts})
        return bool(await self.redis.execute_command(
            "EVAL", self.HISTORY_DEAD_SCRIPT, "2", history_queue_key(name),
            history_dead_key(name), old, record, str(self.HISTORY_DEAD_KEEP)))

    async def history_dead_letters(self, name: str) -> list[dict[str, Any]]:
        """The entries given up on, newest first."""
        raw = await self.redis.lrange(history_dead_key(name), 0, -1) or []
        out = []
        for item in reversed(raw):
            try:
                record = json.loads(item)
            except ValueError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    async def history_drop(self, name: str, count: int = 1) -> None:
        """Remove the ``count`` oldest entries (entries are only ever appended)."""
        await self.redis.ltrim(history_queue_key(name), count, -1)

    async def history_queued(self, name: str) -> int:
        return int(await self.redis.llen(history_queue_key(name)))

    async def history_queue_owners(self) -> list[str]:
        """Users with a non-empty queue (SCAN; used once at start)."""
        keys = await self._scan(f"{P}history-queue:*")
        return sorted(k.rsplit(":", 1)[1] for k in keys)

    async def history_push_state(self, name: str) -> dict[str, str]:
        return dict(await self.redis.hgetall(history_push_key(name)) or {})

    async def set_history_push_state(self, name: str, **values: Any) -> None:
        flat = {k: ("" if v is None else str(v)) for k, v in values.items()}
        flat["updated"] = repr(self._now())
        await self.redis.hmset(history_push_key(name), flat)

    # -- admin listings --------------------------------------------------------------------
    async def all_user_names(self) -> list[str]:
        return list(await self.redis.zrange(USERS, 0, -1))

    async def get_servers(self, names: list[str]) -> dict[str, Server]:
        """The server records of ``names`` that have one (fetched concurrently)."""
        from twisted.internet.defer import Deferred, gatherResults

        found = await gatherResults([Deferred.fromCoroutine(self.get_server(n)) for n in names],
                                    consumeErrors=True) if names else []
        return {s.name: s for s in found if s is not None}

    async def last_activity(self, name: str) -> float | None:
        return _float(await self.redis.hget(ACTIVITY, name))

    async def ping(self) -> bool:
        return (await self.redis.ping()) in ("PONG", b"PONG", True)

