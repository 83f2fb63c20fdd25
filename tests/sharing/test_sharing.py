"""Sharing a server (issue 19 §3) through the real daemon, Docker and jupyter_server.

alice shares her server with bob: without a share bob (session or token) gets 403; with
an rw share his browser session and his personal token reach it, he saves a notebook
that alice then reads; nothing he receives carries alice's Jupyter token.  A view share
lets GETs through and refuses writes and the kernel WebSocket.  Revoking closes bob's
open kernel WebSocket at once and his next request is 403.  A group share follows the
group's membership; carol, never shared with, stays out.  Every change is an event.

One daemon for the module; the tests run in file order.
"""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
import websocket
from prometheus_client.parser import text_string_to_metric_families

from kernel_client import connect, execute, start_kernel
from support import Daemon, csrf_of, docker, follow_progress, free_port, login, wait_for

PW = {"alice": "alice-sharing-pw", "bob": "bob-sharing-pw", "carol": "carol-sharing-pw",
      "dave": "dave-sharing-pw"}
NOTEBOOK = {"type": "notebook", "format": "json", "content": {
    "cells": [{"cell_type": "code", "source": "6*7", "metadata": {}, "outputs": [],
               "execution_count": None}],
    "metadata": {}, "nbformat": 4, "nbformat_minor": 5}}


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    port = free_port()
    d = Daemon(tmp_path_factory.mktemp("sharing"),
               {"metrics": {"listen": f"tcp:{port}:interface=127.0.0.1"}})
    d.metrics_url = f"http://127.0.0.1:{port}/metrics"
    d.start()
    for name, pw in PW.items():
        d.add_user(name, pw)
    yield d
    d.stop()
    d.cleanup_docker()


class Recorder:
    """Every answer a session received (headers and body), to look for a secret."""

    def __init__(self, session: requests.Session) -> None:
        self.seen: list[tuple[str, bytes]] = []
        session.hooks["response"].append(self._hook)

    def _hook(self, r: requests.Response, *args, **kwargs) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.seen.append((r.url, headers.encode() + b"\n\n" + r.content))

    def leaks(self, secret: str) -> list[str]:
        return [url for url, raw in self.seen if secret.encode() in raw]


@pytest.fixture(scope="module")
def people(site):
    out: dict = {}
    for name in PW:
        session, r = login(site.url, name, PW[name])
        assert r.status_code == 303
        out[name] = session
    out["bob_rec"] = Recorder(out["bob"])
    assert follow_progress(out["alice"], site.url, "alice")[-1]["phase"] == "ready"
    out["alice_kernel"] = start_kernel(out["alice"], site.url, "alice")
    out["bob_token"] = make_token(site, out["bob"])
    yield out


