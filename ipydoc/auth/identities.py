"""Which external identity owns which ipydoc account.

An account made by a provider login is bound to that identity (provider id + the
provider's stable subject: the OIDC ``sub``, the numeric GitHub user id), never to the
name alone: names can be renamed away and taken by someone else at the provider, and a
local account of the same name belongs to whoever has its password.  So a login is
refused when the name it derives belongs to a local account or to another identity
(account takeover), and a renamed GitHub user keeps their account (the identity finds it).

Keys (see :mod:`ipydoc.state.store`): ``identity:{provider}:{sha256(subject)}`` → name, and
``user-identity:{name}`` → JSON {provider, subject, created}; ``created`` is the account's
creation time, so a binding left behind by a removed account never opens a new account
that reuses the name.  Accounts made here have the password ``!external``: not a hash, so
the password form never accepts them.

A removed account whose files are kept reserves its name (:mod:`ipydoc.control.removal`): no login
makes an account with it, not even the identity that owned it (an administrator restores
that account with ``ipydoc user restore``), so nobody else ever gets the old files.  The
check is in the creating script, so it holds against a removal racing the login.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from ipydoc.state.store import USERS, NameReserved, P, removed_key, user_key

EXTERNAL_PASSWORD = "!external"

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


class NameTaken(Exception):
    """The derived name belongs to a local account or to another identity."""


def identity_key(provider: str, subject: str) -> str:
    return f"{P}identity:{provider}:{hashlib.sha256(subject.encode()).hexdigest()}"


def user_identity_key(name: str) -> str:
    return f"{P}user-identity:{name}"


@dataclass(frozen=True)
class Resolved:
    name: str
    created: bool  # this login made the account


class Identities:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.redis = store.redis

    async def _bound(self, name: str, provider: str, subject: str) -> bool:
        """Whether the account ``name`` exists and is bound to this identity."""
        user = await self.store.get_user(name)
        raw = await self.redis.get(user_identity_key(name))
        if user is None or not raw:
            return False
        try:
            b = json.loads(raw)
        except ValueError:
            return False
        return (b.get("provider") == provider and b.get("subject") == subject
                and b.get("created") == repr(user.created))

    async def resolve(self, provider: str, subject: str, name: str, admin: bool) -> Resolved:
        """The account of this identity: the one it owns, else ``name`` made for it.
        Raises :class:`NameTaken` when ``name`` is someone else's, and
        :class:`ipydoc.state.store.NameReserved` when a removed account's files hold it."""
        key = identity_key(provider, subject)
        owned = await self.redis.get(key)
        if owned and await self._bound(owned, provider, subject):
            return Resolved(owned, False)
        if await self._bound(name, provider, subject):
            await self.redis.set(key, name)
            return Resolved(name, False)
        if await self.store.get_user(name) is not None:
            raise NameTaken(name)
        created = repr(self.store._now())
        binding = json.dumps({"provider": provider, "subject": subject, "created": created})
        made = await self.redis.execute_command(
            "EVAL", CREATE_SCRIPT, "5", user_key(name), USERS, key, user_identity_key(name),
            removed_key(name), created, EXTERNAL_PASSWORD, "1" if admin else "0", name,
            binding)
        if int(made) == -1:
            raise NameReserved(name)
        if int(made) != 1:
            raise NameTaken(name)
        return Resolved(name, True)


async def binding_keys(redis: Any, name: str) -> list[str]:
    """The keys that bind an identity to the account ``name`` (to delete with its files):
    ``user-identity:{name}`` and the identity's own key while it still names ``name``."""
    keys = [user_identity_key(name)]
    raw = await redis.get(user_identity_key(name))
    try:
        b = json.loads(raw) if raw else {}
        key = identity_key(str(b["provider"]), str(b["subject"]))
    except (ValueError, KeyError, TypeError):
        return keys
    if await redis.get(key) == name:
        keys.append(key)
    return keys
