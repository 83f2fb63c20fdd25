"""The proxy's own HTTP/1.1 client (ipydoc/proxy/backend.py) against a backend that
answers with exact bytes: keep-alive reuse, strict framing, retries of a stale
connection, small textual answers scrubbed and sent with their exact length.

A user's container is not trusted, so a response whose framing is ambiguous must fail
(502) and its connection must never carry another request.
"""

from __future__ import annotations

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor, threads
from twisted.internet.protocol import Factory, Protocol
from twisted.web.resource import Resource

from ipydoc.edge.site import make_site
from ipydoc.proxy.backend import BackendPool
from ipydoc.proxy.gate import Forward

TOKEN = "token-0123456789abcdef0123456789abcdef"

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\n\r\nhello"
CANNED = {
    b"/ok": OK,
    b"/two-lengths": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
    b"/bad-chunk": (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
    b"/lf-in-reason": b"HTTP/1.1 200 OK\nX-Injected: yes\r\nContent-Length: 0\r\n\r\n",
    b"/folded": (b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok"),
    b"/too-much": (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Length: 5\r\n\r\nhelloEXTRA"),
    b"/until-close": b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\nstreamed-to-close",
    b"/early-hints": (b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n" + OK),
    b"/chunked-text": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"6\r\nhello \r\n" + b"%x\r\n%s\r\n" % (len(TOKEN), TOKEN.encode()) + b"0\r\n\r\n"),
    b"/trailers": (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
                   + b"".join(b"X-T%d: %s\r\n" % (i, b"t" * 90) for i in range(100)) + b"\r\n"),
    b"/small-json": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (len(TOKEN) + 13) + b'{"token": "' + TOKEN.encode() + b'"}'),
}
CLOSING = {b"/until-close"}


class Backend(Protocol):
    """Answers each request head with the canned bytes for its path."""

    def connectionMade(self) -> None:
        self.factory.connections += 1
        self.buf = b""
        self.served = 0

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            path = head.split(b" ")[1].removeprefix(b"/user/alice")  # path mode keeps it
            self.factory.requests.append(path)
            if path == b"/stale" and self.served:
                self.transport.abortConnection()  # a kept-alive connection it had dropped
                return
            self.served += 1
            self.transport.write(OK if path == b"/stale" else CANNED[path])
            if path in CLOSING:
                self.transport.loseConnection()


class BackendFactory(Factory):
    protocol = Backend

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []


class ToBackend:
    def __init__(self, url: str) -> None:
        self.url = url

    def claims(self, request) -> bool:
        return request.path.startswith(b"/user/")

    async def decide(self, request):
        return Forward("alice", self.url, TOKEN)

    def saw_traffic(self, user: str) -> None:
        pass

    def saw_response(self, user, method, path, code) -> None:
        pass


@pytest_twisted.async_yield_fixture
async def proxied():
    factory = BackendFactory()
    backend = reactor.listenTCP(0, factory, interface="127.0.0.1")
    site = make_site(Resource(), ToBackend(f"http://127.0.0.1:{backend.getHost().port}"), reactor)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}/user/alice", factory
    await port.stopListening()
    await site.proxy.close()
    await backend.stopListening()


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


@pytest_twisted.ensureDeferred
async def test_kept_alive_connection_is_reused(proxied):
    base, factory = proxied
    with requests.Session() as s:
        for _ in range(20):
            r = await threads.deferToThread(s.get, base + "/ok", timeout=10)
            assert r.status_code == 200 and r.content == b"hello"
    assert factory.requests.count(b"/ok") == 20
    assert factory.connections == 1


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/two-lengths", "/bad-chunk", "/lf-in-reason", "/folded"])
async def test_ambiguous_response_is_a_502_and_its_connection_is_dropped(proxied, path):
    base, factory = proxied
    r = await threads.deferToThread(get, base + path)
    assert r.status_code == 502
    assert "X-Injected" not in r.headers and b"hello" not in r.content
    before = factory.connections
    r = await threads.deferToThread(get, base + "/ok")
    assert r.status_code == 200
    assert factory.connections == before + 1  # the bad connection was not reused


@pytest_twisted.ensureDeferred
async def test_bytes_beyond_the_length_are_not_passed_on_nor_reused(proxied):
    base, factory = proxied
    r = await threads.deferToThread(get, base + "/too-much")
    assert r.status_code == 200 and r.content == b"hello"
    before = factory.connections
    r = await threads.deferToThread(get, base + "/ok")
    assert r.content == b"hello" and factory.connections == before + 1


@pytest_twisted.ensureDeferred
async def test_body_until_close_and_informational_answers(proxied):
    base, _ = proxied
    r = await threads.deferToThread(get, base + "/until-close")
    assert r.status_code == 200 and r.content == b"streamed-to-close"
    r = await threads.deferToThread(get, base + "/early-hints")
    assert r.status_code == 200 and r.content == b"hello"


@pytest_twisted.ensureDeferred
async def test_a_dropped_idle_connection_is_retried_once(proxied):
    base, factory = proxied
    with requests.Session() as s:
        for _ in range(2):
            r = await threads.deferToThread(s.get, base + "/stale", timeout=10)
            assert r.status_code == 200 and r.content == b"hello"
    # The second request went out on the kept connection, was dropped, and sent again.
    assert factory.requests.count(b"/stale") == 3 and factory.connections == 2


@pytest_twisted.ensureDeferred
async def test_textual_answers_are_scrubbed_small_ones_with_their_exact_length(proxied):
    base, _ = proxied
    r = await threads.deferToThread(get, base + "/small-json")
    assert r.status_code == 200 and r.content == b'{"token": ""}'
    assert r.headers["Content-Length"] == str(len(r.content))
    assert "Transfer-Encoding" not in r.headers
    r = await threads.deferToThread(get, base + "/chunked-text")
    assert r.content == b"hello " and TOKEN.encode() not in r.content
    assert r.headers.get("Transfer-Encoding") == "chunked"


@pytest_twisted.ensureDeferred
async def test_trailers_are_bounded_per_response_not_per_connection(proxied):
    base, factory = proxied
    with requests.Session() as s:
        for _ in range(3):  # ~9.6 KiB of trailers each: fine alone, too much if summed up
            r = await threads.deferToThread(s.get, base + "/trailers", timeout=10)
            assert r.status_code == 200 and r.content == b"hello"
    assert factory.connections == 1


@pytest_twisted.ensureDeferred
async def test_a_connection_a_slow_client_left_paused_reads_again_when_pooled():
    """The client's flow control pauses the backend connection through the connection
    itself, so the pool resumes one taken back paused (the next exchange on it would
    otherwise wait forever) and leaves a connection nobody paused alone."""
    backend = reactor.listenTCP(0, BackendFactory(), interface="127.0.0.1")
    pool = BackendPool(reactor, per_target=4, connect_timeout=5)
    key = ("127.0.0.1", backend.getHost().port)
    try:
        paused, untouched = await pool.connect(*key), await pool.connect(*key)
        paused.pauseProducing()  # as a client's full send buffer does
        assert paused.paused and paused.transport not in reactor.getReaders()
        pool.release(paused)
        assert not paused.paused and paused.transport in reactor.getReaders()
        pool.release(untouched)
        assert not untouched.paused and untouched.transport in reactor.getReaders()
        assert {pool.take(*key), pool.take(*key)} == {paused, untouched}
    finally:
        await pool.close()
        await backend.stopListening()
