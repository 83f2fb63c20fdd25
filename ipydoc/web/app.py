"""The hub's pages (mounted at ``/hub/``): login, logout, home, spawn progress, personal
API tokens and the admin dashboard.

Every form carries a CSRF token (the session's, or before login a double-submit cookie)
and every state change is a POST that also has to come from this site (``Origin``).
The one JSON endpoint that is not a GET does not exist: admin and token actions are plain
form POSTs (they work without JavaScript; scripts only add confirmation dialogs and live
numbers), so there is a single CSRF rule to get right.  Destructive actions (stop,
disable, revoke) need ``confirmed=1``: the page's script sets it after ``confirm()``, and
without it the hub answers with a confirmation page instead of acting.

Pages are Jinja2 templates with auto-escaping; scripts and styles are files served by the
daemon (no inline script, no CDN), so the Content-Security-Policy forbids everything else.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import txredisapi
from jinja2 import Environment, PackageLoader, select_autoescape
from klein import Klein
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.static import File

from ipydoc.access import tokens
from ipydoc.access.cookies import LOGIN_CSRF_COOKIE, cookie_header, read_cookie
from ipydoc.access.gate import UserGate, request_origin
from ipydoc.access.login_limits import LimitSettings, LoginLimits, client_group
from ipydoc.access.passwords import WeakPassword, check_strength, hash_password, verify_password
from ipydoc.access.sessions import Session, Sessions
from ipydoc.backends.base import BackendError
from ipydoc.edge.redirects import safe_next
from ipydoc.names import InvalidName, normalize_login, validate_name
from ipydoc.servers.manager import ServerManager, StartFailed
from ipydoc.servers.progress import Step
from ipydoc.state.redis_service import UNAVAILABLE
from ipydoc.state.store import NameReserved
from ipydoc.web import account_pages
from ipydoc.web.present import FILTERS, SORTS, Row, StatsCache, StatsFn, sort_rows, when

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"X-Frame-Options": b"DENY",
    b"Cache-Control": b"no-store",
}

ADMIN_ACTIONS = ("start", "stop", "disable", "enable")
DESTRUCTIVE = {"stop", "disable"}
NOTICES = {  # ?done=… after an action: fixed texts, so a link cannot put words on the page
    "added": "Added the account {user}.",
    "start": "Starting the server of {user}.",
    "stop": "Stopped the server of {user}.",
    "disable": "Disabled {user}: sessions ended, server stopped, files kept.",
    "enable": "Enabled {user}.",
    "revoked": "The token was revoked.",
    "password": "Your password was changed; your other sessions were logged out.",
}


@dataclass
class HubSettings:
    image: str
    stop_on_logout: bool = True
    start_on_login: bool = True
    login_limits: LimitSettings = field(default_factory=LimitSettings)


def _form(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


def _notice(request: IRequest) -> str:
    template = NOTICES.get(_form(request, "done"), "")
    user = _form(request, "user")
    try:
        user = validate_name(user) if user else ""
    except InvalidName:
        return ""
    return template.format(user=user)


class Hub:
    app = Klein()
    log = Logger()
    # [auth] local and the login providers by id; ipydoc.auth.routes.configure sets them
    local_login = True
    login_providers: dict[str, Any] = {}

    def __init__(self, sessions: Sessions, manager: ServerManager, gate: UserGate,
                 settings: HubSettings, stats: StatsFn | None = None) -> None:
        self.sessions = sessions
        self.manager = manager
        self.gate = gate
        self.settings = settings
        self.stats = StatsCache(stats)
        # A new token waits here (by session id, a minute at most) for the one page view
        # that shows it: create is POST → redirect → GET, so a reload cannot make another.
        self._reveal: dict[str, tuple[float, str, dict[str, Any]]] = {}
        self.templates = Environment(loader=PackageLoader("ipydoc.web", "templates"),
                                     autoescape=select_autoescape(default=True))
        self.templates.filters.update(FILTERS)
        self._static = File(str(resources.files("ipydoc.web") / "static"))
        self.login_limits = LoginLimits(sessions, settings.login_limits)

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
        context.setdefault("is_admin", False)
        context.setdefault("page", "")
        return self.templates.get_template(template).render(**context).encode()

    def error(self, request: IRequest, code: int, title: str, message: str,
              session: Session | None = None) -> bytes:
        return self.render(request, "error.html", code, code=code, title=title, message=message,
                           user=session.user if session else None,
                           csrf=session.csrf if session else "")

    def json(self, request: IRequest, value: Any, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return json.dumps(value).encode()

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

    def expired_form(self, request: IRequest, session: Session) -> bytes:
        return self.error(request, 403, "Forbidden", "The form expired; reload and retry.",
                          session)

    def to_login(self, request: IRequest) -> bytes:
        return self.redirect(request, f"/hub/login?next={quote(request.uri.decode(), safe='/')}",
                             302)

    async def owner_session(self, request: IRequest, name: str) -> Session | bytes:
        """The session if it belongs to ``name``; else the response to send."""
        session = await self.sessions.from_request(request)
        if session is None:
            return self.to_login(request)
        try:
            validate_name(name)
        except InvalidName:
            return self.error(request, 404, "Not found", "There is no such user.", session)
        if session.user != name:
            return self.error(request, 403, "Forbidden", "This is another user's page.", session)
        return session

    async def user_session(self, request: IRequest) -> Session | bytes:
        session = await self.sessions.from_request(request)
        return session if session is not None else self.to_login(request)

    async def is_admin(self, name: str) -> bool:
        user = await self.store.get_user(name)
        return bool(user and user.admin and not user.disabled)

    async def admin_session(self, request: IRequest, api: bool = False) -> Session | bytes:
        """The session if its user is an admin; else 403 (or login for no session)."""
        session = await self.sessions.from_request(request)
        if session is None:
            if api or request.method != b"GET":
                return self.json(request, {"message": "not logged in"}, 401)
            return self.to_login(request)
        if not await self.is_admin(session.user):
            if api:
                return self.json(request, {"message": "admins only"}, 403)
            return self.error(request, 403, "Forbidden", "This page is for administrators.",
                              session)
        return session

    def confirm(self, request: IRequest, session: Session, *, title: str, message: str,
                action: str, button: str, fields: dict[str, str], back: str) -> bytes:
        """The no-JavaScript confirmation of a destructive action."""
        return self.render(request, "confirm.html", user=session.user, csrf=session.csrf,
                           title=title, message=message, action=action, button=button,
                           fields=fields, back=back)

    def _state(self, name: str, server: Any) -> str:
        if self.manager.is_starting(name):
            return "starting"
        if server is None:
            return "stopped"
        if server.state == "running" and name not in self.manager.routes:
            return "stopped"
        return server.state

    @app.handle_errors(txredisapi.ConnectionError)  # TimeoutError is one too
    def redis_down(self, request: IRequest, failure: Any) -> bytes:
        """Redis is down or hung: a clear 503 (page or JSON), never a traceback."""
        self.log.warn("hub: redis unavailable on {path}: {e}",
                      path=request.path.decode("latin-1"), e=failure.value)
        request.setHeader(b"Retry-After", b"5")
        if b"/api/" in request.path:
            return self.json(request, {"status": 503, "message": UNAVAILABLE}, 503)
        return self.error(request, 503, "Service temporarily unavailable",
                          UNAVAILABLE[0].upper() + UNAVAILABLE[1:] + ". Try again in a moment.")

    # -- static, index, login, logout ----------------------------------------------------
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
                           username=username, user=None, local=self.local_login,
                           providers=self.login_providers.values())

    @app.route("/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        nxt = _form(request, "next")
        if not self.local_login:
            return self.login_form(request, nxt, "Log in with one of the providers below.",
                                   code=403)
        cookie = (read_cookie(request, LOGIN_CSRF_COOKIE) or b"").decode("ascii", "replace")
        if not cookie or not self.post_allowed(request, cookie):
            return self.login_form(request, nxt, "Your login form expired; please try again.",
                                   code=403)
        typed = _form(request, "username")
        password = _form(request, "password")
        group = client_group(request)
        try:
            name: str | None = normalize_login(typed)
        except InvalidName:
            name = None
        refusal = await self.login_limits.check(name, group)  # paused: argon2 is not run
        if refusal is not None:
            return account_pages.login_limited(self, request, nxt, typed, name, group, refusal)
        user = await self.store.get_user(name) if name else None
        ok = await verify_password(user.password_hash if user else None, password)
        if not ok or user is None or name is None:
            return await account_pages.login_failed(self, request, nxt, typed, name, group)
        if user.disabled:
            return self.login_form(request, nxt, "This account is disabled.", typed, 403)
        await self.login_limits.succeeded(name)
        previous = await self.sessions.from_request(request)
        if previous is not None:  # a new login replaces the session this browser had
            await self.store.delete_session(previous.id)
        await self.sessions.create(request, name)
        await self.store.add_event("login", name, "password")
        self.log.info("{name} logged in", name=name)
        return await self.after_login(request, name, nxt)

    async def after_login(self, request: IRequest, name: str, nxt: str) -> bytes:
        """Where a fresh login goes (any provider): ``next`` if it is the user's own or
        the hub's, else JupyterLab, through the spawn page when the server must start."""
        target = self.gate.routing.user_target(name, nxt, request)
        server = await self.store.get_server(name)
        if server and server.state == "running" and name in self.manager.routes:
            return self.redirect(request, target)
        if self.settings.start_on_login:
            self._start_in_background(name)
        if target.startswith("/hub/"):
            return self.redirect(request, target)  # e.g. /hub/admin: no need to wait
        return self.redirect(request, f"/hub/spawn/{name}?next={quote(target, safe='/:')}")

    def _start_in_background(self, name: str, image: str | None = None) -> None:
        d = defer.Deferred.fromCoroutine(self.manager.start(name, image))
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
            return self.expired_form(request, session)
        await self.sessions.end(request, session)  # also closes its open WebSockets
        # The browser forgets what the user's pages stored too (same origin in path mode).
        request.setHeader(b"Clear-Site-Data", b'"cookies", "storage"')
        await self.store.add_event("logout", session.user, "")
        if self.settings.stop_on_logout:
            d = defer.Deferred.fromCoroutine(self.manager.stop(session.user, "logout"))
            d.addErrback(lambda f: self.log.failure("stop on logout", f))
        return self.redirect(request, "/hub/login")

    # -- home ----------------------------------------------------------------------------
    @app.route("/home", methods=["GET"])
    async def home(self, request: IRequest) -> bytes:
        session = await self.user_session(request)
        if not isinstance(session, Session):
            return session
        name = session.user
        server = await self.store.get_server(name)
        state = self._state(name, server)
        limits = self.manager.limits
        return self.render(
            request, "home.html", user=name, csrf=session.csrf, page="home",
            is_admin=await self.is_admin(name),
            server={"state": state, "error": server.error if server and state == "failed"
                    else "", "started": server.started if server and state == "running"
                    else None,
                    "image": (server.image if server and state == "running" and server.image
                              else self.settings.image)},
            last_activity=await self.store.last_activity(name),
            limits={"mem": limits.mem_limit, "cpu": limits.cpu_limit, "pids": limits.pids_limit},
            notice=_notice(request), lab_url=self.gate.routing.user_url(name, "lab", request))

    # -- spawn ---------------------------------------------------------------------------
    @app.route("/spawn/<name>", methods=["GET"])
    async def spawn_page(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        nxt = self.gate.routing.user_target(name, _form(request, "next"), request)
        server = await self.store.get_server(name)
        state = self._state(name, server)
        if state == "running":
            return self.redirect(request, nxt, 302)
        progress = self.manager.progress.get(name)
        steps = [s.as_dict() for s in progress.steps] if progress and state == "starting" else []
        if state == "stopping":
            state = "stopped"
        images = self.manager.limits.allowed_images
        return self.render(request, "spawn.html", user=name, csrf=session.csrf, next=nxt,
                           state=state if state in ("starting", "failed") else "stopped",
                           error=server.error if server else "", steps=steps,
                           is_admin=await self.is_admin(name),
                           images=images if len(images) > 1 else (),
                           chosen=await self.store.get_image_choice(name) or images[0])

    @app.route("/spawn/<name>", methods=["POST"])
    async def spawn(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        nxt = self.gate.routing.user_target(name, _form(request, "next"), request)
        image = _form(request, "image") or None
        if image is not None and image not in self.manager.limits.allowed_images:
            return self.error(request, 400, "Not offered",
                              "That image is not offered here; choose one from the list.",
                              session)
        if name not in self.manager.routes:
            self._start_in_background(name, image)
        return self.redirect(request, f"/hub/spawn/{name}?next={quote(nxt, safe='/')}")

    @app.route("/stop/<name>", methods=["POST"])
    async def stop(self, request: IRequest, name: str) -> bytes:
        session = await self.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        try:
            await self.manager.stop(name, "stopped by user")
        except BackendError as e:
            return self.error(request, 502, "Could not stop your server", e.message, session)
        return self.redirect(request, "/hub/home?done=stop&user=" + name)

    @app.route("/api/users/<name>/server/progress", methods=["GET"])
    async def progress(self, request: IRequest, name: str) -> Any:
        session = await self.sessions.from_request(request)
        if session is None or session.user != name:
            return self.json(request, {"message": "not allowed"}, 401 if session is None else 403)
        request.setHeader(b"Content-Type", b"text/event-stream")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        progress = self.manager.progress.get(name)
        done: defer.Deferred[None] = defer.Deferred()

        def send(step: Step) -> None:
            if done.called:
                return
            shown = step.as_dict()
            if shown.get("url"):  # the manager's path is inside the server; browsers need this
                shown["url"] = self.gate.routing.user_url(name, "lab", request)
            request.write(f"data: {json.dumps(shown)}\n\n".encode())
            if step.final:
                done.callback(None)

        if progress is None or (progress.last and progress.last.final
                                and not self.manager.is_starting(name)):
            server = await self.store.get_server(name)
            state = self._state(name, server)
            if state == "running":
                send(Step("ready", "Your server is ready", 100,
                          url=self.gate.routing.user_url(name, "lab", request)))
            elif state == "failed" and progress and progress.last and progress.last.failed:
                send(progress.last)  # with its error_kind (e.g. "limit")
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

    # -- personal API tokens -------------------------------------------------------------
    async def token_page(self, request: IRequest, session: Session, *, created: str = "",
                         created_info: dict | None = None, error: str = "", note: str = "",
                         code: int = 200) -> bytes:
        return self.render(
            request, "token.html", code, user=session.user, csrf=session.csrf, page="token",
            is_admin=await self.is_admin(session.user),
            tokens=await self.store.list_tokens(session.user), created=created,
            created_info=created_info, error=error, note=note, choices=tokens.EXPIRY_CHOICES,
            notice=_notice(request), now=time.time(), origin=request_origin(request),
            server_url=(request_origin(request) if not self.gate.routing.subdomain else "")
            + self.gate.routing.user_url(session.user, "", request))

    @app.route("/token", methods=["GET"])
    async def token_list(self, request: IRequest) -> bytes:
        session = await self.user_session(request)
        if not isinstance(session, Session):
            return session
        created, info = "", None
        reveal = self._reveal.pop(session.id, None)
        if reveal is not None and reveal[0] > time.monotonic():
            _, created, info = reveal
        return await self.token_page(request, session, created=created, created_info=info)

    @app.route("/token", methods=["POST"])
    async def token_create(self, request: IRequest) -> bytes:
        session = await self.user_session(request)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        note = _form(request, "note").strip()
        try:
            expires_in = int(_form(request, "expires_in") or "0")
        except ValueError:
            expires_in = -1
        if not 0 <= expires_in <= tokens.MAX_EXPIRY:
            return await self.token_page(request, session, note=note, code=400,
                                         error="Choose when the token expires (at most a year).")
        if len(note) > tokens.MAX_NOTE or any(ord(c) < 32 for c in note):
            return await self.token_page(request, session, note=note[:tokens.MAX_NOTE], code=400,
                                         error=f"A note is one line of at most {tokens.MAX_NOTE} "
                                               "characters.")
        token = tokens.new_token()
        expires = time.time() + expires_in if expires_in else None
        info = await self.store.create_token(session.user, tokens.token_hash(token), note, expires)
        await self.store.add_event("token-created", session.user,
                                   f"id {info['id']}, expires {when(expires) if expires else 'never'}")
        now = time.monotonic()
        self._reveal = {k: v for k, v in self._reveal.items() if v[0] > now}
        self._reveal[session.id] = (now + 60, token, info)
        return self.redirect(request, "/hub/token")

    @app.route("/token/<token_id>/revoke", methods=["POST"])
    async def token_revoke(self, request: IRequest, token_id: str) -> bytes:
        session = await self.user_session(request)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        if _form(request, "confirmed") != "1":
            listed = {t["id"]: t for t in await self.store.list_tokens(session.user)}
            if token_id not in listed:
                return self.error(request, 404, "Not found", "There is no such token.", session)
            note = listed[token_id]["note"]
            return self.confirm(request, session, title="Revoke this token?",
                                message=f"Scripts using the token {token_id}"
                                        f"{f' ({note})' if note else ''} will be refused at once.",
                                action=f"/hub/token/{token_id}/revoke", button="Revoke",
                                fields={}, back="/hub/token")
        if not await self.store.revoke_token(session.user, token_id):
            return self.error(request, 404, "Not found", "There is no such token.", session)
        await self.gate.recheck_exchanges()  # what the token has open is closed too
        await self.store.add_event("token-revoked", session.user, f"id {token_id}")
        return self.redirect(request, "/hub/token?done=revoked")

    # -- admin ---------------------------------------------------------------------------
    async def admin_rows(self) -> list[Row]:
        names = await self.store.all_user_names()
        users = await self.store.get_users(names)
        servers = await self.store.get_servers(names)
        activity = await self.store.activity()
        stats = self.stats.latest()
        rows = []
        for u in users:
            server = servers.get(u.name)
            state = self._state(u.name, server)
            rows.append(Row(u.name, u.admin, u.disabled, u.created, state,
                            server.error if server and state == "failed" else "",
                            activity.get(u.name), stats.get(u.name) if state == "running"
                            else None))
        return rows

    async def running_containers(self) -> dict[str, str]:
        servers = await self.store.get_servers(list(self.manager.routes))
        return {n: s.id for n, s in servers.items() if s.id and n in self.manager.routes}

    @app.route("/admin", methods=["GET"])
    async def admin(self, request: IRequest) -> bytes:
        session = await self.admin_session(request)
        if not isinstance(session, Session):
            return session
        return await self.admin_page(request, session)

    async def admin_page(self, request: IRequest, session: Session, *, error: str = "",
                         form: dict[str, Any] | None = None, code: int = 200) -> bytes:
        q = _form(request, "q").strip().lower()[:64]
        sort = _form(request, "sort")
        sort = sort if sort in SORTS else "name"
        order = "desc" if _form(request, "order") == "desc" else "asc"
        rows = await self.admin_rows()
        total = len(rows)
        if q:
            rows = [r for r in rows if q in r.name]
        rows = sort_rows(rows, sort, order == "desc")
        back = "/hub/admin" + ("?" + urlencode({"q": q, "sort": sort, "order": order})
                               if q or sort != "name" or order != "asc" else "")
        return self.render(
            request, "admin.html", code, user=session.user, csrf=session.csrf, page="admin",
            is_admin=True, rows=rows, total=total, q=q, sort=sort, order=order, sorts=SORTS,
            back=back, events=await self.store.recent_events(30), error=error,
            form=form or {}, notice=_notice(request), now=time.time(),
            stats_available=self.stats.stats is not None)

    @app.route("/admin/api/servers", methods=["GET"])
    async def admin_servers(self, request: IRequest) -> bytes:
        """Live state of every user, CPU and memory of running servers, recent events."""
        session = await self.admin_session(request, api=True)
        if not isinstance(session, Session):
            return session
        stats = await self.stats.sample(await self.running_containers())
        rows = await self.admin_rows()
        return self.json(request, {
            "time": time.time(),
            "users": {r.name: {"state": r.state, "error": r.error, "disabled": r.disabled,
                               "last_activity": r.last_activity, "stats": stats.get(r.name)}
                      for r in rows},
            "events": await self.store.recent_events(30),
        })

    def _admin_back(self, request: IRequest) -> str:
        back = safe_next(_form(request, "back"), "/hub/admin")
        return back if back == "/hub/admin" or back.startswith("/hub/admin?") else "/hub/admin"

    def _with_notice(self, back: str, done: str, user: str) -> str:
        return back + ("&" if "?" in back else "?") + urlencode({"done": done, "user": user})

    @app.route("/admin/users", methods=["POST"])
    async def admin_add_user(self, request: IRequest) -> bytes:
        session = await self.admin_session(request)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        typed = _form(request, "name")
        password = _form(request, "password")
        admin = _form(request, "admin") == "1"
        form = {"name": typed, "admin": admin}
        try:
            name = normalize_login(typed)
            check_strength(password)
        except (InvalidName, WeakPassword) as e:
            return await self.admin_page(request, session, error=str(e).capitalize() + ".",
                                         form=form, code=400)
        hashed = await threads.deferToThread(hash_password, password)
        try:
            added = await self.store.add_user(name, hashed, admin)
        except NameReserved:  # a removed account's files are kept (ipydoc.control.removal)
            return await self.admin_page(request, session, form=form, code=409, error=(
                f"The name {name} belonged to a removed account whose files are kept; "
                f"purge them with `ipydoc user purge {name} --yes` or restore the account "
                f"with `ipydoc user restore {name}`."))
        if not added:
            return await self.admin_page(request, session, error=f"The user {name} exists.",
                                         form=form, code=409)
        await self.store.add_event("user-add", name, f"by {session.user}"
                                                     + (" (admin)" if admin else ""))
        self.log.info("{admin} added the user {name}", admin=session.user, name=name)
        return self.redirect(request, self._with_notice(self._admin_back(request), "added", name))

    @app.route("/admin/users/<name>/<action>", methods=["POST"])
    async def admin_action(self, request: IRequest, name: str, action: str) -> bytes:
        session = await self.admin_session(request)
        if not isinstance(session, Session):
            return session
        if not self.post_allowed(request, session.csrf):
            return self.expired_form(request, session)
        if action not in ADMIN_ACTIONS:
            return self.error(request, 404, "Not found", "There is no such action.", session)
        try:
            validate_name(name)
        except InvalidName:
            return self.error(request, 404, "Not found", "There is no such user.", session)
        user = await self.store.get_user(name)
        if user is None:
            return self.error(request, 404, "Not found", "There is no such user.", session)
        back = self._admin_back(request)
        if action == "disable" and name == session.user:
            return self.error(request, 409, "Not done",
                              "You cannot disable your own account.", session)
        if action == "start" and user.disabled:
            return self.error(request, 409, "Not done",
                              f"{name} is disabled; enable the account first.", session)
        if action in DESTRUCTIVE and _form(request, "confirmed") != "1":
            what = {"stop": (f"Stop the server of {name}?",
                             "Unsaved work in their notebooks is lost; their files stay."),
                    "disable": (f"Disable {name}?",
                                "They are logged out everywhere, their server stops and their "
                                "tokens stop working; their files stay.")}[action]
            return self.confirm(request, session, title=what[0], message=what[1],
                                action=f"/hub/admin/users/{name}/{action}",
                                button=action.capitalize(), fields={"back": back}, back=back)
        try:
            if action == "start":
                self._start_in_background(name)
            elif action == "stop":
                await self.manager.stop(name, f"stopped by admin {session.user}")
            elif action == "disable":
                await self.store.update_user(name, disabled=True)
                await self.store.revoke_sessions(name)
                await self.manager.stop(name, f"account disabled by {session.user}")
            elif action == "enable":
                await self.store.update_user(name, disabled=False)
        except BackendError as e:
            return self.error(request, 502, "Not done", e.message, session)
        if action in ("disable", "enable"):
            await self.store.add_event(f"user-{action}", name, f"by {session.user}")
        self.log.info("{admin}: {action} {name}", admin=session.user, action=action, name=name)
        return self.redirect(request, self._with_notice(back, action, name))


def _install_history_pages() -> None:
    from ipydoc.web import handoff_page, history_pages

    history_pages.install(Hub)
    from ipydoc.auth import routes as login_provider_routes
    login_provider_routes.install(Hub)
    handoff_page.install(Hub)
    account_pages.install(Hub)


_install_history_pages()
