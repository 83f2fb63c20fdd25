"""Accounts: ``users`` (the name index) and ``user:{name}`` (see :mod:`ipydoc.state.keys`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ipydoc.state.connection import StoreBase, gather
from ipydoc.state.keys import USERS, removed_key, user_key

# KEYS: user, users zset, reservation (removed:{name}).  -1: the name is reserved.
ADD_USER_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'password') == 1 then return 0 end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'password', ARGV[2], 'admin', ARGV[3],
           'disabled', '0')
redis.call('ZADD', KEYS[2], 0, ARGV[4])
return 1
"""


class NameReserved(Exception):
    """The name belonged to a removed account whose files are kept (:mod:`ipydoc.control.removal`)."""


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


class Users(StoreBase):
    async def add_user(self, name: str, password_hash: str, admin: bool) -> bool:
        """Create a user; False if the name is taken (nothing is changed then).

        Raises :class:`NameReserved` when a removed account's files still hold the name.
        """
        # one script: a Redis crash between "name taken" and "account written" must not
        # leave a half-made user that blocks the name
        created = await self._eval(
            ADD_USER_SCRIPT, [user_key(name), USERS, removed_key(name)],
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
        found = await gather(self.get_user(n) for n in names)
        return [u for u in found if u is not None]

    async def all_user_names(self) -> list[str]:
        return list(await self.redis.zrange(USERS, 0, -1))

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

    async def user_exists(self, name: str) -> bool:
        """Whether ``name`` is an account (cheaper than :meth:`get_user`)."""
        return bool(await self.redis.hexists(user_key(name), "password"))
