"""``/hub/handoff?to=NAME&next=PATH`` (subdomain mode): from the hub's login to NAME's host.

A user's host sends a browser without a host session here, with ``state=`` (the value
of the state cookie it just set there).  If the hub session belongs to NAME (or to a guest
NAME's server is shared with), the hub
issues a one-time token bound to that state (:mod:`ipydoc.access.user_hosts`, 30 s) and
redirects to ``NAME.<domain>/_ipydoc/handoff?token=...&next=PATH``, where it becomes a
host-only cookie only if the browser shows the same state cookie: a token fetched by
one browser cannot sign in another.  No session: login first (and back here).  Another
user's session: 403, as in path mode (admins included: they do not get into other users'
servers).  No state (an old link): back to NAME's host, which sets one.  A GET is
enough: the worst a forged link can do is sign a user in to their own server, in the
browser that already holds her hub session.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlencode

from klein import Klein
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.access.user_hosts import well_formed_state
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.names import InvalidName, validate_server_key
from ipydoc.web.pages import Pages, RedisDown, redis_down


class HandoffTokens(Protocol):
    """Issues the one-time tokens (:class:`ipydoc.access.user_hosts.HostSessions`)."""

    async def issue(self, session: Session, state: str, host: str) -> str: ...

    async def may_enter(self, user: str, host: str) -> bool: ...


class HandoffPage:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)

    def __init__(self, pages: Pages, routing: Routing, hosts: HandoffTokens | None) -> None:
        self.pages = pages
        self.routing = routing
        self.hosts = hosts  # None in path mode

    @app.route("/handoff", methods=["GET"])
    async def handoff(self, request: IRequest) -> bytes:
        pages, routing = self.pages, self.routing
        session = await pages.sessions.from_request(request)
        if not routing.subdomain or self.hosts is None:
            return pages.error(request, 404, "Not found",
                               "This site does not use per-user hosts.", session)
        if session is None:
            return pages.to_login(request)
        try:
            name = validate_server_key(arg(request, "to"))  # a named server's key too
        except InvalidName:
            return pages.error(request, 404, "Not found", "There is no such user.", session)
        if not await self.hosts.may_enter(session.user, name):  # owner, or a guest
            return pages.error(request, 403, "Forbidden",
                               f"This is another user's server. Yours is at "
                               f"{routing.user_url(session.user, 'lab', request)}.", session)
        nxt = safe_next(arg(request, "next"), "/lab")
        state = well_formed_state(arg(request, "state"))
        if state is None:  # not sent by the user's host: start there (it sets the state)
            return pages.redirect(request, routing.user_origin(name, request) + nxt, 302)
        token = await self.hosts.issue(session, state, name)
        query = urlencode({"token": token, "next": nxt})
        request.setHeader(b"Referrer-Policy", b"no-referrer")
        return pages.redirect(
            request, f"{routing.user_origin(name, request)}/_ipydoc/handoff?{query}", 302)
