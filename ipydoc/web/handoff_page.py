"""``/hub/handoff?to=NAME&next=PATH`` (subdomain mode): from the hub's login to NAME's host.

A user's host sends a browser without a host session here.  If the hub session belongs
to NAME, the hub issues a one-time token (:mod:`ipydoc.user_hosts`, 30 s) and redirects
to ``NAME.<domain>/_ipydoc/handoff?token=...&next=PATH``, where it becomes a host-only
cookie.  No session: login first (and back here).  Another user's session: 403, as in
path mode (admins included: they do not get into other users' servers).  A GET is
enough: the worst a forged link can do is sign a user in to their own server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from twisted.web.iweb import IRequest

from ipydoc.names import InvalidName, validate_name
from ipydoc.web.redirects import safe_next


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
    token = await hub.gate.hosts.issue(session)
    query = urlencode({"token": token, "next": safe_next(_arg(request, "next"), "/lab")})
    request.setHeader(b"Referrer-Policy", b"no-referrer")
    return hub.redirect(request, f"{routing.user_origin(name, request)}/_ipydoc/handoff?{query}",
                        302)


def install(hub_class: Any) -> None:
    """Add the route to the hub's Klein app."""
    hub_class.app.route("/handoff", methods=["GET"])(handoff)
