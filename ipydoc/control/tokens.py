"""Personal API tokens over the control channel: list, create, revoke (``ipydoc token``).

The control socket is the site operator's, so these act on any user's tokens (``user``):
the same tokens as ``/hub/token`` and ``/hub/api/users/{name}/tokens`` make
(:mod:`ipydoc.access.tokens`, :mod:`ipydoc.state.tokens`).  A listing never holds a token,
only its ``id`` (the first 16 hex digits of its SHA-256) and what it is: the secret exists
once, in :class:`TokenCreate`'s answer, and is never logged (the audit line and the event
name the id).  ``admin`` scope only for a user who is an admin (the one rule,
:func:`~ipydoc.access.tokens.checked_scopes`; the gate checks it again on every request).
Revoking cuts what the token has open at once (WebSockets, long answers).
"""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.protocols import amp

from ipydoc.access import tokens
from ipydoc.control.base import ControlBase, page, responder
from ipydoc.control.commands import (
    _PAGE_ANSWER,
    _PAGE_ARGS,
    _RESULT,
    ERRORS,
    Conflict,
    InvalidInput,
    NotFound,
)


class TokenList(amp.Command):
    """``user``'s live tokens, newest first: id, note, scopes, created, expires, last_used
    (never the token)."""
    arguments = [(b"user", amp.Unicode()), *_PAGE_ARGS]
    response = _PAGE_ANSWER
    errors = ERRORS


class TokenCreate(amp.Command):
    """A new token for ``user``: ``scopes`` (space-separated: read servers admin), ``note``
    (one line), ``expires_in`` seconds (0: never).  ``result``: ``{"token", "info"}``; the
    token is in this answer only."""
    arguments = [(b"user", amp.Unicode()), (b"scopes", amp.Unicode()),
                 (b"note", amp.Unicode()), (b"expires_in", amp.Float())]
    response = _RESULT
    errors = ERRORS


class TokenRevoke(amp.Command):
    """Revoke ``user``'s token ``id`` (``NOT_FOUND`` if there is none) and close what it
    has open."""
    arguments = [(b"user", amp.Unicode()), (b"id", amp.Unicode())]
    response = _RESULT
    errors = ERRORS


def shown(info: dict[str, Any]) -> dict[str, Any]:
    """What may leave the daemon about a token (no secret, no hash beyond the id)."""
    return {k: info[k] for k in ("id", "note", "created", "expires", "last_used", "scopes")}


class TokenCommands(ControlBase):
    """Personal API tokens of any user."""

    @responder(TokenList)
    async def token_list(self, user: str, offset: int, limit: int) -> dict:
        await self._user(user)
        items = [shown(t) for t in await self.store.list_tokens(user)]
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(TokenCreate)
    async def token_create(self, user: str, scopes: str, note: str,
                           expires_in: float) -> dict:
        account = await self._user(user)
        if account.disabled:
            raise Conflict(f"user {user} is disabled: enable the account first")
        note = note.strip()
        if len(note) > tokens.MAX_NOTE or any(ord(ch) < 32 for ch in note):
            raise InvalidInput(f"the note is one line of at most {tokens.MAX_NOTE} characters")
        if expires_in < 0 or expires_in > tokens.MAX_EXPIRY:
            raise InvalidInput(f"expiry must be 0 (never) or up to {tokens.MAX_EXPIRY} s "
                               "(one year)")
        try:
            chosen = tokens.checked_scopes(scopes.split(),
                                           admin=await self.store.is_admin(user))
        except tokens.BadScopes as e:
            raise InvalidInput(str(e)) from None
        expires = time.time() + expires_in if expires_in else None
        secret = tokens.new_token()
        info = await self.store.create_token(user, tokens.token_hash(secret), note, expires,
                                             chosen)
        until = "never" if expires is None else \
            time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(expires))
        await self._audit("token-created", user, f"id {info['id']}, scopes "
                          f"{' '.join(chosen)}, expires {until}, by the control channel")
        return {"result": json.dumps({"token": secret, "info": shown(info)})}

    @responder(TokenRevoke)
    async def token_revoke(self, user: str, id: str) -> dict:
        await self._user(user)
        if not await self.store.revoke_token(user, id.strip().lower()):
            raise NotFound(f"{user} has no token {id}")
        await self.context.exchanges.recheck_exchanges()  # what it has open is closed too
        await self._audit("token-revoked", user, f"id {id}, by the control channel")
        return {"result": json.dumps({"user": user, "id": id, "revoked": True})}
