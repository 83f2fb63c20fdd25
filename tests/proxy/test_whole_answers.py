"""An answer that comes whole in one read takes the proxy's short way (one call from the
backend connection, one ``send`` to the client); the same answer in pieces takes the
usual way.  The client must get the same bytes either way, whatever the answer's shape:
scrubbed or not, streamed when too long to scrub whole, no body (HEAD, 204, 304),
headers dropped or rewritten, a connection the backend closes.
"""

from __future__ import annotations

import random
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from twisted.web.resource import Resource

from ipydoc.edge.forwarding import Forwarding
from ipydoc.edge.lean_request import LeanRequest
from ipydoc.edge.site import make_site
from ipydoc.proxy.gate import Forward
from ipydoc.proxy.http import SMALL_BODY

from support import ThreadedServer

TOKEN = "tok-3141592653"
T = TOKEN.encode()


def answer(status: bytes, headers: list[bytes], body: bytes, *, length: bool = True) -> bytes:
    lines = [b"HTTP/1.1 " + status, *headers]
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


#: name → the backend's answer (the request's method does not change it).
ANSWERS = {
    "scrubbed": answer(b"200 OK", [b"Content-Type: text/plain", b"X-Echo: " + T],
                       b"before " + T + b" after"),
    "plain": answer(b"200 OK", [b"Content-Type: application/json"], b'{"a": 1}'),
    "binary": answer(b"200 OK", [b"Content-Type: application/octet-stream"], b"x" + T),
    "long": answer(b"200 OK", [b"Content-Type: text/html"],
                   b"<p>" + T + b"</p>" + b"y" * (SMALL_BODY + 10)),
    "no-content": answer(b"204 No Content", [b"X-A: 1"], b"", length=False),
    "not-modified": answer(b"304 Not Modified", [b"Content-Type: text/html", b"Etag: \"e\""],
                           b"", length=False),
    "headers": answer(b"201 Created", [
        b"Content-Type: text/plain", b"Set-Cookie: a=1; Path=/", b"X-Dup: 1",
        b"Set-Cookie: b=2; Domain=evil.example", b"Set-Cookie: ipydoc-session=planted",
        b"Connection: X-Private", b"X-Private: secret", b"Keep-Alive: timeout=5",
        b"Proxy-Thing: x", b"Service-Worker-Allowed: /", b"X-Dup: 2", b"X-Empty: "],
        b"created"),
    "tornado": answer(b"200 OK", [
        b"Server: TornadoServer/6.6.1", b"Content-Type: application/json",
        b"Date: Tue, 01 Dec 2026 22:52:37 GMT", b"X-Content-Type-Options: nosniff",
        b"Content-Security-Policy: frame-ancestors 'self'; default-src 'none'",
        b"Access-Control-Allow-Origin: ", b'Etag: "14f4c3060eed8403aed29684ce3ec982cc9240b4"',
        b"Set-Cookie: username-x=\"2|1:0|10:1796165557|" + b"e" * 300
        + b'"; expires=Thu, 31 Dec 2026 22:52:37 GMT; HttpOnly; Path=/user/alice/'],
        b'{"connections": 0, "kernels": 0}'),
    "odd-names": answer(b"299", [
        b"content-type: text/plain", b"ETAG: x", b"content-md5: abc", b"www-authenticate: B",
        b"X-XSS-Protection: 0", b"x-lower-case: 1"], b"odd"),
    "hop-by-hop": answer(b"200 OK", [
        b"Keep-Alive: timeout=5", b"Content-Type: text/plain", b"Proxy-Thing: x",
        b"Trailer: X-T", b"Upgrade: h2c", b"Service-Worker-Allowed: /",
        b"Set-Cookie: d=1; Domain=evil.example"], b"dropped"),
    "server-hsts": answer(b"200 OK", [b"Strict-Transport-Security: max-age=1",
                                      b"Content-Type: text/plain"], b"hsts"),
    "token-in-cookie": answer(b"200 OK", [b"Set-Cookie: t=" + T], b"{}"),
    "closing": answer(b"500 Internal Server Error",
                      [b"Content-Type: text/plain", b"Connection: close"], b"broke " + T),
    # heads a backend connection does not keep (backend._HEAD_KEPT, _HEADERS_KEPT)
    "many-lines": answer(b"200 OK", [b"X-N%d: %d" % (i, i) for i in range(40)], b"many"),
    "big-head": answer(b"200 OK", [b"Content-Type: text/plain", b"X-Big: " + b"b" * 2100],
                       b"big"),
}
#: The answers whose head is parsed for every answer: too big to keep, or the server
#: closes the connection after it.
NOT_KEPT = {"many-lines", "big-head", "closing"}

