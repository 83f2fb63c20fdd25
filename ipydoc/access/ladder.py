"""The access rule for a user's server: one ladder for path and subdomain mode.

Every request for a user's server (``/user/NAME/...`` in path mode, ``NAME.<domain>/...``
in subdomain mode) climbs these steps in order; the first that fails answers it, and
only the last lets a byte through to the server:

1. **name** -- the path (:class:`~ipydoc.access.path_mode.PathMode`) or the host
   (:class:`~ipydoc.access.subdomain.SubdomainMode`) names a valid user; else 404.
   (Subdomain mode also answers ``/_ipydoc/handoff`` here: :mod:`ipydoc.access.handoff`.)
2. **credential** -- a personal token in ``Authorization: token ipd_...``
   (:class:`~ipydoc.access.tokens.TokenCheck`: known, unexpired, its account enabled;
   else 401/403), or else the browser's cookie: the hub session in path mode, the host
   session in subdomain mode.  No credential: a browser navigating is sent to sign in
   (the login page, or the hub's handoff), anything else gets 401.
3. **owner** -- the credential's user is NAME; else 403 (admins included).
4. **Origin** -- with a cookie, a state-changing method or a WebSocket handshake must
   come from the server's own site (:mod:`ipydoc.access.origin`); else 403.  A token
   skips it: a browser never attaches one by itself, so there is nothing to forge.
5. **route** -- NAME's server runs; else a browser navigating is sent to the start page
   and anything else gets 503 (starting, or not running).  The route table is in memory;
   on a miss Redis is asked once (another daemon of the site may have just started the
   server), so a miss costs one read and a hit none.
   A *paused* server (issue 15: :mod:`ipydoc.servers.pausing`) is resumed here (one
   resume per user however many requests wait; a failure is a 502 saying why) and the
   request goes on, its access log line marked ``resumed``; a running one costs nothing
   more (its route is read anyway).
   While the server is not routable (starting, or a cold login's browser running ahead of
   it: issue 15), a GET/HEAD of one of JupyterLab's versioned static files
   (``static/lab/<name>.<hash>.js``) is answered from the per-image cache
   (:mod:`ipydoc.servers.static_cache`, never a user's bytes) with immutable caching
   headers, and any other request while the server *starts* (not a browser navigating:
   it goes to the start page) waits for the start, at most ``start_wait`` seconds, then
   goes on (or gets the 503 as before).
6. **forward** -- a :class:`~ipydoc.proxy.gate.Forward` to the server, naming the
   credential (so the proxy can cut what it has open when it is revoked:
   :mod:`ipydoc.access.gate`) and the start page (for the proxy's error pages).

"A browser navigating" is a GET or HEAD asking for HTML (:func:`ipydoc.proxy.headers.
wants_html`) with a cookie, never a token.  The two modes differ only in the steps a
:class:`Mode` implements; every message and URL for the hub comes from
:class:`~ipydoc.edge.routing.Routing`, so both modes point at the right host.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from functools import partial
from typing import Protocol
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ipydoc.access.origin import changes_state, origin_allowed
from ipydoc.access.tokens import TokenCheck, from_authorization
from ipydoc.access.verdicts import Holder, json_reply, redirect, wants_page
from ipydoc.backends.base import BackendError
from ipydoc.edge.access_log import mark
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.proxy.gate import Forward, Reply
from ipydoc.servers.manager import ServerManager
from ipydoc.servers.static_cache import IMMUTABLE, StaticCache
from ipydoc.servers.wait_start import wait_for_start

#: A file of JupyterLab's static directory, under the server's base URL.
STATIC_FILE = re.compile(rb"^static/lab/([^/]+)$")


class Mode(Protocol):
    """The steps that differ between path and subdomain mode."""

    async def locate(self, request: IRequest) -> str | Reply:
        """Step 1: the user the request is for, or the answer when it names none."""

    async def holder(self, request: IRequest) -> Holder | None:
        """Step 2 for browsers: who the request's cookie belongs to, if anyone."""

    def sign_in(self, request: IRequest, name: str) -> Reply:
        """Step 2 failed for a browser navigating: where it goes to sign in."""

    def origins(self, request: IRequest, name: str) -> Collection[str]:
        """Step 4: the origins ``name``'s server may be driven from."""


