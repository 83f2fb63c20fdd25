"""The proxy's rules hold for named servers (issue 19 §1), path mode, against the real
daemon with real containers: alice runs her default server and a named one, ``gpu``;
bob runs his default one.

* ``/user/alice/gpu/...`` reaches alice's gpu container and only it (a fresh marker in a
  path shows in that container's Jupyter log and in no other);
* bob reaches neither of alice's servers, with his cookie or his token;
* path tricks from ``/user/alice/gpu/`` land on no other server, of alice or of bob;
* the server's token is injected, never shown;
* a stopped named server sends a browser to ``/hub/spawn/alice/gpu`` and gives an API
  client a 503;
* a second segment that is not one of alice's servers stays the default server's path.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess

import pytest
import requests
import websocket

from kernel_client import connect, execute, start_kernel
from support import Daemon, docker, login, progress_steps, wait_for

PW = {"alice": "alice-named-pw-1", "bob": "bob-named-pw-1"}
API = "/hub/api"


def csrf(session: requests.Session, base: str) -> str:
    page = session.get(base + "/hub/home")
    return re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)


def api_headers(session: requests.Session, base: str) -> dict[str, str]:
    return {"X-CSRF-Token": csrf(session, base), "Origin": base}


def follow(session: requests.Session, url: str, timeout: float = 120) -> list[dict]:
    return progress_steps(url, session=session, timeout=timeout)


def start(d: Daemon, session: requests.Session, user: str, server: str = "") -> None:
    path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
    r = session.post(d.url + API + path, json={}, headers=api_headers(session, d.url))
    assert r.status_code == 202, r.text
    steps = follow(session, d.url + API + path + "/progress")
    assert steps[-1]["phase"] == "ready", steps


def container(d: Daemon, user: str, server: str = "") -> str:
    """The running container of ``user``'s server ``server`` ("" the default one)."""
    out = docker("ps", "--filter", f"label=ipydoc.instance={d.instance}",
                 "--filter", f"label=ipydoc.user={user}", "--format",
                 '{{.ID}} {{.Label "ipydoc.server"}}')
    found = [line.split()[0] for line in out.splitlines()
             if (line.split() + [""])[1] == server]
    assert len(found) == 1, (user, server, out)
    return found[0]


def server_log(d: Daemon, user: str, server: str = "") -> str:
    out = subprocess.run(["docker", "logs", container(d, user, server)], capture_output=True,
                         text=True)
    return out.stdout + out.stderr


def cookie_header(session: requests.Session) -> bytes:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies).encode()


def raw_get(port: int, target: bytes, cookie: bytes, accept: bytes = b"application/json") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nCookie: " % port
                  + cookie + b"\r\nAccept: " + accept + b"\r\nConnection: close\r\n\r\n")
        out = b""
        while data := s.recv(65536):
            out += data
    return out


def make_token(d: Daemon, session: requests.Session, user: str) -> str:
    r = session.post(f"{d.url}{API}/users/{user}/tokens",
                     json={"note": "named", "scopes": ["servers"], "expires_in": 3600},
                     headers=api_headers(session, d.url))
    assert r.status_code == 201, r.text
    return r.json()["token"]


METRICS_TOKEN = "n" * 40


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    root = tmp_path_factory.mktemp("named-routing")
    (root / "metrics-token").write_text(METRICS_TOKEN + "\n")
    os.chmod(root / "metrics-token", 0o600)
    d = Daemon(root, {"auth": {"start_on_login": False},
                      "metrics": {"token_file": str(root / "metrics-token")}})
    d.start()
    try:
        sessions = {}
        for name, pw in PW.items():
            d.add_user(name, pw)
            session, r = login(d.url, name, pw)
            assert r.status_code == 303
            sessions[name] = session
        start(d, sessions["alice"], "alice")
        start(d, sessions["alice"], "alice", "gpu")
        start(d, sessions["bob"], "bob")
        tokens = {n: make_token(d, s, n) for n, s in sessions.items()}
        yield d, sessions, tokens
    finally:
        d.stop()
        d.cleanup_docker()


