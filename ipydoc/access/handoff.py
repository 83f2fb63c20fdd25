"""``NAME.<domain>/_ipydoc/handoff?token=...&next=...``: the end of the subdomain handoff.

The one-time token the hub issued becomes NAME's host session cookie, in the browser
whose state cookie it was issued for (the rules: :mod:`ipydoc.access.user_hosts`), and
the browser goes on to ``next``, a path on the same host.  Anything else (used, expired,
another user's, another browser's) is a 403 page that says how to sign in again.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest

from ipydoc.access.user_hosts import HostSessions
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.proxy.gate import Reply


async def redeem(hosts: HostSessions, routing: Routing, request: IRequest, name: str) -> Reply:
    """Redeem the request's handoff token at ``name``'s host."""
    got = await hosts.redeem(arg(request, "token"), name, hosts.state_of(request))
    headers = {"Referrer-Policy": "no-referrer"}
    if got is None:
        again = routing.user_url(name, "lab", request)
        body = (f"This sign-in link was already used, has expired, is not for this "
                f"server or was opened in another browser than the one that asked for it. "
                f"Open {again} to sign in again.\n").encode()
        return Reply(403, body, "text/plain; charset=utf-8", headers)
    value, lifetime = got
    headers["Set-Cookie"] = hosts.cookie(value, secure=request.isSecure(), max_age=lifetime)
    headers["Location"] = safe_next(arg(request, "next"), "/lab")
    return Reply(302, b"", "text/plain; charset=utf-8", headers)
