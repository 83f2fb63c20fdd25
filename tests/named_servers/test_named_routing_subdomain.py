"""Named servers in subdomain mode (issue 19 §1), real daemon and containers: alice's
server ``gpu`` is the host ``alice--gpu.nb.test`` (its key as the DNS label), signed in
through the same handoff as her default host; bob gets in with nothing of his; a
``xn--`` label is never a server's host; a path-mode link moves to the named server's
host; a stopped one sends the browser to its start page on the hub.  Tests run in file
order on one daemon.
"""

from __future__ import annotations

import secrets
import subprocess
from urllib.parse import quote, urlsplit

import pytest
import requests

from subdomain_support import DOMAIN, Browser, hand_off, login, set_cookies, subdomain_site
from support import wait_for

PW = {"alice": "alice-named-sub-1", "bob": "bob-named-sub-1"}
KEY = "alice--gpu"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    yield from subdomain_site(tmp_path_factory.mktemp("named-sub"), PW,
                              auth={"start_on_login": False})


@pytest.fixture(scope="module")
def browsers(site):
    out = {}
    for name, pw in PW.items():
        b = Browser(site.port)
        assert login(b, name, pw).status_code == 303
        out[name] = b
    return out


def hub_api(b: Browser, method: str, path: str) -> requests.Response:
    """A cookie request to the hub's API (CSRF token from home, the hub's Origin)."""
    home = b.get(b.host(), "/hub/home")
    csrf = home.text.split('name="_csrf" value="', 1)[1].split('"', 1)[0]
    body = {"json": {}} if method == "POST" else {}
    return b.request(method, b.host(), "/hub/api" + path, **body,
                     headers={"X-CSRF-Token": csrf, "Origin": b.origin()})


def follow_ready(b: Browser, path: str) -> None:
    cookie = f"ipydoc-session={b.jar[b.host()]['ipydoc-session']}"
    with requests.get(f"http://127.0.0.1:{b.port}/hub/api{path}", stream=True, timeout=120,
                      headers={"Host": b.host(), "Cookie": cookie}) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if line.startswith(b"data: ") and b'"ready"' in line:
                return
            assert b'"failed"' not in line, line
    raise AssertionError("no ready step")


def gpu_log(site) -> str:
    ids = subprocess.run(["docker", "ps", "-q", "--filter",
                          f"label=ipydoc.instance={site.instance}", "--filter",
                          "label=ipydoc.user=alice", "--filter", "label=ipydoc.server=gpu"],
                         capture_output=True, text=True).stdout.split()
    assert len(ids) == 1, ids
    out = subprocess.run(["docker", "logs", ids[0]], capture_output=True, text=True)
    return out.stdout + out.stderr


def test_the_named_server_is_its_own_host(site, browsers):
    alice = browsers["alice"]
    r = hub_api(alice, "POST", "/users/alice/servers/gpu")
    assert r.status_code == 202, r.text
    assert r.json()["url"] == f"{alice.origin(KEY)}/lab"
    follow_ready(alice, "/users/alice/servers/gpu/progress")
    target = hand_off(alice, KEY, "/lab")
    u = urlsplit(target)
    assert u.netloc == alice.host(KEY) and u.path == "/_ipydoc/handoff"
    r = alice.go(target)
    assert r.status_code == 302 and r.headers["Location"] == "/lab"
    assert any(c.startswith("ipydoc-user=") for c in set_cookies(r))
    lab = alice.get(alice.host(KEY), "/lab", html=True)
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    marker = "sub-" + secrets.token_hex(6)
    assert alice.get(alice.host(KEY), f"/api/contents/{marker}").status_code == 404
    wait_for(lambda: f"/api/contents/{marker}" in gpu_log(site), timeout=15)


def test_bob_gets_no_way_into_alices_named_host(site, browsers):
    bob = browsers["bob"]
    # The hub will not hand bob off to alice's server.
    r = bob.get(bob.host(), f"/hub/handoff?to={KEY}&next=/lab&state=" + "s" * 43)
    assert r.status_code == 403
    # His own host session (for his own host) does not open hers.
    r = hub_api(bob, "POST", "/users/bob/server")
    assert r.status_code == 202, r.text
    follow_ready(bob, "/users/bob/server/progress")
    assert bob.go(hand_off(bob, "bob")).status_code == 302
    own = bob.jar[bob.host("bob")]
    marker = "bobx-" + secrets.token_hex(6)
    r = bob.get(bob.host(KEY), f"/api/contents/{marker}", cookies=own)
    assert r.status_code == 403 and "another user" in r.json()["message"]
    # Nor his personal token.
    created = hub_api(bob, "POST", "/users/bob/tokens")
    assert created.status_code == 201, created.text
    r = bob.get(bob.host(KEY), f"/api/contents/{marker}", cookies={},
                headers={"Authorization": f"token {created.json()['token']}"})
    assert r.status_code == 403
    control = "ctl-" + secrets.token_hex(6)
    alice = browsers["alice"]
    assert alice.get(alice.host(KEY), f"/api/contents/{control}").status_code == 404
    wait_for(lambda: control in gpu_log(site), timeout=15)
    assert marker not in gpu_log(site)


@pytest.mark.parametrize("label", ["xn--gpu", "xn--alice", "alice--", "--gpu", "alice--lab",
                                   "alice--gpu--x", "alice---gpu"])
def test_labels_that_are_no_server_key_are_no_host(site, browsers, label):
    b = browsers["alice"]
    r = b.get(f"{label}.{DOMAIN}:{site.port}", "/lab", cookies={})
    assert r.status_code == 404, (label, r.status_code)


def test_a_path_mode_link_moves_to_the_named_servers_host(site, browsers):
    b = browsers["alice"]
    r = b.get(b.host(), "/user/alice/gpu/lab/tree/x.ipynb?reset")
    assert r.status_code == 302
    assert r.headers["Location"] == f"{b.origin(KEY)}/lab/tree/x.ipynb?reset"
    # A second segment naming no server of alice's stays on her default host.
    r = b.get(b.host(), "/user/alice/cpu/lab")
    assert r.headers["Location"] == f"{b.origin('alice')}/cpu/lab"


def test_a_stopped_named_server_sends_the_browser_to_its_start_page(site, browsers):
    alice = browsers["alice"]
    r = hub_api(alice, "DELETE", "/users/alice/servers/gpu")
    assert r.status_code == 200 and r.json()["stopped"] is True, r.text
    page = alice.get(alice.host(KEY), "/lab", html=True)
    assert page.status_code == 302
    back = f"{alice.origin(KEY)}/lab"
    assert page.headers["Location"] == (f"{alice.origin()}/hub/spawn/alice/gpu?next="
                                        + quote(back, safe="/:"))
    api = alice.get(alice.host(KEY), "/api/status")
    assert api.status_code == 503 and "/hub/spawn/alice/gpu" in api.json()["message"]