def start_url(routing: Routing, request: IRequest, name: str) -> str:
    """The hub's start page for ``name``'s server, coming back to this request's URL."""
    back = request.uri.decode("latin-1")
    if not routing.subdomain:
        return f"/hub/spawn/{name}?next={quote(back, safe='/:')}"
    back = routing.user_origin(name, request) + back
    return f"{routing.hub_origin(request)}/hub/spawn/{name}?next={quote(back, safe='/:')}"


class Ladder:
    def __init__(self, mode: Mode, tokens: TokenCheck, manager: ServerManager,
                 routing: Routing, static: StaticCache | None = None,
                 start_wait: float = 0.0) -> None:
        self.mode = mode
        self.tokens = tokens
        self.manager = manager
        self.routing = routing
        self.static = static
        self.start_wait = start_wait

    async def decide(self, request: IRequest) -> Forward | Reply:
        # 1. name
        name = await self.mode.locate(request)
        if isinstance(name, Reply):
            return name
        # 2. credential
        personal = from_authorization(request.getHeader(b"authorization"))
        if personal is not None:
            holder = await self.tokens.holder(personal)
            if isinstance(holder, Reply):
                return holder
        else:
            found = await self.mode.holder(request)
            if found is None:
                if wants_page(request):
                    return self.mode.sign_in(request, name)
                hub = self.routing.hub_origin(request)
                return json_reply(401, f"not logged in: log in at {hub}/hub/login")
            holder = found
        # 3. owner
        if holder.user != name:
            whose = "yours" if holder.browser else "the token's"
            return json_reply(403, f"this server belongs to another user; {whose} is "
                                   f"{self.routing.user_url(holder.user, '', request)}")
        # 4. Origin
        if (holder.browser and changes_state(request)
                and not origin_allowed(request, self.mode.origins(request, name))):
            return json_reply(403, "cross-origin request refused (Origin is not this site)")
        # 5. route
        route = self.manager.routes.get(name)
        if route is None:  # another daemon may have started it a moment ago: ask Redis
            route = await self.manager.route_from_store(name)
        static = self._static_file(request, name) if self.static is not None else None
        if route is None and static is not None and self.static is not None:
            cached = self.static.get(*static)
            if cached is not None:
                mark(request, "static-cache")
                return Reply(200, cached[0], cached[1], dict(IMMUTABLE))
        if (route is None and self.start_wait > 0 and self.manager.is_starting(name)
                and not (holder.browser and wants_page(request))):
            await wait_for_start(self.manager, name, self.start_wait)
            route = self.manager.routes.get(name)
        if route is None:
            if holder.browser and wants_page(request):
                return redirect(start_url(self.routing, request, name))
            hub = self.routing.hub_origin(request)
            return json_reply(503, "your server is starting" if self.manager.is_starting(name)
                              else f"your server is not running: start it at "
                                   f"{hub}/hub/spawn/{name}")
        if route.paused:
            refused = await self._resume(request, name, holder)
            if refused is not None:
                return refused
        # 6. forward
        if static is not None and self.static is not None:
            self.static.saw(static[0])
        if holder.token_digest:
            await self.tokens.touch(holder.token_digest)
        return Forward(name, route.url, route.token, holder.credential,
                       self.routing.subdomain, partial(start_url, self.routing, request, name))

    async def _resume(self, request: IRequest, name: str, holder: Holder) -> Reply | None:
        """Step 5 for a paused server: thaw it, then the request goes on."""
        try:
            if await self.manager.resume(name, "token" if holder.token_digest else "proxy"):
                mark(request, "resumed")
        except BackendError as e:
            return json_reply(502, f"your server is paused and could not be resumed: "
                                   f"{e.message}")
        return None

    def _static_file(self, request: IRequest, name: str) -> tuple[str, str | None] | None:
        """(file name, ``?v=``) when a GET/HEAD asks for a file of ``static/lab``."""
        if request.method not in (b"GET", b"HEAD"):
            return None
        prefix = b"/" if self.routing.subdomain else f"/user/{name}/".encode()
        if not request.path.startswith(prefix):
            return None
        m = STATIC_FILE.match(request.path[len(prefix):])
        if m is None:
            return None
        try:
            return m.group(1).decode("ascii"), arg(request, "v") or None
        except UnicodeDecodeError:
            return None
