"""The daemon's side of the control channel: answers AMP commands on a 0600 unix socket."""

from __future__ import annotations

import json
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp

from ipydoc import __version__
from ipydoc.control import commands as c
from ipydoc.names import InvalidName, validate_name
from ipydoc.passwords import WeakPassword, check_strength, hash_password_async


def page(items: list[dict[str, Any]], offset: int, limit: int) -> str:
    """JSON of ``items[offset:offset+limit]``, cut short to fit one AMP value."""
    out: list[str] = []
    size = 2
    for item in items[offset:offset + max(1, min(limit, 1000))]:
        text = json.dumps(item)
        if out and size + len(text) + 1 > c.PAGE_BYTES:
            break
        out.append(text)
        size += len(text) + 1
    return "[" + ",".join(out) + "]"


class ControlProtocol(amp.AMP):
    log = Logger()

    def __init__(self, daemon: Any) -> None:
        super().__init__()
        self.daemon = daemon

    @property
    def store(self) -> Any:
        return self.daemon.redis.store

    @c.Status.responder
    def status(self) -> defer.Deferred[dict[str, str]]:
        async def run() -> dict[str, str]:
            d = self.daemon
            try:
                backend = await d.backend.check()
                backend_ok = True
            except Exception as e:  # noqa: BLE001 - reported, not raised
                backend, backend_ok = str(e), False
            try:
                redis_ok = await self.store.ping()
            except Exception:  # noqa: BLE001
                redis_ok = False
            _, users = await self.store.list_users(0, 0)
            return {"status": json.dumps({
                "version": __version__, "uptime": time.time() - d.started_at,
                "backend": backend, "backend_ok": backend_ok,
                "redis": d.redis.describe(), "redis_ok": redis_ok,
                "users": users, "running_servers": len(d.manager.routes),
            })}
        return defer.Deferred.fromCoroutine(run())

    @c.UserAdd.responder
    def user_add(self, name: str, password: str, admin: bool) -> defer.Deferred[dict]:
        async def run() -> dict:
            try:
                validate_name(name)
                check_strength(password)
            except (InvalidName, WeakPassword) as e:
                raise c.InvalidInput(str(e)) from None
            hashed = await hash_password_async(password)
            if not await self.store.add_user(name, hashed, admin):
                raise c.Conflict(f"user {name} already exists")
            await self.store.add_event("user-added", name, "admin" if admin else "")
            self.log.info("user {name} added over the control channel", name=name)
            return {}
        return defer.Deferred.fromCoroutine(run())

    @c.UserList.responder
    def user_list(self, offset: int, limit: int) -> defer.Deferred[dict]:
        async def run() -> dict:
            users, total = await self.store.list_users(offset, min(limit, 1000))
            servers = {s.name: s for s in await self.store.list_servers()}
            items = []
            for u in users:
                item = u.public()
                s = servers.get(u.name)
                item["server"] = s.state if s else "stopped"
                items.append(item)
            return {"items": page(items, 0, len(items)), "total": total}
        return defer.Deferred.fromCoroutine(run())

    @c.ServerList.responder
    def server_list(self, offset: int, limit: int) -> defer.Deferred[dict]:
        async def run() -> dict:
            servers = await self.store.list_servers()
            activity = await self.store.activity()
            items = []
            for s in servers:
                item = s.public()
                item["last_activity"] = activity.get(s.name)
                items.append(item)
            return {"items": page(items, offset, limit), "total": len(items)}
        return defer.Deferred.fromCoroutine(run())


class ControlFactory(Factory):
    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def buildProtocol(self, addr: Any) -> ControlProtocol:
        return ControlProtocol(self.daemon)
