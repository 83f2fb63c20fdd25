"""Failed-login counters: ``login-fails:user:{name}`` and ``login-fails:addr:{group}``.

Fixed windows: the first failure starts a key's expiry, refused attempts do not extend
it.  Both counters change in one Lua script, so a crash never leaves a key without
expiry.  The policy (limits, what is refused, for how long) is in
:mod:`ipydoc.access.login_limits`; this is its storage.
"""

from __future__ import annotations

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import login_fails_addr_key, login_fails_user_key

# KEYS: the counters; ARGV[1]: window seconds. Returns count, ttl for each key.
_READ = """
local out = {}
for _, k in ipairs(KEYS) do
  out[#out + 1] = tonumber(redis.call('GET', k) or '0')
  out[#out + 1] = redis.call('TTL', k)
end
return out
"""
_FAIL = """
local out = {}
for _, k in ipairs(KEYS) do
  local n = redis.call('INCR', k)
  if redis.call('TTL', k) < 0 then redis.call('EXPIRE', k, ARGV[1]) end
  out[#out + 1] = n
  out[#out + 1] = redis.call('TTL', k)
end
return out
"""


def _keys(account: str | None, group: str | None) -> list[str]:
    keys = [login_fails_user_key(account)] if account else []
    return keys + ([login_fails_addr_key(group)] if group is not None else [])


class LoginFailures(StoreBase):
    async def _counts(self, script: str, account: str | None, group: str | None,
                      window: int) -> list[tuple[int, int]]:
        keys = _keys(account, group)
        if not keys:
            return []
        out = await self._eval(script, keys, str(window))
        return [(int(out[2 * i]), int(out[2 * i + 1])) for i in range(len(keys))]

    async def login_failures(self, account: str | None, group: str | None,
                             window: int) -> list[tuple[int, int]]:
        """(count, seconds left) of the account's counter (if ``account``), then the
        address group's (if ``group`` is not None)."""
        return await self._counts(_READ, account, group, window)

    async def count_login_failure(self, account: str | None, group: str | None,
                                  window: int) -> list[tuple[int, int]]:
        """Add one failure to each counter named; their (count, seconds left) after it."""
        return await self._counts(_FAIL, account, group, window)

    async def clear_login_failures(self, account: str) -> None:
        """Forget an account's failed logins (after a success or an admin's reset)."""
        await self.redis.delete(login_fails_user_key(account))
