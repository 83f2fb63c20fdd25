"""``/hub/api/user`` and ``/hub/api/users``: who is calling; accounts for admins (list,
add, grant/withdraw admin, disable/enable, remove) with the same effects as the admin
page and ``ipydoc user remove``.

Removing an account keeps its files and reserves its name: the removal itself is
:class:`ipydoc.control.removal.Removal`'s (handed in by :mod:`ipydoc.tap` as an
:class:`AccountRemoval`; web and control are siblings), so there is one rule for what a
removal keeps, whichever way it is asked for."""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet import threads
from twisted.logger import Logger

from ipydoc.access.passwords import WeakPassword, check_strength, hash_password
from ipydoc.backends.base import BackendError
from ipydoc.names import InvalidName, validate_name
from ipydoc.state.users import NameReserved
from ipydoc.web.api.call import Call, Shared
from ipydoc.web.api.errors import ApiError


class AccountRemoval(Protocol):
    """Deletes an account whose servers are stopped, keeping its files and reserving its
    name (:meth:`ipydoc.control.removal.Removal.reserve`)."""

    async def reserve(self, user: Any, by: str) -> dict[str, Any]: ...


class UserHandlers:
    log = Logger()

    def __init__(self, shared: Shared, removal: AccountRemoval | None = None) -> None:
        self.shared = shared
        self.removal = removal

    async def me(self, call: Call) -> dict[str, Any]:
        who = call.who
        return {"name": who.name, "admin": who.admin, "kind": who.kind,
                "scopes": sorted(who.scopes)}

    async def list(self, call: Call) -> dict[str, Any]:
        store = self.shared.store
        offset, limit = call.query.get("offset", 0), call.query.get("limit", 100)
        users, total = await store.list_users(offset, limit)
        servers = await store.get_servers([u.name for u in users])
        activity = await store.activity()
        items = [{**u.public(), "server": self.shared.server_item(
            u.name, servers.get(u.name), activity, call.request)} for u in users]
        return {"items": items, "total": total, "offset": offset, "limit": limit}

    async def get(self, call: Call) -> dict[str, Any]:
        user = await self.shared.user(call.params["name"])
        return await self.shared.user_item(user, call.request)

    async def add(self, call: Call) -> dict[str, Any]:
        body = call.body
        try:
            name = validate_name(body["name"])
        except InvalidName as e:
            raise ApiError("invalid_name", f"invalid user name: {e}") from None
        try:
            check_strength(body["password"])
        except WeakPassword as e:
            raise ApiError("invalid_field", f"password: {e}") from None
        hashed = await threads.deferToThread(hash_password, body["password"])
        admin = bool(body.get("admin", False))
        store = self.shared.store
        try:
            added = await store.add_user(name, hashed, admin)
        except NameReserved:
            raise ApiError("conflict", f"the name {name} belonged to a removed account whose "
                                       "files are kept (`ipydoc user purge` or `ipydoc user "
                                       "restore`)") from None
        if not added:
            raise ApiError("conflict", f"the user {name} exists")
        await store.add_event("user-add", name, f"by {call.by()}" + (" (admin)" if admin
                                                                    else ""))
        self.log.info("{by} added the user {name}", by=call.by(), name=name)
        return await self.shared.user_item(await self.shared.user(name), call.request)

    async def change(self, call: Call) -> dict[str, Any]:
        name = call.params["name"]
        user = await self.shared.user(name)
        store, manager, body = self.shared.store, self.shared.manager, call.body
        if body.get("disabled") is True and name == call.who.name:
            raise ApiError("conflict", "you cannot disable your own account")
        if "admin" in body and body["admin"] != user.admin:
            await store.update_user(name, admin=body["admin"])
            await store.add_event("user-admin", name, ("granted" if body["admin"] else
                                                       "withdrawn") + f" by {call.by()}")
        if "disabled" in body and body["disabled"] != user.disabled:
            action = "disable" if body["disabled"] else "enable"
            await store.update_user(name, disabled=body["disabled"])
            if body["disabled"]:  # as the admin page: logged out, server stopped
                await store.revoke_sessions(name)
                try:
                    await manager.stop_all(name, f"account disabled by {call.who.name}")
                except BackendError as e:
                    raise ApiError("backend_error", f"{name} is disabled but the server did "
                                                    f"not stop: {e.message}") from None
            await store.add_event(f"user-{action}", name, f"by {call.by()}")
        self.log.info("{by} changed {name}: {body}", by=call.by(), name=name, body=body)
        return await self.shared.user_item(await self.shared.user(name), call.request)

    async def remove(self, call: Call) -> dict[str, Any]:
        """As ``ipydoc user remove NAME`` (files kept): the account is locked first, so no
        login slips in, then logged out, every server of it stopped, then removed."""
        name = call.params["name"]
        user = await self.shared.user(name)
        if name == call.who.name:
            raise ApiError("conflict", "you cannot remove your own account")
        if self.removal is None:
            raise ApiError("unavailable", "account removal is not available here")
        store, manager = self.shared.store, self.shared.manager
        await store.update_user(name, disabled=True)
        revoked = await store.revoke_sessions(name)
        try:
            stopped = await manager.stop_all(name, f"user removed by {call.who.name}")
        except BackendError as e:
            raise ApiError("backend_error", f"{name} is disabled but a server did not "
                                            f"stop: {e.message}; try again") from None
        kept = await self.removal.reserve(user, call.by())
        await self.shared.pages.gate.recheck_exchanges()  # its tokens' open connections
        await store.add_event("user-removed", name, f"by {call.by()}; files kept, name "
                                                    "reserved until `ipydoc user purge`")
        self.log.info("{by} removed the user {name}", by=call.by(), name=name)
        return {"removed": name, "sessions_revoked": int(revoked or 0),
                "servers_stopped": stopped, "files": str(kept.get("files", "")),
                "versions": int(kept.get("versions", 0)), "mirror": str(kept.get("mirror", "")),
                "reserved": True}
