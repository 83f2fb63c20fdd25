"""Server-record writes of a start, guarded by its start lease's fencing token.

A start holds the lease ``start:{name}`` (:mod:`ipydoc.state.leases`) and writes the
record ``server:{name}`` with its fence.  Should that daemon stall past the lease's TTL
while another daemon took over and started the server anew, the stale start's late
"running" must not replace the newer record and route: the write is one Lua step that
refuses when the stored ``fence`` is larger than the writer's.  Record and route change
together, as in :meth:`ipydoc.state.servers.Servers.set_server`.
"""

from __future__ import annotations

from typing import Any

from ipydoc.names import split_server_key
from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import ROUTES, SERVERS, server_key, user_servers_key

# KEYS: server, servers, routes, the owner's user-servers.  ARGV: name (a server key),
# fence, route (1/0), named (1/0: join the owner's index), then field/value pairs.
FENCED_SET_SCRIPT = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') or 0
if stored > tonumber(ARGV[2]) then return 0 end
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'fence', ARGV[2], unpack(fields))
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[4] == '1' then redis.call('SADD', KEYS[4], ARGV[1]) end
local url = redis.call('HGET', KEYS[1], 'url')
if ARGV[3] == '1' and url then
  redis.call('HSET', KEYS[3], ARGV[1], url)
else
  redis.call('HDEL', KEYS[3], ARGV[1])
end
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'stopped' or state == 'failed' then
  redis.call('HDEL', KEYS[1], 'token', 'url')
end
return 1
"""


class FencedServers(StoreBase):
    async def set_server_fenced(self, name: str, fence: int, state: str, *,
                                route: bool = False, **fields_: Any) -> bool:
        """:meth:`set_server` for a start holding fence ``fence``; False (nothing
        written) when a newer start's fence is stored."""
        values = {k: ("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
                  for k, v in fields_.items()}
        values["state"] = state
        values["updated"] = repr(self._now())
        flat = [x for kv in values.items() for x in kv]
        owner, server = split_server_key(name)
        keys = [server_key(name), SERVERS, ROUTES, user_servers_key(owner)]
        return bool(await self._eval(FENCED_SET_SCRIPT, keys, name, str(fence),
                                     "1" if route else "0", "1" if server else "0", *flat))

    async def server_fence(self, name: str) -> int:
        """The fence of the start that last wrote ``name``'s record (0: none)."""
        return int(await self.redis.hget(server_key(name), "fence") or 0)
