"""The access rule for a user's server: one ladder for path and subdomain mode.

Every request for a user's server (``/user/NAME/...`` in path mode, ``NAME.<domain>/...``
in subdomain mode) climbs these steps in order; the first that fails answers it, and
only the last lets a byte through to the server:

1. **name** -- the path (:class:`~ipydoc.access.path_mode.PathMode`) or the host
   (:class:`~ipydoc.access.subdomain.SubdomainMode`) names a valid user; else 404.
   (Subdomain mode also answers ``/_ipydoc/handoff`` here: :mod:`ipydoc.access.handoff`.)
   Which of the user's servers (issue 19 §1: the default one, or a named one, whose
   *server key* is ``USER--SERVER``) is settled once the request holds a credential
   (:meth:`Mode.server`: the host says it in subdomain mode; in path mode a second path
   segment naming one of the user's named servers), so a look-up is never made for a
   request without one.  Every step below works on that key.
2. **credential** -- a personal token in ``Authorization: token ipd_...``
   (:class:`~ipydoc.access.tokens.TokenCheck`: known, unexpired, its account enabled;
   else 401/403), or else the browser's cookie: the hub session in path mode, the host
   session in subdomain mode.  No credential: a browser navigating is sent to sign in
   (the login page, or the hub's handoff), anything else gets 401.
3. **owner** -- the credential's user is NAME, the server key's owner, or a guest the
   owner shared this server with (issue 19 §3: :mod:`ipydoc.access.shares`, asked on
   every request; a ``view`` guest gets GET/HEAD and no WebSocket); else 403 (admins
   included).  A guest's server that does not run is a 503 (only its owner starts it).
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
   (``static/lab/<name>.<hash>.js``, or an extension's
   ``lab/extensions/<package>/static/<name>.<hash>.js``) is answered from the per-image
   cache (:mod:`ipydoc.servers.static_cache`, never a user's bytes) with immutable
   caching headers, and any other request while the server *starts* waits for the start, at
   most ``start_wait`` seconds, then goes on (or gets the 503 as before).  A browser
   navigating waits at most ``PAGE_WAIT`` (5 s), then goes to the start page (which
   shows a queue, a slow pull or the error); the owner opening ``lab`` itself gets the
   server's own lab page kept from its last run, if still valid
   (:mod:`ipydoc.servers.lab_pages`), so JupyterLab boots while the container starts.
6. **forward** -- a :class:`~ipydoc.proxy.gate.Forward` to the server, naming the
   credential (so the proxy can cut what it has open when it is revoked:
   :mod:`ipydoc.access.gate`) and the start page (for the proxy's error pages).

**Recalled verdicts.**  A browser sends the same header lines request after request on a
keep-alive connection; the lean front end then hands every such request the same parsed
headers (:func:`ipydoc.edge.lean_head.read_head`).  When the owner's own session cookie
let a GET or HEAD through on the plain way (no static file, no lab page), the verdict is
kept on those headers, and :meth:`Ladder.recall` gives it again for the next request to
the same server, after checking from memory what it rested on: the session still in the
session cache (whatever ends a session empties it; in subdomain mode the host session,
whose cache is emptied the same way), the very route still in the table (stopping,
restarting, pausing a server replaces it) and the path's first segments (in subdomain
mode the host, which is in those same header lines, names the server, and ``/_ipydoc/``
is never recalled).  Anything else climbs the ladder.

"A browser navigating" is a GET or HEAD asking for HTML (:func:`ipydoc.proxy.headers.
wants_html`) with a cookie, never a token.  The two modes differ only in the steps a
:class:`Mode` implements; every message and URL for the hub comes from
:class:`~ipydoc.edge.routing.Routing`, so both modes point at the right host.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from functools import partial
from typing import Any, NamedTuple, Protocol
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ipydoc.access.cookies import SESSION_COOKIE, read_cookie
from ipydoc.access.origin import changes_state, origin_allowed
from ipydoc.access.path_mode import PREFIX, may_name_server
from ipydoc.access.sessions import Sessions
from ipydoc.access.shares import VIEW, ShareRule, view_refusal
from ipydoc.access.tokens import TokenCheck, from_authorization
from ipydoc.access.user_hosts import HostSessions
from ipydoc.access.verdicts import Holder, json_reply, redirect, wants_page
from ipydoc.backends.base import BackendError
from ipydoc.edge.access_log import mark
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import RESERVED_PREFIX, Routing, spawn_path
from ipydoc.names import SERVER_KEY_SEPARATOR
from ipydoc.proxy.gate import Forward, Reply
from ipydoc.proxy.headers import FastHeaders
from ipydoc.servers.lab_pages import PAGE_WAIT, LabPages
from ipydoc.servers.manager import ServerManager
from ipydoc.servers.routes import Route
from ipydoc.servers.static_cache import IMMUTABLE, StaticCache
from ipydoc.servers.wait_start import wait_for_start

#: A file of JupyterLab's static directory, under the server's base URL.
STATIC_FILE = re.compile(rb"^static/lab/([^/]+)$")
#: A file of a prebuilt extension's static directory, under the server's base URL.
EXTENSION_FILE = re.compile(rb"^lab/extensions/((?:@[^/]+/)?[^/]+/static/[^/]+)$")


#: Methods whose verdict may be recalled: they change nothing (no ``Origin`` rule), and a
#: lean request is never a WebSocket handshake.
_RECALLED = frozenset({b"GET", b"HEAD"})
#: ``/_ipydoc`` and all below it (subdomain mode's own pages, never recalled).
_RESERVED = RESERVED_PREFIX[:-1]


class Recalled(NamedTuple):
    """A verdict kept for the next request with the same header lines (so the same
    cookie and host, no token) on the same connection: see :meth:`Ladder.recall`."""

    prefix: bytes            # b"/user/NAME/" (subdomain mode: b"/", the host names it)
    named: bytes | None      # b"SERVER/" for a named server; None: the default one
    signed: bytes | str      # the session cookie as sent (subdomain mode: the host session id)
    session: object          # what the session cache held for it ...
    remember: Callable[[Any], object]  # ... as this recalls it from that cache
    key: str                 # the server key
    route: Route             # the route it was forwarded on
    forward: Forward


class Mode(Protocol):
    """The steps that differ between path and subdomain mode."""

    async def locate(self, request: IRequest) -> str | Reply:
        """Step 1: the user the request is for, or the answer when it names none."""

    async def server(self, request: IRequest, name: str) -> str:
        """Step 1, once the request holds a credential: the key of the server the
        request is for (``name`` itself for the default server, else one of the user's
        named servers)."""

    async def holder(self, request: IRequest) -> Holder | None:
        """Step 2 for browsers: who the request's cookie belongs to, if anyone."""

    def sign_in(self, request: IRequest, name: str) -> Reply:
        """Step 2 failed for a browser navigating: where it goes to sign in."""

    def origins(self, request: IRequest, name: str) -> Collection[str]:
        """Step 4: the origins ``name``'s server may be driven from."""


