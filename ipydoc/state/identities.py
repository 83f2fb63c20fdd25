"""Which external identity owns which account: ``identity:{provider}:{sha256(subject)}``
→ name, and ``user-identity:{name}`` → JSON {provider, subject, created}.

The rules (who may log in as which account) are in :mod:`ipydoc.auth.identities`; this
is their storage, including the one script that makes an account and binds it.
"""

from __future__ import annotations

import json
from typing import Any

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import USERS, identity_key, removed_key, user_identity_key, user_key
from ipydoc.state.users import NameReserved

# KEYS: user, users zset, identity, user-identity, reservation; ARGV: created, password,
# admin, name, binding JSON.  One script: a crash between "account written" and "bound"
# must not leave an account that no identity owns.  -1: the name is reserved.
CREATE_SCRIPT = """
if redis.call('HEXISTS', KEYS[1], 'password') == 1 then return 0 end
if redis.call('EXISTS', KEYS[5]) == 1 then return -1 end
redis.call('HSET', KEYS[1], 'created', ARGV[1], 'password', ARGV[2], 'admin', ARGV[3],
           'disabled', '0')
redis.call('ZADD', KEYS[2], 0, ARGV[4])
redis.call('SET', KEYS[3], ARGV[4])
redis.call('SET', KEYS[4], ARGV[5])
return 1
"""


class IdentityBindings(StoreBase):
    async def identity_owner(self, provider: str, subject: str) -> str | None:
        """The account name the identity's own key names (maybe stale: check the binding)."""
        return await self.redis.get(identity_key(provider, subject)) or None

    async def identity_binding(self, name: str) -> dict[str, Any] | None:
        """The ``user-identity:{name}`` record, or None (none, or unreadable)."""
        raw = await self.redis.get(user_identity_key(name))
        try:
            b = json.loads(raw) if raw else None
        except ValueError:
            return None
        return b if isinstance(b, dict) else None

    async def bind_identity(self, provider: str, subject: str, name: str) -> None:
        """Point the identity's key at ``name`` (whose binding already names it)."""
        await self.redis.set(identity_key(provider, subject), name)

    async def create_bound_user(self, name: str, password: str, admin: bool,
                                provider: str, subject: str) -> bool:
        """Make the account ``name`` bound to the identity, in one step; False if the
        name is an account.  Raises :class:`NameReserved` for a reserved name."""
        created = repr(self._now())
        binding = json.dumps({"provider": provider, "subject": subject, "created": created})
        made = int(await self._eval(
            CREATE_SCRIPT, [user_key(name), USERS, identity_key(provider, subject),
                            user_identity_key(name), removed_key(name)],
            created, password, "1" if admin else "0", name, binding))
        if made == -1:
            raise NameReserved(name)
        return made == 1

    async def binding_keys(self, name: str) -> list[str]:
        """The keys that bind an identity to the account ``name`` (to delete with its files):
        ``user-identity:{name}`` and the identity's own key while it still names ``name``."""
        keys = [user_identity_key(name)]
        b = await self.identity_binding(name)
        try:
            key = identity_key(str(b["provider"]), str(b["subject"]))  # type: ignore[index]
        except (KeyError, TypeError):
            return keys
        if await self.redis.get(key) == name:
            keys.append(key)
        return keys
