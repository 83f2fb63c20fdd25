"""Units of issue 12 items 8, 10, 11: the one WebSocket upgrade rule, what a user's
server may say in its answer heads, the registry of open exchanges and the rate-limited
log of refused requests.  (Each is also exercised for real in tests/access/test_revocation.py
and tests/edge/test_refusal_log.py.)"""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from ipydoc.access import origin, verdicts
from ipydoc.edge.refusals import RefusalLog
from ipydoc.proxy import replies
from ipydoc.proxy.gate import Forward
from ipydoc.proxy.headers import (
    is_hub_cookie,
    is_websocket_upgrade,
    secure_cookie,
    token_list,
    wants_html,
)
from ipydoc.proxy.http import keep_response_header
from ipydoc.proxy.live import OpenExchanges
from ipydoc.proxy.websocket import _Head, _switching_head


class Req:
    """Just what the upgrade rule reads from a request."""

    def __init__(self, headers: dict[bytes, list[bytes]], method: bytes = b"GET") -> None:
        self.method = method
        self.path = b"/user/alice/api/kernels/k/channels"
        self.requestHeaders = Headers(headers)

    def getHeader(self, name: bytes) -> bytes | None:
        values = self.requestHeaders.getRawHeaders(name)
        return values[-1] if values else None


UPGRADES = [
    ({b"Upgrade": [b"websocket"], b"Connection": [b"Upgrade"]}, True),
    ({b"Upgrade": [b"WebSocket"], b"Connection": [b"upgrade"]}, True),
    ({b"Upgrade": [b"h2c, websocket"], b"Connection": [b"Upgrade"]}, True),
    ({b"Upgrade": [b"h2c", b"websocket"], b"Connection": [b"Upgrade"]}, True),  # two lines
    ({b"Upgrade": [b"websocket"], b"Connection": [b"keep-alive, Upgrade"]}, True),
    ({b"Upgrade": [b"websocket"], b"Connection": [b"keep-alive", b"UPGRADE"]}, True),
    ({b"Upgrade": [b" websocket ,"], b"Connection": [b",Upgrade"]}, True),  # empty elements
    ({b"Upgrade": [b"websocket, foo/2"], b"Connection": [b"Upgrade"]}, True),
    # not a WebSocket upgrade:
    ({b"Upgrade": [b"websocket"]}, False),                                  # no Connection
    ({b"Connection": [b"Upgrade"]}, False),                                 # no Upgrade
    ({b"Upgrade": [b"websocket"], b"Connection": [b"keep-alive"]}, False),
    ({b"Upgrade": [b"websockets"], b"Connection": [b"Upgrade"]}, False),    # substring
    ({b"Upgrade": [b"notwebsocket"], b"Connection": [b"Upgrade"]}, False),
    ({b"Upgrade": [b"websocket/13"], b"Connection": [b"Upgrade"]}, False),  # another token
    ({b"Upgrade": [b"h2c"], b"Connection": [b"Upgrade"]}, False),
    ({b"Upgrade": [b"websocket"], b"Connection": [b"Upgraded"]}, False),
    ({b"Upgrade": [b"websocket"], b"Connection": [b"x-upgrade"]}, False),
    ({b"Upgrade": [b"web socket"], b"Connection": [b"Upgrade"]}, False),    # junk
    ({b"Upgrade": [b"websocket;q=1"], b"Connection": [b"Upgrade"]}, False),
    ({b"Upgrade": [b"websocket, @@"], b"Connection": [b"Upgrade"]}, False),
    ({b"Upgrade": [b"websocket"], b"Connection": [b"Upgrade, \"x\""]}, False),
    ({b"Upgrade": [b"websocket/"], b"Connection": [b"Upgrade"]}, False),
]


@pytest.mark.parametrize(("headers", "expected"), UPGRADES)
def test_one_rule_for_gate_proxy_and_error_pages(headers, expected):
    request = Req(headers)
    assert is_websocket_upgrade(request) is expected
    # the gate's Origin rule and its pages use the very same functions as the proxy
    assert origin.is_websocket_upgrade is is_websocket_upgrade
    assert origin.changes_state(request) is expected  # a GET: unsafe only as an upgrade
    request.requestHeaders.setRawHeaders(b"accept", [b"text/html"])
    assert wants_html(request) is (not expected)
    assert verdicts.wants_html is wants_html and replies.wants_html is wants_html


def test_only_get_is_an_upgrade():
    headers = {b"Upgrade": [b"websocket"], b"Connection": [b"Upgrade"]}
    assert not is_websocket_upgrade(Req(headers, b"POST"))


def test_token_lists():
    assert token_list([b"a, B", b" ,c"]) == {b"a", b"b", b"c"}
    assert token_list([b"h2c, websocket/13"], versions=True) == {b"h2c", b"websocket/13"}
    assert token_list([b"websocket/13"]) is None  # "/" is not a tchar
    assert token_list([b"a b"]) is None
    assert token_list([b""]) == set()


@pytest.mark.parametrize(("cookie", "hub"), [
    (b"ipydoc-session=x; Path=/", True),
    (b"IPYDOC-Session=x", True),
    (b"__Host-ipydoc-session=x; Path=/; Secure", True),
    (b"__Secure-ipydoc-user=x", True),
    (b" ipydoc-user =x", True),
    (b"_xsrf=abc; Path=/", False),
    (b"my-ipydoc-session=x", False),
])
def test_hub_cookie_names(cookie, hub):
    assert is_hub_cookie(cookie) is hub


