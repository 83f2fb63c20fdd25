"""Revocation reaches open connections; a user's server cannot say what it must not
(issue 12, items 8 and 10), through the real daemon, Docker and jupyter_server.

alice keeps a kernel WebSocket open through the proxy while her session or token is
ended in each way there is (logout with ``auth.stop_on_logout = false``, ``ipydoc
session revoke``, a token revoked on /hub/token, a password change from another browser,
``ipydoc user disable``): the WebSocket is closed at once, and bob's, open all along,
keeps working.  Then alice makes her own server hostile, as any user can: a
``~/.jupyter/jupyter_server_config.py`` written from her kernel that makes every answer
carry ``Service-Worker-Allowed: /`` and a ``Set-Cookie`` for the hub's session cookie,
and answers one WebSocket handshake with a 403 that echoes the server token.

One daemon for the module; the tests run in file order (disable comes last).
"""

from __future__ import annotations

import hashlib
import re
import socket
import subprocess
import time

import pytest
import requests
import websocket

from kernel_client import connect, execute, start_kernel
from support import Daemon, csrf_of, follow_progress, login, wait_for

ALICE_PW = "alice-revocation-pw"
ALICE_NEW = "alice-changed-pw-1"
BOB_PW = "bob-revocation-pw"
#: A revoked credential's WebSocket must be closed this soon (it is, in milliseconds).
CLOSE_WITHIN = 2.5


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    d = Daemon(tmp_path_factory.mktemp("revoke"), {"auth": {"stop_on_logout": False}})
    d.start()
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW)
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def state(site):
    """alice's and bob's running servers and kernels; bob's WebSocket stays open."""
    out = {"alice_pw": ALICE_PW}
    for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW)):
        session, r = login(site.url, name, pw)
        assert r.status_code == 303
        assert follow_progress(session, site.url, name)[-1]["phase"] == "ready"
        out[name] = session
        out[f"{name}_kernel"] = start_kernel(session, site.url, name)
    out["bob_ws"] = connect(out["bob"], site.url, "bob", out["bob_kernel"])
    assert execute(out["bob_ws"], "6*7")["text/plain"] == "42"
    yield out
    out["bob_ws"].close()


def alice_ws(site, state, session: requests.Session | None = None) -> websocket.WebSocket:
    ws = connect(session or state["alice"], site.url, "alice", state["alice_kernel"])
    assert execute(ws, "6*7")["text/plain"] == "42"
    return ws


def token_ws(site, state, token: str) -> websocket.WebSocket:
    url = site.url.replace("http", "ws", 1) + \
        f"/user/alice/api/kernels/{state['alice_kernel']}/channels"
    ws = websocket.create_connection(url, header=[f"Authorization: token {token}"],
                                     timeout=60)
    assert execute(ws, "6*7")["text/plain"] == "42"
    return ws


def closed_soon(ws: websocket.WebSocket, within: float = CLOSE_WITHIN) -> float:
    """Seconds until the proxy closed ``ws`` (reading whatever came before); fails if it
    is still open after ``within`` (waiting up to 10 s to say how long it took)."""
    ws.settimeout(10)
    start = time.monotonic()
    try:
        while True:
            if ws.recv() in ("", b""):  # a close frame
                break
    except websocket.WebSocketTimeoutException:
        pytest.fail("the WebSocket is still open 10 s after its credential was revoked")
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass
    took = time.monotonic() - start
    assert took < within, f"closed only after {took:.2f} s"
    return took


def bob_still_works(state) -> None:
    assert execute(state["bob_ws"], "6*7")["text/plain"] == "42"


def log_says_closed(site, kind: str) -> None:
    wait_for(lambda: re.search(rf"closed \d+ open connection\(s\) of alice: {kind} revoked",
                               site.log()), 5)


def post(session: requests.Session, site, path: str, data: dict) -> requests.Response:
    return session.post(site.url + path, data={"_csrf": csrf_of(session, site.url), **data},
                        headers={"Origin": site.url}, allow_redirects=False)


def make_token(site, session: requests.Session) -> str:
    assert post(session, site, "/hub/token", {"note": "script", "expires_in": "0"}
                ).status_code == 303
    page = session.get(site.url + "/hub/token").text
    return re.search(r'id="new-token" readonly value="(ipd_[^"]+)"', page).group(1)


def token_works(site, token: str) -> int:
    return requests.get(site.url + "/user/alice/api/status",
                        headers={"Authorization": f"token {token}"}).status_code


def test_logout_closes_the_sessions_websockets_and_clears_site_data(site, state):
    ws = alice_ws(site, state)
    r = post(state["alice"], site, "/hub/logout", {})
    assert r.status_code == 303 and r.headers["Location"] == "/hub/login"
    assert r.headers["Clear-Site-Data"] == '"cookies", "storage"'
    closed_soon(ws)
    log_says_closed(site, "session")
    bob_still_works(state)
    assert len(site.containers("alice", all=False)) == 1  # stop_on_logout = false


