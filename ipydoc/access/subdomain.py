"""The gate for ``NAME.<domain>`` in subdomain mode (see :mod:`ipydoc.edge.routing`).

The same rules as ``/user/NAME/`` in path mode, with the host naming the user: a live
host session (``ipydoc-user`` cookie, :mod:`ipydoc.access.user_hosts`) or a personal token of
NAME; a state-changing method or WebSocket must come from NAME's own origin; the server
must run.  Browsers without a host session are sent through the hub's handoff, with a
state cookie on this host that binds the handoff to this browser; API clients and
WebSockets get 401/403/503 with a JSON message.  The hub's own session cookie means
nothing here.  ``/_ipydoc/...`` is answered here and never reaches the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from twisted.web.iweb import IRequest

from ipydoc.access.tokens import from_authorization
from ipydoc.access.user_hosts import HANDOFF_PATH, new_state
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.routing import RESERVED_PREFIX, Routing
from ipydoc.names import InvalidName, validate_name
from ipydoc.proxy.gate import Forward, Reply

if TYPE_CHECKING:
    from ipydoc.access.gate import UserGate

SAFE_METHODS = {b"GET", b"HEAD", b"OPTIONS"}


def _arg(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


async def decide_user_host(gate: UserGate, request: IRequest, name: str) -> Forward | Reply:
    from ipydoc.access.gate import is_websocket, json_reply, redirect, request_origin, wants_html

    routing, hosts = gate.routing, gate.hosts
    if request.path.startswith(RESERVED_PREFIX) or request.path == RESERVED_PREFIX[:-1]:
        if request.path == HANDOFF_PATH and request.method == b"GET":
            return await _redeem(gate, request, name)
        return json_reply(404, "no such page (/_ipydoc/ is reserved for ipydoc)")
    personal = from_authorization(request.getHeader(b"authorization"))
    if personal is not None:
        return await gate._decide_by_token(name, personal)
    hub = routing.hub_origin(request)
    page = wants_html(request) and request.method in (b"GET", b"HEAD")
    found = await hosts.session_of(request)
    user, hub_key = found if found is not None else (None, "")
    if user is None:
        if page:
            # The handoff will only be redeemed in the browser holding this state.
            state = hosts.state_of(request) or new_state()
            query = urlencode({"to": name, "next": request.uri.decode("latin-1"),
                               "state": state})
            reply = redirect(f"{hub}/hub/handoff?{query}")
            reply.headers["Set-Cookie"] = hosts.state_cookie(state, secure=request.isSecure())
            return reply
        return json_reply(401, f"not logged in: log in at {hub}/hub/login")
    if user != name:  # a host-only cookie cannot get here; a copied one can
        return json_reply(403, "this server belongs to another user")
    unsafe = request.method not in SAFE_METHODS or is_websocket(request)
    if unsafe:
        origin = (request.getHeader(b"origin") or b"").decode("latin-1").lower()
        own = {routing.user_origin(name, request), request_origin(request)}
        if request.getHeader(b"origin") is not None and origin not in own:
            return json_reply(403, "cross-origin request refused (Origin is not this server)")
    route = gate.manager.routes.get(name)
    if route is None:
        if page:
            nxt = quote(routing.user_origin(name, request) + request.uri.decode("latin-1"),
                        safe="/:")
            return redirect(f"{hub}/hub/spawn/{name}?next={nxt}")
        return json_reply(503, "your server is starting" if gate.manager.is_starting(name)
                          else f"your server is not running: start it at {hub}/hub/spawn/{name}")
    return gate.forward(name, route, hub_key)  # revoked with the hub session it follows


def moved_to_user_host(routing: Routing, request: IRequest) -> Reply:
    """``<domain>/user/NAME/PATH`` (a path-mode link) → ``NAME.<domain>/PATH``."""
    from ipydoc.access.gate import PREFIX, json_reply, redirect

    segment, _, rest = request.uri[len(PREFIX):].partition(b"/")
    try:
        name = validate_name(segment.decode("ascii"))
    except (UnicodeDecodeError, InvalidName):
        return json_reply(404, "no such user server")
    return redirect(routing.user_url(name, rest.decode("latin-1"), request))


async def _redeem(gate: UserGate, request: IRequest, name: str) -> Reply:
    """``/_ipydoc/handoff?token=...&next=...``: the one-time token becomes a cookie, in
    the browser whose state cookie it was issued for."""
    got = await gate.hosts.redeem(_arg(request, "token"), name, gate.hosts.state_of(request))
    headers = {"Referrer-Policy": "no-referrer"}
    if got is None:
        again = gate.routing.user_url(name, "lab", request)
        body = (f"This sign-in link was already used, has expired, is not for this "
                f"server or was opened in another browser than the one that asked for it. "
                f"Open {again} to sign in again.\n").encode()
        return Reply(403, body, "text/plain; charset=utf-8", headers)
    value, lifetime = got
    headers["Set-Cookie"] = gate.hosts.cookie(value, secure=request.isSecure(),
                                              max_age=lifetime)
    headers["Location"] = safe_next(_arg(request, "next"), "/lab")
    return Reply(302, b"", "text/plain; charset=utf-8", headers)
