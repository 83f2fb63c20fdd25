"""Control commands on the daemon and user servers: status, start, stop, pause, resume,
list, show, logs (through the backend interface), the routing table, and a culler run.

Server commands take a server key in ``name`` (issue 19): ``alice`` for alice's default
server, ``alice--gpu`` for her named server ``gpu`` (the CLI builds it from ``--server``);
the owner must be an account.  ``server remove`` forgets a stopped named server."""

from __future__ import annotations

import json
import os
import time

from twisted.internet import defer

from ipydoc import __version__
from ipydoc.backends.base import BackendError
from ipydoc.control import commands as c
from ipydoc.control.base import (
    ControlBase,
    checked_key,
    log_chunk,
    page,
    page_json,
    page_limit,
    responder,
)
from ipydoc.servers.manager import StartFailed
from ipydoc.servers.move import Mover, MoveRefused
from ipydoc.servers.named import RemoveRefused
from ipydoc.servers.profiles import ProfileRefused

MAX_LOG_TAIL = 100_000    # lines


def what(key: str) -> str:
    """``the server of alice`` / ``the server gpu of alice``, for messages."""
    _, owner, server = checked_key(key)
    return f"the server {server} of {owner}" if server else f"the server of {owner}"


class ServerCommands(ControlBase):
    """The daemon's status, user servers, routes and the culler."""

    @responder(c.Status)
    async def status(self) -> dict:
        ctx = self.context
        try:
            backend = await ctx.backend.check()
            backend_ok = True
        except Exception as e:  # noqa: BLE001 - reported, not raised
            backend, backend_ok = str(getattr(e, "message", e)), False
        try:
            redis_ok = await self.store.ping()
            _, users = await self.store.list_users(0, 0)
            servers = await self.store.list_servers()
        except Exception:  # noqa: BLE001
            redis_ok, users, servers = False, None, []
        states: dict[str, int] = {}
        for s in servers:
            states[s.state] = states.get(s.state, 0) + 1
        return {"status": json.dumps({
            "version": __version__, "uptime": round(time.time() - ctx.started_at, 1),
            "pid": os.getpid(),
            "config": ctx.config_path,
            "backend": backend, "backend_ok": backend_ok,
            "redis": ctx.state.describe(), "redis_ok": redis_ok,
            "users": users, "running_servers": len(self.manager.routes),
            "servers": states,
            "culler": ctx.cull is not None,
        })}


    @responder(c.ServerStart)
    async def server_start(self, name: str, wait: bool, profile: str | None = None) -> dict:
        _, owner, server = checked_key(name)
        user = await self._user(owner)
        if user.disabled:
            raise c.Conflict(f"user {owner} is disabled; `ipydoc user enable {owner}` first")
        try:  # refused here, not in the background: the same rules as every other path
            await self.manager.check_named(name)
            chosen = await self.manager.choose_profile(name, profile or None)
        except (ProfileRefused, StartFailed) as e:
            raise c.InvalidInput(f"cannot start {what(name)}: {e.message}") from None
        await self._audit("start-requested", owner, f"profile {chosen.name}"
                          + (f", server {server}" if server else ""))
        d = defer.Deferred.fromCoroutine(self.manager.start(name, profile=chosen))
        if not wait:
            d.addErrback(lambda f: f.trap(StartFailed))
            d.addErrback(lambda f: self.log.failure("start of {name}", f, name=name))
            return {"result": json.dumps(await self._server_item(name))}
        try:
            await d
        except StartFailed as e:
            raise c.ControlError(f"{what(name)} did not start ({e.kind}): "
                                 f"{e.message}"[:4000]) from None
        return {"result": json.dumps(await self._server_item(name))}

    @responder(c.ServerStop)
    async def server_stop(self, name: str) -> dict:
        await self._user(checked_key(name)[1])
        stopped = await self.manager.stop_if_running(name, "stopped by an admin")
        if stopped:
            self.log.info("control: stopped {what} (by {peer})", what=what(name),
                          peer=self.peer())
        return {"result": json.dumps({"name": name, "stopped": stopped})}

    @responder(c.ServerPause)
    async def server_pause(self, name: str) -> dict:
        await self._user(checked_key(name)[1])
        if self.manager.is_busy(name):
            raise c.Conflict(f"{what(name)} is starting or stopping")
        try:
            paused = await self.manager.pause(name, "paused by an admin")
        except BackendError as e:
            raise c.ControlError(f"could not pause {what(name)}: {e.message}") from None
        if paused:
            self.log.info("control: paused {what} (by {peer})", what=what(name),
                          peer=self.peer())
        return {"result": json.dumps({"name": name, "paused": paused})}

    @responder(c.ServerResume)
    async def server_resume(self, name: str) -> dict:
        await self._user(checked_key(name)[1])
        try:
            resumed = await self.manager.resume(name, "cli")
        except BackendError as e:
            raise c.ControlError(f"could not resume {what(name)}: {e.message}") from None
        return {"result": json.dumps({"name": name, "resumed": resumed})}

    @responder(c.ServerMove)
    async def server_move(self, name: str, node: str) -> dict:
        await self._user(name)
        await self._audit("move-requested", name, f"to {node}")
        try:
            report = await Mover(self.manager, self.context.backend).move(name, node)
        except MoveRefused as e:
            error = {"not_available": c.NotAvailable, "not_found": c.NotFound,
                     "conflict": c.Conflict}.get(e.kind, c.ControlError)
            raise error(e.message[:4000]) from None
        return {"result": json.dumps(report.public())}

    @responder(c.ServerRemove)
    async def server_remove(self, name: str) -> dict:
        _, owner, server = checked_key(name)
        await self._user(owner)
        try:
            await self.manager.remove_server(name)
        except RemoveRefused as e:
            error = c.NotFound if e.kind == "not_found" else c.Conflict
            raise error(e.message) from None
        self.log.info("control: removed {what} (by {peer})", what=what(name), peer=self.peer())
        return {"result": json.dumps({"name": name, "owner": owner, "server": server,
                                      "removed": True})}

    @responder(c.ServerList)
    async def server_list(self, offset: int, limit: int) -> dict:
        servers = await self.store.list_servers()
        activity = await self.store.activity()
        chosen = servers[max(0, offset):max(0, offset) + page_limit(limit)]
        items = [await self._server_item(s.name, activity) for s in chosen]
        return {"items": page_json(items)[0], "total": len(servers)}

    @responder(c.ServerShow)
    async def server_show(self, name: str) -> dict:
        _, owner, _ = checked_key(name)
        record = await self.store.get_server(name)
        user = await self.store.get_user(owner)
        if record is None and user is None:
            raise c.NotFound(f"no user or server {name}")
        item = await self._server_item(name)
        try:
            info = await self.context.backend.status(name)
        except BackendError as e:
            item["backend"] = {"error": e.message}
        else:
            item["backend"] = None if info is None else {
                "id": info.id[:12], "running": info.running, "paused": info.paused,
                "url": info.url, "image": info.image, "started": info.started_at}
        item["busy"] = self.manager.is_busy(name)
        progress = self.manager.progress.get(name)
        steps = getattr(progress, "steps", None) or []
        if steps:
            last = steps[-1]
            item["progress"] = {"phase": last.phase, "message": last.message}
        return {"result": json.dumps(item)}

    @responder(c.ServerLogs)
    async def server_logs(self, name: str, tail: int, offset: int) -> dict:
        checked_key(name)
        if offset <= 0 or name not in self._logs:
            info = await self.context.backend.status(name)
            if info is None:
                raise c.NotFound(f"{name} has no container (a stopped server's container is "
                                 "removed, and its output with it)")
            lines = None if tail <= 0 else min(tail, MAX_LOG_TAIL)
            self._logs[name] = await self.context.backend.logs(info.id, tail=lines)
            offset = 0
        text, nxt = log_chunk(self._logs[name], offset)
        if nxt < 0:
            self._logs.pop(name, None)
        return {"text": text, "next": nxt}

    # -- routes and sessions --------------------------------------------------------------
    @responder(c.RouteList)
    async def route_list(self, offset: int, limit: int) -> dict:
        served = {n: r.url for n, r in self.manager.routes.items()}
        stored = await self.store.routes()
        activity = await self.store.activity()
        names = sorted(set(served) | set(stored))
        items = [{"name": n, "target": served.get(n) or stored.get(n),
                  "served": n in served, "stored": n in stored,
                  "last_activity": activity.get(n)} for n in names]
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.Cull)
    async def cull(self) -> dict:
        culler = self.context.cull
        if culler is None:
            raise c.NotAvailable("no idle culler configured: this ipydoc does not stop idle "
                                 "servers yet, so there is nothing to run")
        stopped = await defer.maybeDeferred(culler)
        self.log.info("control: culler run (by {peer})", peer=self.peer())
        return {"result": json.dumps({"stopped": sorted(stopped or [])})}

