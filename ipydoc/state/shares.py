"""Shares of a server (issue 19 §3): ``shares:{key}``, ``shared-with:{kind}:{guest}`` and
``owner-shares:{owner}`` (see :mod:`ipydoc.state.keys`).

A share lets a guest use someone else's server: a user (``user``) or every member of a
group (``group``), in a mode, ``rw`` (the same JupyterLab, code included) or ``view``
(read only, enforced by the proxy: :mod:`ipydoc.access.shares`).  It is on a *server key*
(:mod:`ipydoc.names`): the default server (the owner's name) or a named one.  The share
table of a server is one hash, read whole by the access rule (and cached by it in memory,
emptied on every change here and, over the bus, on every other daemon).  The two indexes
answer "which servers are shared with bob" and "what has alice shared" without a scan.

Listeners registered with :meth:`Shares.on_shares_changed` hear the server key after
every change (the access rule's cache, the gate's cut of a revoked guest's connections).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ipydoc.names import owner_of
from ipydoc.state.connection import StoreBase, gather
from ipydoc.state.keys import (
    SHARES_PATTERN,
    once_key,
    owner_shares_key,
    shared_with_key,
    shares_key,
    tail,
    user_groups_key,
)

MODES = ("rw", "view")
KINDS = ("user", "group")
#: How long a guest's session counts as seen (one ``guest-session`` event per session and
#: server; a session lives at most this long anyway).
GUEST_SEEN_TTL = 30 * 86400


@dataclass(frozen=True)
class Share:
    server: str   # the server key (alice, or alice--gpu)
    kind: str     # user | group
    guest: str    # the user or group name
    mode: str     # rw | view
    by: str = ""
    created: float = 0.0

    @property
    def owner(self) -> str:
        return owner_of(self.server)

    def public(self) -> dict[str, Any]:
        return {"server": self.server, "owner": self.owner, "kind": self.kind,
                "guest": self.guest, "mode": self.mode, "by": self.by,
                "created": self.created}


def field(kind: str, guest: str) -> str:
    """The hash field of a guest in ``shares:{key}``: ``user:bob`` or ``group:course``."""
    return f"{kind}:{guest}"


def _share(key: str, name: str, raw: str) -> Share | None:
    kind, _, guest = name.partition(":")
    try:
        v = json.loads(raw)
        return Share(key, kind, guest, v["mode"], v.get("by", ""), float(v.get("created", 0)))
    except (ValueError, KeyError, TypeError):
        return None


class Shares(StoreBase):
    def __init__(self, redis: Any, clock: Any = None) -> None:
        super().__init__(redis, clock)
        self._share_listeners: list[Callable[[str], Any]] = []

    # -- change listeners -------------------------------------------------------------------
    def on_shares_changed(self, listener: Callable[[str], Any]) -> None:
        """Call ``listener(key)`` after each change of server ``key``'s shares here."""
        self._share_listeners.append(listener)

    def _shares_changed(self, key: str) -> None:
        for listener in list(self._share_listeners):
            listener(key)

    # -- writes ----------------------------------------------------------------------------
    async def add_share(self, key: str, kind: str, guest: str, mode: str, by: str) -> bool:
        """Share server ``key`` with ``guest`` (a ``kind``: user or group) in ``mode``, or
        change the mode of that share; False if it was already exactly so."""
        if kind not in KINDS or mode not in MODES:
            raise ValueError(f"bad share {kind}/{mode}")
        old = await self.redis.hget(shares_key(key), field(kind, guest))
        if old is not None:
            found = _share(key, field(kind, guest), old)
            if found is not None and found.mode == mode:
                return False
        value = json.dumps({"mode": mode, "by": by, "created": self._now()})
        t = await self.redis.multi()
        t.hset(shares_key(key), field(kind, guest), value)
        t.sadd(shared_with_key(kind, guest), key)
        t.sadd(owner_shares_key(owner_of(key)), key)
        await t.commit()
        self._shares_changed(key)
        return True

    async def remove_share(self, key: str, kind: str, guest: str) -> bool:
        """Revoke ``guest``'s share of server ``key``; False if there was none."""
        t = await self.redis.multi()
        t.hdel(shares_key(key), field(kind, guest))
        t.srem(shared_with_key(kind, guest), key)
        t.exists(shares_key(key))
        result = await t.commit()
        if not int(result[2]):
            await self.redis.srem(owner_shares_key(owner_of(key)), key)
        removed = bool(int(result[0]))
        if removed:
            self._shares_changed(key)
        return removed

    async def remove_server_shares(self, key: str) -> list[Share]:
        """Revoke every share of server ``key``; the shares that were."""
        shares = await self.server_shares(key)
        t = await self.redis.multi()
        t.delete(shares_key(key))
        for s in shares:
            t.srem(shared_with_key(s.kind, s.guest), key)
        t.srem(owner_shares_key(owner_of(key)), key)
        await t.commit()
        if shares:
            self._shares_changed(key)
        return shares

    async def forget_user_shares(self, name: str) -> None:
        """An account is removed: every share of its servers, and every share to it."""
        for key in sorted(await self.redis.smembers(owner_shares_key(name))):
            await self.remove_server_shares(key)
        for key in sorted(await self.redis.smembers(shared_with_key("user", name))):
            await self.remove_share(key, "user", name)

    # -- reads -----------------------------------------------------------------------------
    async def share_table(self, key: str) -> dict[str, str]:
        """Guest field (``user:bob``, ``group:g``) → mode, for server ``key`` (one read)."""
        raw = await self.redis.hgetall(shares_key(key))
        out = {}
        for name, value in (raw or {}).items():
            s = _share(key, name, value)
            if s is not None:
                out[name] = s.mode
        return out

    async def server_shares(self, key: str) -> list[Share]:
        """The shares of server ``key``: users first, then groups, by name."""
        raw = await self.redis.hgetall(shares_key(key))
        found = [_share(key, n, v) for n, v in (raw or {}).items()]
        return sorted((s for s in found if s is not None), key=lambda s: (s.kind != "user",
                                                                           s.guest))

    async def owner_shares(self, owner: str) -> list[Share]:
        """Every share of ``owner``'s servers (default and named), by server."""
        keys = sorted(await self.redis.smembers(owner_shares_key(owner)))
        return [s for group in await gather(self.server_shares(k) for k in keys) for s in group]

    async def all_shares(self) -> list[Share]:
        """Every share of the site (SCAN: for admin listings)."""
        keys = sorted(tail(k) for k in await self._scan(SHARES_PATTERN))
        return [s for group in await gather(self.server_shares(k) for k in keys) for s in group]

    async def shared_with(self, name: str) -> list[Share]:
        """The shares that let ``name`` use servers of others: directly, or through the
        groups ``name`` is a member of (a server shared both ways appears once per share)."""
        groups = sorted(await self.redis.hkeys(user_groups_key(name)))
        wanted = [("user", name), *(("group", g) for g in groups)]
        keysets = await gather(self._members(shared_with_key(k, g)) for k, g in wanted)
        out: list[Share] = []
        for (kind, guest), keys in zip(wanted, keysets):
            for key in sorted(keys):
                raw = await self.redis.hget(shares_key(key), field(kind, guest))
                s = _share(key, field(kind, guest), raw) if raw is not None else None
                if s is not None:
                    out.append(s)
        return sorted(out, key=lambda s: (s.server, s.kind != "user", s.guest))

    async def _members(self, key: str) -> set[str]:
        return set(await self.redis.smembers(key))

    async def servers_shared_with_group(self, group: str) -> set[str]:
        """The server keys shared with ``group`` (told changed when its members change)."""
        return await self._members(shared_with_key("group", group))

    async def credential_user(self, credential: str) -> str | None:
        """Whose a credential is (a session's or a personal token's Redis key: both hold
        ``user``); None once it is gone."""
        return await self.redis.hget(credential, "user")

    async def first_guest_visit(self, key: str, credential: str) -> bool:
        """True the first time a guest's credential reaches server ``key`` (site-wide)."""
        seen = once_key(f"guest:{key}:{tail(credential)}")
        return bool(await self.redis.set(seen, "1", expire=GUEST_SEEN_TTL, only_if_not_exists=True))
