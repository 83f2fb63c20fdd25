"""The user's own server: ``/hub/`` (to home or login), ``/hub/home``, the spawn page and
its form (``/hub/spawn/NAME``), ``/hub/stop/NAME`` and the start progress as Server-Sent
Events (``/hub/api/users/NAME/server/progress``, read by ``spawn.js``).

Only NAME's own session gets these (admins included: they do not get into other users'
servers); the forms follow the one CSRF and ``Origin`` rule of :mod:`ipydoc.web.pages`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.internet import defer
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.backends.base import BackendError
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.servers.progress import Step
from ipydoc.web.pages import HubSettings, Pages, RedisDown, notice, redis_down

#: States whose server answers (a paused one after its first request resumes it).
LIVE = ("running", "paused")


class HomePages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)

    def __init__(self, pages: Pages, settings: HubSettings, routing: Routing) -> None:
        self.pages = pages
        self.settings = settings
        self.routing = routing

    @property
    def store(self) -> Any:
        return self.pages.store

    @app.route("/", methods=["GET"])
    async def index(self, request: IRequest) -> bytes:
        session = await self.pages.sessions.from_request(request)
        return self.pages.redirect(request, "/hub/home" if session else "/hub/login", 302)

    @app.route("/home", methods=["GET"])
    async def home(self, request: IRequest) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        name = session.user
        server = await self.store.get_server(name)
        state = self.pages.server_state(name, server)
        limits = self.pages.manager.limits
        return self.pages.render(
            request, "home.html", user=name, csrf=session.csrf, page="home",
            is_admin=await self.pages.is_admin(name),
            # A stopped server's error is why it stopped (e.g. its node went down).
            server={"state": state,
                    "error": server.error if server and state in ("failed", "stopped") else "",
                    "started": server.started if server and state in LIVE else None,
                    "paused_since": server.paused_since if server and state == "paused"
                    else None,
                    "image": (server.image if server and state in LIVE and server.image
                              else self.settings.image)},
            last_activity=await self.store.last_activity(name),
            limits={"mem": limits.mem_limit, "cpu": limits.cpu_limit, "pids": limits.pids_limit},
            notice=notice(request), lab_url=self.routing.user_url(name, "lab", request))

    # -- spawn ---------------------------------------------------------------------------
    @app.route("/spawn/<name>", methods=["GET"])
    async def spawn_page(self, request: IRequest, name: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        nxt = self.routing.user_target(name, arg(request, "next"), request)
        server = await self.store.get_server(name)
        state = self.pages.server_state(name, server)
        if state in LIVE:  # a paused one is resumed by the request it is sent back to
            return self.pages.redirect(request, nxt, 302)
        progress = self.pages.manager.progress.get(name)
        steps = [s.as_dict() for s in progress.steps] if progress and state == "starting" else []
        if state == "stopping":
            state = "stopped"
        images = self.pages.manager.limits.allowed_images
        return self.pages.render(request, "spawn.html", user=name, csrf=session.csrf, next=nxt,
                                 state=state if state in ("starting", "failed") else "stopped",
                                 error=server.error if server else "", steps=steps,
                                 is_admin=await self.pages.is_admin(name),
                                 images=images if len(images) > 1 else (),
                                 chosen=await self.store.get_image_choice(name) or images[0])

    @app.route("/spawn/<name>", methods=["POST"])
    async def spawn(self, request: IRequest, name: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        nxt = self.routing.user_target(name, arg(request, "next"), request)
        image = arg(request, "image") or None
        manager = self.pages.manager
        if image is not None and image not in manager.limits.allowed_images:
            return self.pages.error(request, 400, "Not offered",
                                    "That image is not offered here; choose one from the list.",
                                    session)
        if name not in manager.routes:
            self.pages.start_in_background(name, image)
        return self.pages.redirect(request, f"/hub/spawn/{name}?next={quote(nxt, safe='/')}")

    @app.route("/stop/<name>", methods=["POST"])
    async def stop(self, request: IRequest, name: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        try:
            await self.pages.manager.stop(name, "stopped by user")
        except BackendError as e:
            return self.pages.error(request, 502, "Could not stop your server", e.message,
                                    session)
        return self.pages.redirect(request, "/hub/home?done=stop&user=" + name)

    @app.route("/api/users/<name>/server/progress", methods=["GET"])
    async def progress(self, request: IRequest, name: str) -> Any:
        session = await self.pages.sessions.from_request(request)
        if session is None or session.user != name:
            return self.pages.json(request, {"message": "not allowed"},
                                   401 if session is None else 403)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        manager = self.pages.manager
        progress = manager.progress.get(name)
        done: defer.Deferred[None] = defer.Deferred()

        def send(step: Step) -> None:
            if done.called:
                return
            shown = step.as_dict()
            if shown.get("url"):  # the manager's path is inside the server; browsers need this
                shown["url"] = self.routing.user_url(name, "lab", request)
            request.write(f"data: {json.dumps(shown)}\n\n".encode())
            if step.final:
                done.callback(None)

        if progress is None or (progress.last and progress.last.final
                                and not manager.is_starting(name)):
            server = await self.store.get_server(name)
            state = self.pages.server_state(name, server)
            if state in LIVE:
                send(Step("ready", "Your server is ready", 100,
                          url=self.routing.user_url(name, "lab", request)))
            elif state == "failed" and progress and progress.last and progress.last.failed:
                send(progress.last)  # with its error_kind (e.g. "limit")
            elif state == "failed":
                send(Step("failed", server.error if server else "failed", 100))
            else:
                send(Step("stopped", "Your server is not running", 0))
            return b""
        unsubscribe = progress.listen(send)
        request.notifyFinish().addBoth(lambda _: done.called or done.callback(None))
        # The daemon stopping ends the stream; EventSource reconnects to the next process.
        when_draining = getattr(request, "when_draining", None)
        forget = when_draining(lambda: done.called or done.callback(None)) \
            if when_draining is not None else None
        await done
        unsubscribe()
        if forget is not None:
            forget()
        return b""
