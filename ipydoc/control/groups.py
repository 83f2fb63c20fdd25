"""Control commands on groups and profiles (:mod:`ipydoc.control.group_commands`): list,
show, add, set, remove, members add/remove; the profiles offered (to a user).

Every change is audited (log line and event) like the user commands.  A group's
``profiles`` must name profiles of the config, so a typo is refused, not silently offered
nothing.
"""

from __future__ import annotations

import json
from typing import Any

from ipydoc.control import commands as c
from ipydoc.control import group_commands as g
from ipydoc.control.base import ControlBase, checked_name, page_json, responder
from ipydoc.names import InvalidName, validate_name
from ipydoc.state.groups import GROUP_LIMITS, NoSuchGroup


def checked_group(value: str) -> str:
    try:
        return validate_name(value)
    except InvalidName as e:
        raise c.InvalidInput(f"invalid group name {value!r}: {e}") from None


class GroupCommands(ControlBase):
    """Groups: who is in them and what they give (admin, profiles, default limits)."""

    def _props(self, props: str, clear: str = "") -> dict[str, Any]:
        """The JSON ``props`` checked: admin (bool), profiles (known names), limits."""
        try:
            raw = json.loads(props or "{}")
        except ValueError:
            raise c.InvalidInput("props must be a JSON object") from None
        if not isinstance(raw, dict) or set(raw) - {"admin", "profiles", "limits"}:
            raise c.InvalidInput("props is a JSON object of admin, profiles and limits")
        out: dict[str, Any] = {}
        if "admin" in raw:
            if not isinstance(raw["admin"], bool):
                raise c.InvalidInput("admin must be true or false")
            out["admin"] = raw["admin"]
        if "profiles" in raw:
            names = raw["profiles"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise c.InvalidInput("profiles must be a list of profile names")
            known = self.manager.limits.catalogue.by_name
            unknown = [n for n in names if n not in known]
            if unknown:
                raise c.InvalidInput(f"no such profile: {', '.join(unknown)} "
                                     f"(profiles: {', '.join(known)})")
            out["profiles"] = list(dict.fromkeys(names))
        limits = raw.get("limits") or {}
        if not isinstance(limits, dict) or set(limits) - set(GROUP_LIMITS):
            raise c.InvalidInput(f"limits is an object of {', '.join(GROUP_LIMITS)}")
        for k, v in limits.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise c.InvalidInput(f"limit {k} must be a number >= 0 (0: no limit)")
            if k == "mem" and 0 < v < 6 * 1024 * 1024:
                raise c.InvalidInput("a memory limit below 6 MiB cannot run a server")
        out["limits"] = {k: GROUP_LIMITS[k](v) for k, v in limits.items()}
        dropped = tuple(k for k in (clear or "").split(",") if k)
        if set(dropped) - set(GROUP_LIMITS):
            raise c.InvalidInput(f"clear names limits: {', '.join(GROUP_LIMITS)}")
        out["clear"] = dropped
        return out

    async def _shown(self, name: str) -> dict[str, Any]:
        group = await self.store.get_group(name)
        if group is None:
            raise c.NotFound(f"no group {name}")
        item = group.public()
        item["members"] = await self.store.group_members(name)
        return item

    @responder(g.GroupList)
    async def group_list(self) -> dict:
        items = []
        for group in await self.store.list_groups():
            item = group.public()
            item["members"] = len(await self.store.group_members(group.name))
            items.append(item)
        return {"items": page_json(items)[0], "total": len(items)}

    @responder(g.GroupShow)
    async def group_show(self, name: str) -> dict:
        return {"result": json.dumps(await self._shown(checked_group(name)))}

    @responder(g.GroupAdd)
    async def group_add(self, name: str, props: str) -> dict:
        checked_group(name)
        values = self._props(props)
        if not await self.store.add_group(name):
            raise c.Conflict(f"the group {name} exists")
        await self.store.set_group(name, admin=values.get("admin"),
                                   profiles=values.get("profiles"), limits=values["limits"])
        await self._audit("group-add", "", f"{name} {props or ''}".strip())
        return {"result": json.dumps(await self._shown(name))}

    @responder(g.GroupSet)
    async def group_set(self, name: str, props: str, clear: str) -> dict:
        checked_group(name)
        values = self._props(props, clear)
        try:
            await self.store.set_group(name, admin=values.get("admin"),
                                       profiles=values.get("profiles"),
                                       limits=values["limits"], clear=values["clear"])
        except NoSuchGroup:
            raise c.NotFound(f"no group {name}") from None
        await self._audit("group-set", "", f"{name} {props or ''} clear={clear or ''}")
        return {"result": json.dumps(await self._shown(name))}

    @responder(g.GroupRemove)
    async def group_remove(self, name: str) -> dict:
        checked_group(name)
        members = await self.store.group_members(name)
        if not await self.store.remove_group(name):
            raise c.NotFound(f"no group {name}")
        await self._audit("group-remove", "", f"{name} ({len(members)} members)")
        return {"result": json.dumps({"name": name, "removed": True,
                                      "members": sorted(members)})}

    @responder(g.GroupMemberAdd)
    async def group_member_add(self, name: str, user: str) -> dict:
        checked_group(name)
        await self._user(checked_name(user))
        try:
            changed = await self.store.add_member(name, user)
        except NoSuchGroup:
            raise c.NotFound(f"no group {name}") from None
        if changed:
            await self._audit("group-member-add", user, name)
        return {"result": json.dumps({"name": name, "user": user, "changed": changed})}

    @responder(g.GroupMemberRemove)
    async def group_member_remove(self, name: str, user: str) -> dict:
        checked_group(name)
        checked_name(user)
        if await self.store.get_group(name) is None:
            raise c.NotFound(f"no group {name}")
        changed = await self.store.remove_member(name, user)
        if changed:
            await self._audit("group-member-remove", user, name)
        return {"result": json.dumps({"name": name, "user": user, "changed": changed})}

    @responder(g.ProfileList)
    async def profile_list(self, user: str | None = None) -> dict:
        catalogue = self.manager.limits.catalogue
        if user:
            await self._user(user)
            profiles = await self.manager.offered_profiles(user)
        else:
            profiles = list(catalogue.profiles)
        items = [{**p.public(), "default": p.name == catalogue.default,
                  "for_everyone": p.name in catalogue.for_everyone} for p in profiles]
        return {"items": page_json(items)[0], "total": len(items)}
