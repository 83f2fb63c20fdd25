"""The real site and proxy in a process of their own, on either front end.

    python3 tests/edge/front_end_site.py BACKEND_URL FRONT_END [LIMITS_JSON]

Prints the port, then serves: every ``/user/...`` request is forwarded to BACKEND_URL
(the gate is not under test), ``/hub/...`` is a small twisted.web page.  As
tests/proxy_in_a_process.py, with ``front_end`` ("lean" or "twisted") chosen.
"""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def main() -> None:
    from twisted.internet import reactor
    from twisted.web.resource import Resource
    from twisted.web.static import Data

    from ipydoc.edge.limits import RequestLimits
    from ipydoc.edge.site import make_site
    from ipydoc.proxy.gate import Forward

    class ForwardAll:
        def claims(self, request) -> bool:
            return request.path.startswith(b"/user/")

        async def decide(self, request):
            return Forward("alice", sys.argv[1], "secret-token")

        def saw_traffic(self, user: str) -> None:
            pass

        def saw_response(self, user, method, path, code) -> None:
            pass

    hub = Resource()
    hub.putChild(b"page", Data(b"hub page\n", "text/plain"))
    limits = RequestLimits(**json.loads(sys.argv[3])) if len(sys.argv) > 3 else None
    site = make_site(hub, ForwardAll(), reactor, limits=limits, front_end=sys.argv[2],
                     access_log="off")
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
