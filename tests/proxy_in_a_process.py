"""The real site and proxy in a process of their own, so a test can read its memory or
compare two front ends.

    python3 tests/proxy_in_a_process.py BACKEND_URL [LIMITS_JSON [FRONT_END]]
    # prints the port, serves

Every ``/user/NAME/...`` request is forwarded to BACKEND_URL (the gate is not under test)
with NAME's token (``secret-token`` for alice); the hub answers ``/page``.  LIMITS_JSON sets :class:`ipydoc.edge.limits.RequestLimits`
fields, e.g. '{"header_timeout": 1}' ('' for the defaults).  FRONT_END is
``proxy.front_end`` (``lean`` or ``twisted``; default: the config's default); with it the
access log is off, so two processes answer byte for byte alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # the repo


def main() -> None:
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.static import Data

    from ipydoc.edge.limits import RequestLimits
    from ipydoc.edge.site import make_site
    from ipydoc.proxy.gate import Forward

    class ForwardAll:
        # PUT answers are recorded (as saves are): the others take the proxy's short way
        observed_methods = frozenset({b"PUT"})

        def claims(self, request) -> bool:
            return request.path.startswith(b"/user/")

        async def decide(self, request):
            # alice's token is "secret-token"; any other user (the path's second
            # segment) has one of their own, so tokens differ between users
            user = request.path.split(b"/")[2].decode("latin-1") or "alice"
            token = "secret-token" if user == "alice" else \
                "other-" + hashlib.sha256(user.encode()).hexdigest()[:12]
            return Forward(user, sys.argv[1], token)

        def saw_traffic(self, user: str) -> None:
            pass

        def saw_response(self, user, method, path, code) -> None:
            pass

    hub = Resource()
    hub.putChild(b"page", Data(b"hub page\n", "text/plain"))
    limits_json = sys.argv[2] if len(sys.argv) > 2 else ""
    limits = RequestLimits(**json.loads(limits_json)) if limits_json else None
    options = {"front_end": sys.argv[3], "access_log": "off"} if len(sys.argv) > 3 else {}
    site = make_site(hub, ForwardAll(), reactor, limits=limits, **options)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