def marked_get(d: Daemon, session: requests.Session, base: str) -> str:
    marker = "mk-" + secrets.token_hex(6)
    assert session.get(f"{d.url}{base}api/contents/{marker}").status_code == 404
    return marker


def test_each_server_of_alice_is_its_own_container(site):
    d, sessions, _ = site
    alice = sessions["alice"]
    assert container(d, "alice", "gpu") != container(d, "alice")
    named = marked_get(d, alice, "/user/alice/gpu/")
    default = marked_get(d, alice, "/user/alice/")
    wait_for(lambda: named in server_log(d, "alice", "gpu"), timeout=15)
    wait_for(lambda: default in server_log(d, "alice"), timeout=15)
    assert named not in server_log(d, "alice")
    assert default not in server_log(d, "alice", "gpu")
    # The named server's Jupyter runs at its own base URL.
    assert f"/user/alice/gpu/api/contents/{named}" in server_log(d, "alice", "gpu")
    status = alice.get(f"{d.url}/user/alice/gpu/api/status")
    assert status.status_code == 200 and "started" in status.json()


def test_a_segment_that_names_no_server_is_the_default_servers_path(site):
    d, sessions, _ = site
    marker = "nos-" + secrets.token_hex(6)
    # "cpu" is a valid server name alice has no server by: the default server's path.
    r = sessions["alice"].get(f"{d.url}/user/alice/cpu/{marker}")
    assert r.status_code == 404
    wait_for(lambda: f"/user/alice/cpu/{marker}" in server_log(d, "alice"), timeout=15)
    assert marker not in server_log(d, "alice", "gpu")


def lookups(d: Daemon) -> dict[str, float]:
    text = requests.get(d.url + "/hub/metrics", timeout=10,
                        headers={"Authorization": "Bearer " + METRICS_TOKEN}).text
    found = re.findall(r'^ipydoc_named_server_lookups_total\{result="(\w+)"\} (\S+)$', text,
                       re.M)
    return {k: float(v) for k, v in found}


def test_requests_to_running_servers_never_look_a_server_up(site):
    """The route table decides; Redis is asked only for a segment that could name a
    server and is neither routed nor starting here (and only with a credential)."""
    d, sessions, tokens = site
    alice = sessions["alice"]
    before = lookups(d)
    for path in ("/user/alice/gpu/api/status", "/user/alice/api/status",
                 "/user/alice/lab", "/user/alice/gpu/lab", "/user/alice/static/x.js",
                 "/user/alice/", "/user/alice/gpu/api/contents"):
        assert alice.get(d.url + path).status_code in (200, 404), path
    assert requests.get(d.url + "/user/alice/maybe/x", timeout=10).status_code == 401
    assert lookups(d) == before
    # A segment that could be a server name, not routed: one look-up, the default's path.
    assert alice.get(d.url + "/user/alice/maybe/x").status_code == 404
    after = lookups(d)
    assert after.get("default", 0) == before.get("default", 0) + 1
    assert after.get("named", 0) == before.get("named", 0)


def test_without_the_slash_the_named_server_redirects_to_its_base_url(site):
    d, sessions, _ = site
    r = sessions["alice"].get(f"{d.url}/user/alice/gpu?x=1", allow_redirects=False,
                              headers={"Accept": "text/html"})
    assert r.status_code == 302
    assert r.headers["Location"] == "/user/alice/gpu/?x=1"


