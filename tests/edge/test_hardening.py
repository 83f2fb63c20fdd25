"""Hardened proxying: ambiguous requests, size caps, slow clients, memory under pressure.

The site and proxy run in a process of their own (tests/proxy_in_a_process.py, with short
timeouts) in front of the stdlib backend (tests/stand_in_backend.py), which counts the
requests it gets: a refused request must never add to that count.  Requests are raw bytes
on a socket, since every client library would refuse to send most of them.  The last
tests run the real daemon to show the configuration keys reach the listener.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
import requests
import websocket

from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict

from stand_in_backend import BLOCK, spawn, stop
from support import Daemon, peak_rss

LIMITS = {"header_timeout": 1.5, "body_timeout": 1.5, "idle_timeout": 30.0,
          "send_timeout": 3.0, "max_headers": 50, "max_header_size": 8192}
#: Allowed growth of the proxy's peak RSS while a side stops reading.
MAX_GROWTH = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def servers():
    backend, bport = spawn("stand_in_backend.py")
    backend_url = f"http://127.0.0.1:{bport}"
    proxy, pport = spawn("proxy_in_a_process.py", backend_url, json.dumps(LIMITS))
    assert requests.get(f"http://127.0.0.1:{pport}/user/alice/echo", timeout=10).ok
    yield pport, backend_url, proxy.pid
    stop(proxy)
    stop(backend)


def stats(backend_url: str) -> dict:
    return requests.get(backend_url + "/_stats", timeout=10).json()


def exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``raw``; everything read until EOF (closed=True) or ``timeout`` of silence."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(timeout)
        s.sendall(raw)
        out = b""
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return out, True
                out += data
        except (TimeoutError, ConnectionResetError):
            return out, False


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.") else 0


POST = b"POST /user/alice/echo HTTP/1.1\r\nHost: x\r\n"
GET = b"GET /user/alice/echo HTTP/1.1\r\nHost: x\r\n"
TE = b"Transfer-Encoding: chunked\r\n"

REFUSED = [
    ("CL and TE", POST + b"Content-Length: 5\r\n" + TE + b"\r\n0\r\n\r\n", 400),
    ("TE and CL", POST + TE + b"Content-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("duplicate CL, same", POST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("duplicate CL, different", POST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400),
    ("CL list", POST + b"Content-Length: 5, 5\r\n\r\nhello", 400),
    ("CL with sign", POST + b"Content-Length: +5\r\n\r\nhello", 400),
    ("CL with inner space", POST + b"Content-Length: 5 5\r\n\r\nhello", 400),
    ("CL beyond 63 bits", POST + b"Content-Length: 99999999999999999999999\r\n\r\nhello", 400),
    ("chunk size garbage", POST + TE + b"\r\nzz\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size 0x", POST + TE + b"\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size negative", POST + TE + b"\r\n-5\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk size overflow", POST + TE + b"\r\n" + b"f" * 24 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk without CRLF after data", POST + TE + b"\r\n5\r\nhelloXX0\r\n\r\n", 400),
    ("chunk lines with bare LF", POST + TE + b"\r\n5\nhello\n0\n\n", 400),
    ("chunk extension flood", POST + TE + b"\r\n5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n", 400),
    ("chunk extension with NUL", POST + TE + b"\r\n5;a\x00b\r\nhello\r\n0\r\n\r\n", 400),
    ("TE gzip, chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("TE chunked, identity", POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400),
    ("TE identity", POST + b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello", 400),
    ("TE xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    ("TE twice", POST + TE + TE + b"\r\n0\r\n\r\n", 400),
    ("TE on HTTP/1.0", b"POST /user/alice/echo HTTP/1.0\r\nHost: x\r\n" + TE
     + b"\r\n5\r\nhello\r\n0\r\n\r\n", 400),
    ("space before colon", POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", GET + b"X-A: one\r\n two\r\n\r\n", 400),
    ("obs-fold TE", POST + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 400),
    ("space in header name", GET + b"X A: one\r\n\r\n", 400),
    ("NUL in value", GET + b"X-A: o\x00ne\r\n\r\n", 400),
    ("CR in value", GET + b"X-A: o\rne\r\n\r\n", 400),
    ("bare LF between headers", GET + b"X-A: one\nX-B: two\r\n\r\n", 400),
    ("first header line folded", b"GET /user/alice/echo HTTP/1.1\r\n Host: x\r\n\r\n", 400),
    ("absolute-form", b"GET http://x/user/alice/echo HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("authority-form", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("no Host", b"GET /user/alice/echo HTTP/1.1\r\n\r\n", 400),
    ("two Hosts", GET + b"Host: y\r\n\r\n", 400),
    ("HTTP/0.9", b"GET /user/alice/echo\r\n\r\n", 400),
    ("HTTP/2.0 line", b"GET /user/alice/echo HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    ("space in target", b"GET /user/alice/e cho HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("huge header line", GET + b"X-A: " + b"a" * 20000 + b"\r\n\r\n", 431),
    ("head over max_header_size", GET + b"X-A: " + b"a" * 4000 + b"\r\nX-B: " + b"b" * 4500
     + b"\r\n\r\n", 431),
    ("too many headers", GET + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n", 431),
    ("smuggled request after CL+CL", POST + b"Content-Length: 0\r\nContent-Length: 44\r\n\r\n"
     + GET + b"\r\n", 400),
]


@pytest.mark.parametrize("raw, code", [pytest.param(r, c, id=n) for n, r, c in REFUSED])
def test_ambiguous_or_oversized_request_is_refused_and_never_forwarded(servers, raw, code):
    port, backend_url, _ = servers
    before = stats(backend_url)["requests"]
    response, closed = exchange(port, raw)
    assert status_of(response) == code, response[:200]
    assert closed, "the connection stays open after a refused request"
    assert len(re.findall(rb"(?:^|\n)HTTP/1\.1 \d{3} ", response)) == 1, \
        "a second (smuggled) request was answered"
    assert b"Traceback" not in response
    assert stats(backend_url)["requests"] == before


@pytest.mark.parametrize("raw", [
    pytest.param(POST + b"Content-Length: 5\r\n\r\nhello", id="content-length"),
    pytest.param(POST + TE + b"\r\n2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\n\r\n", id="chunked"),
    pytest.param(POST + b"Transfer-Encoding: Chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                 id="chunked in capitals"),
    pytest.param(POST + b"Content-Length: 0005\r\n\r\nhello", id="leading zeros"),
])
def test_well_formed_bodies_still_pass(servers, raw):
    port, backend_url, _ = servers
    before = stats(backend_url)["requests"]
    response, _ = exchange(port, raw + GET + b"Connection: close\r\n\r\n")
    assert response.count(b"HTTP/1.1 200 OK") == 2, response[:300]
    first = json.loads(response.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1", 1)[0])
    assert first["length"] == 5
    assert stats(backend_url)["requests"] == before + 2


def test_bad_chunk_mid_upload_closes_and_aborts_the_backend(servers):
    port, backend_url, _ = servers
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(10)
        s.sendall(b"POST /user/alice/upload HTTP/1.1\r\nHost: x\r\n" + TE + b"\r\n"
                  + b"10000\r\n" + b"x" * 0x10000 + b"\r\n")
        # The backend is reading this upload before the bad chunk arrives.
        deadline = time.monotonic() + 10
        while stats(backend_url)["upload_progress"] < 0x10000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stats(backend_url)["upload_progress"] == 0x10000
        s.sendall(b"nonsense\r\n")
        out = b""
        while data := s.recv(65536):
            out += data
    assert status_of(out) == 400
    # The backend saw a body cut short and answered nothing: progress stops at the good chunk.
    assert stats(backend_url)["upload_progress"] == 0x10000


def test_slowloris_head_is_cut_off_at_the_header_timeout(servers):
    port, _, _ = servers
    head = GET + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(0.2)
        out, sent = b"", 0
        for byte in head:  # one byte every 0.1 s keeps any idle timer happy
            try:
                s.send(bytes([byte]))
            except OSError:
                break
            sent += 1
            try:
                out += s.recv(65536)
            except TimeoutError:
                continue
            if out:
                break
    assert sent < len(head), "the whole trickled head was accepted"
    assert status_of(out) == 408


def test_stalled_body_is_cut_off_and_the_backend_request_aborted(servers):
    port, backend_url, _ = servers
    before = stats(backend_url)
    response, closed = exchange(port, POST + b"Content-Length: 100\r\n\r\nonly a part", 10)
    assert status_of(response) == 408 and closed
    after = stats(backend_url)
    assert after["requests"] == before["requests"] + 1  # it was being forwarded ...
    response, _ = exchange(port, GET + b"Connection: close\r\n\r\n")
    assert status_of(response) == 200  # ... and the backend is free for the next one


def test_waiting_for_a_slow_backend_is_not_a_slow_client(servers):
    """The proxy pauses the client while the backend does not read; that is not a stall."""
    port, _, _ = servers
    body = b"y" * (8 * 1024 * 1024)  # far more than socket buffers hold
    r = requests.post(f"http://127.0.0.1:{port}/user/alice/upload?wait=4", data=body,
                      timeout=60)
    assert r.status_code == 200
    assert r.json()["length"] == len(body)


def test_client_that_stops_reading_a_download_is_bounded_then_dropped(servers):
    port, backend_url, pid = servers
    size = 400 * 1024 * 1024
    before_rss, before = peak_rss(pid), stats(backend_url)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /user/alice/download?size=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        s.settimeout(10)
        assert s.recv(1024).startswith(b"HTTP/1.1 200")
        # Read nothing more: the backend must be held back, not buffered in the proxy,
        # and after send_timeout the proxy gives up on this client.
        s.settimeout(30)
        deadline = time.monotonic() + 30
        while stats(backend_url)["downloads_aborted"] == before["downloads_aborted"]:
            assert time.monotonic() < deadline, "the non-reading client was never dropped"
            time.sleep(0.2)
    growth = peak_rss(pid) - before_rss
    assert growth < MAX_GROWTH, f"proxy peak RSS grew by {growth >> 20} MiB"
    assert stats(backend_url)["downloads_completed"] == before["downloads_completed"]


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/user/alice/ws"


def test_websocket_client_not_reading_holds_the_backend_back(servers):
    port, _, pid = servers
    before = peak_rss(pid)
    ws = websocket.create_connection(ws_url(port), timeout=10)
    ws.recv()  # the hello
    ws.send("flood:300")  # 300 MiB towards a client that reads nothing for a while
    time.sleep(3)
    growth = peak_rss(pid) - before
    got = 0
    while got < 300 * len(BLOCK):
        got += len(ws.recv())
    ws.close()
    assert got == 300 * len(BLOCK)
    assert growth < MAX_GROWTH, f"proxy peak RSS grew by {growth >> 20} MiB"


def test_websocket_backend_not_reading_holds_the_client_back(servers):
    """The echo backend blocks writing to a client that does not read, so it stops
    reading too: the client's sends must then block, not pile up in the proxy."""
    port, _, pid = servers
    before = peak_rss(pid)
    ws = websocket.create_connection(ws_url(port), timeout=10)
    ws.recv()
    ws.sock.settimeout(3)
    sent, limit = 0, 512 * len(BLOCK)
    try:
        while sent < limit:
            ws.send_binary(BLOCK)
            sent += len(BLOCK)
    except (TimeoutError, websocket.WebSocketTimeoutException):
        pass
    ws.sock.close()
    growth = peak_rss(pid) - before
    assert sent < limit, "512 MiB went in with nobody reading"
    assert growth < MAX_GROWTH, f"proxy peak RSS grew by {growth >> 20} MiB"


