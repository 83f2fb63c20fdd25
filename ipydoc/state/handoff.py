"""Subdomain mode's records: one-time handoff tokens and the host sessions they become.

``handoff:{sha256(token)}`` (string ``"NAME SESSIONKEY sha256(STATE)"``, 30 s) and
``host-session:{sha256(id)}`` (hash ``user``, ``session``, ``created``; it expires with the
hub session it follows).  The rules (who may redeem what, in which browser) are in
:mod:`ipydoc.access.user_hosts`; this is their storage.
"""

from __future__ import annotations

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import handoff_key, host_session_key


class Handoffs(StoreBase):
    async def put_handoff(self, token: str, user: str, hub_key: str, state_digest: str,
                          ttl: int) -> None:
        """Store a one-time handoff ``token`` of ``user``'s hub session ``hub_key``, bound
        to the browser whose state cookie hashes to ``state_digest``."""
        await self.redis.set(handoff_key(token), f"{user} {hub_key} {state_digest}",
                             expire=ttl)

    async def take_handoff(self, token: str) -> tuple[str, str, str] | None:
        """Take ``token`` out (GET+DEL in one MULTI: it is gone whatever happens next);
        its (user, hub session key, state digest), "" for a missing part, or None."""
        t = await self.redis.multi()
        t.get(handoff_key(token))
        t.delete(handoff_key(token))
        value = (await t.commit())[0]
        if not value:
            return None
        user, hub_key, bound = (str(value).split(" ") + ["", ""])[:3]
        return user, hub_key, bound

    async def hub_session_user(self, hub_key: str) -> str | None:
        """Whose hub session the key ``hub_key`` is, if it is alive."""
        return await self.redis.hget(hub_key, "user") or None

    async def hub_session_ttl(self, hub_key: str) -> int | None:
        """Seconds the hub session ``hub_key`` has left (None or <= 0: none)."""
        return await self.redis.ttl(hub_key)

    async def create_host_session(self, host_id: str, user: str, hub_key: str,
                                  ttl: int) -> None:
        key = host_session_key(host_id)
        t = await self.redis.multi()
        t.hmset(key, {"user": user, "session": hub_key, "created": repr(self._now())})
        t.expire(key, ttl)
        await t.commit()

    async def host_session(self, host_id: str) -> tuple[str, str] | None:
        """The host session's (user, hub session key) as stored, or None."""
        user, hub_key = await self.redis.hmget(host_session_key(host_id), ["user", "session"])
        return (user, hub_key) if user and hub_key else None
