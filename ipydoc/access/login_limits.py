"""Failed-login limits per account and per client address, counted in Redis over a window.

Argon2 makes each guess slow; limits make guessing hopeless.  Every failed login counts
against the account name typed (normalised, whether or not the account exists, so the
limiter never tells which names exist) and against the client address (IPv6 grouped by
/64, the block one subscriber usually gets).  Once either count reaches its limit, logins
for that account, or from that address, are refused until the window ends -- even with
the right password, or the guessing would simply go on -- with HTTP 429 and the time
left, and without running argon2 at all (an attack costs no CPU then).  A success clears
the account's count, not the address's: one known account must not let an address go on
guessing others.  An admin's ``ipydoc user passwd`` clears the account's count too.

Counts are fixed windows: the first failure starts the key's expiry; refused attempts do
not extend it, so the owner waits at most one window after the guessing stops.  Both
counters are updated in one Lua script, so a crash never leaves a key without expiry.

Behind a reverse proxy every connection comes from the proxy: list it in
``server.trusted_proxies`` and the address counted is the client's, from the proxy's
``X-Forwarded-For`` (:mod:`ipydoc.edge.forwarding` puts it on the request before this reads
it).  From any other peer that header is ignored, or a guesser would pick a new
"address" for every attempt.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

P = "ipydoc:login-fails:"

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


def account_key(name: str) -> str:
    return f"{P}user:{name}"


def address_key(group: str) -> str:
    return f"{P}addr:{group}"


def address_group(host: str) -> str:
    """The unit an address is limited as: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "local"  # a unix socket: whoever is on this machine
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_group(request: IRequest) -> str:
    """The group of the request's client address: behind a trusted proxy, the client that
    proxy names (ipydoc.edge.forwarding), else the peer."""
    return address_group(str(getattr(request.getClientAddress(), "host", "")))


def _wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class LimitSettings:
    per_account: int = 5  # failures of one account name per window; 0: no limit
    per_address: int = 50  # failures from one address (IPv6: /64) per window; 0: no limit
    window: int = 900  # seconds

    @classmethod
    def from_auth(cls, auth: Any) -> LimitSettings:
        return cls(auth.login_attempts_per_account, auth.login_attempts_per_address,
                   auth.login_window)


@dataclass(frozen=True)
class Refusal:
    """Why a login is refused for now, and for how long."""

    scope: str  # "account" or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        who = "this account" if self.scope == "account" else "your network address"
        return (f"Too many failed logins for {who}. For your safety logins are paused: "
                f"try again in {_wait_text(self.retry_after)}.")


class LoginLimits:
    """Reads and counts failed logins; ``store_source.store.redis`` is the connection."""

    def __init__(self, store_source: Any, settings: LimitSettings) -> None:
        self._source = store_source
        self.settings = settings

    def _keys(self, name: str | None, group: str) -> list[tuple[str, str, int]]:
        s = self.settings
        keys = []
        if name and s.per_account > 0:
            keys.append(("account", account_key(name), s.per_account))
        if s.per_address > 0:
            keys.append(("address", address_key(group), s.per_address))
        return keys

    async def _run(self, script: str, keys: list[tuple[str, str, int]]) -> Refusal | None:
        if not keys:
            return None
        redis = self._source.store.redis
        out = await redis.execute_command("EVAL", script, str(len(keys)),
                                          *(k for _, k, _ in keys), str(self.settings.window))
        for i, (scope, _, limit) in enumerate(keys):
            count, ttl = int(out[2 * i]), int(out[2 * i + 1])
            if count >= limit:
                return Refusal(scope, max(1, ttl if ttl > 0 else self.settings.window))
        return None

    async def check(self, name: str | None, group: str) -> Refusal | None:
        """A refusal if the account or the address has used up its failures."""
        return await self._run(_READ, self._keys(name, group))

    async def failed(self, name: str | None, group: str) -> Refusal | None:
        """Count one failure; a refusal if that used up the account's or address's."""
        return await self._run(_FAIL, self._keys(name, group))

    async def succeeded(self, name: str) -> None:
        await clear_account(self._source.store.redis, name)


async def clear_account(redis: Any, name: str) -> None:
    """Forget an account's failed logins (after a success or an admin's password reset)."""
    await redis.delete(account_key(name))
