"""A named server's saves go to its owner's one history (issue 19 §1), for real: saves
made through the proxy on ``/user/alice/gpu/api/contents/...`` with a personal token, the
commit message naming the server; a restore works through whichever of alice's servers
runs (they share her volume)."""

from __future__ import annotations

import json
import re

from support import csrf_of, login, wait_for

PW = "named-history-pw-1"


def notebook(source: str) -> dict:
    return {"cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "source": source,
                       "execution_count": None, "outputs": []}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def make_token(d, session) -> str:
    r = session.post(d.url + "/hub/token", allow_redirects=False,
                     data={"_csrf": csrf_of(session, d.url), "note": "script",
                           "expires_in": "0"}, headers={"Origin": d.url})
    assert r.status_code == 303, r.text
    page = session.get(d.url + "/hub/token").text
    return re.search(r'id="new-token" readonly value="(ipd_[^"]+)"', page).group(1)


def versions(d, path: str) -> list[dict]:
    r = d.cli("--json", "history", "list", "alice", path)
    if r.returncode == 5:
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def cli_ok(d, *args: str) -> str:
    out = d.cli(*args)
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out.stdout


def test_saves_on_a_named_server_land_in_the_owners_history_naming_it(make_daemon):
    d = make_daemon(auth={"stop_on_logout": False}, history={"coalesce_seconds": 0.5})
    d.start()
    d.add_user("alice", PW)
    session, r = login(d.url, "alice", PW)
    assert r.status_code == 303, r.text
    token = make_token(d, session)
    auth = {"Authorization": f"token {token}"}
    cli_ok(d, "server", "start", "alice")
    cli_ok(d, "server", "start", "alice", "--server", "gpu")

    put = session.put(f"{d.url}/user/alice/gpu/api/contents/gpu.ipynb", headers=auth,
                      cookies={}, json={"type": "notebook", "format": "json",
                                        "content": notebook("x = 'on gpu'")})
    assert put.status_code in (200, 201), put.text
    listed = wait_for(lambda: versions(d, "gpu.ipynb"), 30)
    assert [v["message"] for v in listed] == ["Save gpu.ipynb (server gpu)"]
    assert listed[0]["author"] == "alice"

    # The same file saved on the default server: one history, the message names no server.
    put = session.put(f"{d.url}/user/alice/api/contents/gpu.ipynb", headers=auth,
                      json={"type": "notebook", "format": "json",
                            "content": notebook("x = 'on the default one'")})
    assert put.status_code in (200, 201), put.text
    listed = wait_for(lambda: (v := versions(d, "gpu.ipynb")) and len(v) == 2 and v, 30)
    assert [v["message"] for v in listed] == ["Save gpu.ipynb", "Save gpu.ipynb (server gpu)"]
    first = listed[1]["rev"]

    # Only the named server runs: a restore goes through it (the same files).
    cli_ok(d, "server", "stop", "alice")
    cli_ok(d, "history", "restore", "alice", "gpu.ipynb", first)
    got = session.get(f"{d.url}/user/alice/gpu/api/contents/gpu.ipynb", headers=auth)
    assert got.status_code == 200, got.text
    assert got.json()["content"]["cells"][0]["source"] == "x = 'on gpu'"
    listed = wait_for(lambda: (v := versions(d, "gpu.ipynb")) and len(v) == 3 and v, 30)
    assert listed[0]["message"].startswith(f"Restore gpu.ipynb to version {first[:8]}")
