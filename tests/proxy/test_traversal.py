"""Path tricks never carry one user's request to another user's server.

Real daemon, real containers for alice and bob.  Every attempt is alice's (her session
cookie) and aims at bob's server with a path no real file has (a fresh marker), so a
request that reached bob would show in bob's Jupyter log: jupyter_server logs every 404
at WARNING, its default level.  A control request of bob's own shows the marker does
appear there when a request gets through.  Requests go out as raw bytes: client
libraries normalise ``..`` away before sending.
"""

from __future__ import annotations

import secrets
import socket
import subprocess

import pytest

from support import Daemon, follow_progress, login, wait_for

ALICE_PW = "alice-traversal-pw"
BOB_PW = "bob-traversal-pw-1"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("traversal"))
    d.start()
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW)
    sessions = {}
    for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW)):
        session, r = login(d.url, name, pw)
        assert r.status_code == 303
        assert follow_progress(session, d.url, name)[-1]["phase"] == "ready"
        sessions[name] = session
    yield d, sessions
    d.stop()
    d.cleanup_docker()


def cookie_header(session) -> bytes:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies).encode()


def raw_get(port: int, target: bytes, cookie: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: " % port
                  + cookie + b"\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        out = b""
        while data := s.recv(65536):
            out += data
    return out


def server_log(d: Daemon, name: str) -> str:
    (container,) = d.containers(name, all=False)
    out = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
    return out.stdout + out.stderr


ATTEMPTS = [
    b"/user/alice/../bob/api/{m}",
    b"/user/alice/./../bob/api/{m}",
    b"/user/alice/%2e%2e/bob/api/{m}",
    b"/user/alice/%2E%2E/bob/api/{m}",
    b"/user/alice/.%2e/bob/api/{m}",
    b"/user/alice/..%2fbob/api/{m}",
    b"/user/alice/%2E%2E%2Fbob/api/{m}",
    b"/user/alice/..%5cbob/api/{m}",
    b"/user/alice/..\\bob/api/{m}",
    b"/user/alice/api/../../bob/api/{m}",
    b"/user/bob%2f..%2falice/api/{m}",
    b"/user/alice%2f..%2fbob/api/{m}",
    b"/user/./bob/api/{m}",
    b"/user//bob/api/{m}",
    b"/user/%62ob/api/{m}",
    b"/user/BOB/api/{m}",
    b"/user/bob/api/{m}",
    b"/user/bob/../alice/api/{m}",
    b"//user/bob/api/{m}",
    b"/hub/../user/bob/api/{m}",
]


@pytest.mark.parametrize("template", ATTEMPTS, ids=[a.decode() for a in ATTEMPTS])
def test_alice_cannot_reach_bobs_server(site, template):
    d, sessions = site
    marker = "trav-" + secrets.token_hex(6)
    target = template.replace(b"{m}", marker.encode())
    response = raw_get(d.port, target, cookie_header(sessions["alice"]))
    status = int(response.split(b" ", 2)[1])
    # Refused here (403/404), or for the hub's own paths a redirect/404 of the hub:
    # never an answer from a Jupyter server.
    assert status in (302, 403, 404), response[:300]
    assert b"Traceback" not in response
    # bob's own request with a marker shows up in his log: the check below can fail.
    control = "ctl-" + secrets.token_hex(6)
    assert sessions["bob"].get(f"{d.url}/user/bob/api/{control}").status_code == 404
    wait_for(lambda: control in server_log(d, "bob"), timeout=10)
    assert marker not in server_log(d, "bob")


def test_dot_segments_are_refused_before_the_gate_even_for_the_owner(site):
    d, sessions = site
    marker = "own-" + secrets.token_hex(6)
    response = raw_get(d.port, b"/user/alice/api/%2e%2e/api/" + marker.encode(),
                       cookie_header(sessions["alice"]))
    assert response.startswith(b"HTTP/1.1 404")
    assert b"not forwarded" in response
    assert marker not in server_log(d, "alice")
    # A path with dots that are not segments still goes through, unchanged.
    r = sessions["alice"].get(f"{d.url}/user/alice/api/contents/{marker}/a..b/...x")
    assert r.status_code == 404
    wait_for(lambda: f"/user/alice/api/contents/{marker}/a..b/...x" in server_log(d, "alice"),
             timeout=10)