def make_token(site, session: requests.Session) -> str:
    r = session.post(site.url + "/hub/token", data={"_csrf": csrf_of(session, site.url),
                                                    "note": "share", "expires_in": "0"},
                     headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 303
    page = session.get(site.url + "/hub/token").text
    return re.search(r'id="new-token" readonly value="(ipd_[^"]+)"', page).group(1)


def alice_token(site) -> str:
    (cid,) = site.containers("alice", all=False)
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", cid))
    return next(e.split("=", 1)[1] for e in env if e.startswith("JUPYTER_TOKEN="))


def cli_ok(site, *args: str) -> dict | list:
    r = site.cli("--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def bob_get(site, people, path: str, **kw) -> requests.Response:
    return people["bob"].get(site.url + "/user/alice/" + path, **kw)


def by_token(site, token: str, method: str, path: str, **kw) -> requests.Response:
    return requests.request(method, site.url + "/user/alice/" + path,
                            headers={"Authorization": f"token {token}"}, timeout=30, **kw)


def events(site, kind: str) -> list[dict]:
    r = site.cli("events", "--json", "-n", "200", "--kind", kind)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def test_without_a_share_bob_is_refused(site, people):
    assert bob_get(site, people, "api/status").status_code == 403
    assert by_token(site, people["bob_token"], "GET", "api/status").status_code == 403
    assert bob_get(site, people, "api/contents").status_code == 403


def test_rw_share_lets_bob_work_in_alices_server(site, people):
    share = cli_ok(site, "share", "add", "alice", "bob")
    assert (share["server"], share["guest"], share["mode"], share["changed"]) == \
        ("alice", "bob", "rw", True)
    # bob's browser session: list, save a notebook (Origin as a browser sends it)
    assert bob_get(site, people, "api/contents").status_code == 200
    r = people["bob"].put(site.url + "/user/alice/api/contents/shared.ipynb", json=NOTEBOOK,
                          headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text
    # alice reads bob's change
    r = people["alice"].get(site.url + "/user/alice/api/contents/shared.ipynb")
    assert r.status_code == 200
    assert r.json()["content"]["cells"][0]["source"] == "6*7"
    # bob's personal token (scope servers) works the same
    r = by_token(site, people["bob_token"], "GET", "api/contents/shared.ipynb")
    assert r.status_code == 200 and r.json()["name"] == "shared.ipynb"
    # and bob can run code in alice's kernel
    ws = connect(people["bob"], site.url, "alice", people["alice_kernel"])
    assert execute(ws, "6*7")["text/plain"] == "42"
    ws.close()
    # a cross-site page still cannot drive it with bob's cookie
    r = people["bob"].put(site.url + "/user/alice/api/contents/evil.ipynb", json=NOTEBOOK,
                          headers={"Origin": "https://evil.example"})
    assert r.status_code == 403


def test_bob_never_receives_alices_token(site, people):
    secret = alice_token(site)
    assert len(secret) >= 16
    for path in ("lab", "lab/tree/shared.ipynb", "tree", "api/status", "api/me", "api/contents",
                 "api/contents/shared.ipynb", "api/sessions", "api/kernels", "api/kernelspecs",
                 "api/terminals", "lab/api/settings", "lab/api/workspaces",
                 "lab/api/translations", "api/config/notebook", "static/lab/index.html",
                 # the server's runtime files (hidden: refused; any answer is checked)
                 "api/contents/.local/share/jupyter/runtime",
                 "files/.local/share/jupyter/runtime/jpserver-7.json",
                 "api/contents/.local/share/jupyter/runtime/jpserver-7.json?format=base64"
                 "&content=1"):
        bob_get(site, people, path, headers={"Accept": "text/html,application/json"})
        bob_get(site, people, path, headers={"Accept-Encoding": "gzip, deflate"})
        bob_get(site, people, path, headers={"Range": "bytes=0-15"})
        by_token(site, people["bob_token"], "GET", path)
    lab = bob_get(site, people, "lab", headers={"Accept": "text/html"})
    assert lab.status_code == 200 and "jupyter-config-data" in lab.text
    config = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', lab.text,
                                  re.S).group(1))
    assert not config.get("token")
    assert people["bob_rec"].leaks(secret) == []
    assert secret not in lab.text


def test_view_share_allows_reading_only(site, people):
    share = cli_ok(site, "share", "add", "alice", "bob", "--mode", "view")
    assert (share["mode"], share["changed"]) == ("view", True)
    r = bob_get(site, people, "api/contents/shared.ipynb")
    assert r.status_code == 200 and r.json()["content"]["cells"][0]["source"] == "6*7"
    assert bob_get(site, people, "lab", headers={"Accept": "text/html"}).status_code == 200
    r = people["bob"].put(site.url + "/user/alice/api/contents/shared.ipynb", json=NOTEBOOK,
                          headers={"Origin": site.url})
    assert r.status_code == 403 and "view-only" in r.json()["message"]
    r = people["bob"].post(site.url + "/user/alice/api/kernels", json={"name": "python3"},
                           headers={"Origin": site.url})
    assert r.status_code == 403
    assert by_token(site, people["bob_token"], "DELETE",
                    "api/contents/shared.ipynb").status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(people["bob"], site.url, "alice", people["alice_kernel"])
    assert refused.value.status_code == 403
    # the file is untouched
    assert people["alice"].get(site.url + "/user/alice/api/contents/shared.ipynb"
                               ).status_code == 200


def closed_soon(ws: websocket.WebSocket) -> float:
    """Wait (a generous 10 s: an idle kernel's WebSocket would stay open for ever) until
    the proxy closes ``ws``; how long it took."""
    ws.settimeout(10)
    start = time.monotonic()
    try:
        while True:
            if ws.recv() in ("", b""):
                break
    except websocket.WebSocketTimeoutException:
        pytest.fail("the guest's WebSocket is still open 10 s after the share was revoked")
    except (websocket.WebSocketConnectionClosedException, OSError):
        pass
    return time.monotonic() - start


def test_revoking_closes_bobs_websocket_at_once(site, people):
    cli_ok(site, "share", "add", "alice", "bob", "--mode", "rw")
    bob_ws = connect(people["bob"], site.url, "alice", people["alice_kernel"])
    assert execute(bob_ws, "1+1")["text/plain"] == "2"
    alice_ws = connect(people["alice"], site.url, "alice", people["alice_kernel"])
    assert execute(alice_ws, "2+2")["text/plain"] == "4"
    gone = cli_ok(site, "share", "remove", "alice", "bob")
    assert [(s["guest"], s["mode"]) for s in gone["removed"]] == [("bob", "rw")]
    closed_soon(bob_ws)
    assert bob_get(site, people, "api/status").status_code == 403
    assert by_token(site, people["bob_token"], "GET", "api/status").status_code == 403
    # alice's own WebSocket to the same kernel is untouched
    assert execute(alice_ws, "3+3")["text/plain"] == "6"
    alice_ws.close()
    wait_for(lambda: re.search(r"closed \d+ open connection\(s\) of bob to alice: share "
                               r"revoked", site.log()), 10)
    # removing it again: no such share
    r = site.cli("share", "remove", "alice", "bob")
    assert r.returncode == 5, r.stderr


def test_turning_a_share_view_only_closes_the_kernel_websocket(site, people):
    cli_ok(site, "share", "add", "alice", "bob")
    bob_ws = connect(people["bob"], site.url, "alice", people["alice_kernel"])
    assert execute(bob_ws, "5*5")["text/plain"] == "25"
    cli_ok(site, "share", "add", "alice", "bob", "--mode", "view")
    closed_soon(bob_ws)
    assert bob_get(site, people, "api/contents").status_code == 200
    cli_ok(site, "share", "remove", "alice", "bob")


def test_a_group_share_follows_membership(site, people):
    assert site.cli("group", "add", "course").returncode == 0
    assert site.cli("group", "members", "add", "course", "dave").returncode == 0
    share = cli_ok(site, "share", "add", "alice", "--group", "course", "--mode", "view")
    assert (share["kind"], share["guest"]) == ("group", "course")
    dave = people["dave"]
    assert dave.get(site.url + "/user/alice/api/contents").status_code == 200
    assert people["carol"].get(site.url + "/user/alice/api/contents").status_code == 403
    assert bob_get(site, people, "api/contents").status_code == 403
    # dave sees it on his home page, with a link
    home = dave.get(site.url + "/hub/home").text
    assert "/user/alice/" in home
    listed = cli_ok(site, "share", "list", "--guest", "dave")
    assert [(s["server"], s["kind"], s["guest"]) for s in listed] == \
        [("alice", "group", "course")]
    # read-write for the group: dave runs code in alice's kernel
    cli_ok(site, "share", "add", "alice", "--group", "course", "--mode", "rw")
    dave_ws = connect(dave, site.url, "alice", people["alice_kernel"])
    assert execute(dave_ws, "2**10")["text/plain"] == "1024"
    # carol joins, dave leaves: access follows at once (dave's kernel WebSocket closes)
    assert site.cli("group", "members", "add", "course", "carol").returncode == 0
    assert site.cli("group", "members", "remove", "course", "dave").returncode == 0
    closed_soon(dave_ws)
    assert people["carol"].get(site.url + "/user/alice/api/contents").status_code == 200
    assert dave.get(site.url + "/user/alice/api/contents").status_code == 403
    # the group removed: its shares go
    assert site.cli("group", "remove", "course").returncode == 0
    assert people["carol"].get(site.url + "/user/alice/api/contents").status_code == 403
    assert cli_ok(site, "share", "list", "alice") == []
    assert site.cli("group", "add", "course").returncode == 0  # back for later tests


def test_a_guest_cannot_reach_the_owners_other_things(site, people):
    cli_ok(site, "share", "add", "alice", "bob")
    try:
        # alice's hub pages and API stay hers
        assert people["bob"].get(site.url + "/hub/api/users/alice/server").status_code == 403
        r = people["bob"].get(site.url + "/hub/spawn/alice", allow_redirects=False)
        assert r.status_code in (302, 303, 403)
        # bob's own server is still his own business: no share of it for alice
        assert people["alice"].get(site.url + "/user/bob/api/status").status_code == 403
        # traversal out of alice's server does not change the rule
        r = people["bob"].get(site.url + "/user/alice/../carol/api/status")
        assert r.status_code in (403, 404)
    finally:
        cli_ok(site, "share", "remove", "alice", "bob")


def test_shares_and_guest_sessions_are_events(site, people):
    shares = events(site, "share")
    assert any("guest=user:bob" in e["detail"] and "mode=rw" in e["detail"] and
               e["user"] == "alice" for e in shares)
    assert any("guest=group:course" in e["detail"] for e in shares)
    unshares = events(site, "unshare")
    assert any("guest=user:bob" in e["detail"] for e in unshares)
    guests = events(site, "guest-session")
    assert any("guest=bob" in e["detail"] and "via=browser" in e["detail"] for e in guests)
    assert any("guest=bob" in e["detail"] and "via=token" in e["detail"] for e in guests)
    assert any("guest=dave" in e["detail"] for e in guests)
    listed = cli_ok(site, "share", "list", "alice")
    assert listed == []
    # and counted for /metrics
    text = requests.get(site.metrics_url, timeout=10).text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("ipydoc_guest_requests_total", (("mode", "rw"),))] >= 5
    assert samples[("ipydoc_guest_requests_total", (("mode", "view"),))] >= 3
    assert samples[("ipydoc_guest_refusals_total", ())] >= 4   # the view test's refusals
    assert samples[("ipydoc_share_cut_exchanges_total", ())] >= 3  # revoke, view, group


