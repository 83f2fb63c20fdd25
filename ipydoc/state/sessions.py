"""Hub sessions: ``session:{sha256(id)}`` and ``user-sessions:{name}``.

Only a hash of the cookie's id is stored.  Outside Redis a session is named by its
``sid``, the hex hash in its key (see :mod:`ipydoc.state.keys`).  Caches of sessions
(:mod:`ipydoc.access`) subscribe with :meth:`Sessions.on_sessions_ended` and are emptied
whenever sessions end here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ipydoc.state.connection import StoreBase, as_float
from ipydoc.state.keys import (
    session_key,
    session_key_of_sid,
    session_pattern,
    tail,
    user_sessions_key,
)


class Sessions(StoreBase):
    def __init__(self, redis: Any, clock: Any = None) -> None:
        super().__init__(redis, clock)
        self._session_listeners: list[Callable[[], None]] = []

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

    async def session_alive(self, key: str) -> bool:
        """Whether the session stored at ``key`` (a session key, not an id) still exists."""
        return bool(await self.redis.exists(key))

    async def delete_session(self, session_id: str) -> None:
        await self.revoke_session(session_key(session_id))

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
        return {"sid": tail(key), "user": h["user"],
                "created": as_float(h.get("created")), "expires_in": int(ttl)}

    async def list_sessions(self, user: str | None = None) -> list[dict[str, Any]]:
        """Live sessions (``sid``, ``user``, ``created``, ``expires_in``), oldest first.

        For one user from their set (dropping expired entries), else over all sessions.
        """
        if user is not None:
            keys = sorted(await self.redis.smembers(user_sessions_key(user)))
        else:
            keys = sorted(await self._scan(session_pattern()))
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

    async def find_sessions(self, sid: str) -> list[str]:
        """Session keys whose ``sid`` (key hash) starts with ``sid`` (8 to 64 hex digits)."""
        if not 8 <= len(sid) <= 64 or any(ch not in "0123456789abcdef" for ch in sid):
            return []
        if len(sid) == 64:
            key = session_key_of_sid(sid)
            return [key] if await self.redis.exists(key) else []
        return sorted(await self._scan(session_pattern(sid)))

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