def test_what_a_server_may_say_in_its_head():
    path = Forward("alice", "http://127.0.0.1:1", "tok")
    sub = Forward("alice", "http://127.0.0.1:1", "tok", own_origin=True)
    for fwd in (path, sub):
        assert not keep_response_header(b"set-cookie", b"ipydoc-session=planted; Path=/", fwd)
        assert not keep_response_header(b"set-cookie", b"a=1; Domain=example.org", fwd)
        assert keep_response_header(b"set-cookie", b"_xsrf=1; Path=/user/alice/", fwd)
        assert keep_response_header(b"content-type", b"text/html", fwd)
    assert not keep_response_header(b"service-worker-allowed", b"/", path)
    assert keep_response_header(b"service-worker-allowed", b"/", sub)


def test_the_101_head_is_rebuilt_through_the_same_filter():
    token = "s3cret-server-token"
    head = _Head(b"(raw, not relayed)", 101, b"Switching Protocols", [
        (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", b"abc="),
        (b"Set-Cookie", b"ipydoc-session=planted; Path=/"),
        (b"Set-Cookie", b"kept=1"),
        (b"Service-Worker-Allowed", b"/"),
        (b"X-Leak", f"token {token}".encode()),
        (b"Keep-Alive", b"timeout=5"),
    ], b"\x81\x02hi")
    fwd = Forward("alice", "http://127.0.0.1:1", token)
    for secure, kept in ((False, b"Set-Cookie: kept=1"), (True, b"Set-Cookie: kept=1; Secure")):
        out = _switching_head(head, fwd, secure)
        text, _, rest = out.partition(b"\r\n\r\n")
        lines = text.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols"
        assert set(lines[1:]) == {b"Upgrade: websocket", b"Connection: Upgrade",
                                  b"Sec-WebSocket-Accept: abc=", kept, b"X-Leak: token "}
        assert rest == b"\x81\x02hi"  # frames that came with the head follow it


class Ex:
    def __init__(self, user: str, credential: str, websocket: bool = False) -> None:
        self.user, self.credential, self.revoked = user, credential, 0
        self.websocket = websocket

    def revoke(self) -> None:
        self.revoked += 1


def test_registry_closes_by_credential_and_by_user():
    reg = OpenExchanges()
    a1, a2, a3, b1 = Ex("alice", "s1"), Ex("alice", "s1"), Ex("alice", "t1"), Ex("bob", "s2")
    for e in (a1, a2, a3, b1):
        reg.add(e)
    assert reg.count() == 4 and reg.count("alice") == 3 and reg.added == 4
    assert sorted(reg.credentials()) == ["s1", "s2", "t1"]
    assert reg.users("s1") == {"alice"}
    assert reg.close_credential("s1") == 2
    assert (a1.revoked, a2.revoked, a3.revoked, b1.revoked) == (1, 1, 0, 0)
    assert reg.close_credential("s1") == 0
    reg.remove(a1)  # the forwarder's own removal after the close is harmless
    assert reg.count("alice") == 1
    assert reg.close_user("alice") == 1 and a3.revoked == 1
    assert reg.count() == 1 and reg.credentials() == ["s2"]
    reg.remove(b1)
    assert reg.count() == 0 and reg.credentials() == []


def test_requests_under_way_leave_websockets_out():
    """What keeps the culler from pausing a server: requests under way, not the
    WebSockets an open tab keeps (issue 15: a paused server is resumed by those)."""
    reg = OpenExchanges()
    download, tab = Ex("alice", "s1"), Ex("alice", "s1", websocket=True)
    reg.add(tab)
    assert reg.requests("alice") == 0 and reg.requests("bob") == 0
    reg.add(download)
    assert reg.requests("alice") == 1
    reg.remove(download)
    assert reg.requests("alice") == 0 and reg.count("alice") == 1


def test_refusal_log_is_rate_limited_and_sums_up():
    clock = Clock()
    events: list[dict] = []
    log = RefusalLog(clock, per_second=3, summary_after=5.0)
    log.log = Logger(observer=events.append)
    for i in range(10):
        log.refused(f"10.0.0.1:{i}", 400, "bad")
    assert len(events) == 3 and log.suppressed == 7
    assert events[0]["client"] == "10.0.0.1:0" and events[0]["reason"] == "bad"
    clock.advance(1.0)  # a new window: three more lines, then counted again
    for _ in range(5):
        log.refused("10.0.0.2:1", 431, "too big")
    assert len(events) == 6 and log.suppressed == 9
    clock.advance(4.0)  # the summary, once, 5 s after the first suppressed line
    assert len(events) == 7 and events[-1]["count"] == 9 and log.suppressed == 0
    clock.advance(60.0)
    assert len(events) == 7  # nothing suppressed: no timer, no line
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("raw, expected", [
    (b"_xsrf=2|abc; Path=/user/alice/", b"_xsrf=2|abc; Path=/user/alice/; Secure"),
    (b"a=b", b"a=b; Secure"),
    (b"a=b; Path=/;", b"a=b; Path=/; Secure"),
    (b"a=b; secure; HttpOnly", b"a=b; secure; HttpOnly"),
    (b"a=b; Path=/; SECURE", b"a=b; Path=/; SECURE"),
    (b"secure=1; Path=/", b"secure=1; Path=/; Secure"),  # a cookie named secure is not the flag
])
def test_cookies_of_users_servers_become_secure_for_https_clients(raw, expected):
    assert secure_cookie(raw) == expected