def test_session_revoke_closes_that_sessions_websockets_only(site, state):
    here, _ = login(site.url, "alice", ALICE_PW)
    there, _ = login(site.url, "alice", ALICE_PW)
    ws_here, ws_there = alice_ws(site, state, here), alice_ws(site, state, there)
    sids = [s["sid"] for s in site_json(site, "session", "list", "alice")]
    assert len(sids) == 2
    # Revoke one of the two by id; the browser that lost its session loses its WebSocket.
    r = site.cli("session", "revoke", "--id", sids[0][:12])
    assert r.returncode == 0, r.stderr
    gone, kept = (ws_here, ws_there) if not logged_in(site, here) else (ws_there, ws_here)
    closed_soon(gone)
    assert execute(kept, "6*7")["text/plain"] == "42"  # the other session's is untouched
    r = site.cli("session", "revoke", "alice")
    assert r.returncode == 0, r.stderr
    closed_soon(kept)
    log_says_closed(site, "session")
    bob_still_works(state)


def site_json(site, *args: str, input: str | None = None):
    import json

    r = site.cli("--json", *args, input=input)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def logged_in(site, session: requests.Session) -> bool:
    return session.get(site.url + "/hub/home", allow_redirects=False).status_code == 200


def test_revoked_token_closes_its_websockets_not_the_sessions(site, state):
    session, _ = login(site.url, "alice", state["alice_pw"])
    state["alice"] = session
    token = make_token(site, session)
    by_token, by_cookie = token_ws(site, state, token), alice_ws(site, state, session)
    token_id = hashlib.sha256(token.encode()).hexdigest()[:16]
    r = post(session, site, f"/hub/token/{token_id}/revoke", {"confirmed": "1"})
    assert r.status_code == 303
    closed_soon(by_token)
    assert execute(by_cookie, "6*7")["text/plain"] == "42"
    assert token_works(site, token) == 401
    log_says_closed(site, "token")
    bob_still_works(state)
    by_cookie.close()


def test_password_change_elsewhere_closes_websockets_and_revokes_tokens(site, state):
    here, _ = login(site.url, "alice", ALICE_PW)
    there = state["alice"]
    token = make_token(site, there)
    ws_there, ws_token = alice_ws(site, state, there), token_ws(site, state, token)
    page = here.get(site.url + "/hub/password").text
    assert 'name="keep_tokens"' in page and "API tokens are revoked" in page
    r = post(here, site, "/hub/password", {"current": ALICE_PW, "new": ALICE_NEW,
                                           "again": ALICE_NEW})
    assert r.status_code == 303 and r.headers["Location"] == "/hub/home?done=password"
    closed_soon(ws_there)
    closed_soon(ws_token)
    assert token_works(site, token) == 401  # revoked with the password
    assert not logged_in(site, there) and logged_in(site, here)
    bob_still_works(state)
    state["alice"], state["alice_pw"] = here, ALICE_NEW
    # Ticking "keep my API tokens" keeps them (and what they have open).
    kept_token = make_token(site, here)
    ws_kept = token_ws(site, state, kept_token)
    r = post(here, site, "/hub/password", {"current": ALICE_NEW, "new": ALICE_PW,
                                           "again": ALICE_PW, "keep_tokens": "1"})
    assert r.status_code == 303
    state["alice_pw"] = ALICE_PW
    assert token_works(site, kept_token) == 200
    assert execute(ws_kept, "6*7")["text/plain"] == "42"
    ws_kept.close()
    events = site.cli("events", "--user", "alice", "--kind", "password-changed").stdout
    assert "1 API token revoked" in events and "0 API tokens revoked" in events


HOSTILE = '''
# Written by the test from alice's kernel: her server now lies in every answer.
import tornado.web
from jupyter_server.base.handlers import JupyterHandler

_prepare = JupyterHandler.prepare


async def prepare(self, *args, **kwargs):
    self.set_header("X-Hostile", "1")
    self.set_header("Service-Worker-Allowed", "/")
    self.add_header("Set-Cookie", "ipydoc-session=planted; Path=/")
    self.add_header("Set-Cookie", "hostile-kept=1; Path=/user/alice/")
    if "ipydoc-hostile" in self.request.path:  # refuse this WebSocket handshake, leaking
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        raise tornado.web.Finish("refused; " + self.request.headers.get("Authorization", ""))
    return await _prepare(self, *args, **kwargs)


JupyterHandler.prepare = prepare
'''


def redis_cli(site, *args: str) -> str:
    sock = site.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True).stdout.strip()


