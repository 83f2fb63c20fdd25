"""The lean front end against twisted.web's: the same requests, the same verdicts.

A few hundred seeded random and malformed requests (random methods, targets and headers;
``Content-Length``/``Transfer-Encoding`` combinations, obs-fold, bare LF and CR, over-long
lines and heads, too many headers, pipelined pairs, truncated bodies, heads sent in
pieces) go to two copies of the real site and proxy (tests/proxy_in_a_process.py), one
with ``front_end = "lean"`` and one with ``"twisted"``, each forwarding to its own echo
server.  For every case the bytes the client got back (every response, whole) and what
reached the echo server (each request's head and body) must be identical.
"""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import ThreadedServer

HERE = os.path.dirname(os.path.abspath(__file__))
SITE = os.path.join(HERE, "..", "proxy_in_a_process.py")
LIMITS = '{"header_timeout": 30, "body_timeout": 30, "max_header_size": 4096, "max_headers": 30}'
CASES = 400
SEED = 16
#: Hub pages carry the time; nothing else may differ.
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")
#: The client stops reading once the server has said nothing for this long.
QUIET = 1.0


class EchoBackend(ThreadedServer):
    """Records every request it gets (head lines and body) by the ``X-Case`` header and
    answers with the request body and path, as text (so the token scrubber runs)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[tuple[list[bytes], bytes]]] = {}
        self._lock = threading.Lock()
        super().__init__()

    def serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                lines = []
                while True:
                    line = reader.readline(65536)
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    lines.append(line.rstrip(b"\r\n"))
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (x.partition(b":") for x in lines[1:])}
                if b"content-length" in headers:
                    body = reader.read(int(headers[b"content-length"]))
                elif headers.get(b"transfer-encoding") == b"chunked":
                    body = b""
                    while True:
                        size = int(reader.readline().split(b";")[0], 16)
                        body += reader.read(size)
                        reader.readline()
                        if size == 0:
                            break
                else:
                    body = b""
                kept = [x for x in lines if not x.lower().startswith(b"x-forwarded-port:")]
                with self._lock:
                    self.seen.setdefault(headers.get(b"x-case", b"?").decode(), []).append(
                        (kept, body))
                path = lines[0].split(b" ")[1]
                answer = b"path " + path + b"\nbody " + body + b"\n"
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"X-Echo: secret-token\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(answer), answer))
        except (OSError, ValueError):
            return
        finally:
            conn.close()


def start_site(backend: str, front_end: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, SITE, backend, LIMITS, front_end],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = int(proc.stdout.readline())
    return proc, port


# -- the cases ---------------------------------------------------------------------------

METHODS = [b"GET", b"GET", b"GET", b"POST", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS",
           b"PATCH", b"get", b"G@T", b"M-SEARCH", b""]
PATHS = [b"/user/alice/", b"/user/alice/api/contents/a.ipynb", b"/user/alice/x?y=1&z=%C3%A9",
         b"/user/alice/../bob/", b"/user/alice/%2e%2e/x", b"/user/alice/a b",
         b"/user/alice/\xc3\xa9", b"/user/bob/tree", b"/hub/page", b"/", b"*",
         b"http://evil/user/alice/", b"/user/alice/" + b"a" * 3000, b"/user/alice/?token=t"]
VERSIONS = [b"HTTP/1.1"] * 8 + [b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 ", b"http/1.1"]
EXTRA = [
    b"Cookie: ipydoc-session=abc; _xsrf=1", b"Authorization: token ipd_abc",
    b"X-Forwarded-For: 6.6.6.6", b"Accept: text/html", b"Accept: application/json",
    b"Connection: close", b"Connection: keep-alive", b"Connection: close, te", b"TE: trailers",
    b"Upgrade: websocket", b"Connection: Upgrade", b"Expect: 100-continue",
    b"Origin: http://evil", b"X-Thing: secret-token", b"Proxy-Authorization: x",
    b"Keep-Alive: 5", b"Content-Type: text/plain", b"X-Empty:", b"X-Spaces:    a   ",
]
BAD = [
    b" folded", b"\tfolded", b"Bad Name: x", b"NoColon", b"X-Nul: a\x00b", b"X-Long: " + b"x" * 5000,
    b"Content-Length: 5", b"Content-Length: -1", b"Content-Length: +5", b"Content-Length: 5, 5",
    b"Content-Length: 0000000000000000000005", b"Content-Length: 99999999999999999999",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked, identity",
    b"Host: second", b":novalue", b"X-Ctl: a\x01b", b"X-Hi: \xff\xfe",
]


def make_request(rng: random.Random, case: int) -> bytes:
    method = rng.choice(METHODS)
    path = rng.choice(PATHS)
    version = rng.choice(VERSIONS)
    lines = [b"%s %s %s" % (method, path, version), b"X-Case: %d" % case]
    hosts = rng.choices([0, 1, 2], [1, 12, 1])[0]
    lines += [b"Host: example.org"] * hosts
    for _ in range(rng.randint(0, 4)):
        lines.append(rng.choice(EXTRA))
    if rng.random() < 0.4:
        lines.insert(rng.randint(1, len(lines)), rng.choice(BAD))
    if rng.random() < 0.03:
        lines += [b"X-Many-%d: %d" % (i, i) for i in range(40)]
    body = b""
    framing = rng.random()
    if framing < 0.04:  # a large upload: many reads, backpressure, a streamed answer
        body = b"0123456789abcdef secret-token\n" * rng.randint(2000, 12000)
        lines.append(b"Content-Length: %d" % len(body))
    elif framing < 0.3:
        body = bytes(rng.choice(b"abcdefgh secret-token") for _ in range(rng.randint(0, 40)))
        lines.append(b"Content-Length: %d" % len(body))
    elif framing < 0.4:
        data = b"hello secret-token"
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)
        if rng.random() < 0.3:
            body = rng.choice([b"zz\r\nab\r\n0\r\n\r\n", b"5\nhello\r\n0\r\n\r\n",
                               b"fffffffffffffffff\r\n"])
        lines.append(b"Transfer-Encoding: chunked")
    if rng.random() < 0.1:  # truncated body
        body = body[:len(body) // 2]
    eol = b"\r\n"
    head = eol.join(lines) + eol + eol
    roll = rng.random()
    if roll < 0.05:
        head = head.replace(b"\r\n", b"\n", 1)  # a bare LF ending the request line
    elif roll < 0.08:
        at = head.find(b"\r\n", head.find(b"X-Case"))
        head = head[:at] + b"\n" + head[at + 2:]  # a bare LF ending a header
    elif roll < 0.1:
        head = head.replace(b"X-Case", b"X-C\rase", 1)
    return head + body


def make_case(rng: random.Random, case: int) -> list[bytes]:
    """The pieces a client sends (with a short pause between them)."""
    data = make_request(rng, case)
    if rng.random() < 0.25:  # pipelined pair, the second one plain
        second = (b"GET /user/alice/second?n=%d HTTP/1.1\r\nX-Case: %d\r\nHost: example.org"
                  b"\r\n\r\n" % (case, case))
        data = data + second if rng.random() < 0.5 else second + data
    if rng.random() < 0.2 and len(data) > 10:
        cut = rng.randint(1, len(data) - 1)
        return [data[:cut], data[cut:]]
    return [data]


def exchange(port: int, pieces: list[bytes]) -> bytes:
    """Send ``pieces``; everything the server sends until it closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(0.05)
            try:
                s.sendall(piece)
            except OSError:
                break
        s.settimeout(QUIET)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got + b"<open>"
            except OSError:
                return got + b"<reset>"
            if not chunk:
                return got + b"<closed>"
            got = DATE.sub(b"\r\nDate: -\r\n", got + chunk)


