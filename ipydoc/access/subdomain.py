"""Subdomain mode's steps of the ladder: ``NAME.<domain>`` (see :mod:`ipydoc.edge.routing`).

The host names the user; the credential is a host session (``ipydoc-user`` cookie,
:mod:`ipydoc.access.user_hosts`): the hub's own session cookie means nothing here.  A
state-changing method or WebSocket must come from NAME's own origin.  A browser without
a host session is sent through the hub's handoff, with a state cookie on this host that
binds the handoff to this browser.  ``/_ipydoc/...`` is answered here and never reaches
the server; a path-mode link on the hub's host (``/user/NAME/...``) is moved to NAME's
host; any other host is 404.

Named servers (issue 19 §1): the host ``USER--SERVER.<domain>`` is USER's server SERVER
(the server key as the DNS label; :meth:`ipydoc.edge.routing.Routing.classify`), signed
in through the same handoff with a host session of its own; a path-mode link
``/user/USER/SERVER/...`` is moved to that host when USER has a server SERVER.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import urlencode

from twisted.web.iweb import IRequest

from ipydoc.access.handoff import redeem
from ipydoc.access.origin import request_origin
from ipydoc.access.path_mode import PREFIX, named_key
from ipydoc.access.user_hosts import HANDOFF_PATH, HostSessions, new_state
from ipydoc.access.verdicts import Holder, json_reply, redirect
from ipydoc.edge.routing import RESERVED_PREFIX, Routing
from ipydoc.names import InvalidName, validate_name
from ipydoc.proxy.gate import Reply
from ipydoc.servers.manager import ServerManager


class SubdomainMode:
    def __init__(self, routing: Routing, hosts: HostSessions,
                 servers: ServerManager | None = None) -> None:
        self.routing = routing
        self.hosts = hosts
        self.servers = servers  # to move /user/USER/SERVER/ links to a named server's host

    async def locate(self, request: IRequest) -> str | Reply:
        kind, name = self.routing.classify(request)
        if kind == "hub":
            return await moved_to_user_host(self.routing, request, self.servers)
        if kind != "user":
            return json_reply(404, "no such site")
        if request.path.startswith(RESERVED_PREFIX) or request.path == RESERVED_PREFIX[:-1]:
            if request.path == HANDOFF_PATH and request.method == b"GET":
                return await redeem(self.hosts, self.routing, request, name)
            return json_reply(404, "no such page (/_ipydoc/ is reserved for ipydoc)")
        return name

    async def server(self, request: IRequest, name: str) -> str:
        """The host already named the server (its key)."""
        return name

    async def holder(self, request: IRequest) -> Holder | None:
        found = await self.hosts.session_of(request)
        # Revoked with the hub session it follows.
        return None if found is None else Holder(found[0], found[1])

    def sign_in(self, request: IRequest, name: str) -> Reply:
        # The handoff will only be redeemed in the browser holding this state.
        state = self.hosts.state_of(request) or new_state()
        query = urlencode({"to": name, "next": request.uri.decode("latin-1"),
                           "state": state})
        reply = redirect(f"{self.routing.hub_origin(request)}/hub/handoff?{query}")
        reply.headers["Set-Cookie"] = self.hosts.state_cookie(state, secure=request.isSecure())
        return reply

    def origins(self, request: IRequest, name: str) -> Collection[str]:
        return {self.routing.user_origin(name, request), request_origin(request)}


async def moved_to_user_host(routing: Routing, request: IRequest,
                             servers: ServerManager | None = None) -> Reply:
    """``<domain>/user/NAME/PATH`` (a path-mode link) → ``NAME.<domain>/PATH``, and
    ``<domain>/user/NAME/SERVER/PATH`` → ``NAME--SERVER.<domain>/PATH`` for a named one."""
    segment, _, rest = request.uri[len(PREFIX):].partition(b"/")
    try:
        name = validate_name(segment.decode("ascii"))
    except (UnicodeDecodeError, InvalidName):
        return json_reply(404, "no such user server")
    if servers is not None:
        head, query, _ = rest.partition(b"?")
        second, _, after = head.partition(b"/")
        key = await named_key(servers, name, second)
        if key is not None:
            path = after + (query + rest.partition(b"?")[2])
            return redirect(routing.user_url(key, path.decode("latin-1"), request))
    return redirect(routing.user_url(name, rest.decode("latin-1"), request))
