"""``/hub/api/users/{name}/server/shares`` and ``/hub/api/users/{name}/servers/{server}/
shares`` (issue 19 §3): list, add (or change the mode of) and revoke the shares of a
server; ``/hub/api/users/{name}/shared`` lists the servers shared with a user.

The owner acts on their own servers (an admin on anyone's, as everywhere in the API); the
checks and events are :mod:`ipydoc.access.shares`', the same as the CLI's and the home
page's, and a revoked guest's open connections are closed by the gate at once.
"""

from __future__ import annotations

from typing import Any

from ipydoc.access.shares import ShareError, add_share, remove_all_shares, remove_share
from ipydoc.web.api.call import Call, Shared, paged
from ipydoc.web.api.errors import ApiError


def _api_error(e: ShareError) -> ApiError:
    return ApiError("not_found" if e.status == 404 else "invalid_field", e.message)


class ShareHandlers:
    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    async def list(self, call: Call) -> dict[str, Any]:
        key = await self.shared.key(call)
        shares = await self.shared.store.server_shares(key)
        return paged([s.public() for s in shares], call.query)

    async def add(self, call: Call) -> dict[str, Any]:
        key = await self.shared.key(call)
        body = call.body
        kind = "group" if "group" in body else "user"
        guest = body.get("group") if kind == "group" else body.get("user")
        if not guest or ("group" in body and "user" in body):
            raise ApiError("invalid_field", "name one guest: `user` or `group`")
        try:
            share, _ = await add_share(self.shared.store, key, kind, guest,
                                       body.get("mode", "rw"), call.by())
        except ShareError as e:
            raise _api_error(e) from None
        return share.public()

    async def remove(self, call: Call) -> dict[str, Any]:
        key = await self.shared.key(call)
        store = self.shared.store
        user, group, every = (call.query.get("user"), call.query.get("group"),
                              call.query.get("all"))
        if sum(bool(x) for x in (user, group, every)) != 1:
            raise ApiError("invalid_field", "say which share: `user`, `group` or `all=true`")
        if every:
            gone = await remove_all_shares(store, key, call.by())
            return {"removed": [s.public() for s in gone]}
        kind, guest = ("user", user) if user else ("group", group)
        old = [s.public() for s in await store.server_shares(key)
               if s.kind == kind and s.guest == guest]
        try:
            if not await remove_share(store, key, kind, guest, call.by()):
                raise ApiError("not_found", f"{key} is not shared with the {kind} {guest}")
        except ShareError as e:
            raise _api_error(e) from None
        return {"removed": old}

    async def shared_with(self, call: Call) -> dict[str, Any]:
        name = (await self.shared.user(call.params["name"])).name
        shares = await self.shared.store.shared_with(name)
        return paged([s.public() for s in shares], call.query)
