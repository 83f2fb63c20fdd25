"""The gate's verdict recalled from memory (``Ladder.recall``) never outlives what it
rested on, through the real daemon, Docker and jupyter_server.

A browser sends the same header lines request after request on one keep-alive
connection; the lean front end then shares their parsed form, and the gate keeps its
verdict on it, so the next such request to the same server is forwarded without the
ladder.  On one connection, with the same lines throughout (one cookie), each thing the
verdict rested on is changed in turn, and the very next request must see it: another
user's server in the path, a pause (the request resumes it, as the ladder does, and its
log line says so), the session revoked, the server stopped.
"""

from __future__ import annotations

import re
import socket

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support import follow_progress, free_port, login, running_site, wait_for

PW = "alice-recall-pw"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    port = free_port()
    for d in running_site(tmp_path_factory.mktemp("recall"),
                          {"metrics": {"listen": f"tcp:{port}:interface=127.0.0.1"}},
                          {"alice": PW, "bob": "bob-recall-pw"}):
        d.metrics_url = f"http://127.0.0.1:{port}/metrics"
        yield d


def recalled(site) -> float:
    """``ipydoc_proxy_recalled_verdicts_total``: requests let through from memory."""
    text = requests.get(site.metrics_url, timeout=10).text
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "ipydoc_proxy_recalled_verdicts_total")


def read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """One answer (Content-Length or chunked) from ``sock``: (status, body)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, bytes(buf)
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end]).decode("latin-1")
    del buf[:end + 4]
    status = int(head.split(" ")[1])
    length = re.search(r"\r\ncontent-length: *(\d+)", head, re.I)
    if length:
        n = int(length.group(1))
        while len(buf) < n:
            buf += sock.recv(65536)
        body = bytes(buf[:n])
        del buf[:n]
        return status, body
    assert re.search(r"\r\ntransfer-encoding: *chunked", head, re.I), head
    body = b""
    while True:
        while b"\r\n" not in buf:
            buf += sock.recv(65536)
        line_end = buf.index(b"\r\n")
        size = int(bytes(buf[:line_end]).split(b";")[0], 16)
        while len(buf) < line_end + 2 + size + 2:
            buf += sock.recv(65536)
        body += bytes(buf[line_end + 2:line_end + 2 + size])
        del buf[:line_end + 2 + size + 2]
        if size == 0:
            return status, body


class Browser:
    """One keep-alive connection that sends the same header lines every time."""

    def __init__(self, site, cookie: str, host: str = "") -> None:
        """``cookie``: the ``Cookie`` header's value; ``host``: the ``Host`` (the daemon's
        address if empty)."""
        self.sock = socket.create_connection(("127.0.0.1", site.port), timeout=60)
        self.lines = (f"Host: {host or f'127.0.0.1:{site.port}'}\r\n"
                      f"Accept: application/json\r\nCookie: {cookie}\r\n\r\n").encode()
        self.buf = bytearray()

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\n".encode() + self.lines)
        return read_answer(self.sock, self.buf)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def alice_logged_in(site) -> str:
    session, r = login(site.url, "alice", PW)
    assert r.status_code == 303
    assert follow_progress(session, site.url, "alice")[-1]["phase"] == "ready"
    return session.cookies.get("ipydoc-session")


def test_a_recalled_verdict_follows_the_path_a_pause_and_a_revocation(site):
    with Browser(site, f"ipydoc-session={alice_logged_in(site)}") as browser:
        before = recalled(site)
        for _ in range(3):
            status, body = browser.get("/user/alice/api/status")
            assert status == 200 and b'"started"' in body
        assert recalled(site) == before + 2  # the first climbed the ladder, not the others
        assert browser.get("/user/bob/api/status")[0] == 403  # another user's server
        assert browser.get("/user/alice/api/contents")[0] == 200
        assert site.cli("server", "pause", "alice").returncode == 0
        assert browser.get("/user/alice/api/status")[0] == 200
        # that request went up the ladder, which resumed the server (and said so)
        wait_for(lambda: re.search(r'"GET /user/alice/api/status HTTP/1.1" 200 .* resumed',
                                   site.log()), 10)
        assert browser.get("/user/alice/api/status")[0] == 200
        assert site.cli("session", "revoke", "alice").returncode == 0
        status, body = browser.get("/user/alice/api/status")
        assert status == 401 and b"not logged in" in body


def test_a_recalled_verdict_ends_with_its_server(site):
    with Browser(site, f"ipydoc-session={alice_logged_in(site)}") as browser:
        assert browser.get("/user/alice/api/status")[0] == 200
        assert browser.get("/user/alice/api/status")[0] == 200
        assert site.cli("server", "stop", "alice").returncode == 0
        status, body = browser.get("/user/alice/api/status")
        assert status == 503 and b"not running" in body
