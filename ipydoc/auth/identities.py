"""Which external identity owns which ipydoc account.

An account made by a provider login is bound to that identity (provider id + the
provider's stable subject: the OIDC ``sub``, the numeric GitHub user id), never to the
name alone: names can be renamed away and taken by someone else at the provider, and a
local account of the same name belongs to whoever has its password.  So a login is
refused when the name it derives belongs to a local account or to another identity
(account takeover), and a renamed GitHub user keeps their account (the identity finds it).

Stored by :mod:`ipydoc.state.identities`: ``identity:{provider}:{sha256(subject)}`` → name,
and ``user-identity:{name}`` → JSON {provider, subject, created}; ``created`` is the account's
creation time, so a binding left behind by a removed account never opens a new account
that reuses the name.  Accounts made here have the password ``!external``: not a hash, so
the password form never accepts them.

A removed account whose files are kept reserves its name (:mod:`ipydoc.control.removal`): no login
makes an account with it, not even the identity that owned it (an administrator restores
that account with ``ipydoc user restore``), so nobody else ever gets the old files.  The
check is in the creating script (:data:`ipydoc.state.identities.CREATE_SCRIPT`), so it
holds against a removal racing the login.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.state.store import Store

EXTERNAL_PASSWORD = "!external"


class NameTaken(Exception):
    """The derived name belongs to a local account or to another identity."""


@dataclass(frozen=True)
class Resolved:
    name: str
    created: bool  # this login made the account


class Identities:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _bound(self, name: str, provider: str, subject: str) -> bool:
        """Whether the account ``name`` exists and is bound to this identity."""
        user = await self.store.get_user(name)
        b = await self.store.identity_binding(name)
        if user is None or b is None:
            return False
        return (b.get("provider") == provider and b.get("subject") == subject
                and b.get("created") == repr(user.created))

    async def resolve(self, provider: str, subject: str, name: str, admin: bool) -> Resolved:
        """The account of this identity: the one it owns, else ``name`` made for it.
        Raises :class:`NameTaken` when ``name`` is someone else's, and
        :class:`ipydoc.state.users.NameReserved` when a removed account's files hold it."""
        owned = await self.store.identity_owner(provider, subject)
        if owned and await self._bound(owned, provider, subject):
            return Resolved(owned, False)
        if await self._bound(name, provider, subject):
            await self.store.bind_identity(provider, subject, name)
            return Resolved(name, False)
        if await self.store.get_user(name) is not None:
            raise NameTaken(name)
        if not await self.store.create_bound_user(name, EXTERNAL_PASSWORD, admin,
                                                  provider, subject):
            raise NameTaken(name)
        return Resolved(name, True)
