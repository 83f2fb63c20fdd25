"""Starts of a returning user's server from the login page: ``prestart:{name}``.

The login page of a browser that logged in as NAME before starts NAME's stopped server
while they type their password (:mod:`ipydoc.servers.prestart`).  The key says a start of
that kind is waiting for its login, on every daemon: the login (wherever it happens)
deletes it; the daemon that started the server stops it again if the key is still
``pending`` when its grace is over, and leaves ``unused`` behind as a cool-down, so a
browser that keeps opening the login page without logging in cannot start and stop the
server in a loop.
"""

from __future__ import annotations

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import prestart_key

PENDING = "pending"
UNUSED = "unused"

# KEYS: prestart:{name}; ARGV: cool-down ms, PENDING, UNUSED.  1 (and the cool-down set)
# if the start is still waiting for its login, else 0.
CLAIM_UNUSED_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[1])
return 1
"""


class Prestarts(StoreBase):
    async def mark_prestart(self, name: str, ttl: float) -> bool:
        """Note a start from the login page for ``name`` unless one is noted (pending or
        in its cool-down): True if this caller may start the server."""
        done = await self.redis.set(prestart_key(name), PENDING, pexpire=int(ttl * 1000),
                                    only_if_not_exists=True)
        return bool(done)

    async def prestart_used(self, name: str) -> None:
        """``name`` logged in: a start from the login page is theirs to keep."""
        await self.redis.delete(prestart_key(name))

    async def claim_unused_prestart(self, name: str, cooldown: float) -> bool:
        """True if ``name``'s start from the login page never saw its login (the caller
        stops it); the key then holds the cool-down for ``cooldown`` seconds."""
        return int(await self._eval(CLAIM_UNUSED_SCRIPT, [prestart_key(name)],
                                    str(int(cooldown * 1000)), PENDING, UNUSED)) == 1
