"""A proxied exchange leaves no reference cycle behind: its objects are freed by reference
counting when it ends, not by the cyclic collector.

Each cycle (the request and its body stream through ``hang_up``, the request and its relay
through ``on_gone``, the request and the gate's ``start_url`` it keeps for an error page)
left a few dozen objects per request to the collector: young-generation
collections every few dozen requests, and memory reused only after one, cold in the CPU's
caches.  The site and the proxy are real (lean front end, in-process), the backend is the
stand-in server over real sockets; the gate decides at once, as ipydoc's does from memory.
"""

from __future__ import annotations

import gc
from functools import partial

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor, threads
from twisted.web.resource import Resource

from ipydoc.access.ladder import start_url
from ipydoc.edge.routing import Routing
from ipydoc.edge.site import make_site
from ipydoc.proxy.gate import Forward, Reply

from stand_in_backend import spawn, stop
from support import closed_port

TOKEN = "cycle-test-token"
ROUTING = Routing()


class EagerGate:
    """alice goes to the stand-in server, ``down`` to a closed port, anyone else is refused;
    a forward carries the start page as ipydoc's gate makes it (``Ladder``)."""

    def __init__(self, backend: str, down: str) -> None:
        self.backend, self.down = backend, down

    def claims(self, request) -> bool:
        return request.path.startswith(b"/user/")

    async def decide(self, request):
        user = request.path.split(b"/")[2]
        if user == b"alice":
            return Forward("alice", self.backend, TOKEN,
                           start_url=partial(start_url, ROUTING, "alice"))
        if user == b"down":
            return Forward("down", self.down, TOKEN, start_url=partial(start_url, ROUTING, "down"))
        return Reply(403, b"not yours\n")

    def saw_traffic(self, user: str) -> None:
        pass

    def saw_response(self, user, method, path, code) -> None:
        return None


@pytest.fixture(scope="module")
def backend():
    proc, port = spawn("stand_in_backend.py")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


def exchanges(url: str) -> list[int]:
    """Every kind of plain exchange once or more, on one keep-alive connection."""
    codes = []
    with requests.Session() as s:
        for _ in range(5):
            codes.append(s.get(url + "/user/alice/api/status").status_code)        # JSON, scrubbed
            codes.append(s.post(url + "/user/alice/echo", data=b"x" * 5000).status_code)
            codes.append(s.get(url + "/user/alice/chunked").status_code)
            codes.append(s.get(url + "/user/alice/download?size=200000").status_code)
            codes.append(s.get(url + "/user/bob/").status_code)                    # the gate's reply
        codes.append(requests.get(url + "/user/down/", timeout=10).status_code)   # 502
    return codes


@pytest.mark.parametrize("front_end", ["lean", "twisted"])
@pytest_twisted.ensureDeferred
async def test_an_exchange_is_freed_without_the_cyclic_collector(backend, front_end):
    gate = EagerGate(backend, f"http://127.0.0.1:{closed_port()}")
    site = make_site(Resource(), gate, reactor, front_end=front_end, access_log="off")
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}"
    try:
        await threads.deferToThread(exchanges, url)  # warm: first-use caches, the pool
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds is kept for us to see
        try:
            codes = await threads.deferToThread(exchanges, url)
            gc.collect()
            found = [o for o in gc.garbage
                     if type(o).__module__.startswith("ipydoc.")
                     or getattr(getattr(o, "__self__", None), "__module__", "").startswith(
                         "ipydoc.")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    finally:
        await port.stopListening()
        await site.proxy.close()
    assert codes == [200, 200, 200, 200, 403] * 5 + [502]
    assert sorted({type(o).__qualname__ for o in found}) == []