def dechunked(stream: bytes) -> bytes:
    """``stream`` with each chunked body rewritten as one chunk: where a streamed answer
    is cut into chunks depends on how the backend's bytes arrived (timing), not on the
    front end; the bytes of every answer and every head must still be identical."""
    out, pos = [], 0
    while True:
        end = stream.find(b"\r\n\r\n", pos)
        if end < 0 or not stream.startswith(b"HTTP/1.1 ", pos):
            return b"".join(out) + stream[pos:]
        head = stream[pos:end + 4]
        out.append(head)
        pos = end + 4
        if b"\r\ntransfer-encoding: chunked\r\n" not in head.lower():
            m = re.search(rb"\r\ncontent-length: *(\d+)\r\n", head, re.IGNORECASE)
            n = int(m.group(1)) if m else 0
            out.append(stream[pos:pos + n])
            pos += n
            continue
        data = []
        while True:
            line_end = stream.find(b"\r\n", pos)
            try:
                size = int(stream[pos:line_end], 16) if line_end >= 0 else -1
            except ValueError:
                size = -1
            if size < 0 or len(stream) < line_end + 2 + size + 2:
                out.append(b"<chunks>" + b"".join(data) + b"</chunks>")
                return b"".join(out) + stream[pos:]
            data.append(stream[line_end + 2:line_end + 2 + size])
            pos = line_end + 2 + size + 2
            if size == 0:
                out.append(b"<chunks>" + b"".join(data) + b"</chunks>")
                break


