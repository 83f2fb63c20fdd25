"""Names held by removed accounts whose files are kept: ``removed:{name}``.

Why a removal reserves the name, and how purge and restore end it, is told in
:mod:`ipydoc.control.removal`; every script that creates an account
(:data:`ipydoc.state.users.ADD_USER_SCRIPT`, :data:`ipydoc.state.identities.CREATE_SCRIPT`)
refuses a reserved name.
"""

from __future__ import annotations

from typing import Any

from ipydoc.state.connection import StoreBase, as_float
from ipydoc.state.keys import REMOVED_PATTERN, USERS, removed_key, tail, user_key

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

# KEYS: user, reservation; ARGV: time, by, files, versions.  Reserve a name that has no
# account (while its leftovers are purged, or found at start), so no account is made with it
# half-way through.  0: it is an account.
RESERVE_FREE_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'password') == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[2], 'removed', ARGV[1], 'by', ARGV[2], 'files', ARGV[3],
             'versions', ARGV[4])
end
return 1
"""


class Reservations(StoreBase):
    async def get_reservation(self, name: str) -> dict[str, str] | None:
        """The ``removed:{name}`` record of a removed account whose files are kept."""
        h = await self.redis.hgetall(removed_key(name))
        return dict(h) if h else None

    async def reserve_free_name(self, name: str, when: float, by: str, files: str,
                                versions: int) -> bool:
        """Reserve ``name`` unless it is an account (False then); an existing reservation
        is kept as it is."""
        return int(await self._eval(RESERVE_FREE_SCRIPT, [user_key(name), removed_key(name)],
                                    repr(when), by, files, str(versions))) == 1

    async def restore_user(self, name: str) -> int:
        """Bring a removed account back from its reservation: 1 done, 0 the account
        exists, -1 no reservation."""
        return int(await self._eval(
            RESTORE_USER_SCRIPT, [user_key(name), USERS, removed_key(name)], name))

    async def list_reservations(self) -> list[dict[str, Any]]:
        """Removed accounts whose files are kept, by name: ``name``, ``removed``, ``by``,
        ``files``, ``versions``, ``mirror`` (never the password hash).  SCAN: admin only."""
        out = []
        for key in sorted(await self._scan(REMOVED_PATTERN)):
            h = await self.redis.hgetall(key)
            if h:
                out.append({"name": tail(key), "removed": as_float(h.get("removed")),
                            "by": h.get("by", ""), "files": h.get("files", ""),
                            "versions": int(h.get("versions") or 0),
                            "mirror": h.get("mirror", "")})
        return out
