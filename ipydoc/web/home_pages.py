"""The user's own server: ``/hub/`` (to home or login), ``/hub/home``, the spawn page and
its form (``/hub/spawn/NAME``) and ``/hub/stop/NAME``.  The start progress ``spawn.js``
reads (``/hub/api/users/NAME/server/progress``) is the API's (:mod:`ipydoc.web.api`).

Only NAME's own session gets these (admins included: they do not get into other users'
servers); the forms follow the one CSRF and ``Origin`` rule of :mod:`ipydoc.web.pages`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.backends.base import BackendError
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.servers.profiles import ProfileRefused
from ipydoc.servers.static_cache import StaticCache, url_for
from ipydoc.web.pages import HubSettings, Pages, RedisDown, notice, redis_down

#: States whose server answers (a paused one after its first request resumes it).
LIVE = ("running", "paused")


class HomePages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)

    def __init__(self, pages: Pages, settings: HubSettings, routing: Routing,
                 static: StaticCache | None = None) -> None:
        self.pages = pages
        self.settings = settings
        self.routing = routing
        self.static = static  # JupyterLab's files to prefetch while a server starts

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
        if self.settings.prestart_on_home and state == "stopped":
            self.pages.start_in_background(name)  # up by the time "Open" is clicked
            state = "starting"
        limits = self.pages.manager.limits
        shown = {"mem": limits.mem_limit, "cpu": limits.cpu_limit, "pids": limits.pids_limit}
        try:  # what the next start gets (its profile, groups, an admin's overrides)
            shown = await self.pages.manager.limits_for(
                name, await self.pages.manager.choose_profile(name))
        except ProfileRefused:
            pass
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
                              else self.settings.image),
                    "profile": server.profile if server else ""},
            last_activity=await self.store.last_activity(name),
            limits=shown,
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
        offered = await self.pages.manager.offered_profiles(name)
        try:
            picked = (await self.pages.manager.choose_profile(name)).name
        except ProfileRefused:
            picked = ""
        return self.pages.render(request, "spawn.html", user=name, csrf=session.csrf, next=nxt,
                                 profiles=offered if len(offered) > 1 else (),
                                 profile=picked, no_profile=not offered,
                                 state=state if state in ("starting", "failed") else "stopped",
                                 error=server.error if server else "", steps=steps,
                                 is_admin=await self.pages.is_admin(name),
                                 images=images if len(images) > 1 else (),
                                 chosen=await self.store.get_image_choice(name) or images[0],
                                 prefetch=self._prefetch(name, request))

    def _prefetch(self, name: str, request: IRequest) -> list[str]:
        """JupyterLab's start-up files, for the browser to fetch while the server starts
        (answered from the image's cache: docs/cold_login.md)."""
        if self.static is None:
            return []
        self.static.refresh_soon(self.pages.manager.limits.allowed_images)
        base = self.routing.user_url(name, "", request)
        return [base + url_for(f) for f in self.static.startup_files()]

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
        try:  # the one profile rule (servers/profiles.py), as on every other path
            profile = await manager.choose_profile(name, arg(request, "profile") or None)
        except ProfileRefused as e:
            return self.pages.error(request, 403, "Not offered",
                                    f"You cannot start that profile: {e.message}.", session)
        if profile.image:  # the profile decides the image: the image list does not apply
            image = None
        if name not in manager.routes:
            self.pages.start_in_background(name, image, profile)
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