@pytest.fixture(scope="module")
def sites():
    backends = {name: EchoBackend() for name in ("lean", "twisted")}
    procs = {name: start_site(b.url, name) for name, b in backends.items()}
    yield {name: (procs[name][1], backends[name]) for name in backends}
    for proc, _ in procs.values():
        proc.terminate()
        proc.wait(10)
    for b in backends.values():
        b.close()


def test_lean_and_twisted_front_ends_agree(sites):
    rng = random.Random(SEED)
    cases = [make_case(rng, i) for i in range(CASES)]

    def run(front_end: str, i: int) -> bytes:
        return exchange(sites[front_end][0], cases[i])

    with ThreadPoolExecutor(16) as pool:
        got = {fe: list(pool.map(lambda i, fe=fe: run(fe, i), range(CASES)))
               for fe in ("lean", "twisted")}
    time.sleep(0.5)
    differ = []
    for i in range(CASES):
        lean = (dechunked(got["lean"][i]), sites["lean"][1].seen.get(str(i)))
        twisted = (dechunked(got["twisted"][i]), sites["twisted"][1].seen.get(str(i)))
        if lean != twisted:
            differ.append((i, cases[i], lean, twisted))
    forwarded = sum(1 for i in range(CASES) if sites["lean"][1].seen.get(str(i)))
    statuses = {r.split(b" ", 2)[1] for r in got["twisted"] if r.startswith(b"HTTP/1.1 ")}
    # the mix is a real one: forwarded requests and refusals of several kinds
    assert forwarded > CASES // 4, forwarded
    assert {b"200", b"400"} <= statuses, statuses
    assert not differ, "\n\n".join(
        f"case {i}: sent {c!r}\n lean:    {lean!r}\n twisted: {tw!r}"
        for i, c, lean, tw in differ[:5]) + f"\n({len(differ)} cases differ)"


def test_dechunked_ignores_only_where_chunks_are_cut():
    head = (b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    two = head + b"2\r\nxy\r\n3\r\nzzz\r\n0\r\n\r\n"
    one = head + b"5\r\nxyzzz\r\n0\r\n\r\n"
    assert dechunked(two) == dechunked(one)
    assert dechunked(head + b"2\r\nxy\r\n") != dechunked(one)  # cut short: not the same
    assert dechunked(head + b"5\r\nxyzzy\r\n0\r\n\r\n") != dechunked(one)
