"""The user's own servers: ``/hub/`` (to home or login), ``/hub/home``, the spawn page and
its form (``/hub/spawn/NAME``, ``/hub/spawn/NAME/SERVER`` for a named server) and
``/hub/stop/NAME[/SERVER]``; named servers (issue 19 §1) are started from home's form
(``/hub/servers/NAME``: a name, and the profiles and images of the start page, under its
one rule) and removed once stopped (``/hub/remove/NAME/SERVER``).  The start progress
``spawn.js`` reads is the API's (:mod:`ipydoc.web.api`).

Only NAME's own session gets these (admins included: they do not get into other users'
servers); the forms follow the one CSRF and ``Origin`` rule of :mod:`ipydoc.web.pages`;
a server name is checked here, where it comes in (:func:`ipydoc.names.
validate_server_name`), with the rule's own words as the error.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from klein import Klein
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.backends.base import BackendError
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing, spawn_path
from ipydoc.names import SERVER_KEY_SEPARATOR, InvalidName, server_key, validate_server_name
from ipydoc.servers.named import RemoveRefused
from ipydoc.servers.profiles import ProfileRefused
from ipydoc.servers.start_handle import StartFailed
from ipydoc.servers.static_cache import StaticCache, url_for
from ipydoc.web.pages import HubSettings, Pages, RedisDown, notice, redis_down
from ipydoc.web.share_pages import home_shares

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
    async def home(self, request: IRequest, *, new_error: str = "", typed: str = "",
                   code: int = 200) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        name = session.user
        records = await self.store.servers_of(name)  # default first, then named by name
        server = records[0] if records and records[0].name == name else None
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
        offered = await self.pages.manager.offered_profiles(name)
        images = limits.allowed_images
        return self.pages.render(
            request, "home.html", code, user=name, csrf=session.csrf, page="home",
            is_admin=await self.pages.is_admin(name),
            server=self._shown(name, server, state, request),
            named=[self._shown(r.name, r, self.pages.server_state(r.name, r), request)
                   for r in records if r.name != name],
            max_named=limits.max_named, new_error=new_error, typed=typed,
            profiles=offered if len(offered) > 1 else (), no_profile=not offered,
            images=images if len(images) > 1 else (),
            chosen=await self.store.get_image_choice(name) or images[0],
            last_activity=await self.store.last_activity(name),
            limits=shown,
            notice=notice(request), lab_url=self.routing.user_url(name, "lab", request),
            shares=await home_shares(self.store, self.routing, name, request))

    def _shown(self, key: str, server: Any, state: str,
               request: IRequest | None = None) -> dict[str, Any]:
        """A server as home shows it (``key``: the default server's or a named one's)."""
        return {
            "key": key, "server": key.partition(SERVER_KEY_SEPARATOR)[2], "state": state,
            # A stopped server's error is why it stopped (e.g. its node went down).
            "error": server.error if server and state in ("failed", "stopped") else "",
            "started": server.started if server and state in LIVE else None,
            "paused_since": server.paused_since if server and state == "paused" else None,
            "image": (server.image if server and state in LIVE and server.image
                      else self.settings.image),
            "profile": server.profile if server else "",
            "lab_url": self.routing.user_url(key, "lab", request),
            "spawn_url": spawn_path(key)}

    # -- named servers -----------------------------------------------------------------
    @app.route("/servers/<name>", methods=["POST"])
    async def new_server(self, request: IRequest, name: str) -> bytes:
        """Home's form: start (and so create) the named server the form names."""
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        typed = arg(request, "server").strip().lower()
        try:
            key = server_key(name, validate_server_name(typed))
        except InvalidName as e:
            return await self.home(request, new_error=f"Server name: {e}.", typed=typed,
                                   code=400)
        try:  # the maximum, said on home rather than on a failed start page
            await self.pages.manager.check_named(key)
        except StartFailed as e:
            return await self.home(request, new_error=e.message[0].upper() + e.message[1:]
                                   + ".", typed=typed, code=409)
        return await self._start(request, session, key)

    @app.route("/remove/<name>/<server>", methods=["POST"])
    async def remove(self, request: IRequest, name: str, server: str) -> bytes:
        key = await self._named_key(request, name, server)
        if not isinstance(key, tuple):
            return key
        session, key = key
        if arg(request, "confirmed") != "1":
            return self.pages.confirm(
                request, session, title=f"Remove the server {server}?",
                message="It is forgotten (its profile and image choice with it); your "
                        "files stay: they are shared by all your servers.",
                action=f"/hub/remove/{name}/{server}", button="Remove", fields={},
                back="/hub/home")
        try:
            await self.pages.manager.remove_server(key)
        except RemoveRefused as e:
            return self.pages.error(request, 409, "Not removed", e.message, session)
        return self.pages.redirect(request, "/hub/home?done=server-removed&user=" + name)

    async def _named_key(self, request: IRequest, name: str,
                         server: str) -> tuple[Session, str] | bytes:
        """(session, key) of a form POST about ``name``'s named server, else the answer."""
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        try:
            return session, server_key(name, validate_server_name(server))
        except InvalidName as e:
            return self.pages.error(request, 404, "Not found", f"No such server: {e}.",
                                    session)

    # -- spawn ---------------------------------------------------------------------------
    @app.route("/spawn/<name>", methods=["GET"])
    async def spawn_page(self, request: IRequest, name: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        return await self._spawn_page(request, session, name)

    @app.route("/spawn/<name>/<server>", methods=["GET"])
    async def named_spawn_page(self, request: IRequest, name: str, server: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        try:
            key = server_key(name, validate_server_name(server))
        except InvalidName as e:
            return self.pages.error(request, 404, "Not found", f"No such server: {e}.",
                                    session)
        return await self._spawn_page(request, session, key)

    async def _spawn_page(self, request: IRequest, session: Session, key: str) -> bytes:
        name = session.user
        nxt = self.routing.user_target(key, arg(request, "next"), request)
        server = await self.store.get_server(key)
        state = self.pages.server_state(key, server)
        if state in LIVE:  # a paused one is resumed by the request it is sent back to
            return self.pages.redirect(request, nxt, 302)
        progress = self.pages.manager.progress.get(key)
        steps = [s.as_dict() for s in progress.steps] if progress and state == "starting" else []
        if state == "stopping":
            state = "stopped"
        images = self.pages.manager.limits.allowed_images
        offered = await self.pages.manager.offered_profiles(name)
        try:
            picked = (await self.pages.manager.choose_profile(key)).name
        except ProfileRefused:
            picked = ""
        named = key.partition(SERVER_KEY_SEPARATOR)[2]
        progress_url = (f"/hub/api/users/{name}/servers/{named}/progress" if named
                        else f"/hub/api/users/{name}/server/progress")
        return self.pages.render(request, "spawn.html", user=name, csrf=session.csrf, next=nxt,
                                 server=named, action=spawn_path(key),
                                 progress_url=progress_url,
                                 profiles=offered if len(offered) > 1 else (),
                                 profile=picked, no_profile=not offered,
                                 state=state if state in ("starting", "failed") else "stopped",
                                 error=server.error if server else "", steps=steps,
                                 is_admin=await self.pages.is_admin(name),
                                 images=images if len(images) > 1 else (),
                                 chosen=await self.store.get_image_choice(name) or images[0],
                                 prefetch=self._prefetch(key, request))

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
        return await self._start(request, session, name)

    @app.route("/spawn/<name>/<server>", methods=["POST"])
    async def named_spawn(self, request: IRequest, name: str, server: str) -> bytes:
        key = await self._named_key(request, name, server)
        if not isinstance(key, tuple):
            return key
        session, key = key
        try:
            await self.pages.manager.check_named(key)
        except StartFailed as e:
            return self.pages.error(request, 409, "Not started", e.message, session)
        return await self._start(request, session, key)

    async def _start(self, request: IRequest, session: Session, key: str) -> bytes:
        """The start page's form for the server ``key``: image and profile under the one
        rule, then the start page follows the start."""
        nxt = self.routing.user_target(key, arg(request, "next"), request)
        image = arg(request, "image") or None
        manager = self.pages.manager
        if image is not None and image not in manager.limits.allowed_images:
            return self.pages.error(request, 400, "Not offered",
                                    "That image is not offered here; choose one from the list.",
                                    session)
        try:  # the one profile rule (servers/profiles.py), as on every other path
            profile = await manager.choose_profile(key, arg(request, "profile") or None)
        except ProfileRefused as e:
            return self.pages.error(request, 403, "Not offered",
                                    f"You cannot start that profile: {e.message}.", session)
        if profile.image:  # the profile decides the image: the image list does not apply
            image = None
        if key not in manager.routes:
            self.pages.start_in_background(key, image, profile)
        return self.pages.redirect(request, f"{spawn_path(key)}?next={quote(nxt, safe='/')}")

    @app.route("/stop/<name>", methods=["POST"])
    async def stop(self, request: IRequest, name: str) -> bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        return await self._stop(request, session, name)

    @app.route("/stop/<name>/<server>", methods=["POST"])
    async def named_stop(self, request: IRequest, name: str, server: str) -> bytes:
        key = await self._named_key(request, name, server)
        if not isinstance(key, tuple):
            return key
        return await self._stop(request, *key)

    async def _stop(self, request: IRequest, session: Session, key: str) -> bytes:
        try:
            await self.pages.manager.stop(key, "stopped by user")
        except BackendError as e:
            return self.pages.error(request, 502, "Could not stop your server", e.message,
                                    session)
        return self.pages.redirect(request, "/hub/home?done=stop&user=" + session.user)
