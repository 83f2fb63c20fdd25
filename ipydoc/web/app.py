"""The hub's pages: login, logout, home, spawn progress (mounted at ``/hub/``).

Every form carries a CSRF token (the session's, or before login a double-submit cookie)
and every state change is a POST that also has to come from this site (``Origin``).
Pages are Jinja2 templates with auto-escaping; scripts are files (no inline script), so
the Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.static import File

from ipydoc.cookies import LOGIN_CSRF_COOKIE, cookie_header
from ipydoc.gate import UserGate
from ipydoc.names import InvalidName, normalize_login, validate_name
from ipydoc.passwords import verify_password
from ipydoc.progress import Step
from ipydoc.sessions import Session, Sessions
from ipydoc.spawner import ServerManager, StartFailed
from ipydoc.web.redirects import safe_next

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"X-Frame-Options": b"DENY",
    b"Cache-Control": b"no-store",
}


@dataclass
class HubSettings:
    image: str
    stop_on_logout: bool = True
    start_on_login: bool = True


def _form(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


class Hub:
    app = Klein()
    log = Logger()

    def __init__(self, sessions: Sessions, manager: ServerManager, gate: UserGate,
                 settings: HubSettings) -> None:
        self.sessions = sessions
        self.manager = manager
        self.gate = gate
        self.settings = settings
        self.templates = Environment(loader=PackageLoader("ipydoc.web", "templates"),
                                     autoescape=select_autoescape(default=True))
        self._static = File(str(resources.files("ipydoc.web") / "static"))

    @property
    def store(self) -> Any:
        return self.sessions.store

    def resource(self) -> Any:
        return self.app.resource()

    # -- helpers -------------------------------------------------------------------------
    def render(self, request: IRequest, template: str, status: int = 200, **context: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        for k, v in SECURITY_HEADERS.items():
            request.setHeader(k, v)
        return self.templates.get_template(template).render(**context).encode()

    def error(self, request: IRequest, code: int, title: str, message: str,
              session: Session | None = None) -> bytes:
        return self.render(request, "error.html", code, code=code, title=title, message=message,
                           user=session.user if session else None,
                           csrf=session.csrf if session else "")

    def redirect(self, request: IRequest, location: str, code: int = 303) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Location", location.encode())
        request.setHeader(b"Cache-Control", b"no-store")
        return b""

    def post_allowed(self, request: IRequest, expected_csrf: str) -> bool:
        """Same-site Origin and a matching CSRF token."""
        sent = _form(request, "_csrf") or (request.getHeader(b"x-csrf-token") or b"").decode()
        return (self.gate.origin_ok(request) and bool(expected_csrf)
                and hmac.compare_digest(sent.encode(), expected_csrf.encode()))

    async def owner_session(self, request: IRequest, name: str) -> Session | bytes:
        """The session if it belongs to ``name``; else the response to send."""
        session = await self.sessions.from_request(request)
        if session is None:
            return self.redirect(request, f"/hub/login?next={quote(request.uri.decode(), safe='/')}",
                                 302)
        try:
            validate_name(name)
        except InvalidName:
            return self.error(request, 404, "Not found", "There is no such user.", session)
        if session.user != name:
            return self.error(request, 403, "Forbidden", "This is another user's page.", session)
        return session

    # -- pages ---------------------------------------------------------------------------
    @app.route("/static/", branch=True)
    def static(self, request: IRequest) -> Any:
        request.setHeader(b"Cache-Control", b"max-age=3600")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return self._static

    @app.route("/", methods=["GET"])
    async def index(self, request: IRequest) -> bytes:
        session = await self.sessions.from_request(request)
        return self.redirect(request, "/hub/home" if session else "/hub/login", 302)

    @app.route("/login", methods=["GET"])
    async def login_page(self, request: IRequest) -> bytes:
        session = await self.sessions.from_request(request)
        nxt = _form(request, "next")
        if session is not None:
            return self.redirect(request, safe_next(nxt, "/hub/home"), 302)
        return self.login_form(request, nxt)

    def login_form(self, request: IRequest, nxt: str, error: str = "", username: str = "",
                   code: int = 200) -> bytes:
        token = secrets.token_urlsafe(24)
        request.responseHeaders.addRawHeader(b"Set-Cookie", cookie_header(
            LOGIN_CSRF_COOKIE, token, secure=request.isSecure(), max_age=3600,
            path="/hub/login").encode())
        return self.render(request, "login.html", code, csrf=token, next=nxt, error=error,
                           username=username, user=None)

    @app.route("/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        nxt = _form(request, "next")
        cookie = (request.getCookie(LOGIN_CSRF_COOKIE.encode()) or b"").decode("ascii", "replace")
        if not cookie or not self.post_allowed(request, cookie):
            return self.login_form(request, nxt, "Your login form expired; please try again.",
                                   code=403)
        typed = _form(request, "username")
        password = _form(request, "password")
        try:
            name = normalize_login(typed)
        except InvalidName:
            await verify_password(None, password)
            return self.login_form(request, nxt, "Wrong user name or password.", typed, 403)
        user = await self.store.get_user(name)
        ok = await verify_password(user.password_hash if user else None, password)
        if not ok or user is None:
            self.log.info("login refused for {name}: wrong name or password", name=name)
            await self.store.add_event("login-refused", name, "wrong name or password")
            return self.login_form(request, nxt, "Wrong user name or password.", typed, 403)
        if user.disabled:
            return self.login_form(request, nxt, "This account is disabled.", typed, 403)
        previous = await self.sessions.from_request(request)
        if previous is not None:  # a new login replaces the session this browser had
            await self.store.delete_session(previous.id)
        await self.sessions.create(request, name)
        await self.store.add_event("login", name, "password")
        self.log.info("{name} logged in", name=name)
        target = safe_next(nxt, f"/user/{name}/lab")
        server = await self.store.get_server(name)
        if server and server.state == "running" and name in self.manager.routes:
            return self.redirect(request, target)
        if self.settings.start_on_login:
            self._start_in_background(name)
        return self.redirect(request, f"/hub/spawn/{name}?next={quote(target, safe='/')}")

    def _start_in_background(self, name: str) -> None:
        d = defer.Deferred.fromCoroutine(self.manager.start(name))
        d.addErrback(lambda f: f.trap(StartFailed))  # shown on the spawn page
        d.addErrback(lambda f: self.log.failure("start of {name}", f, name=name))

    @app.route("/logout", methods=["GET"])
    async def logout_page(self, request: IRequest) -> bytes:
        """JupyterLab's "Log Out" menu entry lands here (a GET): ask, then POST."""
        session = await self.sessions.from_request(request)
        if session is None:
            return self.redirect(request, "/hub/login", 302)
        return self.render(request, "logout.html", user=session.user, csrf=session.csrf,
                           stop_on_logout=self.settings.stop_on_logout)

    @app.route("/logout", methods=["POST"])
    async def logout(self, request: IRequest) -> bytes:
        session = await self.sessions.from_request(request)
        if session is None:
            return self.redirect(request, "/hub/login")
        if not self.post_allowed(request, session.csrf):
            return self.error(request, 403, "Forbidden", "The form expired; reload and retry.",
                              session)
        await self.sessions.end(request, session)
        await self.store.add_event("logout", session.user, "")
        if self.settings.stop_on_logout:
            d = defer.Deferred.fromCoroutine(self.manager.stop(session.user, "logout"))
            d.addErrback(lambda f: self.log.failure("stop on logout", f))
        return self.redirect(request, "/hub/login")

    @app.route("/home", methods=["GET"])
    async def home(self, request: IRequest) -> bytes:
        session = await self.sessions.from_request(request)
        if session is None:
            return self.redirect(request, "/hub/login?next=/hub/home", 302)
        server = await self.store.get_server(session.user)
        state = self._state(session.user, server)
        return self.render(request, "home.html", user=session.user, csrf=session.csrf,
                           server={"state": state, "error": server.error if server else ""},
                           image=self.settings.image)

    def _state(self, name: str, server: Any) -> str:
        if self.manager.is_starting(name):
            return "starting"
        if server is None:
            return "stopped"
        if server.state == "running" and name not in self.manager.routes:
            return "stopped"
        return server.state

    @app.route("/spawn/<name>", methods=["GET"])
    async def spawn_page(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        nxt = safe_next(_form(request, "next"), f"/user/{name}/lab")
        server = await self.store.get_server(name)
        state = self._state(name, server)
        if state == "running":
            return self.redirect(request, nxt, 302)
        return self.render(request, "spawn.html", user=name, csrf=session.csrf, next=nxt,
                           state=state if state in ("starting", "failed") else "stopped",
                           error=server.error if server else "")

    @app.route("/spawn/<name>", methods=["POST"])
    async def spawn(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.error(request, 403, "Forbidden", "The form expired; reload and retry.",
                              session)
        nxt = safe_next(_form(request, "next"), f"/user/{name}/lab")
        if name not in self.manager.routes:
            self._start_in_background(name)
        return self.redirect(request, f"/hub/spawn/{name}?next={quote(nxt, safe='/')}")

    @app.route("/stop/<name>", methods=["POST"])
    async def stop(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.error(request, 403, "Forbidden", "The form expired; reload and retry.",
                              session)
        await self.manager.stop(name, "stopped by user")
        return self.redirect(request, "/hub/home")

    @app.route("/api/users/<name>/server/progress", methods=["GET"])
    async def progress(self, request: IRequest, name: str) -> Any:
        session = await self.sessions.from_request(request)
        if session is None or session.user != name:
            request.setResponseCode(401 if session is None else 403)
            request.setHeader(b"Content-Type", b"application/json")
            return json.dumps({"message": "not allowed"}).encode()
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        progress = self.manager.progress.get(name)
        done: defer.Deferred[None] = defer.Deferred()

        def send(step: Step) -> None:
            if done.called:
                return
            request.write(f"data: {json.dumps(step.as_dict())}\n\n".encode())
            if step.final:
                done.callback(None)

        if progress is None or (progress.last and progress.last.final
                                and not self.manager.is_starting(name)):
            server = await self.store.get_server(name)
            state = self._state(name, server)
            if state == "running":
                send(Step("ready", "Your server is ready", 100, url=f"/user/{name}/lab"))
            elif state == "failed":
                send(Step("failed", server.error if server else "failed", 100))
            else:
                send(Step("stopped", "Your server is not running", 0))
            return b""
        unsubscribe = progress.listen(send)
        request.notifyFinish().addBoth(lambda _: done.called or done.callback(None))
        await done
        unsubscribe()
        return b""
