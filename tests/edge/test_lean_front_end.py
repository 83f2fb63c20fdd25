"""The lean front end on its own: what it serves itself, connections that switch to
twisted.web, and its timeouts (one sweep instead of a timer per request)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from test_front_end_differential import SITE, EchoBackend

from ipydoc.edge.lean_head import HAND_OVER, INCOMPLETE, Head, read_head

OK = b"GET /user/alice/ HTTP/1.1\r\nHost: h\r\n"


@pytest.mark.parametrize("raw, verdict", [
    (OK + b"\r\n", "lean"),
    (b"POST /user/alice/x?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n", "lean"),
    (OK, INCOMPLETE),
    (b"GET /user/alice/ HTTP/1.0\r\nHost: h\r\n\r\n", HAND_OVER),
    (b"GET /user/alice/ HTTP/1.1\r\n\r\n", HAND_OVER),                      # no Host
    (OK + b"Host: h2\r\n\r\n", HAND_OVER),                                  # two Hosts
    (OK + b"X-A: 1\r\n b\r\n\r\n", HAND_OVER),                               # obs-fold
    (OK + b"X-A : 1\r\n\r\n", HAND_OVER),                                    # space before colon
    (OK + b"X-A: 1\n\r\n", HAND_OVER),                                       # bare LF
    (OK + b"X-A: 1\r2\r\n\r\n", HAND_OVER),                                  # bare CR
    (OK + b"X-A: \x00\r\n\r\n", HAND_OVER),                                  # NUL
    (OK + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n", HAND_OVER),
    (OK + b"Content-Length: +1\r\n\r\n", HAND_OVER),
    (OK + b"Content-Length: 1234567890123456789\r\n\r\n", HAND_OVER),       # 19 digits
    (OK + b"Transfer-Encoding: chunked\r\n\r\n", HAND_OVER),
    (OK + b"Expect: 100-continue\r\n\r\n", HAND_OVER),
    (OK + b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", HAND_OVER),
    (b"GET http://h/user/alice/ HTTP/1.1\r\nHost: h\r\n\r\n", HAND_OVER),   # absolute-form
    (b"GET /user/alice/\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", HAND_OVER),   # not ASCII
    (OK + b"X-Long: " + b"x" * 5000 + b"\r\n\r\n", HAND_OVER),               # head too large
    (OK + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n", HAND_OVER),
    (b"\r\n" + OK + b"\r\n", HAND_OVER),       # the empty line twisted.web skips once
])
def test_read_head_takes_only_the_plain_case(raw, verdict):
    got = read_head(raw, 4096, 30)
    if verdict == "lean":
        assert isinstance(got, Head) and got.size == raw.index(b"\r\n\r\n") + 4
        assert got.headers.getRawHeaders(b"host") == [b"h"]
    else:
        assert got == verdict


POST_A = b"POST /user/alice/a HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n"


def test_read_head_reuses_the_last_heads_headers_only_for_the_same_lines():
    first = read_head(POST_A, 4096, 30)
    assert isinstance(first, Head)
    same = read_head(b"PUT /user/bob/b?x=1 HTTP/1.1" + POST_A[POST_A.index(b"\r\n"):] + b"abc",
                     4096, 30, first)
    assert isinstance(same, Head) and same.headers is first.headers
    assert (same.method, same.uri, same.length, same.size) == (
        b"PUT", b"/user/bob/b?x=1", 3, len(POST_A) + len(b"PUT /user/bob/b?x=1") - len(
            b"POST /user/alice/a"))
    changed = read_head(POST_A.replace(b"X-A: 1", b"X-A: 2"), 4096, 30, first)
    assert isinstance(changed, Head) and changed.headers is not first.headers
    assert changed.headers.getRawHeaders(b"x-a") == [b"2"]
    assert first.headers.getRawHeaders(b"x-a") == [b"1"]


@pytest.mark.parametrize("request_line", [
    b"GET /user/alice/ HTTP/1.0", b"GET http://h/user/alice/ HTTP/1.1",
    b"GET /user/alice/\xc3\xa9 HTTP/1.1", b"G@T /user/alice/ HTTP/1.1", b"GET /user/alice/",
])
def test_a_reused_head_still_has_its_request_line_and_size_checked(request_line):
    first = read_head(POST_A, 4096, 30)
    raw = request_line + POST_A[POST_A.index(b"\r\n"):]
    assert read_head(raw, 4096, 30, first) == HAND_OVER
    assert read_head(POST_A, len(POST_A) - 1, 30, first) == HAND_OVER


def test_the_forwarding_head_reused_on_a_connection_is_each_users_own(lean_site):
    """One connection, the same header lines, several users: each request reaches the
    server with its user's token, exactly as it would on a connection of its own."""
    start, backend = lean_site
    port = start()
    paths = [b"/user/alice/a", b"/user/bob/b", b"/user/alice/c", b"/user/alice/d",
             b"/user/carol/e"]
    lines = b"Host: h\r\nCookie: ipydoc-session=s; _xsrf=x\r\nX-Case: %s\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        for path in paths:
            s.sendall(b"GET %s HTTP/1.1\r\n" % path + lines % b"shared")
            assert read_response(s)[0] == 200
        s.sendall(b"GET /user/alice/f HTTP/1.1\r\nAccept: x/y\r\n" + lines % b"shared")
        assert read_response(s)[0] == 200
    for path in [*paths, b"/user/alice/f"]:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            extra = b"Accept: x/y\r\n" if path.endswith(b"/f") else b""
            s.sendall(b"GET %s HTTP/1.1\r\n" % path + extra + lines % b"alone")
            assert read_response(s)[0] == 200
    shared, alone = backend.seen["shared"], backend.seen["alone"]
    def without_case(heads):
        return [[x for x in head if not x.startswith(b"X-Case:")] for head, _ in heads]
    assert without_case(shared) == without_case(alone)
    tokens = [next(x for x in head if x.startswith(b"Authorization:")) for head, _ in shared]
    assert tokens[0] == tokens[2] == tokens[3] == tokens[5] == b"Authorization: token secret-token"
    assert len({tokens[0], tokens[1], tokens[4]}) == 3
    assert all(b"ipydoc-session" not in x for head, _ in shared for x in head)