def start_url(routing: Routing, name: str, request: IRequest) -> str:
    """The hub's start page for the server ``name`` (a server key), coming back to this
    request's URL.  The request comes last, so that ``partial(start_url, routing, name)``
    (:attr:`~ipydoc.proxy.gate.Forward.start_url`) does not hold the request: the request
    holds it, and the other way round would be a cycle per request."""
    back = request.uri.decode("latin-1")
    if not routing.subdomain:
        return f"{spawn_path(name)}?next={quote(back, safe='/:')}"
    back = routing.user_origin(name, request) + back
    return f"{routing.hub_origin(request)}{spawn_path(name)}?next={quote(back, safe='/:')}"


class Ladder:
    def __init__(self, mode: Mode, tokens: TokenCheck, manager: ServerManager,
                 routing: Routing, static: StaticCache | None = None,
                 start_wait: float = 0.0, shares: ShareRule | None = None,
                 sessions: Sessions | None = None, hosts: HostSessions | None = None) -> None:
        self.mode = mode
        self.sessions = sessions  # None: nothing is recalled (path mode)
        self.hosts = hosts  # None: nothing is recalled (subdomain mode)
        self.shares = shares
        self.tokens = tokens
        self.manager = manager
        self.routing = routing
        self.static = static
        self.start_wait = start_wait
        # Each server's own lab page, sent while it starts (path mode: the page follows
        # the start on the hub's progress stream, which is on its origin).
        self.lab_pages = (LabPages(manager.reactor, manager.fetcher, static)
                          if static is not None and not routing.subdomain else None)

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
        # 1 (again). which of the user's servers: from here on ``name`` is its key
        name = await self.mode.server(request, name)
        user = name.partition(SERVER_KEY_SEPARATOR)[0]  # the owner
        # 3. owner, or a guest the owner shared this server with (ipydoc.access.shares)
        guest: str | None = None
        if holder.user != user:
            verdict = await self._guest(request, name, holder)
            if isinstance(verdict, Reply):
                return verdict
            guest = verdict
        # 4. Origin
        if (holder.browser and changes_state(request)
                and not origin_allowed(request, self.mode.origins(request, name))):
            return json_reply(403, "cross-origin request refused (Origin is not this site)")
        if name != user and not self.routing.subdomain and \
                request.path == self.routing.base_url(name)[:-1].encode():
            query = request.uri[len(request.path):]  # /user/alice/gpu → its base URL
            return redirect(self.routing.base_url(name) + query.decode("latin-1"))
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
        if route is None and self.start_wait > 0 and self.manager.is_starting(name):
            navigating = holder.browser and wants_page(request)
            if navigating and guest is None and name == user and self._is_lab(request, name):
                early = await self._early_lab(request, name)
                if early is not None:
                    return early
            await wait_for_start(self.manager, name, min(self.start_wait, PAGE_WAIT)
                                 if navigating else self.start_wait)
            route = self.manager.routes.get(name)
        if route is None and guest is not None:  # only the owner starts a server
            return json_reply(503, f"{user}'s server is not running; its owner can start it")
        if route is None:
            if holder.browser and wants_page(request):
                return redirect(start_url(self.routing, name, request))
            hub = self.routing.hub_origin(request)
            return json_reply(503, "your server is starting" if self.manager.is_starting(name)
                              else f"your server is not running: start it at "
                                   f"{hub}{spawn_path(name)}")
        if route.paused:
            refused = await self._resume(request, name, holder)
            if refused is not None:
                return refused
        # 6. forward
        if static is not None and self.static is not None:
            self.static.saw(static[0])
        if (self.lab_pages is not None and guest is None and name == user and holder.browser
                and request.uri.endswith(b"/lab")  # (what _is_lab needs; cheap, first)
                and wants_page(request) and self._is_lab(request, name)):
            self.lab_pages.learn_soon(self.manager.store, name, user,
                                      partial(self.manager.routes.get, name),
                                      self.routing.base_url(name))
        if holder.token_digest:
            await self.tokens.touch(holder.token_digest)
        if guest is not None and self.shares is not None:
            self.shares.guest_seen(holder.user, name, guest, holder.credential,
                                   "browser" if holder.browser else "token")
        forward = Forward(name, route.url, route.token, holder.credential,
                          self.routing.subdomain, partial(start_url, self.routing, name))
        if (guest is None and holder.browser and not route.paused and static is None
                and request.method in _RECALLED and not request.uri.endswith(b"/lab")):
            if self.routing.subdomain:
                self._keep_host(request, name, user, route, forward)
            else:
                self._keep(request, name, user, route, forward)
        return forward

    # -- the same verdict again, from memory -------------------------------------------

    def _keep(self, request: IRequest, key: str, user: str, route: Route,
              forward: Forward) -> None:
        """Keep ``forward`` on the request's parsed headers (shared by the next request
        with the same header lines on this connection: :mod:`ipydoc.edge.lean_head`) for
        :meth:`recall`.  Only the owner's plain case: a session cookie (no token, no
        guest), a safe method, a running server, nothing else the ladder does on the way
        (no static file, no lab page).  Path mode; :meth:`_keep_host` is subdomain mode's."""
        headers = request.requestHeaders
        sessions = self.sessions
        if headers.__class__ is not FastHeaders or sessions is None:
            return
        signed = read_cookie(request, SESSION_COOKIE)
        session = sessions.recall(signed) if signed is not None else None
        if session is None or session.user != user:
            return
        prefix = PREFIX + request.path[len(PREFIX):].split(b"/", 1)[0] + b"/"
        second = request.path[len(prefix):].partition(b"/")[0]
        if key == user:
            if may_name_server(second):
                return  # it may name a server made later: never recalled
            named = None
        else:
            named = second + b"/"
        headers.verdict = Recalled(prefix, named, signed, session, sessions.recall, key, route,
                                   forward)

    def _keep_host(self, request: IRequest, key: str, user: str, route: Route,
                   forward: Forward) -> None:
        """:meth:`_keep` in subdomain mode: the host (in the same header lines) names the
        server, any path on it goes there but ``/_ipydoc/``, and the credential is the
        host session (:mod:`ipydoc.access.user_hosts`)."""
        headers = request.requestHeaders
        hosts = self.hosts
        if headers.__class__ is not FastHeaders or hosts is None:
            return
        host_id = hosts.host_id(request)
        found = hosts.recall(host_id) if host_id is not None else None
        if found is None or found[0] != user:
            return
        headers.verdict = Recalled(b"/", b"", host_id, found, hosts.recall, key, route,
                                   forward)

    def recall(self, request: IRequest) -> Forward | None:
        """What :meth:`decide` would say, from memory, for a request with the same header
        lines as one it let through (:meth:`_keep`), if everything it rested on still
        holds: the same user and server in the path (and nothing there that ``decide``
        treats apart: a static file, the lab page, another server's name), a safe method,
        the session still cached (whatever ends a session empties that cache), the very
        route still in the table (a stop, a restart, a pause replace it).  In subdomain
        mode the host names the server, and nothing under ``/_ipydoc/`` is recalled.
        None: ask :meth:`decide`."""
        try:
            memo = request.requestHeaders.verdict
        except AttributeError:  # none kept (or not the lean front end's headers)
            return None
        path = request.path
        if (request.method not in _RECALLED or not path.startswith(memo.prefix)
                or path.find(b"static/") != -1 or request.uri.endswith(b"/lab")
                or path.startswith(_RESERVED)):  # (subdomain mode's own pages)
            return None
        rest = path[len(memo.prefix):]
        if memo.named is None:
            if may_name_server(rest.partition(b"/")[0]):
                return None
        elif not rest.startswith(memo.named):
            return None
        if self.manager.routes.get(memo.key) is not memo.route:
            return None
        if memo.remember(memo.signed) is not memo.session:
            return None
        return memo.forward

    async def _guest(self, request: IRequest, name: str, holder: Holder) -> str | Reply:
        """Step 3 for someone not the owner: their share's mode (a view share lets only
        reads through), else the 403."""
        mode = await self.shares.access(holder.user, name) if self.shares is not None else None
        if mode is None:
            whose = "yours" if holder.browser else "the token's"
            return json_reply(403, f"this server belongs to another user; {whose} is "
                                   f"{self.routing.user_url(holder.user, '', request)}")
        if mode == VIEW:
            refused = view_refusal(request)
            if refused is not None:
                return refused
        return mode

    def _is_lab(self, request: IRequest, name: str) -> bool:
        """A GET of the server's page ``lab`` itself (no tree path, no query)."""
        return (request.method == b"GET" and not self.routing.subdomain
                and request.uri == f"{self.routing.base_url(name)}lab".encode())

    async def _early_lab(self, request: IRequest, name: str) -> Reply | None:
        """Step 5 for a browser opening ``lab`` of its starting server: the server's own
        page, kept from its last run (:mod:`ipydoc.servers.lab_pages`), if still valid."""
        if self.lab_pages is None:
            return None
        early = await self.lab_pages.early_reply(
            self.manager, name, name, start_url(self.routing, name, request),
            f"/hub/api/users/{name}/server/progress", self.start_wait)
        if early is not None:
            mark(request, "early-lab")
        return early

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
        """(file name, ``?v=``) when a GET/HEAD asks for a file of ``static/lab`` or of
        an extension's ``lab/extensions/<package>/static``."""
        if request.method not in (b"GET", b"HEAD") or request.path.find(b"static/") == -1:
            return None  # (both patterns need "static/": most requests stop here)
        prefix = self.routing.base_url(name).encode()
        if not request.path.startswith(prefix):
            return None
        rest = request.path[len(prefix):]
        m = STATIC_FILE.match(rest)
        key = m.group(1) if m is not None else None
        if key is None and (m := EXTENSION_FILE.match(rest)) is not None:
            key = b"extensions/" + m.group(1)  # a prebuilt extension's (image_static)
        if key is None:
            return None
        try:
            return key.decode("ascii"), arg(request, "v") or None
        except UnicodeDecodeError:
            return None
