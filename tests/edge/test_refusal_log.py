"""Refused requests leave a trace, and a bounded one; nothing names Twisted (issue 12,
item 11), through the real daemon.

Requests are raw bytes on a socket (no client library would send them).  Each refusal
must be in the daemon's log with the client's address and port and the reason; a flood
of 1000 must not make 1000 lines, but the log must say how many it left out.
"""

from __future__ import annotations

import re
import socket
import time

import pytest
import requests

from support import Daemon, wait_for

SMUGGLE = (b"POST /user/alice/api/contents HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
BIG_HEAD = (b"GET /hub/login HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(40)) + b"\r\n")
FLOOD = 1000
PER_SECOND = 10  # ipydoc.edge.refusals.REFUSAL_LINES_PER_SECOND


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("refusals"))
    d.start()
    yield d
    d.stop()


def send(site, raw: bytes) -> tuple[bytes, str]:
    """The answer to ``raw`` (read to EOF) and our ``host:port``, as the daemon sees it."""
    with socket.create_connection(("127.0.0.1", site.port), timeout=10) as s:
        me = "%s:%d" % s.getsockname()[:2]
        s.sendall(raw)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out, me


def log_line(site, pattern: str) -> str:
    return wait_for(lambda: re.search(pattern + ".*", site.log()), 5).group(0)


def test_smuggling_attempt_is_logged_with_address_and_reason(site):
    answer, me = send(site, SMUGGLE)
    assert answer.startswith(b"HTTP/1.1 400 ")
    line = log_line(site, rf"refused a request from {re.escape(me)}: 400 ")
    assert "Content-Length and Transfer-Encoding together" in line


def test_oversized_head_is_logged(site):
    answer, me = send(site, BIG_HEAD)
    assert answer.startswith(b"HTTP/1.1 431 ")
    line = log_line(site, rf"refused a request from {re.escape(me)}: 431 ")
    assert "too large" in line or "too long" in line


def test_oversized_hub_body_is_logged(site):
    raw = (b"POST /hub/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n"
           + b"a" * 1000)
    answer, me = send(site, raw)
    assert answer.startswith(b"HTTP/1.1 413 ")
    log_line(site, rf"refused a request from {re.escape(me)}: 413 hub request body over")


def test_a_flood_of_bad_requests_leaves_a_bounded_log_that_counts_the_rest(site):
    time.sleep(1.1)  # a fresh one-second window
    before = len(site.log())
    start = time.monotonic()
    ports = set()
    for _ in range(FLOOD):
        answer, me = send(site, SMUGGLE)
        assert answer.startswith(b"HTTP/1.1 400 ")
        ports.add(me)
    took = time.monotonic() - start
    summary = wait_for(lambda: re.findall(r"suppressed (\d+) more lines about refused",
                                          site.log()[before:]), 15)
    time.sleep(6)  # any later summary too
    tail = site.log()[before:]
    lines = re.findall(r"refused a request from (\S+): 400", tail)
    suppressed = sum(int(n) for n in re.findall(r"suppressed (\d+) more lines", tail))
    assert summary and suppressed > 0
    assert len(lines) <= PER_SECOND * (int(took) + 2), (len(lines), took)
    assert len(lines) + suppressed == FLOOD  # each one either logged or counted
    assert set(lines) <= ports  # each line names the connection it is about


def test_no_twisted_in_the_server_header(site):
    answers = [
        requests.get(site.url + "/hub/login"),                               # hub page
        requests.get(site.url + "/", allow_redirects=False),                  # redirect
        requests.get(site.url + "/nothing-here"),                             # 404
        requests.get(site.url + "/user/alice/api/status"),                    # gate's 401
        requests.get(site.url + "/user/alice/lab", headers={"Accept": "text/html"},
                     allow_redirects=False),                                  # gate redirect
        requests.get(site.url + "/user/alice/a/../b"),                         # proxy's 404
    ]
    for r in answers:
        assert r.headers.get("Server") == "ipydoc", (r.url, r.status_code, r.headers)
    refused, _ = send(site, SMUGGLE)
    assert b"twisted" not in refused.lower()
