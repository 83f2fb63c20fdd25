"""The bounded client for the daemon's own requests to users' servers
(ipydoc/proxy/fetch.py), against a local server that misbehaves on purpose: a byte budget
that holds whatever the server declares, no inflating of encodings nobody asked for, and
one deadline for the whole exchange."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from ipydoc.proxy.fetch import Fetcher, FetchError

JSON = b'{"ok": true}'


class Hostile(Protocol):
    """Answers by the request path; writes until the client hangs up where told to."""

    def connectionMade(self) -> None:
        self.buf = b""
        self.open = True
        self.sent = 0

    def connectionLost(self, reason: object = None) -> None:
        self.open = False
        self.factory.lost += 1

    def dataReceived(self, data: bytes) -> None:
        self.buf += data
        if b"\r\n\r\n" not in self.buf:
            return
        head = self.buf.split(b"\r\n\r\n", 1)[0]
        self.factory.heads.append(head)
        path = head.split(b" ")[1].split(b"?")[0]
        w = self.transport.write
        if path == b"/ok":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(JSON), JSON))
        elif path == b"/gzip":
            w(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n"
              + b"\x1f\x8b" + b"\0" * 18)
        elif path == b"/huge-length":  # declares a GB and sends nothing yet
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n")
        elif path == b"/endless":
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            self.pump(b"10000\r\n" + b"a" * 0x10000 + b"\r\n")
        elif path == b"/until-close":
            w(b"HTTP/1.1 200 OK\r\n\r\n")
            self.pump(b"b" * 0x10000)
        elif path == b"/padded-chunks":  # one body byte per 4 KiB of chunk extensions
            w(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            self.pump(b"1;" + b"x" * 4000 + b"\r\nc\r\n")
        elif path == b"/trickle":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            self.trickle()
        elif path == b"/lie":
            w(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" + b"z" * 100000)
        elif path == b"/silent":
            pass

    def pump(self, chunk: bytes) -> None:
        if self.open:
            self.transport.write(chunk)
            self.sent += len(chunk)
            reactor.callLater(0, self.pump, chunk)

    def trickle(self) -> None:
        if self.open:
            self.transport.write(b" ")
            reactor.callLater(0.1, self.trickle)


@pytest.fixture
def server():
    factory = Factory.forProtocol(Hostile)
    factory.heads = []
    factory.lost = 0
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    factory.url = f"http://127.0.0.1:{port.getHost().port}"
    yield factory
    port.stopListening()


async def fetch(server, path, max_body=100_000, timeout=5.0, **kw):
    return await Fetcher(reactor).get(server.url + path, max_body=max_body, timeout=timeout,
                                      **kw)


async def refused(server, path, **kw) -> FetchError:
    with pytest.raises(FetchError) as e:
        await fetch(server, path, **kw)
    return e.value


@pytest_twisted.ensureDeferred
async def test_a_small_answer_and_what_is_asked(server):
    r = await fetch(server, "/ok", headers={"Authorization": "token t"}, params={"a": "1"})
    assert r.code == 200 and r.json() == {"ok": True}
    head = server.heads[-1]
    assert head.startswith(b"GET /ok?a=1 HTTP/1.1\r\n")
    assert b"\r\nAccept-Encoding: identity\r\n" in head
    assert b"\r\nAuthorization: token t" in head


@pytest_twisted.ensureDeferred
async def test_an_encoding_not_asked_for_is_refused(server):
    e = await refused(server, "/gzip")
    assert e.reason == "encoding" and e.budget


@pytest_twisted.ensureDeferred
async def test_a_declared_length_over_budget_is_refused_before_any_body(server):
    # The server sends no body at all: only the early refusal can end this before the
    # deadline (which would say "deadline").
    e = await refused(server, "/huge-length", timeout=30)
    assert e.reason == "too-large" and "Content-Length 1000000000" in str(e)


@pytest.mark.parametrize("path", ["/endless", "/until-close", "/padded-chunks"])
@pytest_twisted.ensureDeferred
async def test_an_endless_body_is_cut_at_the_budget(server, path):
    e = await refused(server, path, timeout=30)
    assert e.reason == "too-large"
    await deferLater(reactor, 0.2, lambda: None)
    assert server.lost >= 1  # the connection was dropped, not drained


@pytest_twisted.ensureDeferred
async def test_a_trickle_ends_at_the_total_deadline(server):
    e = await refused(server, "/trickle", timeout=0.5)
    assert e.reason == "deadline" and e.budget
    await deferLater(reactor, 0.2, lambda: None)
    assert server.lost >= 1


@pytest_twisted.ensureDeferred
async def test_a_lying_length_gives_only_what_it_declared(server):
    r = await fetch(server, "/lie")
    assert r.body == b"hello"
    with pytest.raises(FetchError) as e:
        r.json()
    assert e.value.reason == "bad-response"


@pytest_twisted.ensureDeferred
async def test_nothing_listening_is_a_connect_failure():
    from support import closed_port

    with pytest.raises(FetchError) as e:
        await Fetcher(reactor).get(f"http://127.0.0.1:{closed_port()}/", max_body=10,
                                   timeout=5)
    assert e.value.reason == "connect" and not e.value.budget


@pytest_twisted.ensureDeferred
async def test_cancelling_aborts_the_connection(server):
    d = Fetcher(reactor).get(server.url + "/silent", max_body=10, timeout=30)
    await deferLater(reactor, 0.2, lambda: None)
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await deferLater(reactor, 0.2, lambda: None)
    assert server.lost >= 1



def test_a_connect_that_never_completes_ends_at_the_deadline():
    from twisted.internet.testing import MemoryReactorClock

    clock = MemoryReactorClock()
    d = Fetcher(clock, connect_timeout=30).get("http://192.0.2.1:9/", max_body=10, timeout=2)
    failures = []
    d.addErrback(failures.append)
    (host, port, factory, timeout, _), = clock.tcpClients
    assert (host, port, timeout) == ("192.0.2.1", 9, 2)  # never longer than the deadline
    clock.advance(1.9)
    assert not failures
    clock.advance(0.2)
    assert failures[0].value.reason == "deadline"
    assert clock.connectors[0]._disconnected  # the attempt is given up