def site(backend: str, limits: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, SITE, backend, json.dumps(limits), "lean"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return proc, int(proc.stdout.readline())


@pytest.fixture
def lean_site():
    backend = EchoBackend()
    started = []

    def start(**limits: float) -> int:
        proc, port = site(backend.url, limits)
        started.append(proc)
        return port
    yield start, backend
    for proc in started:
        proc.terminate()
        proc.wait(10)
    backend.close()


def read_response(s: socket.socket) -> tuple[int, bytes]:
    """One response with a Content-Length: (status, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536)
    return int(head.split(b" ")[1]), body


def wait_closed(s: socket.socket, timeout: float = 20) -> bytes:
    s.settimeout(timeout)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return got
        got += chunk


def test_one_connection_goes_from_user_traffic_to_the_hub_and_on(lean_site):
    start, backend = lean_site
    port = start()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        for path, expect in [(b"/user/alice/one", b"path /user/alice/one"),
                             (b"/hub/page", b"hub page"),
                             (b"/user/alice/two", b"path /user/alice/two")]:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: h\r\nX-Case: switch\r\n\r\n" % path)
            code, body = read_response(s)
            assert (code, body.startswith(expect)) == (200, True), body
    assert [r[0][0] for r in backend.seen["switch"]] == [
        b"GET /user/alice/one HTTP/1.1", b"GET /user/alice/two HTTP/1.1"]


def test_a_slow_head_is_refused_with_408(lean_site):
    start, backend = lean_site
    port = start(header_timeout=1)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"GET /user/alice/ HTTP/1.1\r\nHost: h\r\n")
        got = wait_closed(s)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert got.endswith(b"The request head took too long to arrive.\n")


def test_a_stalled_body_is_refused_with_408_and_never_forwarded_whole(lean_site):
    start, backend = lean_site
    port = start(body_timeout=1)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST /user/alice/up HTTP/1.1\r\nHost: h\r\nX-Case: stall\r\n"
                  b"Content-Length: 10\r\n\r\nabc")
        got = wait_closed(s)
    assert got.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert got.endswith(b"The request body stopped arriving.\n")
    assert "stall" not in backend.seen


def test_an_idle_connection_is_closed_and_a_busy_one_is_not(lean_site):
    start, backend = lean_site
    port = start(idle_timeout=1)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        for _ in range(6):  # longer than the idle timeout in all, never idle that long
            s.sendall(b"GET /user/alice/ HTTP/1.1\r\nHost: h\r\n\r\n")
            assert read_response(s)[0] == 200
            time.sleep(0.25)
        began = time.monotonic()
        assert wait_closed(s) == b""
    assert time.monotonic() - began < 15