def test_bob_cannot_reach_alices_named_server_with_cookie_or_token(site):
    d, sessions, tokens = site
    marker = "bob-" + secrets.token_hex(6)
    for attempt in (
        lambda: sessions["bob"].get(f"{d.url}/user/alice/gpu/api/contents/{marker}",
                                    allow_redirects=False),
        lambda: requests.get(f"{d.url}/user/alice/gpu/api/contents/{marker}",
                             headers={"Authorization": f"token {tokens['bob']}"},
                             allow_redirects=False, timeout=30),
        lambda: sessions["bob"].get(f"{d.url}/user/alice/gpu/lab", allow_redirects=False,
                                    headers={"Accept": "text/html"}),
    ):
        r = attempt()
        assert r.status_code == 403, (r.status_code, r.text)
        assert "belongs to another user" in r.json()["message"]
    # alice's own token gets through (the same path works: the refusals above can fail).
    control = "own-" + secrets.token_hex(6)
    ok = requests.get(f"{d.url}/user/alice/gpu/api/contents/{control}",
                      headers={"Authorization": f"token {tokens['alice']}"}, timeout=30)
    assert ok.status_code == 404  # the gpu server's own 404 (seen in its log below)
    wait_for(lambda: control in server_log(d, "alice", "gpu"), timeout=15)
    assert marker not in server_log(d, "alice", "gpu")


ATTEMPTS = [
    b"/user/alice/gpu/../../bob/api/{m}",
    b"/user/alice/gpu/../api/{m}",
    b"/user/alice/gpu/%2e%2e/api/{m}",
    b"/user/alice/gpu/%2E%2E/%2e%2e/bob/api/{m}",
    b"/user/alice/gpu/..%2f..%2fbob/api/{m}",
    b"/user/alice/gpu/.%2e/api/{m}",
    b"/user/alice/gpu/..%5c..%5cbob/api/{m}",
    b"/user/alice/gpu%2f..%2f..%2fbob/api/{m}",
    b"/user/alice%2fgpu/api/{m}",
    b"/user/alice/gpu/api/../../../bob/api/{m}",
    b"/user/alice--gpu/api/{m}",
    b"/user/bob/gpu/api/{m}",
    b"/user/bob/../alice/gpu/api/{m}",
    b"/user/alice/GPU/api/{m}",
    b"/user/alice/%67pu/api/{m}",
]


@pytest.mark.parametrize("template", ATTEMPTS, ids=[a.decode() for a in ATTEMPTS])
def test_path_tricks_from_the_named_server_land_nowhere_else(site, template):
    """alice's cookie, paths that start at her gpu server (or name it oddly): refused
    before any server, or at most her default server's own 404 (``/user/alice/GPU/``
    names no server of hers); never bob's server, never the gpu server by a detour."""
    d, sessions, _ = site
    marker = "trv-" + secrets.token_hex(6)
    target = template.replace(b"{m}", marker.encode())
    response = raw_get(d.port, target, cookie_header(sessions["alice"]))
    status = int(response.split(b" ", 2)[1])
    assert b"Traceback" not in response
    assert status in (302, 403, 404), response[:300]
    # Control requests show up in the logs, so the checks below can fail.
    controls = {("alice", "gpu"): marked_get(d, sessions["alice"], "/user/alice/gpu/"),
                ("bob", ""): marked_get(d, sessions["bob"], "/user/bob/")}
    for (user, server), control in controls.items():
        wait_for(lambda c=control, u=user, s=server: c in server_log(d, u, s), timeout=15)
    assert marker not in server_log(d, "bob")
    assert marker not in server_log(d, "alice", "gpu")
    for line in server_log(d, "alice").splitlines():
        if marker in line:  # only ever under the default server's own base URL
            assert "/user/alice/" in line and "/user/bob" not in line, line


def test_the_server_token_is_injected_and_never_shown(site):
    d, sessions, _ = site
    sock = d.root / "state" / "redis" / "redis.sock"
    token = subprocess.run(["redis-cli", "-s", str(sock), "HGET", "ipydoc:server:alice--gpu",
                            "token"], capture_output=True, text=True, check=True).stdout.strip()
    assert len(token) >= 32
    alice = sessions["alice"]
    for path in ("lab", "api/status", "api/me", "api/sessions", "api/kernelspecs"):
        r = alice.get(f"{d.url}/user/alice/gpu/{path}")
        assert r.status_code == 200, (path, r.status_code)
        assert token not in r.text and token not in str(r.headers), path


