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
``ipydoc:events``                  stream  ``kind``, ``user``, ``detail`` (capped)
=================================  ======  ===================================================

A server's record and its route change together in one MULTI/EXEC so a reader never sees
a route without a running server or the other way round.
"""

from __future__ import annotations

import hashlib
import time
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

SERVER_STATES = ("starting", "running", "stopping", "stopped", "failed")


def user_key(name: str) -> str:
    return f"{P}user:{name}"


def session_key(session_id: str) -> str:
    return f"{P}session:{hashlib.sha256(session_id.encode()).hexdigest()}"


def user_sessions_key(name: str) -> str:
    return f"{P}user-sessions:{name}"


def server_key(name: str) -> str:
    return f"{P}server:{name}"


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


class Store:
    """Typed operations on the key schema above, over a txredisapi connection pool."""

    log = Logger()

    def __init__(self, redis: Any, clock: Any = None) -> None:
        self.redis = redis
        self._now = clock.seconds if clock is not None else time.time

    # -- users ---------------------------------------------------------------------------
    async def add_user(self, name: str, password_hash: str, admin: bool) -> bool:
        """Create a user; False if the name is taken (nothing is changed then)."""
        created = await self.redis.hsetnx(user_key(name), "created", repr(self._now()))
        if not created:
            return False
        t = await self.redis.multi()
        t.hset(user_key(name), "password", password_hash)
        t.hset(user_key(name), "admin", "1" if admin else "0")
        t.hset(user_key(name), "disabled", "0")
        t.zadd(USERS, 0, name)
        await t.commit()
        return True

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
        users = [u for u in [await self.get_user(n) for n in names] if u is not None]
        return users, total

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

    async def revoke_sessions(self, user: str) -> int:
        keys = list(await self.redis.smembers(user_sessions_key(user)))
        if keys:
            await self.redis.delete([*keys, user_sessions_key(user)])
        return len(keys)

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

    async def recent_events(self, count: int = 50) -> list[dict[str, str]]:
        raw = await self.redis.execute_command("XREVRANGE", EVENTS, "+", "-", "COUNT", str(count))
        out = []
        for entry_id, flat in raw or []:
            item = dict(zip(flat[::2], flat[1::2]))
            item["id"] = entry_id
            out.append(item)
        return out

    async def ping(self) -> bool:
        return (await self.redis.ping()) in ("PONG", b"PONG", True)

