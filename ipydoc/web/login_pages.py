"""``/hub/login`` and ``/hub/logout``: the local login form, the answers to refused
logins, where a fresh login goes (any provider), and logging out.

A refused login says plainly why (wrong name or password, or logins paused with the time
left, :mod:`ipydoc.access.login_limits`) and never which names exist.  The login form is
protected by a double-submit cookie (there is no session yet) and a same-site ``Origin``.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable
from urllib.parse import quote

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.cookies import LOGIN_CSRF_COOKIE, cookie_header, read_cookie
from ipydoc.access.login_limits import LoginLimits, Refusal, client_group
from ipydoc.access.passwords import verify_password
from ipydoc.access.return_hint import ReturnHints
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.names import InvalidName, normalize_login
from ipydoc.servers.prestart import LoginPagePrestart
from ipydoc.state.users import User
from ipydoc.web import metrics
from ipydoc.web.pages import HubSettings, Pages, RedisDown, redis_down

WRONG = "Wrong user name or password."


def paused(request: IRequest, refusal: Refusal) -> None:
    """Tell the client when to try again."""
    request.setHeader(b"Retry-After", str(refusal.retry_after).encode())


class LoginPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)
    log = Logger()

    def __init__(self, pages: Pages, settings: HubSettings, limits: LoginLimits,
                 routing: Routing, *, local: bool = True, providers: Iterable[Any] = (),
                 hints: ReturnHints | None = None,
                 prestart: LoginPagePrestart | None = None) -> None:
        self.pages = pages
        self.settings = settings
        self.limits = limits
        self.routing = routing
        self.local = local  # [auth] local: the name and password form is offered
        self.providers = list(providers)  # shown as buttons on the form
        # spawn.prestart_on_login: the login page of a returning browser starts its
        # user's server (both None when off: no hint is set or read)
        self.hints = hints
        self.prestart = prestart

    @property
    def store(self) -> Any:
        return self.pages.store

    # -- /hub/login ----------------------------------------------------------------------
    @app.route("/login", methods=["GET"])
    async def login_page(self, request: IRequest) -> bytes:
        session = await self.pages.sessions.from_request(request)
        nxt = arg(request, "next")
        if session is not None:
            return self.pages.redirect(request, safe_next(nxt, "/hub/home"), 302)
        if self.hints is not None and self.prestart is not None:
            hint = self.hints.read(request)  # a browser that logged in before
            if hint is not None:  # its server starts while the password is typed
                self.prestart.consider_soon(hint.name, hint.created_ms)
        return self.form(request, nxt)

    def form(self, request: IRequest, nxt: str, error: str = "", username: str = "",
             code: int = 200) -> bytes:
        """The login page (with a fresh double-submit CSRF cookie)."""
        token = secrets.token_urlsafe(24)
        request.responseHeaders.addRawHeader(b"Set-Cookie", cookie_header(
            LOGIN_CSRF_COOKIE, token, secure=request.isSecure(), max_age=3600,
            path="/hub/login").encode())
        return self.pages.render(request, "login.html", code, csrf=token, next=nxt,
                                 error=error, username=username, user=None, local=self.local,
                                 providers=self.providers)

    @app.route("/login", methods=["POST"])
    async def login(self, request: IRequest) -> bytes:
        nxt = arg(request, "next")
        if not self.local:
            return self.form(request, nxt, "Log in with one of the providers below.", code=403)
        cookie = (read_cookie(request, LOGIN_CSRF_COOKIE) or b"").decode("ascii", "replace")
        if not cookie or not self.pages.post_allowed(request, cookie):
            return self.form(request, nxt, "Your login form expired; please try again.",
                             code=403)
        typed = arg(request, "username")
        password = arg(request, "password")
        group = client_group(request)
        try:
            name: str | None = normalize_login(typed)
        except InvalidName:
            name = None
        refusal = await self.limits.check(name, group)  # paused: argon2 is not run
        if refusal is not None:
            return self.limited(request, nxt, typed, name, group, refusal)
        user = await self.store.get_user(name) if name else None
        ok = await verify_password(user.password_hash if user else None, password)
        if not ok or user is None or name is None:
            return await self.failed(request, nxt, typed, name, group)
        if user.disabled:
            metrics.login("local", "disabled")
            return self.form(request, nxt, "This account is disabled.", typed, 403)
        await self.limits.succeeded(name)
        metrics.login("local", "ok")
        previous = await self.pages.sessions.from_request(request)
        if previous is not None:  # a new login replaces the session this browser had
            await self.store.delete_session(previous.id)
        await self.pages.sessions.create(request, name)
        await self.store.add_event("login", name, "password")
        self.log.info("{name} logged in", name=name)
        return await self.after_login(request, name, nxt, user)

    def limited(self, request: IRequest, nxt: str, typed: str, name: str | None, group: str,
                refusal: Refusal) -> bytes:
        """A login refused before its password is checked: the account or address is paused."""
        metrics.login("local", "paused")
        self.log.info("login refused for {name} from {addr}: {scope} paused for {s} s",
                      name=name or "(invalid name)", addr=group, scope=refusal.scope,
                      s=refusal.retry_after)
        paused(request, refusal)
        return self.form(request, nxt, refusal.message, typed, 429)

    async def failed(self, request: IRequest, nxt: str, typed: str, name: str | None,
                     group: str) -> bytes:
        """A wrong name or password: count it, and say so (pausing if that was one too many)."""
        metrics.login("local", "refused")
        refusal = await self.limits.failed(name, group)
        self.log.info("login refused for {name} from {addr}: wrong name or password",
                      name=name or "(invalid name)", addr=group)
        if name:
            await self.store.add_event("login-refused", name, "wrong name or password")
        if refusal is None:
            return self.form(request, nxt, WRONG, typed, 403)
        where = f"address {group}" if refusal.scope == "address" else "account"
        await self.store.add_event("login-paused", name or "",
                                   f"{where} paused for {refusal.retry_after} s")
        paused(request, refusal)
        return self.form(request, nxt, f"{WRONG} {refusal.message}", typed, 429)

    async def after_login(self, request: IRequest, name: str, nxt: str,
                          user: User | None = None) -> bytes:
        """Where a fresh login goes (any provider): ``next`` if it is the user's own or
        the hub's, else JupyterLab: straight there while its start is under way, through
        the spawn page when the server is stopped and was not started here."""
        target = self.routing.user_target(name, nxt, request)
        if self.hints is not None:
            user = user or await self.store.get_user(name)  # a provider's login: read it
            if user is not None:
                self.hints.issue(request, name, user.created)
            await self.store.prestart_used(name)  # a start from the login page is kept
        server = await self.store.get_server(name)
        manager = self.pages.manager
        if server and server.state == "running" and name in manager.routes:
            return self.pages.redirect(request, target)
        if self.settings.start_on_login:
            self.pages.start_in_background(name)
        if target.startswith("/hub/"):
            return self.pages.redirect(request, target)  # e.g. /hub/admin: no need to wait
        if manager.is_starting(name) and not self.routing.subdomain:
            # Straight to the server's page: the access ladder holds it for the start (or
            # sends the server's kept lab page at once), and sends the browser to the
            # start page itself when the start fails or takes long (docs/cold_login.md).
            # (Subdomain mode: the user's host needs its handoff first; the start page.)
            return self.pages.redirect(request, target)
        return self.pages.redirect(request,
                                   f"/hub/spawn/{name}?next={quote(target, safe='/:')}")

    # -- /hub/logout ---------------------------------------------------------------------
    @app.route("/logout", methods=["GET"])
    async def logout_page(self, request: IRequest) -> bytes:
        """JupyterLab's "Log Out" menu entry lands here (a GET): ask, then POST."""
        session = await self.pages.sessions.from_request(request)
        if session is None:
            return self.pages.redirect(request, "/hub/login", 302)
        return self.pages.render(request, "logout.html", user=session.user, csrf=session.csrf,
                                 stop_on_logout=self.settings.stop_on_logout)

    @app.route("/logout", methods=["POST"])
    async def logout(self, request: IRequest) -> bytes:
        session = await self.pages.sessions.from_request(request)
        if session is None:  # ended already; the browser is not remembered either
            ReturnHints.forget(request)
            return self.pages.redirect(request, "/hub/login")
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        await self.pages.sessions.end(request, session)  # also closes its open WebSockets
        ReturnHints.forget(request)  # nobody's server starts from this browser's login page
        # The browser forgets what the user's pages stored too (same origin in path mode).
        request.setHeader(b"Clear-Site-Data", b'"cookies", "storage"')
        await self.store.add_event("logout", session.user, "")
        if self.settings.stop_on_logout:
            d = defer.Deferred.fromCoroutine(  # every server of the user's, named ones too
                self.pages.manager.stop_all(session.user, "logout"))
            d.addErrback(lambda f: self.log.failure("stop on logout", f))
        return self.pages.redirect(request, "/hub/login")
