"""``/hub/api/users/{name}/tokens``: the caller's own personal tokens (list, make, revoke).

Only the user themself: an admin cannot make or revoke another user's tokens (403), as on
``/hub/token``.  A token can only make tokens whose scopes it holds itself (a ``read``
token cannot mint a ``servers`` one), and ``admin`` only while its user is an admin
(:func:`ipydoc.access.tokens.checked_scopes`).  A new token is in the answer once; only
its hash is stored.
"""

from __future__ import annotations

import time
from typing import Any

from ipydoc.access import tokens
from ipydoc.web.api.call import Call, Shared, paged
from ipydoc.web.api.errors import ApiError
from ipydoc.web.present import when


class TokenHandlers:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    def _own(self, call: Call) -> str:
        if call.params["name"] != call.who.name:
            raise ApiError("forbidden", "tokens are managed by their own user only")
        return call.who.name

    async def list(self, call: Call) -> dict[str, Any]:
        name = self._own(call)
        return paged([_shown(t) for t in await self.shared.store.list_tokens(name)],
                     call.query)

    async def create(self, call: Call) -> dict[str, Any]:
        name, who, body = self._own(call), call.who, call.body
        note = body.get("note", "").strip()
        if any(ord(c) < 32 for c in note):
            raise ApiError("invalid_field", "note is one line of text")
        wanted = body.get("scopes", list(tokens.DEFAULT_SCOPES))
        try:
            scopes = tokens.checked_scopes(wanted, admin=who.admin)
        except tokens.BadScopes as e:
            raise ApiError("invalid_field", str(e)) from None
        beyond = tokens.effective(scopes) - who.scopes
        if beyond:
            raise ApiError("missing_scope", f"this credential cannot make a token with "
                                            f"{' '.join(sorted(beyond))}")
        expires_in = body.get("expires_in", 30 * 86400)
        expires = time.time() + expires_in if expires_in else None
        secret = tokens.new_token()
        info = await self.shared.store.create_token(name, tokens.token_hash(secret), note,
                                                    expires, scopes)
        await self.shared.store.add_event(
            "token-created", name, f"id {info['id']}, scopes {' '.join(scopes)}, expires "
                                   f"{when(expires) if expires else 'never'}, by {call.by()}")
        return {"token": secret, "info": _shown(info)}

    async def revoke(self, call: Call) -> None:
        name = self._own(call)
        token_id = call.params["token_id"]
        if not await self.shared.store.revoke_token(name, token_id):
            raise ApiError("not_found", f"no token {token_id}")
        await self.shared.pages.gate.recheck_exchanges()  # what it has open is closed too
        await self.shared.store.add_event("token-revoked", name, f"id {token_id}, by "
                                                                  f"{call.by()}")


def _shown(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in ("id", "note", "created", "expires", "last_used", "scopes")}
