"""Groups of users: ``groups``, ``group:{g}``, ``group-members:{g}``, ``user-groups:{name}``
(see :mod:`ipydoc.state.keys`).

A group gives its members admin rights (``admin``), the profiles they may pick
(``profiles``) and default limits (``mem``/``cpu``/``pids``) for a profile that sets none.

Each membership records where it comes from: ``manual`` (the CLI or the admin page) or the
id of the login provider that reported it (``github``, an OIDC provider's id).  The rule a
login follows (:meth:`Groups.sync_provider_groups`): the provider's groups are joined (a
missing group is created, without properties); memberships *that provider* made and no
longer reports are left; a manual membership is never touched by a login.  Adding a
member by hand turns a provider's membership into a manual one.

:meth:`Groups.is_admin` is the one admin rule: an enabled account that is ``admin`` itself
or a member of an admin group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ipydoc.state.connection import StoreBase, gather
from ipydoc.state.keys import (
    GROUPS,
    group_key,
    group_members_key,
    user_groups_key,
    user_key,
)

MANUAL = "manual"
GROUP_LIMITS = {"mem": int, "cpu": float, "pids": int}


class NoSuchGroup(Exception):
    """The group does not exist."""


@dataclass(frozen=True)
class Group:
    name: str
    admin: bool = False
    profiles: tuple[str, ...] = ()
    mem: int | None = None       # bytes; None: not set here; 0: no limit
    cpu: float | None = None
    pids: int | None = None
    created: float = 0.0

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "admin": self.admin, "profiles": list(self.profiles),
                "limits": {"mem": self.mem, "cpu": self.cpu, "pids": self.pids},
                "created": self.created}


def _group(name: str, h: dict[str, str]) -> Group:
    limits = {k: kind(h[k]) for k, kind in GROUP_LIMITS.items() if h.get(k) not in (None, "")}
    return Group(name, h.get("admin") == "1",
                 tuple(p for p in (h.get("profiles") or "").split(",") if p),
                 limits.get("mem"), limits.get("cpu"), limits.get("pids"),
                 float(h.get("created") or 0))


class Groups(StoreBase):
    # -- groups ---------------------------------------------------------------------------
    async def add_group(self, group: str) -> bool:
        """Create ``group`` (no members, no properties); False if it exists."""
        if not await self.redis.hsetnx(group_key(group), "created", repr(self._now())):
            return False
        await self.redis.sadd(GROUPS, group)
        return True

    async def get_group(self, group: str) -> Group | None:
        h = await self.redis.hgetall(group_key(group))
        return _group(group, h) if h else None

    async def list_groups(self) -> list[Group]:
        names = sorted(await self.redis.smembers(GROUPS))
        found = await gather(self.get_group(n) for n in names)
        return [g for g in found if g is not None]

    async def set_group(self, group: str, *, admin: bool | None = None,
                        profiles: list[str] | None = None,
                        limits: dict[str, Any] | None = None,
                        clear: tuple[str, ...] = ()) -> Group:
        """Change a group's properties (``limits``: mem/cpu/pids, 0 = no limit; ``clear``:
        limits to drop).  Raises :class:`NoSuchGroup`."""
        if not await self.redis.exists(group_key(group)):
            raise NoSuchGroup(group)
        unknown = (set(limits or {}) | set(clear)) - set(GROUP_LIMITS)
        if unknown:
            raise ValueError(f"unknown limit fields {sorted(unknown)}")
        values: dict[str, str] = {k: str(v or 0) for k, v in (limits or {}).items()}
        if admin is not None:
            values["admin"] = "1" if admin else "0"
        if profiles is not None:
            values["profiles"] = ",".join(profiles)
        t = await self.redis.multi()
        if values:
            t.hmset(group_key(group), values)
        for k in clear:
            t.hdel(group_key(group), k)
        await t.commit()
        found = await self.get_group(group)
        assert found is not None
        return found

    async def remove_group(self, group: str) -> bool:
        """Delete ``group`` and every membership in it; False if there was none."""
        members = await self.redis.hkeys(group_members_key(group))
        t = await self.redis.multi()
        t.delete(group_key(group))
        t.delete(group_members_key(group))
        t.srem(GROUPS, group)
        for m in members:
            t.hdel(user_groups_key(m), group)
        result = await t.commit()
        return bool(result and int(result[0]))

    # -- members --------------------------------------------------------------------------
    async def group_members(self, group: str) -> dict[str, str]:
        """Member name → source (``manual`` or a provider id)."""
        return dict(await self.redis.hgetall(group_members_key(group)))

    async def user_groups(self, name: str) -> dict[str, str]:
        """Group → source of ``name``'s memberships."""
        return dict(await self.redis.hgetall(user_groups_key(name)))

    async def add_member(self, group: str, name: str, source: str = MANUAL) -> bool:
        """Make ``name`` a member (``source`` says by whom); False if already one with that
        source.  Raises :class:`NoSuchGroup`."""
        if not await self.redis.exists(group_key(group)):
            raise NoSuchGroup(group)
        if await self.redis.hget(group_members_key(group), name) == source:
            return False
        t = await self.redis.multi()
        t.hset(group_members_key(group), name, source)
        t.hset(user_groups_key(name), group, source)
        await t.commit()
        return True

    async def remove_member(self, group: str, name: str) -> bool:
        """End ``name``'s membership (whatever its source); False if there was none."""
        t = await self.redis.multi()
        t.hdel(group_members_key(group), name)
        t.hdel(user_groups_key(name), group)
        result = await t.commit()
        return bool(result and int(result[0]))

    async def leave_all_groups(self, name: str) -> None:
        """Drop every membership of ``name`` (the account is removed)."""
        groups = await self.redis.hkeys(user_groups_key(name))
        t = await self.redis.multi()
        for g in groups:
            t.hdel(group_members_key(g), name)
        t.delete(user_groups_key(name))
        await t.commit()

    async def sync_provider_groups(self, name: str, provider: str,
                                   groups: list[str]) -> tuple[list[str], list[str]]:
        """At a login through ``provider``: join its ``groups``, leave the groups it made
        ``name`` a member of and no longer reports; manual memberships stay.  Returns
        (joined, left)."""
        have = await self.user_groups(name)
        joined = [g for g in dict.fromkeys(groups) if g not in have]
        left = [g for g, src in have.items() if src == provider and g not in groups]
        for g in joined:
            await self.add_group(g)
            await self.add_member(g, name, provider)
        for g in left:
            await self.remove_member(g, name)
        return joined, left

    # -- what groups give -----------------------------------------------------------------
    async def groups_of(self, name: str) -> list[Group]:
        """The groups ``name`` is a member of, by name."""
        names = sorted(await self.redis.hkeys(user_groups_key(name)))
        found = await gather(self.get_group(g) for g in names)
        return [g for g in found if g is not None]

    async def is_admin(self, name: str) -> bool:
        """The one admin rule: an enabled account that is admin itself or is a member of
        an admin group."""
        user = await self.redis.hgetall(user_key(name))
        if not user or "password" not in user or user.get("disabled") == "1":
            return False
        if user.get("admin") == "1":
            return True
        return any(g.admin for g in await self.groups_of(name))

    async def admins_among(self, names: list[str]) -> set[str]:
        """The names among ``names`` that are admins by :meth:`is_admin`."""
        flags = await gather(self.is_admin(n) for n in names)
        return {n for n, a in zip(names, flags) if a}