#: Header lines random answers are made of: names in any case, hop-by-hop ones, cookies
#: the proxy must drop or make ``Secure``, the server's own HSTS, the token.
_POOL = [
    b"Content-Type: text/plain", b"content-type: application/json", b"ETAG: \"v1\"",
    b"Server: S", b"Date: Tue, 01 Dec 2026 22:52:37 GMT", b"X-Frame-Options: DENY",
    b"Cache-Control: no-store", b"x-thing:  spaced  ", b"WWW-Authenticate: Basic",
    b"Keep-Alive: timeout=5", b"Proxy-Foo: 1", b"Upgrade: h2c", b"Trailer: X-T",
    b"Set-Cookie: a=1; Path=/", b"Set-Cookie: s=2; Domain=evil.example",
    b"Set-Cookie: __Host-ipydoc-session=planted", b"set-cookie: b=3; Secure",
    b"Service-Worker-Allowed: /", b"Strict-Transport-Security: max-age=1",
    b"Connection: X-Thing", b"X-Echo: " + T, b"Access-Control-Allow-Origin: ",
]
_random = random.Random(20261201)
for _n in range(24):
    ANSWERS[f"random-{_n}"] = answer(
        _random.choice([b"200 OK", b"201 Created", b"404 Not Found", b"299"]),
        _random.sample(_POOL, _random.randint(0, 9)),
        _random.choice([b"", b"{}", b"body " + T, b"z" * 300]))


class ScriptedBackend(ThreadedServer):
    """Answers ``/user/alice/<mode>/<name>`` with ``ANSWERS[name]``: in one ``sendall``
    (mode ``whole``) or a few bytes at a time with pauses (``pieces``: several reads)."""

    def serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                while reader.readline() not in (b"\r\n", b""):
                    pass
                _, mode, name = line.split(b" ")[1].rsplit(b"/", 2)
                data = ANSWERS[name.decode()]
                if line.startswith(b"HEAD "):  # the head alone, its Content-Length kept
                    data = data[:data.index(b"\r\n\r\n") + 4]
                if mode == b"whole":
                    conn.sendall(data)
                else:
                    for i in range(0, len(data), 7 if len(data) < 1000 else 30000):
                        conn.sendall(data[i:i + (7 if len(data) < 1000 else 30000)])
                        time.sleep(0.002)
                if b"Connection: close" in data:
                    return
        except OSError:
            return
        finally:
            conn.close()


class Gate:
    observed_methods = frozenset({b"PUT"})

    def __init__(self, backend: str) -> None:
        self.backend = backend

    def claims(self, request) -> bool:
        return request.path.startswith(b"/user/")

    async def decide(self, request):
        return Forward("alice", self.backend, TOKEN)

    def saw_traffic(self, user: str) -> None:
        pass

    def saw_response(self, user, method, path, code) -> None:
        pass


#: What :meth:`LeanRequest.respond_lines` returned, per request path (one pass or not).
ONE_PASS: dict[bytes, bool] = {}


@pytest.fixture
def one_pass(monkeypatch):
    """Records whether each answer took the one-pass way (the method itself runs)."""
    real = LeanRequest.respond_lines

    def recorded(self, *args, **kwargs):
        done = real(self, *args, **kwargs)
        ONE_PASS[self.path] = done
        return done

    ONE_PASS.clear()
    monkeypatch.setattr(LeanRequest, "respond_lines", recorded)
    return ONE_PASS


@pytest_twisted.async_yield_fixture(params=["http", "https"])
async def site_port(request, one_pass):
    """The lean front end; ``https``: behind TLS (cookies made ``Secure``, HSTS added)."""
    backend = ScriptedBackend()
    site = make_site(Resource(), Gate(backend.url), reactor, front_end="lean",
                     access_log="off")
    if request.param == "https":
        site.forwarding = Forwarding.from_settings([], "https://hub.example")
        site.use_hsts(b"max-age=63072000")
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    yield port.getHost().port
    await port.stopListening()
    await site.proxy.close()
    backend.close()


