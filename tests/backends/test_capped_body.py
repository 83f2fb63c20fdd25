"""read_capped: a trusted service's answer is cut off the moment it passes the cap."""

from __future__ import annotations

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor, task
from twisted.web import resource, server

from ipydoc.backends.capped_body import BodyTooLarge, read_capped

CHUNK = b"x" * 16384


class Endless(resource.Resource):
    """A chunked answer that never ends; counts what it managed to write."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0
        self.stopped = False

    def render_GET(self, request):
        loop = task.LoopingCall(self._more, request)

        def gone(_):
            self.stopped = True
            if loop.running:
                loop.stop()

        request.notifyFinish().addBoth(gone)
        loop.start(0.001)
        return server.NOT_DONE_YET

    def _more(self, request) -> None:
        if not self.stopped:
            request.write(CHUNK)
            self.sent += len(CHUNK)


class Sized(resource.Resource):
    isLeaf = True

    def __init__(self, size: int) -> None:
        super().__init__()
        self.body = bytes(range(256)) * (size // 256)

    def render_GET(self, request):
        return self.body


@pytest.fixture
def site():
    root = resource.Resource()
    endless = Endless()
    root.putChild(b"endless", endless)
    root.putChild(b"small", Sized(4096))
    root.putChild(b"big", Sized(1 << 20))
    port = reactor.listenTCP(0, server.Site(root), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}", endless
    port.stopListening()


@pytest_twisted.ensureDeferred
async def test_an_answer_under_the_cap_is_read_whole(site):
    base, _ = site
    response = await treq.get(base + "/small", persistent=False)
    assert await read_capped(response, 8192) == bytes(range(256)) * 16


@pytest_twisted.ensureDeferred
async def test_a_declared_size_over_the_cap_is_refused_before_reading(site):
    base, _ = site
    response = await treq.get(base + "/big", persistent=False)
    assert response.length == 1 << 20
    with pytest.raises(BodyTooLarge, match="1048576 bytes"):
        await read_capped(response, 65536)


@pytest_twisted.ensureDeferred
async def test_an_endless_chunked_answer_is_cut_off_at_the_cap(site):
    base, endless = site
    response = await treq.get(base + "/endless", persistent=False)
    with pytest.raises(BodyTooLarge):
        await read_capped(response, 256 * 1024)
    for _ in range(200):  # the server notices the closed connection
        if endless.stopped:
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    assert endless.stopped
    assert endless.sent < 64 * 256 * 1024  # it did not go on streaming into a buffer
