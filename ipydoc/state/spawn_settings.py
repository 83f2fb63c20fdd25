"""Per-user spawn settings: an admin's limit overrides (``limits:{name}``) and the
user's own image choice (``user-options:{name}``)."""

from __future__ import annotations

from typing import Any

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import limits_key, user_options_key

LIMIT_FIELDS = {"mem": int, "cpu": float, "pids": int}


class SpawnSettings(StoreBase):
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
