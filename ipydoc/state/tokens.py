"""Personal API tokens: ``token:{sha256(token)}`` and ``user-tokens:{name}``.

Only a hash of a token is stored; outside Redis a token is named by its ``id``, the first
16 hex digits of that hash (see :mod:`ipydoc.state.keys`).  Its ``scopes`` field (space
separated, issue 19) is stored next to the hash; a token made before scopes existed has
none stored and reads as :data:`LEGACY_SCOPES` (what it could do then: its user's server).
"""

from __future__ import annotations

from typing import Any

from ipydoc.state.connection import StoreBase, as_float
from ipydoc.state.keys import token_key, user_tokens_key

#: The scopes of a token stored without any (made before issue 19).
LEGACY_SCOPES = ("read", "servers")


def _token_info(token_hash: str, h: dict[str, str]) -> dict[str, Any]:
    scopes = h.get("scopes")
    return {"id": token_hash[:16], "user": h.get("user", ""), "note": h.get("note", ""),
            "created": as_float(h.get("created")), "expires": as_float(h.get("expires")),
            "last_used": as_float(h.get("last_used")),
            "scopes": scopes.split() if scopes is not None else list(LEGACY_SCOPES)}


class Tokens(StoreBase):
    async def create_token(self, user: str, token_hash: str, note: str,
                           expires: float | None,
                           scopes: tuple[str, ...] = LEGACY_SCOPES) -> dict[str, Any]:
        """Store a new token (by its hash) for ``user``; ``expires`` is a unix time or None;
        ``scopes`` are checked by the caller (:mod:`ipydoc.access.tokens`)."""
        key = token_key(token_hash)
        now = self._now()
        t = await self.redis.multi()
        t.hmset(key, {"user": user, "note": note, "created": repr(now),
                      "expires": repr(float(expires)) if expires else "", "last_used": "",
                      "scopes": " ".join(scopes)})
        if expires:
            t.expire(key, max(1, int(expires - now) + 1))
        t.sadd(user_tokens_key(user), token_hash)
        await t.commit()
        return _token_info(token_hash, await self.redis.hgetall(key))

    async def get_token(self, token_hash: str) -> dict[str, Any] | None:
        """The live token stored under ``token_hash``, or None (unknown, revoked, expired)."""
        h = await self.redis.hgetall(token_key(token_hash))
        if not h or "user" not in h:
            return None
        info = _token_info(token_hash, h)
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