@pytest.mark.parametrize("section, key, value", [
    ("server", "client_header_timeout", 0), ("server", "client_body_timeout", -1),
    ("server", "client_idle_timeout", 0), ("server", "client_send_timeout", 0),
    ("server", "max_header_size", 100), ("server", "max_headers", 0),
    ("proxy", "backend_connect_timeout", 0), ("proxy", "backend_response_timeout", -5),
])
def test_bad_limit_values_name_the_key(section, key, value):
    with pytest.raises(ConfigError, match=f"{section}.{key} must be"):
        from_dict({section: {key: value}})


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("hardening"), overrides={
        "server": {"client_header_timeout": 1.0, "max_headers": 20}})
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


def test_daemon_applies_the_configured_limits(daemon):
    port = daemon.port
    head = b"GET /hub/login HTTP/1.1\r\nHost: x\r\n"
    many = head + b"".join(b"X-%d: 1\r\n" % i for i in range(25)) + b"\r\n"
    response, closed = exchange(port, many)
    assert status_of(response) == 431 and closed
    response, closed = exchange(port, head + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx")
    assert status_of(response) == 400 and closed
    # A head that never finishes: 408 from the configured 1 s header timeout, unprompted.
    response, closed = exchange(port, head + b"X-Never: ", timeout=20)
    assert status_of(response) == 408 and closed
    assert requests.get(daemon.url + "/hub/login", timeout=10).status_code == 200
