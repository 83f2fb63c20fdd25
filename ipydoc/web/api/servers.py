"""``/hub/api/servers``, ``/hub/api/users/{name}/server…`` and (named servers, issue 19
§1) ``/hub/api/users/{name}/servers/{server}…``: list, start (through
:meth:`ipydoc.servers.manager.ServerManager.start`, the one validation of images,
profiles and maxima that the start page and the CLI go through too), stop (and remove a
named one), pause, resume, and the start's progress as Server-Sent Events (what
``spawn.js`` reads, and API clients too).  Every handler works on the server key the
path names (:meth:`.call.Shared.key`)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.names import SERVER_KEY_SEPARATOR
from ipydoc.servers.manager import StartFailed
from ipydoc.servers.named import RemoveRefused
from ipydoc.servers.progress import Step
from ipydoc.web.api.call import LIVE, Call, Shared, paged
from ipydoc.web.api.errors import ApiError

#: Kinds of :class:`StartFailed` that mean "you asked for something not offered".
REFUSED_KINDS = ("bad_image", "bad_profile")


class ServerHandlers:
    log = Logger()

    def __init__(self, shared: Shared) -> None:
        self.shared = shared

    async def all(self, call: Call) -> dict[str, Any]:
        store = self.shared.store
        records = [r for r in await store.list_servers()
                   if self.shared.pages.server_state(r.name, r) != "stopped"]
        activity = await store.activity()
        items = [self.shared.server_item(r.name, r, activity, call.request) for r in records]
        return paged(items, call.query)

    async def list(self, call: Call) -> dict[str, Any]:
        name = (await self.shared.user(call.params["name"])).name
        records = await self.shared.store.servers_of(name)  # default first, then by name
        activity = await self.shared.store.activity()
        if not records or records[0].name != name:  # a default server never started
            items = [self.shared.server_item(name, None, activity, call.request)]
        else:
            items = []
        items += [self.shared.server_item(r.name, r, activity, call.request) for r in records]
        return paged(items, call.query)

    async def get(self, call: Call) -> dict[str, Any]:
        return await self.shared.server(await self.shared.key(call), call.request)

    async def start(self, call: Call) -> dict[str, Any]:
        key = await self.shared.key(call)
        user = await self.shared.user(call.params["name"])
        if user.disabled:
            raise ApiError("conflict", f"{user.name} is disabled; enable the account first")
        manager = self.shared.manager
        image = call.body.get("image") or None
        profile = call.body.get("profile") or None
        if key not in manager.routes and not manager.is_starting(key):
            try:  # the one profile rule of every path; refused here is the caller's 400
                chosen = await manager.choose_profile(key, profile)
            except StartFailed as e:
                raise ApiError("invalid_field", e.message) from None
            try:  # the named-server maximum (asked again by the start itself)
                await manager.check_named(key)
            except StartFailed as e:
                raise ApiError("conflict", e.message) from None
            started = defer.Deferred.fromCoroutine(manager.start(key, image, chosen))
            failure: list[StartFailed] = []

            def refused(f: Any) -> None:
                f.trap(StartFailed)
                failure.append(f.value)

            started.addErrback(refused)
            started.addErrback(lambda f: self.log.failure("start of {name}", f, name=key))
            # The image allow-list and the maximum of named servers are checked before the
            # start registers (synchronously); a later failure (an image the profile does
            # not take, a limit) is the progress stream's to tell.
            if failure and failure[0].kind in REFUSED_KINDS:
                raise ApiError("invalid_field", failure[0].message)
            await self.shared.store.add_event("start-requested", user.name, _detail(key, call))
        return await self.shared.server(key, call.request)

    async def stop(self, call: Call) -> dict[str, Any]:
        """Stop the server; ``remove=true`` (named servers) also forgets it."""
        name = await self.shared.key(call)
        manager = self.shared.manager
        remove = bool(call.query.get("remove") or call.body.get("remove"))
        record = await self.shared.store.get_server(name)
        if remove and SERVER_KEY_SEPARATOR not in name:
            raise ApiError("invalid_field", "only a named server can be removed; the default "
                                            "server is the account's")
        if remove and record is None:
            raise ApiError("not_found", f"no server {call.params['server']} of "
                                        f"{call.params['name']}")
        running = manager.is_busy(name) or name in manager.routes or (
            record is not None and record.state not in ("stopped", "failed"))
        if running:
            try:
                await manager.stop(name, f"stopped by {call.by()}")
            except BackendError as e:
                raise ApiError("backend_error", f"could not stop the server: {e.message}") \
                    from None
        answer: dict[str, Any] = {"stopped": running}
        if remove:
            try:
                await manager.remove_server(name)
            except RemoveRefused as e:  # e.g. started again meanwhile
                raise ApiError("not_found" if e.kind == "not_found" else "conflict",
                               e.message) from None
            answer["removed"] = True
        answer["server"] = await self.shared.server(name, call.request)
        return answer

    async def pause(self, call: Call) -> dict[str, Any]:
        name = await self.shared.key(call)
        manager = self.shared.manager
        if manager.is_busy(name):
            raise ApiError("conflict", f"the server of {name} is starting or stopping")
        try:
            paused = await manager.pause(name, f"paused by {call.by()}")
        except BackendError as e:
            raise ApiError("backend_error", f"could not pause the server: {e.message}") \
                from None
        return {"paused": bool(paused), "server": await self.shared.server(name, call.request)}

    async def resume(self, call: Call) -> dict[str, Any]:
        name = await self.shared.key(call)
        try:
            resumed = await self.shared.manager.resume(name, "api")
        except BackendError as e:
            raise ApiError("backend_error", f"could not resume the server: {e.message}") \
                from None
        return {"resumed": bool(resumed),
                "server": await self.shared.server(name, call.request)}

    async def progress(self, call: Call) -> bytes:
        """The start's steps as Server-Sent Events, until a final one (or the client
        leaves, or the daemon drains: ``EventSource`` reconnects to the next process)."""
        name = await self.shared.key(call)
        request, manager, routing = call.request, self.shared.manager, self.shared.routing
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        progress = manager.progress.get(name)
        done: defer.Deferred[None] = defer.Deferred()

        def send(step: Step) -> None:
            if done.called:
                return
            shown = step.as_dict()
            if shown.get("url"):  # the manager's path is inside the server; browsers need this
                shown["url"] = routing.user_url(name, "lab", request)
            request.write(f"data: {json.dumps(shown)}\n\n".encode())
            if step.final:
                done.callback(None)

        if progress is None or (progress.last and progress.last.final
                                and not manager.is_starting(name)):
            server = await self.shared.store.get_server(name)
            state = self.shared.pages.server_state(name, server)
            if state in LIVE:
                send(Step("ready", "Your server is ready", 100,
                          url=routing.user_url(name, "lab", request)))
            elif state == "failed" and progress and progress.last and progress.last.failed:
                send(progress.last)  # with its error_kind (e.g. "limit")
            elif state == "failed":
                send(Step("failed", server.error if server else "failed", 100))
            else:
                send(Step("stopped", "Your server is not running", 0))
            return b""
        unsubscribe = progress.listen(send)
        request.notifyFinish().addBoth(lambda _: done.called or done.callback(None))
        when_draining = getattr(request, "when_draining", None)
        forget = when_draining(lambda: done.called or done.callback(None)) \
            if when_draining is not None else None
        await done
        unsubscribe()
        if forget is not None:
            forget()
        return b""


def _detail(key: str, call: Call) -> str:
    """An event's detail: who asked, and which named server (the default one unnamed)."""
    server = key.partition(SERVER_KEY_SEPARATOR)[2]
    return f"server {server} by {call.by()}" if server else f"by {call.by()}"
