"""The state of one login at a provider, kept server-side between the redirect to the
provider and its callback.

The browser carries only the protocol's ``state`` (in the URL) and a random binding
value (in a cookie scoped to /hub/oauth/); Redis keeps ``state`` → {provider, nonce, PKCE
verifier, next, redirect_uri, hash of the binding} for ten minutes.  The callback takes the
record out exactly once (MULTI GET+DEL), so a code/state pair cannot be replayed, and
refuses it unless the cookie matches, so nobody can finish a login they started in their
own browser inside someone else's (login CSRF).  Only hashes of ``state`` and the binding
value are stored.

**Bounded.**  Starting a login is anonymous, so every record is counted: the sorted set
``ipydoc:login-states`` holds one member per outstanding record (scored by its expiry), and
one Lua script prunes the expired members, refuses when ``auth.oauth_pending_max`` records
are outstanding or the client address (:func:`ipydoc.access.login_limits.client_group`) has
started ``auth.oauth_starts_per_address`` logins in the last ten minutes, and otherwise
writes the record and its member together.  The script runs in Redis, so several daemons
sharing one Redis count the same set; the time is Redis's own (``TIME``), so their clocks
do not matter.  A refusal changes nothing: logins already started finish as before, and
the answer is a 429 saying when a slot frees up (the oldest record's expiry, or the end of
the address's window).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from ipydoc.state.store import P

TTL_SECONDS = 600
BINDING_COOKIE = "ipydoc-oauth"
COOKIE_PATH = "/hub/oauth/"
OUTSTANDING = f"{P}login-states"

# KEYS: the record, OUTSTANDING, [the address's start counter]; ARGV: record JSON, ttl s,
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


def state_key(state: str) -> str:
    return f"{P}login-state:{_digest(state)}"


def starts_key(group: str) -> str:
    return f"{P}oauth-starts:addr:{group}"


@dataclass(frozen=True)
class Limits:
    """``auth.oauth_pending_max`` and ``auth.oauth_starts_per_address`` (0: no limit)."""

    pending_max: int = 10_000
    per_address: int = 100

    @classmethod
    def from_auth(cls, auth: Any) -> Limits:
        return cls(auth.oauth_pending_max, auth.oauth_starts_per_address)


@dataclass(frozen=True)
class Full:
    """Why a login cannot be started now, and for how long."""

    scope: str  # "site" or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        wait = f"{self.retry_after} seconds" if self.retry_after < 120 else \
            f"{-(-self.retry_after // 60)} minutes"
        if self.scope == "address":
            return ("Too many logins were started from your network address in the last "
                    f"ten minutes. Please try again in {wait}.")
        return ("Too many logins are in progress on this site right now. Logins already "
                f"started still complete; please try again in {wait}.")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class LoginState:
    provider: str
    nonce: str
    verifier: str
    next: str
    redirect_uri: str
    binding: str  # sha256 of the cookie value

    @property
    def challenge(self) -> str:
        """The PKCE S256 code_challenge of the verifier."""
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_login(provider: str, nxt: str, redirect_uri: str) -> tuple[str, str, LoginState]:
    """A fresh ``(state, cookie value, record)``."""
    cookie = secrets.token_urlsafe(32)
    record = LoginState(provider, secrets.token_urlsafe(32), secrets.token_urlsafe(48), nxt,
                        redirect_uri, _digest(cookie))
    return secrets.token_urlsafe(32), cookie, record


async def save(redis: Any, state: str, record: LoginState, limits: Limits = Limits(),
               group: str = "") -> Full | None:
    """Store ``record`` under ``state`` unless a limit is reached (then a :class:`Full`)."""
    key = state_key(state)
    keys = [key, OUTSTANDING]
    if limits.per_address > 0 and group:
        keys.append(starts_key(group))
    out = await redis.execute_command(
        "EVAL", SAVE_SCRIPT, str(len(keys)), *keys, json.dumps(asdict(record)),
        str(TTL_SECONDS), str(max(1, limits.pending_max)), str(limits.per_address),
        key.rsplit(":", 1)[1])
    code, wait = int(out[0]), int(out[1])
    if code == 0:
        return None
    return Full("site" if code == 1 else "address", wait)


async def discard(redis: Any, state: str) -> None:
    """Forget a record that will not be used (the provider could not be asked)."""
    key = state_key(state)
    t = await redis.multi()
    t.delete(key)
    t.zrem(OUTSTANDING, key.rsplit(":", 1)[1])
    await t.commit()


async def take(redis: Any, state: str) -> LoginState | None:
    """The record of ``state``, deleting it; None if unknown, expired or already used."""
    if not state or len(state) > 200:
        return None
    key = state_key(state)
    t = await redis.multi()
    t.get(key)
    t.delete(key)
    t.zrem(OUTSTANDING, key.rsplit(":", 1)[1])
    raw, _, _ = await t.commit()
    if not raw:
        return None
    try:
        return LoginState(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def bound_to(record: LoginState, cookie: str) -> bool:
    """Whether the browser that sent ``cookie`` is the one that started this login."""
    return bool(cookie) and hmac.compare_digest(record.binding, _digest(cookie))
