"""What every page group of the hub shares: templates, the security headers, the CSRF
and ``Origin`` rule for form POSTs, who may see a page, and the 503 for Redis down.

One :class:`Pages` is built by :func:`ipydoc.web.hub.make_hub` and handed to each page
group, so the rules below are written once.  Every form carries a CSRF token (the
session's, or before login a double-submit cookie) and every state change is a POST that
also has to come from this site (``Origin``).  Admin and token actions are plain form
POSTs (they work without JavaScript; scripts only add confirmation dialogs and live
numbers), so there is a single CSRF rule to get right.  Destructive actions (stop,
disable, revoke) need ``confirmed=1``: the page's script sets it after ``confirm()``, and
without it the hub answers with a confirmation page instead of acting.

Pages are Jinja2 templates with auto-escaping; scripts and styles are files served by the
daemon (no inline script, no CDN), so the Content-Security-Policy forbids everything else.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.login_limits import LimitSettings
from ipydoc.access.sessions import Session, Sessions
from ipydoc.edge.request_args import arg
from ipydoc.names import InvalidName, validate_name
from ipydoc.servers.manager import ServerManager, StartFailed
from ipydoc.servers.profiles import Profile
from ipydoc.state.redis_service import UNAVAILABLE, StoreUnavailable
from ipydoc.web.present import FILTERS

SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'self'; frame-ancestors 'none'; form-action 'self'",
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"same-origin",
    b"X-Frame-Options": b"DENY",
    b"Cache-Control": b"no-store",
}

NOTICES = {  # ?done=… after an action: fixed texts, so a link cannot put words on the page
    "added": "Added the account {user}.",
    "start": "Starting the server of {user}.",
    "stop": "Stopped the server of {user}.",
    "server-removed": "Removed the server; the files of {user} stay.",
    "disable": "Disabled {user}: sessions ended, server stopped, files kept.",
    "enable": "Enabled {user}.",
    "revoked": "The token was revoked.",
    "password": "Your password was changed; your other sessions were logged out.",
    "group-added": "Added the group {user}.",
    "group-removed": "Deleted the group {user}.",
    "member-added": "Added a member to the group {user}.",
    "member-removed": "Removed a member from the group {user}.",
}

#: What a Redis outage (or hang: ``TimeoutError`` is one too) raises into a page handler.
RedisDown = StoreUnavailable


@dataclass
class HubSettings:
    image: str
    stop_on_logout: bool = True
    start_on_login: bool = True
    login_limits: LimitSettings = field(default_factory=LimitSettings)
    #: Opening the home page starts a stopped server (issue 15 §2: docs/cold_login.md).
    prestart_on_home: bool = False


class Gate(Protocol):
    """What the pages need of the access gate (:class:`ipydoc.access.gate.UserGate`)."""

    def origin_ok(self, request: IRequest) -> bool: ...

    def recheck_exchanges(self) -> defer.Deferred[None]: ...


def notice(request: IRequest) -> str:
    """The fixed text for ``?done=…&user=…``; nothing for an unknown one or a bad name."""
    template = NOTICES.get(arg(request, "done"), "")
    user = arg(request, "user")
    try:
        user = validate_name(user) if user else ""
    except InvalidName:
        return ""
    return template.format(user=user)


class Pages:
    """Rendering and the access checks every page group uses."""

    log = Logger()

    def __init__(self, sessions: Sessions, manager: ServerManager, gate: Gate) -> None:
        self.sessions = sessions
        self.manager = manager
        self.gate = gate
        self.templates = Environment(loader=PackageLoader("ipydoc.web", "templates"),
                                     autoescape=select_autoescape(default=True))
        self.templates.filters.update(FILTERS)

    @property
    def store(self) -> Any:
        return self.sessions.store  # exists once Redis is up

    # -- answers -------------------------------------------------------------------------
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

    def confirm(self, request: IRequest, session: Session, *, title: str, message: str,
                action: str, button: str, fields: dict[str, str], back: str) -> bytes:
        """The no-JavaScript confirmation of a destructive action."""
        return self.render(request, "confirm.html", user=session.user, csrf=session.csrf,
                           title=title, message=message, action=action, button=button,
                           fields=fields, back=back)

    def redis_down(self, request: IRequest, failure: Any) -> bytes:
        """Redis is down or hung: a clear 503 (page or JSON), never a traceback."""
        self.log.warn("hub: redis unavailable on {path}: {e}",
                      path=request.path.decode("latin-1"), e=failure.value)
        request.setHeader(b"Retry-After", b"5")
        if b"/api/" in request.path:
            return self.json(request, {"status": 503, "message": UNAVAILABLE}, 503)
        return self.error(request, 503, "Service temporarily unavailable",
                          UNAVAILABLE[0].upper() + UNAVAILABLE[1:] + ". Try again in a moment.")

    # -- the form rule -------------------------------------------------------------------
    def post_allowed(self, request: IRequest, expected_csrf: str) -> bool:
        """Same-site Origin and a matching CSRF token."""
        sent = arg(request, "_csrf") or (request.getHeader(b"x-csrf-token") or b"").decode()
        return (self.gate.origin_ok(request) and bool(expected_csrf)
                and hmac.compare_digest(sent.encode(), expected_csrf.encode()))

    def expired_form(self, request: IRequest, session: Session) -> bytes:
        return self.error(request, 403, "Forbidden", "The form expired; reload and retry.",
                          session)

    # -- who may see a page --------------------------------------------------------------
    def to_login(self, request: IRequest) -> bytes:
        return self.redirect(request, f"/hub/login?next={quote(request.uri.decode(), safe='/')}",
                             302)

    async def user_session(self, request: IRequest) -> Session | bytes:
        """The session; else the redirect to login."""
        session = await self.sessions.from_request(request)
        return session if session is not None else self.to_login(request)

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

    async def is_admin(self, name: str) -> bool:
        """The one admin rule (:meth:`ipydoc.state.groups.Groups.is_admin`): the account's
        own flag or an admin group."""
        return bool(await self.store.is_admin(name))

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

    # -- servers as the pages show them --------------------------------------------------
    def server_state(self, name: str, server: Any) -> str:
        """``starting``, ``stopped``, ``running``, ``failed``…: the record as users see it."""
        if self.manager.is_starting(name):
            return "starting"
        if server is None:
            return "stopped"
        if server.state == "running" and name not in self.manager.routes:
            return "stopped"
        return server.state

    def start_in_background(self, name: str, image: str | None = None,
                            profile: str | Profile | None = None) -> None:
        """Start ``name``'s server; the spawn page shows how it goes."""
        d = defer.Deferred.fromCoroutine(self.manager.start(name, image, profile))
        d.addErrback(lambda f: f.trap(StartFailed))  # shown on the spawn page
        d.addErrback(lambda f: self.log.failure("start of {name}", f, name=name))


def redis_down(group: Any, request: IRequest, failure: Any) -> bytes:
    """Klein error handler of every page group (``app.handle_errors(RedisDown)``)."""
    return group.pages.redis_down(request, failure)
