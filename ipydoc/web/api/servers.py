"""``/hub/api/servers`` and ``/hub/api/users/{name}/server…``: list, start (through
:meth:`ipydoc.servers.manager.ServerManager.start`, the one validation of images and
profiles that the start page and the CLI go through too), stop, pause, resume, and the
start's progress as Server-Sent Events (what ``spawn.js`` reads, and API clients too)."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.backends.base import BackendError
from ipydoc.servers.manager import StartFailed
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
        return paged([await self.shared.server(name, call.request)], call.query)

    async def get(self, call: Call) -> dict[str, Any]:
        name = (await self.shared.user(call.params["name"])).name
        return await self.shared.server(name, call.request)

    async def start(self, call: Call) -> dict[str, Any]:
        user = await self.shared.user(call.params["name"])
        if user.disabled:
            raise ApiError("conflict", f"{user.name} is disabled; enable the account first")
        manager = self.shared.manager
        image = call.body.get("image") or None
        profile = call.body.get("profile") or None
        if user.name not in manager.routes and not manager.is_starting(user.name):
            try:  # the one profile rule of every path; refused here is the caller's 400
                chosen = await manager.choose_profile(user.name, profile)
            except StartFailed as e:
                raise ApiError("invalid_field", e.message) from None
            started = defer.Deferred.fromCoroutine(manager.start(user.name, image, chosen))
            failure: list[StartFailed] = []

            def refused(f: Any) -> None:
                f.trap(StartFailed)
                failure.append(f.value)

            started.addErrback(refused)
            started.addErrback(lambda f: self.log.failure("start of {name}", f,
                                                          name=user.name))
            # The image allow-list is checked before the start registers (synchronously);
            # a later failure (an image the profile does not take, a limit) is the
            # progress stream's to tell.
            if failure and failure[0].kind in REFUSED_KINDS:
                raise ApiError("invalid_field", failure[0].message)
            await self.shared.store.add_event("start-requested", user.name, f"by {call.by()}")
        return await self.shared.server(user.name, call.request)

    async def stop(self, call: Call) -> dict[str, Any]:
        name = (await self.shared.user(call.params["name"])).name
        manager = self.shared.manager
        record = await self.shared.store.get_server(name)
        running = manager.is_busy(name) or name in manager.routes or (
            record is not None and record.state not in ("stopped", "failed"))
        if running:
            try:
                await manager.stop(name, f"stopped by {call.by()}")
            except BackendError as e:
                raise ApiError("backend_error", f"could not stop the server: {e.message}") \
                    from None
        return {"stopped": running, "server": await self.shared.server(name, call.request)}

    async def pause(self, call: Call) -> dict[str, Any]:
        name = (await self.shared.user(call.params["name"])).name
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
        name = (await self.shared.user(call.params["name"])).name
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
        name = (await self.shared.user(call.params["name"])).name
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
