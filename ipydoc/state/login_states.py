"""Logins at a provider in progress: ``login-state:{sha256(state)}`` and the sorted set
``login-states`` that counts them, plus ``oauth-starts:addr:{group}``.

Why and how they are bounded is told in :mod:`ipydoc.auth.login_state`; here is the one
Lua script that prunes, checks both limits and writes a record with its member, and the
single-use take (MULTI GET+DEL).  Records are opaque JSON text to this module.
"""

from __future__ import annotations

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import LOGIN_STATES, digest, login_state_key, oauth_starts_key

# KEYS: the record, LOGIN_STATES, [the address's start counter]; ARGV: record JSON, ttl s,
# cap, per-address limit, member (the record key's hash).  Returns {0, 0} when saved, else
# {1 (site cap) or 2 (address limit), seconds until it frees up}.
SAVE_SCRIPT = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {1, math.max(1, math.ceil((tonumber(oldest[2]) - now) / 1000))}
end
if #KEYS >= 3 then
  if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[4]) then
    return {2, math.max(1, redis.call('TTL', KEYS[3]))}
  end
  redis.call('INCR', KEYS[3])
  if redis.call('TTL', KEYS[3]) < 0 then redis.call('EXPIRE', KEYS[3], ttl) end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZADD', KEYS[2], now + ttl * 1000, ARGV[5])
redis.call('PEXPIRE', KEYS[2], ttl * 1000 + 1000)
return {0, 0}
"""

#: What :meth:`LoginStates.save_login_state` answers when a limit refuses the record.
SITE_FULL, ADDRESS_FULL = "site", "address"


class LoginStates(StoreBase):
    async def save_login_state(self, state: str, record: str, ttl: int, pending_max: int,
                               per_address: int, group: str) -> tuple[str, int] | None:
        """Store ``record`` under ``state`` for ``ttl`` seconds unless ``pending_max``
        records are outstanding or ``group`` started ``per_address`` logins (0: no such
        limit) in the last ``ttl`` seconds: then (``site``/``address``, seconds to wait)."""
        keys = [login_state_key(state), LOGIN_STATES]
        if per_address > 0 and group:
            keys.append(oauth_starts_key(group))
        out = await self._eval(SAVE_SCRIPT, keys, record, str(ttl), str(max(1, pending_max)),
                               str(per_address), digest(state))
        code, wait = int(out[0]), int(out[1])
        if code == 0:
            return None
        return (SITE_FULL if code == 1 else ADDRESS_FULL), wait

    async def discard_login_state(self, state: str) -> None:
        """Forget a record that will not be used."""
        t = await self.redis.multi()
        t.delete(login_state_key(state))
        t.zrem(LOGIN_STATES, digest(state))
        await t.commit()

    async def take_login_state(self, state: str) -> str | None:
        """The record of ``state``, deleting it: a record is taken at most once."""
        t = await self.redis.multi()
        t.get(login_state_key(state))
        t.delete(login_state_key(state))
        t.zrem(LOGIN_STATES, digest(state))
        raw, _, _ = await t.commit()
        return raw or None
