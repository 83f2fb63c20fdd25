"""``/hub/handoff?to=NAME&next=PATH`` (subdomain mode): from the hub's login to NAME's host.

A user's host sends a browser without a host session here, with ``state=`` (the value
of the state cookie it just set there).  If the hub session belongs to NAME, the hub
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

from typing import Any
from urllib.parse import urlencode

from twisted.web.iweb import IRequest

from ipydoc.access.user_hosts import well_formed_state
from ipydoc.edge.redirects import safe_next
from ipydoc.names import InvalidName, validate_name


def _arg(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


async def handoff(hub: Any, request: IRequest) -> bytes:
    routing = hub.gate.routing
    session = await hub.sessions.from_request(request)
    if not routing.subdomain:
        return hub.error(request, 404, "Not found", "This site does not use per-user hosts.",
                         session)
    if session is None:
        return hub.to_login(request)
    try:
        name = validate_name(_arg(request, "to"))
    except InvalidName:
        return hub.error(request, 404, "Not found", "There is no such user.", session)
    if session.user != name:
        return hub.error(request, 403, "Forbidden",
                         f"This is another user's server. Yours is at "
                         f"{routing.user_url(session.user, 'lab', request)}.", session)
    nxt = safe_next(_arg(request, "next"), "/lab")
    state = well_formed_state(_arg(request, "state"))
    if state is None:  # not sent by the user's host: start there (it sets the state)
        return hub.redirect(request, routing.user_origin(name, request) + nxt, 302)
    token = await hub.gate.hosts.issue(session, state)
    query = urlencode({"token": token, "next": nxt})
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    return hub.redirect(request, f"{routing.user_origin(name, request)}/_ipydoc/handoff?{query}",
                        302)


def install(hub_class: Any) -> None:
    """Add the route to the hub's Klein app."""
    hub_class.app.route("/handoff", methods=["GET"])(handoff)
