"""Control commands on accounts and their login sessions: add, remove, purge, restore,
list, show, disable, enable, admin rights, limits, passwords; list and revoke sessions."""

from __future__ import annotations

import json

from ipydoc.access.passwords import hash_password_async
from ipydoc.backends.base import BackendError
from ipydoc.control import commands as c
from ipydoc.control.base import (
    ControlBase,
    checked_name,
    checked_password,
    page,
    page_json,
    page_limit,
    responder,
)
from ipydoc.control.removal import AccountExists, NotRestorable, kept_text, reserved_message
from ipydoc.state.spawn_settings import LIMIT_FIELDS
from ipydoc.state.users import NameReserved


class UserCommands(ControlBase):
    """Accounts and sessions."""

    @responder(c.UserAdd)
    async def user_add(self, name: str, password: str, admin: bool) -> dict:
        checked_name(name)
        hashed = await hash_password_async(checked_password(password))
        try:
            added = await self.store.add_user(name, hashed, admin)
        except NameReserved:
            reservation = await self.store.get_reservation(name) or {}
            raise c.Conflict(reserved_message(name, reservation)) from None
        if not added:
            raise c.Conflict(f"user {name} already exists")
        await self._audit("user-added", name, "admin" if admin else "")
        return {}

    @responder(c.UserRemove)
    async def user_remove(self, name: str, purge: bool) -> dict:
        user = await self._user(name)
        # Lock the account first, so no login slips in while the rest is undone.
        await self.store.update_user(name, disabled=True)
        revoked = await self.store.revoke_sessions(name)
        stopped = await self._stop_all(name, "user removed")
        removal = self.context.removal
        if purge:
            try:
                data = await removal.purge_data(name)
            except (BackendError, OSError) as e:
                raise c.ControlError(
                    f"user {name} is disabled and the server stopped, but the files could "
                    f"not be deleted: {getattr(e, 'message', e)}; the account is kept, "
                    "try again") from None
            await self._audit("files-purged", name, kept_text(data))
            await self.store.remove_user(name)
            await self._audit("user-removed", name, "files and history deleted")
        else:
            # The name stays reserved while the files exist (ipydoc.control.removal).
            data = await removal.reserve(user, self.peer())
            await self._audit("user-removed", name,
                              f"kept {kept_text(data)}; name reserved until `user purge`")
        return {"result": json.dumps({"removed": name, "sessions_revoked": revoked,
                                      "server_stopped": stopped, "purged": purge,
                                      "reserved": not purge, **data})}

    @responder(c.UserPurge)
    async def user_purge(self, name: str) -> dict:
        checked_name(name)
        try:
            data = await self.context.removal.purge_removed(name, self.peer())
        except AccountExists:
            raise c.Conflict(f"{name} is an account, not a removed one: "
                             f"`ipydoc user remove {name} --purge --yes` deletes it with its "
                             "files") from None
        except (BackendError, OSError) as e:
            raise c.ControlError(
                f"the files of {name} could not be deleted: {getattr(e, 'message', e)}; the "
                "name stays reserved, try again") from None
        await self._audit("files-purged", name, kept_text(data))
        return {"result": json.dumps({"purged": name, **data})}

    @responder(c.UserRemovedList)
    async def user_removed_list(self, offset: int, limit: int) -> dict:
        items = await self.store.list_reservations()
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.UserRestore)
    async def user_restore(self, name: str) -> dict:
        checked_name(name)
        try:
            data = await self.context.removal.restore(name)
        except AccountExists:
            raise c.Conflict(f"user {name} exists") from None
        except NotRestorable:
            raise c.Conflict(f"the files of {name} were found without an account (removed by "
                             "an older ipydoc), so there is no account to restore; `ipydoc "
                             f"user purge {name} --yes` deletes them") from None
        if data is None:
            raise c.NotFound(f"{name} is not a removed account whose files are kept "
                             "(nothing to restore)")
        await self._audit("user-restored", name, kept_text(data))
        return {"result": json.dumps(data)}

    @responder(c.UserList)
    async def user_list(self, offset: int, limit: int) -> dict:
        users, total = await self.store.list_users(max(0, offset), page_limit(limit))
        servers = {s.name: s for s in await self.store.list_servers()}
        items = []
        for u in users:
            item = u.public()
            s = servers.get(u.name)
            state = s.state if s else "stopped"
            if self.manager.is_starting(u.name):
                state = "starting"
            item["server"] = state
            items.append(item)
        return {"items": page_json(items)[0], "total": total}

    @responder(c.UserShow)
    async def user_show(self, name: str) -> dict:
        user = await self._user(name)
        item = user.public()
        item["server"] = await self._server_item(name)
        # Every server of the user (issue 19: the default one and the named ones).
        item["servers"] = [await self._server_item(s.name)
                           for s in await self.store.servers_of(name)]
        item["sessions"] = len(await self.store.list_sessions(name))
        item["groups"] = await self.store.user_groups(name)   # group -> source
        item["admin_by_group"] = not user.admin and await self.store.is_admin(name)
        return {"result": json.dumps(item)}

    @responder(c.UserDisable)
    async def user_disable(self, name: str) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, disabled=True)
        revoked = await self.store.revoke_sessions(name)
        stopped = await self._stop_all(name, "user disabled")
        if not user.disabled:
            await self._audit("user-disabled", name, f"{revoked} sessions revoked")
        return {"result": json.dumps({"name": name, "disabled": True,
                                      "sessions_revoked": revoked, "server_stopped": stopped})}

    @responder(c.UserEnable)
    async def user_enable(self, name: str) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, disabled=False)
        if user.disabled:
            await self._audit("user-enabled", name)
        return {"result": json.dumps({"name": name, "disabled": False,
                                      "changed": user.disabled})}

    @responder(c.UserSetAdmin)
    async def user_set_admin(self, name: str, admin: bool) -> dict:
        user = await self._user(name)
        await self.store.update_user(name, admin=admin)
        if user.admin != admin:
            await self._audit("user-admin", name, "granted" if admin else "withdrawn")
        return {"result": json.dumps({"name": name, "admin": admin,
                                      "changed": user.admin != admin})}

    @responder(c.UserSetLimits)
    async def user_set_limits(self, name: str, limits: str, clear: str) -> dict:
        await self._user(name)
        try:
            raw = json.loads(limits or "{}")
        except ValueError:
            raise c.InvalidInput("limits must be a JSON object") from None
        if not isinstance(raw, dict):
            raise c.InvalidInput("limits must be a JSON object")
        dropped = tuple(k for k in (clear or "").split(",") if k)
        unknown = (set(raw) | set(dropped)) - set(LIMIT_FIELDS)
        if unknown:
            raise c.InvalidInput(f"unknown limits {', '.join(sorted(unknown))} "
                                 f"(known: {', '.join(LIMIT_FIELDS)})")
        values = {}
        for k, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise c.InvalidInput(f"limit {k} must be a number >= 0 (0: no limit)")
            if k == "mem" and 0 < v < 6 * 1024 * 1024:
                raise c.InvalidInput("a memory limit below 6 MiB cannot run a server")
            values[k] = LIMIT_FIELDS[k](v)
        own = await self.store.set_limits(name, values, dropped)
        base = self.manager.limits
        default = {"mem": base.mem_limit, "cpu": base.cpu_limit, "pids": base.pids_limit}
        effective = {k: own.get(k, default[k]) for k in LIMIT_FIELDS}
        await self._audit("user-limits", name, ", ".join(
            f"{k}={'none' if effective[k] is None else effective[k]}" for k in LIMIT_FIELDS))
        return {"result": json.dumps({"name": name, "overrides": own, "effective": effective,
                                      "applies": "at the next start of the server"})}

    @responder(c.UserPasswd)
    async def user_passwd(self, name: str, password: str, keep_sessions: bool) -> dict:
        await self._user(name)
        hashed = await hash_password_async(checked_password(password))
        await self.store.update_user(name, password=hashed)
        await self.store.clear_login_failures(name)  # the new password works at once
        # A new password shuts out whoever had the old one: their tokens too (issue 12).
        tokens = 0 if keep_sessions else await self.store.revoke_tokens(name)
        revoked = 0 if keep_sessions else await self.store.revoke_sessions(name)
        if tokens:
            await self.context.exchanges.recheck_exchanges()  # what the tokens have open
        await self._audit("user-password", name,
                          f"{revoked} sessions and {tokens} API tokens revoked")
        return {"result": json.dumps({"name": name, "sessions_revoked": revoked,
                                      "tokens_revoked": tokens})}


    @responder(c.SessionList)
    async def session_list(self, user: str, offset: int, limit: int) -> dict:
        sessions = await self.store.list_sessions(checked_name(user) if user else None)
        return {"items": page(sessions, offset, limit), "total": len(sessions)}

    @responder(c.SessionRevoke)
    async def session_revoke(self, user: str, sid: str) -> dict:
        if bool(user) == bool(sid):
            raise c.InvalidInput("name a user (all their sessions) or one session id")
        if user:
            await self._user(user)
            revoked = await self.store.revoke_sessions(user)
            await self._audit("sessions-revoked", user, f"{revoked} sessions")
            return {"result": json.dumps({"revoked": revoked, "user": user})}
        keys = await self.store.find_sessions(sid.lower())
        if not keys:
            raise c.NotFound(f"no session {sid} (give 8 or more hex digits of its id, as "
                             "`ipydoc session list` shows)")
        if len(keys) > 1:
            raise c.InvalidInput(f"session id {sid} is ambiguous: give more digits")
        owner = await self.store.revoke_session(keys[0]) or ""
        await self._audit("sessions-revoked", owner, f"session {sid[:16]}")
        return {"result": json.dumps({"revoked": 1, "user": owner})}

