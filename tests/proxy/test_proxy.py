"""The site and proxy, in-process, against a real (stdlib) backend over real sockets.

The gate is a fake: the proxy is under test, not authentication.  Clients are
``requests``/``websocket-client``/raw sockets run in threads, so the reactor keeps
serving while they block.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time

import pytest
import pytest_twisted
import requests
import websocket
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.resource import Resource

from ipydoc.edge.site import make_site
from ipydoc.proxy.gate import Forward, Reply

from stand_in_backend import pattern, spawn, stop
from support import closed_port

TOKEN = "secret-token-value"


class FakeGate:
    """alice is forwarded, bob is refused, 'down' points at a closed port."""

    def __init__(self, backend: str, down: str) -> None:
        self.backend, self.down = backend, down
        self.traffic: list[str] = []
        self.responses: list[tuple[str, bytes, bytes, int]] = []
        self.decided = 0
        self.bodies: list[tuple[bytes, bytes | None]] = []

    def claims(self, request) -> bool:
        return request.path.startswith(b"/user/")

    async def decide(self, request):
        self.decided += 1
        await deferLater(reactor, 0.01)  # a real gate asks Redis: be asynchronous
        user = request.path.split(b"/")[2].decode()
        if user == "alice":
            return Forward("alice", self.backend, TOKEN)
        if user == "down":
            return Forward("down", self.down, TOKEN)
        if user == "boom":
            raise RuntimeError("the gate broke")
        return Reply(403, b"not yours\n", headers={"X-Gate": "said-no"})

    def saw_traffic(self, user: str) -> None:
        self.traffic.append(user)

    def saw_response(self, user: str, method: bytes, path: bytes, code: int) -> None:
        self.responses.append((user, method, path, code))

    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        return method == b"PATCH"

    def saw_body(self, user: str, method: bytes, path: bytes, code: int, body) -> None:
        self.bodies.append((path, body))


@pytest.fixture(scope="module")
def backend():
    proc, port = spawn("stand_in_backend.py")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


class Hub(Resource):
    isLeaf = True

    def render(self, request):
        return b"hub:" + request.content.read()


async def _listen(gate, **kw):
    site = make_site(Hub(), gate, reactor, **kw)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    return site, port


@pytest_twisted.async_yield_fixture
async def proxy(backend):
    gate = FakeGate(backend, f"http://127.0.0.1:{closed_port()}")
    site, port = await _listen(gate)
    yield f"http://127.0.0.1:{port.getHost().port}", gate
    await port.stopListening()
    await site.proxy.close()


def stats(backend: str) -> dict:
    return requests.get(backend + "/_stats", timeout=10).json()


def in_thread(f, *a, **kw) -> Deferred:
    return threads.deferToThread(f, *a, **kw)


def headers_of(echo: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in echo["headers"]:
        out.setdefault(k, []).append(v)
    return out


# -- HTTP ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_request_headers_rewritten(proxy, backend):
    url, gate = proxy
    r = await in_thread(
        requests.get,
        url + "/user/alice/echo?x=1&y=%2F",
        headers={
            "Host": "notebooks.example.org",
            "Authorization": "Bearer from-the-browser",
            "Cookie": "ipydoc-session=hub-secret; _xsrf=keep-me; ipydoc-csrf=x; "
                      "__Host-ipydoc-session=hub-secret",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "Keep-Alive": "300",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Forwarded-For": "10.1.2.3",
            "X-Custom": "kept",
        },
        timeout=10,
    )
    assert r.status_code == 200
    echo = r.json()
    h = headers_of(echo)
    assert echo["path"] == "/user/alice/echo?x=1&y=%2F"
    assert h["authorization"] == ["token " + TOKEN]
    assert h["cookie"] == ["_xsrf=keep-me"]
    assert h["host"] == ["notebooks.example.org"]
    assert h["x-custom"] == ["kept"]
    for gone in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert gone not in h, gone
    assert h.get("connection", ["keep-alive"]) == ["keep-alive"]  # added by the pool only
    # the client's own X-Forwarded-For is not believed, nor passed on (no trusted proxy)
    assert h["x-forwarded-for"] == ["127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["notebooks.example.org"]
    assert h["x-forwarded-port"] == [url.rsplit(":", 1)[1]]
    assert gate.traffic == ["alice"]
    assert gate.responses == [("alice", b"GET", b"/user/alice/echo", 200)]


@pytest_twisted.ensureDeferred
async def test_response_passes_with_status_cookies_and_no_hop_headers(proxy):
    url, _ = proxy
    r = await in_thread(requests.get, url + "/user/alice/cookies", timeout=10)
    assert (r.status_code, r.reason) == (201, "Made It")
    assert r.raw.headers.getlist("Set-Cookie") == [  # Domain cookies dropped: no tossing
        "a=1; Path=/user/alice/",
        "b=2; Path=/user/alice/; HttpOnly",
    ]
    assert r.headers["X-Kept"] == "yes"
    assert r.headers["Content-Length"] == "8" and r.content == b"cookies!"
    for gone in ("X-Hop-Secret", "Keep-Alive", "Proxy-Authenticate"):
        assert gone not in r.headers, gone

    r = await in_thread(requests.get, url + "/user/alice/chunked", timeout=10)
    assert r.content == b"hello chunked world"

    r = await in_thread(requests.head, url + "/user/alice/echo", timeout=10)
    assert r.status_code == 200 and r.content == b""


@pytest_twisted.ensureDeferred
async def test_token_is_scrubbed_from_pages(proxy):
    url, gate = proxy
    r = await in_thread(requests.get, url + "/user/alice/page", timeout=30)
    assert r.status_code == 200
    assert TOKEN not in r.text
    assert 'data-jupyter-api-token=""' in r.text and '"token": ""' in r.text
    assert r.text.count("x") >= 70_000


@pytest_twisted.ensureDeferred
async def test_post_bodies_content_length_and_chunked(proxy):
    url, gate = proxy
    data = os.urandom(3 * 1024 * 1024 + 17)
    r = await in_thread(requests.post, url + "/user/alice/echo", data=data, timeout=30)
    echo = r.json()
    assert (echo["length"], echo["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert headers_of(echo)["content-length"] == [str(len(data))]

    def chunks():
        for i in range(0, len(data), 100_000):
            yield data[i : i + 100_000]

    r = await in_thread(requests.put, url + "/user/alice/echo", data=chunks(), timeout=30)
    echo = r.json()
    assert echo["method"] == "PUT"
    assert (echo["length"], echo["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert headers_of(echo)["transfer-encoding"] == ["chunked"]

    r = await in_thread(requests.post, url + "/user/alice/echo", data=b"", timeout=10)
    assert r.json()["length"] == 0
    assert [c for *_, c in gate.responses] == [200, 200, 200]


@pytest_twisted.ensureDeferred
async def test_expect_continue_is_sent_once_the_backend_wants_the_body(proxy):
    url, _ = proxy
    port = int(url.rsplit(":", 1)[1])

    def talk() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(
                b"POST /user/alice/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            first = s.recv(100)
            s.sendall(b"hello")
            rest = b""
            while b'"length": 5' not in rest:
                chunk = s.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return first + rest

    got = await in_thread(talk)
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b'"expect"' not in got


@pytest_twisted.ensureDeferred
async def test_gate_reply_never_reaches_the_backend(proxy, backend):
    url, gate = proxy
    before = (await in_thread(stats, backend))["requests"]
    r = await in_thread(requests.get, url + "/user/bob/echo", timeout=10)
    assert (r.status_code, r.text, r.headers["X-Gate"]) == (403, "not yours\n", "said-no")
    r = await in_thread(
        requests.post, url + "/user/bob/echo", data=os.urandom(200_000), timeout=10
    )
    assert r.status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        await in_thread(websocket.create_connection, url.replace("http", "ws") + "/user/bob/ws")
    assert e.value.status_code == 403
    assert (await in_thread(stats, backend))["requests"] == before
    assert gate.decided == 3 and gate.traffic == [] and gate.responses == []


@pytest_twisted.ensureDeferred
async def test_backend_down_is_a_short_502(proxy):
    url, gate = proxy
    r = await in_thread(requests.get, url + "/user/down/api/contents", timeout=10)
    assert r.status_code == 502
    assert r.headers["Content-Type"] == "application/json"
    assert "not answering" in r.json()["message"]
    r = await in_thread(requests.post, url + "/user/down/lab", data=b"x" * 500_000, timeout=10)
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "Traceback" not in r.text and len(r.text) < 200
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        await in_thread(websocket.create_connection, url.replace("http", "ws") + "/user/down/ws")
    assert e.value.status_code == 502


@pytest_twisted.ensureDeferred
async def test_gate_failure_is_a_short_500(proxy):
    url, _ = proxy
    r = await in_thread(requests.get, url + "/user/boom/tree", timeout=10)
    assert r.status_code == 500
    assert "Traceback" not in r.text and "the gate broke" not in r.text
    r = await in_thread(requests.get, url + "/user/alice/echo", timeout=10)
    assert r.status_code == 200  # and the site carries on


@pytest_twisted.ensureDeferred
async def test_slow_backend_is_a_504(backend):
    gate = FakeGate(backend, backend)
    site, port = await _listen(gate, head_timeout=0.5)
    try:
        url = f"http://127.0.0.1:{port.getHost().port}"
        t0 = time.monotonic()
        r = await in_thread(requests.get, url + "/user/alice/api/sleep?s=3", timeout=10)
        assert r.status_code == 504 and "too long" in r.json()["message"]
        assert time.monotonic() - t0 < 2.5
    finally:
        await port.stopListening()
        await site.proxy.close()


@pytest_twisted.ensureDeferred
async def test_client_leaving_mid_download_aborts_the_backend(proxy, backend):
    url, _ = proxy
    before = await in_thread(stats, backend)

    def read_a_bit_and_leave() -> int:
        r = requests.get(url + "/user/alice/download?size=1000000000", stream=True, timeout=10)
        got = len(r.raw.read(2_000_000))
        r.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # really hang up
        r.close()
        return got

    assert await in_thread(read_a_bit_and_leave) == 2_000_000
    for _ in range(100):
        after = await in_thread(stats, backend)
        if after["downloads_aborted"] > before["downloads_aborted"]:
            break
        await deferLater(reactor, 0.1)
    assert after["downloads_aborted"] == before["downloads_aborted"] + 1
    assert after["downloads_completed"] == before["downloads_completed"]


@pytest_twisted.ensureDeferred
async def test_download_bytes_are_exact(proxy):
    url, _ = proxy
    size = 30_000_017

    def fetch() -> tuple[int, str]:
        h = hashlib.sha256()
        n = 0
        with requests.get(url + f"/user/alice/download?size={size}", stream=True, timeout=30) as r:
            for chunk in r.iter_content(1 << 20):
                h.update(chunk)
                n += len(chunk)
        return n, h.hexdigest()

    want = hashlib.sha256()
    for chunk in pattern(size):
        want.update(chunk)
    assert await in_thread(fetch) == (size, want.hexdigest())


# -- hub side -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_hub_routes_and_body_cap(proxy, backend):
    url, gate = proxy
    r = await in_thread(requests.get, url + "/", allow_redirects=False, timeout=10)
    assert (r.status_code, r.headers["Location"]) == (302, "/hub/")
    r = await in_thread(requests.get, url + "/elsewhere", timeout=10)
    assert r.status_code == 404
    r = await in_thread(requests.post, url + "/hub/login", data=b"abc", timeout=10)
    assert r.text == "hub:abc"

    def too_big(data):
        try:
            return requests.post(url + "/hub/login", data=data, timeout=10).status_code
        except requests.ConnectionError:
            return "reset"  # the 413 raced the rest of our upload

    assert await in_thread(too_big, b"x" * (1024 * 1024 + 1)) in (413, "reset")
    chunked = iter([b"x" * 600_000, b"y" * 600_000])
    assert await in_thread(too_big, chunked) in (413, "reset")
    assert gate.decided == 0


# -- WebSocket ------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_websocket_echo_both_ways(proxy):
    url, gate = proxy
    big = os.urandom(8 * 1024 * 1024)

    def session():
        ws = websocket.create_connection(
            url.replace("http", "ws") + "/user/alice/ws?session=1",
            cookie="ipydoc-session=hub-secret; _xsrf=keep",
            header=["Authorization: Bearer from-the-browser"],
            origin="http://127.0.0.1",
            timeout=20,
        )
        hello = json.loads(ws.recv())
        ws.send("héllo")
        text = ws.recv()
        ws.send_binary(big)
        echoed = ws.recv()
        ws.ping(b"p")
        ws.close()
        return hello, text, echoed

    hello, text, echoed = await in_thread(session)
    h = headers_of(hello)
    assert h["authorization"] == ["token " + TOKEN]
    assert h["cookie"] == ["_xsrf=keep"]
    assert h["upgrade"] == ["websocket"] and h["connection"] == ["Upgrade"]
    assert "sec-websocket-key" in h and h["origin"] == ["http://127.0.0.1"]
    assert text == "héllo"
    assert echoed == big
    assert gate.responses == [("alice", b"GET", b"/user/alice/ws", 101)]
    assert gate.traffic and set(gate.traffic) == {"alice"}


@pytest_twisted.ensureDeferred
async def test_websocket_refused_by_backend_is_relayed(proxy):
    url, gate = proxy
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        await in_thread(
            websocket.create_connection, url.replace("http", "ws") + "/user/alice/ws-refuse"
        )
    assert e.value.status_code == 403
    assert json.loads(e.value.resp_body) == {"message": "no websocket for you"}
    assert gate.responses == [("alice", b"GET", b"/user/alice/ws-refuse", 403)]


@pytest_twisted.ensureDeferred
async def test_websocket_close_crosses_both_ways(proxy, backend):
    url, _ = proxy
    ws_url = url.replace("http", "ws") + "/user/alice/ws"
    before = (await in_thread(stats, backend))["websockets_closed"]

    def client_hangs_up():
        ws = websocket.create_connection(ws_url, timeout=10)
        ws.recv()
        ws.sock.shutdown(socket.SHUT_RDWR)
        ws.sock.close()

    await in_thread(client_hangs_up)
    for _ in range(100):
        if (await in_thread(stats, backend))["websockets_closed"] > before:
            break
        await deferLater(reactor, 0.05)
    assert (await in_thread(stats, backend))["websockets_closed"] == before + 1

    def backend_hangs_up():
        ws = websocket.create_connection(ws_url, timeout=10)
        ws.recv()
        ws.send("close-now")
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            ws.recv()

    await in_thread(backend_hangs_up)


@pytest_twisted.ensureDeferred
async def test_small_bodies_that_arrive_with_the_headers(proxy):
    """A body complete before the backend connection is ready must still be sent once."""
    url, gate = proxy
    for i in range(30):
        data = b"x" * (i + 1)
        r = await in_thread(requests.post, url + "/user/alice/echo", data=data, timeout=30)
        assert r.status_code == 200
        assert r.json()["length"] == len(data)


@pytest_twisted.ensureDeferred
async def test_gate_sees_small_answers_it_asks_for(proxy):
    """A rename's answer reaches the gate (history needs its new path); big ones do not."""
    url, gate = proxy
    r = await in_thread(requests.patch, url + "/user/alice/echo?n=1", data=b"{}", timeout=30)
    assert r.status_code == 200
    path, body = gate.bodies[-1]
    assert path == b"/user/alice/echo" and body == r.content
    await in_thread(requests.patch, url + "/user/alice/echo", data=b"x" * 100_000, timeout=30)
    assert gate.bodies[-1][1] is not None  # the echo summary is small even for a big body
    r = await in_thread(requests.patch, url + "/user/alice/download?size=200000", timeout=30)
    assert r.status_code == 200 and len(r.content) == 200_000
    assert gate.bodies[-1] == (b"/user/alice/download", None)  # over 64 KiB: not kept
    await in_thread(requests.get, url + "/user/alice/echo", timeout=30)
    assert len(gate.bodies) == 3  # only what it asked for


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("mode", ["daemon", "file", "off"])
async def test_access_log_modes(backend, tmp_path, mode):
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []

    def observe(event):
        lines.append(formatEvent(event))

    path = tmp_path / "access.log"
    gate = FakeGate(backend, f"http://127.0.0.1:{closed_port()}")
    site, port = await _listen(gate, access_log=str(path) if mode == "file" else mode)
    url = f"http://127.0.0.1:{port.getHost().port}/user/alice/echo?code=one-time-secret&x=1"
    globalLogPublisher.addObserver(observe)
    try:
        r = await in_thread(requests.get, url, timeout=10)
        assert r.status_code == 200
        await port.stopListening()  # the batched log is written now, at the latest
        await site.proxy.close()
    finally:
        globalLogPublisher.removeObserver(observe)
    logged = [line for line in lines if "/user/alice/echo" in line]
    if mode == "file":
        logged = [line for line in path.read_text().splitlines() if "/user/alice/echo" in line]
    if mode == "off":
        assert logged == [] and not path.exists()
    else:
        assert len(logged) == 1 and "GET /user/alice/echo?code=...&x=1 HTTP/1.1\" 200" in logged[0]
        assert "one-time-secret" not in logged[0]