def relogin_alice(site, state) -> None:
    """A fresh session for alice (each test stands on its own should one before fail)."""
    session, r = login(site.url, "alice", state["alice_pw"])
    assert r.status_code == 303
    state["alice"] = session


def test_alice_makes_her_server_hostile(site, state):
    relogin_alice(site, state)
    ws = alice_ws(site, state)
    code = ("import os; os.makedirs('/home/jovyan/.jupyter', exist_ok=True); "
            "open('/home/jovyan/.jupyter/jupyter_server_config.py', 'w').write("
            f"{HOSTILE!r}); 'written'")
    assert execute(ws, code)["text/plain"] == "'written'"
    ws.close()
    assert site.cli("server", "stop", "alice").returncode == 0
    r = site.cli("server", "start", "alice")
    assert r.returncode == 0, r.stderr
    state["alice_kernel"] = start_kernel(state["alice"], site.url, "alice")
    r = state["alice"].get(site.url + "/user/alice/api/status")
    assert r.status_code == 200 and r.headers.get("X-Hostile") == "1"  # the attack is on


def set_cookies(r: requests.Response) -> list[str]:
    return r.raw.headers.getlist("Set-Cookie")


def test_service_worker_allowed_and_hub_cookies_do_not_reach_the_browser(site, state):
    session = state["alice"]
    cookie = session.cookies.get("ipydoc-session")
    r = session.get(site.url + "/user/alice/api/status")
    assert r.status_code == 200 and r.headers["X-Hostile"] == "1"
    assert "Service-Worker-Allowed" not in r.headers
    assert any(c.startswith("hostile-kept=1") for c in set_cookies(r))
    assert not any("planted" in c for c in set_cookies(r))
    assert session.cookies.get("ipydoc-session") == cookie and logged_in(site, session)
    lab = session.get(site.url + "/user/alice/lab")
    assert lab.status_code == 200 and lab.headers["X-Hostile"] == "1"
    assert "Service-Worker-Allowed" not in lab.headers


def handshake(site, session: requests.Session, path: str) -> tuple[bytes, bytes]:
    """A raw WebSocket handshake to ``path``; the answer's head and what followed."""
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    with socket.create_connection(("127.0.0.1", site.port), timeout=30) as s:
        s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{site.port}\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"Origin: {site.url}\r\nCookie: {cookie}\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length: *(\d+)", head)
        while length and len(rest) < int(length.group(1)):
            rest += s.recv(65536)
        return head, rest


def test_refused_websocket_handshake_is_scrubbed_like_any_answer(site, state):
    token = redis_cli(site, "HGET", "ipydoc:server:alice", "token")
    assert len(token) > 20
    head, body = handshake(site, state["alice"], "/user/alice/ipydoc-hostile")
    assert head.startswith(b"HTTP/1.1 403"), head
    assert body == b"refused; token "  # the server echoed the token; the proxy took it out
    assert token.encode() not in head + body
    assert b"hostile-kept=1" in head and b"planted" not in head
    assert b"Service-Worker-Allowed" not in head and b"Twisted" not in head
    # The same filter on a 101: a real kernel WebSocket.
    head, _ = handshake(site, state["alice"],
                        f"/user/alice/api/kernels/{state['alice_kernel']}/channels")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"X-Hostile: 1" in head and b"hostile-kept=1" in head
    assert b"planted" not in head and b"Service-Worker-Allowed" not in head
    assert token.encode() not in head


def test_admin_password_reset_revokes_tokens_and_closes_their_websockets(site, state):
    relogin_alice(site, state)
    token = make_token(site, state["alice"])
    by_cookie, by_token = alice_ws(site, state), token_ws(site, state, token)
    result = site_json(site, "user", "passwd", "alice", "--password-stdin",
                       input=ALICE_NEW + "\n")
    state["alice_pw"] = ALICE_NEW
    # this one, and the one kept through the user's own change above
    assert result["tokens_revoked"] == 2 and result["sessions_revoked"] >= 1
    closed_soon(by_token)
    closed_soon(by_cookie)
    assert token_works(site, token) == 401
    bob_still_works(state)


def test_user_disable_closes_session_and_token_websockets(site, state):
    relogin_alice(site, state)
    token = make_token(site, state["alice"])
    by_cookie, by_token = alice_ws(site, state), token_ws(site, state, token)
    r = site.cli("user", "disable", "alice")
    assert r.returncode == 0, r.stderr
    closed_soon(by_cookie)
    closed_soon(by_token)
    # Closed by revocation, not by the server stopping: the daemon says so.
    log_says_closed(site, "session")
    wait_for(lambda: "closed 1 open connection(s) of alice: token revoked"
             in site.log(), 5)
    assert token_works(site, token) == 403
    bob_still_works(state)