def test_a_named_server_is_shared_on_its_own(site, people):
    r = site.cli("server", "start", "alice", "--server", "gpu")
    assert r.returncode == 0, r.stderr
    share = cli_ok(site, "share", "add", "alice", "bob", "--server", "gpu")
    assert (share["server"], share["owner"]) == ("alice--gpu", "alice")
    wait_for(lambda: bob_get(site, people, "gpu/api/status").status_code == 200, 30)
    assert by_token(site, people["bob_token"], "GET", "gpu/api/contents").status_code == 200
    # the default server is not shared by sharing the named one
    assert bob_get(site, people, "api/status").status_code == 403
    assert by_token(site, people["bob_token"], "GET", "api/status").status_code == 403
    kernel = people["bob"].post(site.url + "/user/alice/gpu/api/kernels",
                                json={"name": "python3"}, headers={"Origin": site.url})
    assert kernel.status_code == 201, kernel.text
    url = site.url.replace("http", "ws", 1) + \
        f"/user/alice/gpu/api/kernels/{kernel.json()['id']}/channels"
    cookie = "; ".join(f"{k}={v}" for k, v in people["bob"].cookies.items())
    ws = websocket.create_connection(url, cookie=cookie, origin=site.url, timeout=60)
    assert execute(ws, "7*6")["text/plain"] == "42"
    # bob never sees the named server's token either
    (cid,) = [c for c in site.containers(all=False)
              if "gpu" in docker("inspect", "--format", "{{.Name}}", c)]
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", cid))
    secret = next(e.split("=", 1)[1] for e in env if e.startswith("JUPYTER_TOKEN="))
    bob_get(site, people, "gpu/lab", headers={"Accept": "text/html"})
    bob_get(site, people, "gpu/api/status")
    assert people["bob_rec"].leaks(secret) == []
    # revoking cuts the WebSocket to the named server
    cli_ok(site, "share", "remove", "alice", "bob", "--server", "gpu")
    closed_soon(ws)
    assert bob_get(site, people, "gpu/api/status").status_code == 403
    # a removed named server's shares go with it
    cli_ok(site, "share", "add", "alice", "bob", "--server", "gpu", "--mode", "view")
    assert site.cli("server", "stop", "alice", "--server", "gpu").returncode == 0
    r = site.cli("server", "remove", "alice", "--server", "gpu")
    assert r.returncode == 0, r.stderr
    assert cli_ok(site, "share", "list", "alice") == []