def test_kernels_over_websocket_on_the_named_server_and_only_for_alice(site):
    d, sessions, _ = site
    alice = sessions["alice"]
    kernel = start_kernel(alice, d.url, "alice/gpu")  # /user/alice/gpu/api/kernels
    ws = connect(alice, d.url, "alice/gpu", kernel)
    try:
        assert execute(ws, "6*7")["text/plain"] == "42"
    finally:
        ws.close()
    # The kernel is the gpu server's: the default server does not know it.
    assert alice.get(f"{d.url}/user/alice/api/kernels/{kernel}").status_code == 404
    # bob's cookie, or alice's from another origin: refused at the handshake.
    for session, origin in ((sessions["bob"], d.url), (alice, "http://evil.example")):
        with pytest.raises(websocket.WebSocketBadStatusException) as e:
            connect(session, d.url, "alice/gpu", kernel, origin=origin)
        assert e.value.status_code == 403
    r = alice.post(f"{d.url}/user/alice/gpu/api/kernels", json={"name": "python3"},
                   headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "Origin" in r.json()["message"]


def test_a_stopped_named_server_sends_browsers_to_its_start_page(site):
    d, sessions, tokens = site
    alice = sessions["alice"]
    r = alice.delete(f"{d.url}{API}/users/alice/servers/gpu",
                     headers=api_headers(alice, d.url))
    assert r.status_code == 200 and r.json()["stopped"] is True, r.text
    assert r.json()["server"]["state"] == "stopped"
    page = alice.get(f"{d.url}/user/alice/gpu/lab?x=1", allow_redirects=False,
                     headers={"Accept": "text/html"})
    assert page.status_code == 302
    assert page.headers["Location"] == "/hub/spawn/alice/gpu?next=/user/alice/gpu/lab%3Fx%3D1"
    api = requests.get(f"{d.url}/user/alice/gpu/api/status", timeout=30,
                       headers={"Authorization": f"token {tokens['alice']}"})
    assert api.status_code == 503
    assert "/hub/spawn/alice/gpu" in api.json()["message"]
    # A stopped named server still owns its path (its record is there): not the default's.
    marker = "stp-" + secrets.token_hex(6)
    assert alice.get(f"{d.url}/user/alice/gpu/api/{marker}").status_code == 503
    assert alice.get(f"{d.url}/user/alice/api/status").status_code == 200
    control = marked_get(d, alice, "/user/alice/")
    wait_for(lambda: control in server_log(d, "alice"), timeout=15)
    assert marker not in server_log(d, "alice")
    # The start page for it is alice's, and nobody else's.
    assert alice.get(f"{d.url}/hub/spawn/alice/gpu").status_code == 200
    assert sessions["bob"].get(f"{d.url}/hub/spawn/alice/gpu").status_code == 403


def test_urls_of_a_named_server_in_both_modes():
    from ipydoc.edge.routing import Routing, spawn_path

    path, sub = Routing(), Routing("subdomain", "nb.example.org", "https://nb.example.org")
    assert path.base_url("alice--gpu") == "/user/alice/gpu/"
    assert path.user_url("alice--gpu", "lab") == "/user/alice/gpu/lab"
    assert sub.base_url("alice--gpu") == "/"
    assert sub.user_url("alice--gpu", "lab") == "https://alice--gpu.nb.example.org/lab"
    assert spawn_path("alice") == "/hub/spawn/alice"
    assert spawn_path("alice--gpu") == "/hub/spawn/alice/gpu"
    # next= may name the named server's own host, never a sibling's or the owner's.
    own = "https://alice--gpu.nb.example.org/lab/tree/x.ipynb"
    assert sub.user_target("alice--gpu", own) == own
    for bad in ("https://alice.nb.example.org/lab", "https://alice--cpu.nb.example.org/lab",
                "https://alice--gpu.nb.example.org.evil.org/"):
        assert sub.user_target("alice--gpu", bad) == "https://alice--gpu.nb.example.org/lab"
    assert path.user_target("alice--gpu", "/user/alice/gpu/lab?x") == "/user/alice/gpu/lab?x"