def exchange(port: int, method: bytes, path: bytes) -> bytes:
    """Everything the client gets for one request (the connection closes after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"%s %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n" % (method, path))
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got


def dechunked(response: bytes) -> bytes:
    """A chunked answer with its chunks joined (where they are cut follows the reads)."""
    head, _, body = response.partition(b"\r\n\r\n")
    if b"\r\nTransfer-Encoding: chunked" not in head:
        return response
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n"
            return head + b"\r\n\r\n[dechunked]" + out
        out, body = out + body[:size], body[size + 2:]


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", sorted(ANSWERS))
@pytest.mark.parametrize("method", [b"GET", b"HEAD", b"PUT"])
async def test_an_answer_whole_or_in_pieces_reaches_the_client_alike(site_port, name, method):
    whole = await threads.deferToThread(
        exchange, site_port, method, b"/user/alice/whole/" + name.encode())
    pieces = await threads.deferToThread(
        exchange, site_port, method, b"/user/alice/pieces/" + name.encode())
    assert whole.startswith(b"HTTP/1.1 ")
    assert dechunked(whole) == dechunked(pieces)
    assert T not in whole or name == "binary"


@pytest_twisted.ensureDeferred
async def test_the_short_way_answers_what_the_usual_way_would(site_port, request):
    """The shapes above, checked for what they say (not only for being alike)."""
    https = request.node.callspec.params["site_port"] == "https"
    got = await threads.deferToThread(exchange, site_port, b"GET",
                                      b"/user/alice/whole/headers")
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 201 Created" and body == b"created"
    assert [x for x in lines if x.startswith(b"Set-Cookie")] == [
        b"Set-Cookie: a=1; Path=/; Secure" if https else b"Set-Cookie: a=1; Path=/"]
    assert b"X-Dup: 1" in lines and b"X-Dup: 2" in lines
    for gone in (b"X-Private", b"Keep-Alive", b"Proxy-Thing", b"Service-Worker-Allowed"):
        assert not any(x.startswith(gone) for x in lines)
    got = await threads.deferToThread(exchange, site_port, b"GET",
                                      b"/user/alice/whole/scrubbed")
    assert got.endswith(b"\r\n\r\nbefore  after") and b"Content-Length: 13\r\n" in got
    got = await threads.deferToThread(exchange, site_port, b"GET", b"/user/alice/whole/long")
    assert b"Transfer-Encoding: chunked\r\n" in got and b"Content-Length" not in got


@pytest_twisted.ensureDeferred
async def test_common_answers_take_one_pass_and_the_rest_the_usual_way(site_port, one_pass):
    """Which answers the one-pass way takes: it must be taken (else the comparison above
    proves nothing about it), and declined where its bytes would differ."""
    for name in ANSWERS:
        await threads.deferToThread(exchange, site_port, b"GET",
                                    b"/user/alice/whole/" + name.encode())
    taken = {path.rsplit(b"/", 1)[1].decode() for path, done in one_pass.items() if done}
    taken = {name for name in taken if not name.startswith("random-")}
    assert taken == {"plain", "no-content", "not-modified", "tornado", "odd-names",
                     "hop-by-hop", "many-lines", "big-head"}


def kept_alive(port: int, paths: list[bytes]) -> list[bytes]:
    """The answers to ``paths``, asked one after the other on one kept-alive connection
    (each answer framed by its ``Content-Length``)."""
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        reader = s.makefile("rb")
        for path in paths:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\n\r\n" % path)
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += reader.readline()
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            got.append(head + reader.read(length))
    return got


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("name", ["tornado", "plain", "odd-names", "hop-by-hop"])
async def test_on_a_kept_alive_connection_one_pass_answers_alike(site_port, one_pass, name,
                                                                 request):
    https = request.node.callspec.params["site_port"] == "https"
    paths = [b"/user/alice/whole/" + name.encode(), b"/user/alice/pieces/" + name.encode()]
    whole, pieces = await threads.deferToThread(kept_alive, site_port, paths)
    assert one_pass[paths[0]] is True and b"Connection" not in whole
    assert (b"\r\nStrict-Transport-Security: max-age=63072000\r\n" in whole) is https
    assert whole == pieces


def _in_turn_paths(name: str) -> list[tuple[bytes, bytes]]:
    """GET, GET, HEAD, HEAD, GET of an answer (a few also in pieces)."""
    modes = (b"whole", b"pieces") if name in ("tornado", "headers") else (b"whole",)
    return [(method, b"/user/alice/%s/%s" % (mode, name.encode()))
            for method in (b"GET", b"GET", b"HEAD", b"HEAD", b"GET") for mode in modes]


def _in_turn(port: int, names: list[str]) -> list[bytes]:
    """:func:`_in_turn_paths` of each answer in turn: the backend connection (pooled)
    gets the same head again and again, and other heads between."""
    return [dechunked(exchange(port, method, path))
            for name in names for method, path in _in_turn_paths(name)]


@pytest_twisted.ensureDeferred
async def test_a_head_parsed_before_on_the_connection_answers_as_parsed_afresh(
        site_port, monkeypatch):
    """A backend connection keeps its last head's parse (and the client's lines made from
    it) for the same bytes again: the client gets exactly what parsing afresh gives."""
    from ipydoc.proxy import backend

    parsed = []
    real = backend.parse_head

    def counted(raw, no_body):
        parsed.append(raw)
        return real(raw, no_body)

    monkeypatch.setattr(backend, "parse_head", counted)
    names = sorted(ANSWERS)
    kept = backend._HEAD_KEPT
    monkeypatch.setattr(backend, "_HEAD_KEPT", -1)  # nothing kept: every head parsed
    afresh = await threads.deferToThread(_in_turn, site_port, names)
    assert len(parsed) == len(afresh)
    monkeypatch.setattr(backend, "_HEAD_KEPT", kept)
    parsed.clear()
    again = await threads.deferToThread(_in_turn, site_port, names)
    assert again == afresh
    heads = {ANSWERS[name].partition(b"\r\n\r\n")[0]: name for name in names}
    times = {name: 0 for name in names}
    for raw in parsed:
        times[heads[raw]] += 1
    asked = {name: len(_in_turn_paths(name)) for name in names}
    for name in names:  # the same head again, for the same method, was not parsed again
        assert (times[name] == asked[name]) is (name in NOT_KEPT), name
