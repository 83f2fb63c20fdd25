"""Versioning end to end: a real daemon, real jupyter_server in Docker, real git, saves made
through the proxy as JupyterLab makes them, a local bare repository as the mirror and a
tiny stand-in for the GitHub API.

One daemon for the module; tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests

from support import csrf_of, follow_progress, login, wait_for

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw-1"


def src(cell: dict) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def notebook(*sources: str, output: str | None = None) -> dict:
    cells = []
    for i, src in enumerate(sources):
        cell = {"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src,
                "execution_count": None, "outputs": []}
        if output is not None and i == 0:
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": output}]
        cells.append(cell)
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class _FakeGitHub(BaseHTTPRequestHandler):
    calls: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                 "body": body})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"name": body["name"]}).encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def github():
    server = HTTPServer(("127.0.0.1", 0), _FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def site(tmp_path_factory, github):
    from support import TEST_IMAGE, Daemon

    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    root = tmp_path_factory.mktemp("history")
    mirror = root / "mirror"
    d = Daemon(root / "daemon", overrides={
        "auth": {"stop_on_logout": False},
        "history": {"coalesce_seconds": 1.0, "remote": str(mirror / "{name}.git"),
                    "push_backoff_max": 1.0, "create_repo": True,
                    "api_url": f"http://127.0.0.1:{github.server_port}", "api_org": "acme",
                    "remote_token": "gh-test-token", "max_output_size": "4K"}})
    d.mirror = mirror
    d.start()
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW)
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def alice(site):
    session, r = login(site.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert follow_progress(session, site.url, "alice")[-1]["phase"] == "ready"
    return session


def git(site, *args: str) -> str:
    repo = site.root / "state" / "history" / "alice.git"
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          text=True, check=True).stdout


def versions(site, name: str, path: str | None = None) -> list[dict]:
    r = site.cli("--json", "history", "list", name, *([path] if path else []))
    if r.returncode == 5:
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_versions(site, path: str, n: int, timeout: float = 30) -> list[dict]:
    return wait_for(lambda: (v := versions(site, "alice", path)) and len(v) >= n and v,
                    timeout=timeout)


def save(session, site, path: str, nb: dict) -> requests.Response:
    r = session.put(f"{site.url}/user/alice/api/contents/{path}",
                    json={"type": "notebook", "format": "json", "content": nb},
                    headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text
    return r


def test_three_saves_through_the_proxy_are_three_commits(site, alice):
    for n, text in enumerate(["x = 1", "x = 2", "x = 3"], start=1):
        save(alice, site, "analysis.ipynb", notebook("import math", text))
        wait_versions(site, "analysis.ipynb", n)
    listed = versions(site, "alice", "analysis.ipynb")
    assert [v["message"] for v in listed] == ["Save analysis.ipynb"] * 3
    assert [v["author"] for v in listed] == ["alice"] * 3
    for v, text in zip(listed, ["x = 3", "x = 2", "x = 1"]):
        saved = json.loads(git(site, "show", f"{v['rev']}:analysis.ipynb"))
        assert [src(c) for c in saved["cells"]] == ["import math", text]
    # The notebook is stored byte for byte as jupyter_server wrote it.
    on_disk = alice.get(f"{site.url}/user/alice/api/contents/analysis.ipynb",
                        params={"type": "file", "format": "text"}).json()["content"]
    assert git(site, "show", "main:analysis.ipynb") == on_disk


def test_repeated_saves_in_a_short_time_are_one_commit(site, alice):
    for text in ("y = 1", "y = 2", "y = 3"):
        save(alice, site, "quick.ipynb", notebook(text))
    listed = wait_versions(site, "quick.ipynb", 1)
    time.sleep(2.5)  # nothing more comes
    listed = versions(site, "alice", "quick.ipynb")
    assert len(listed) == 1 and listed[0]["message"] == "Save quick.ipynb (3 saves)"
    assert src(json.loads(git(site, "show", "main:quick.ipynb"))["cells"][0]) == "y = 3"


def test_big_outputs_are_replaced_by_a_note(site, alice):
    save(alice, site, "big.ipynb", notebook("print('x' * 10000)", output="x" * 10000))
    wait_versions(site, "big.ipynb", 1)
    stored = json.loads(git(site, "show", "main:big.ipynb"))
    text = "".join(stored["cells"][0]["outputs"][0]["text"])
    assert "not kept in the history" in text and "x" * 100 not in text
    assert src(stored["cells"][0]) == "print('x' * 10000)"


def test_diff_names_the_changed_cells(site, alice):
    listed = versions(site, "alice", "analysis.ipynb")
    r = alice.get(f"{site.url}/hub/history/alice/diff",
                  params={"path": "analysis.ipynb", "a": listed[1]["rev"], "b": listed[0]["rev"]})
    assert r.status_code == 200
    assert "Cell 2 (code): changed" in r.text
    assert "Cell 1 (code): unchanged" in r.text
    assert "1 cell changed" in r.text
    assert "x = 2" in r.text and "x = 3" in r.text
    assert "nbformat" not in r.text and "execution_count" not in r.text  # not raw JSON
    page = alice.get(f"{site.url}/hub/history/alice")
    assert page.status_code == 200 and "analysis.ipynb" in page.text
    file_page = alice.get(f"{site.url}/hub/history/alice/file",
                          params={"path": "analysis.ipynb"})
    assert file_page.status_code == 200 and listed[2]["rev"][:8] in file_page.text


def test_restore_from_the_page_is_a_new_save(site, alice):
    first = versions(site, "alice", "analysis.ipynb")[-1]["rev"]
    csrf = csrf_of(alice, site.url)
    refused = alice.post(f"{site.url}/hub/history/alice/restore",
                         data={"_csrf": "wrong", "path": "analysis.ipynb", "rev": first},
                         headers={"Origin": site.url}, allow_redirects=False)
    assert refused.status_code == 403
    r = alice.post(f"{site.url}/hub/history/alice/restore",
                   data={"_csrf": csrf, "path": "analysis.ipynb", "rev": first},
                   headers={"Origin": site.url}, allow_redirects=False)
    assert r.status_code == 303, r.text
    model = alice.get(f"{site.url}/user/alice/api/contents/analysis.ipynb").json()
    assert [src(c) for c in model["content"]["cells"]] == ["import math", "x = 1"]
    listed = wait_versions(site, "analysis.ipynb", 4)
    assert listed[0]["message"] == f"Restore analysis.ipynb to version {first[:8]}"
    assert git(site, "show", "main:analysis.ipynb") == git(site, "show", f"{first}:analysis.ipynb")


def test_restore_from_the_cli(site, alice):
    second = versions(site, "alice", "analysis.ipynb")[-2]["rev"]
    r = site.cli("history", "restore", "alice", "analysis.ipynb", second[:10])
    assert r.returncode == 0, r.stderr
    model = alice.get(f"{site.url}/user/alice/api/contents/analysis.ipynb").json()
    assert src(model["content"]["cells"][1]) == "x = 2"
    wait_versions(site, "analysis.ipynb", 5)
    assert site.cli("history", "restore", "alice", "analysis.ipynb", "abcdef12").returncode == 5
    assert site.cli("history", "restore", "alice", "../etc/passwd", second).returncode == 2
    table = site.cli("history", "list", "alice").stdout
    assert "analysis.ipynb" in table and "VERSIONS" in table


def test_rename_and_delete_are_recorded(site, alice):
    r = alice.patch(f"{site.url}/user/alice/api/contents/quick.ipynb",
                    json={"path": "renamed.ipynb"}, headers={"Origin": site.url})
    assert r.status_code == 200, r.text
    listed = wait_versions(site, "renamed.ipynb", 1)
    assert listed[0]["message"] == "Rename quick.ipynb to renamed.ipynb"
    assert "quick.ipynb" not in git(site, "ls-tree", "--name-only", "main")
    r = alice.delete(f"{site.url}/user/alice/api/contents/big.ipynb",
                     headers={"Origin": site.url})
    assert r.status_code == 204
    listed = wait_versions(site, "big.ipynb", 2)
    assert listed[0]["message"] == "Delete big.ipynb" and listed[0]["change"] == "D"
    files = {f["path"]: f for f in versions(site, "alice")}
    assert files["big.ipynb"]["present"] is False and files["renamed.ipynb"]["present"]
    # A move to another folder is recorded as a move (the old path keeps its versions).
    r = alice.put(f"{site.url}/user/alice/api/contents/archive", json={"type": "directory"},
                  headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text
    r = alice.patch(f"{site.url}/user/alice/api/contents/renamed.ipynb",
                    json={"path": "archive/renamed.ipynb"}, headers={"Origin": site.url})
    assert r.status_code == 200, r.text
    moved = wait_versions(site, "archive/renamed.ipynb", 1)
    assert moved[0]["message"] == "Rename renamed.ipynb to archive/renamed.ipynb"
    assert (moved[0]["change"], moved[0]["from_path"]) == ("R", "renamed.ipynb")
    tree = git(site, "ls-tree", "-r", "--name-only", "main").split()
    assert "archive/renamed.ipynb" in tree and "renamed.ipynb" not in tree
    assert len(versions(site, "alice", "renamed.ipynb")) >= 2


def test_another_user_cannot_read_alices_history(site, alice):
    bob, r = login(site.url, "bob", BOB_PW)
    assert r.status_code == 303
    for path in ("/hub/history/alice", "/hub/history/alice/file?path=analysis.ipynb",
                 "/hub/history/alice/diff?path=analysis.ipynb"):
        got = bob.get(site.url + path, allow_redirects=False)
        assert got.status_code == 403, path
        assert "x = 1" not in got.text and "analysis.ipynb" not in got.text
    rev = versions(site, "alice", "analysis.ipynb")[-1]["rev"]
    csrf = csrf_of(bob, site.url)
    assert bob.post(f"{site.url}/hub/history/alice/restore",
                    data={"_csrf": csrf, "path": "analysis.ipynb", "rev": rev},
                    headers={"Origin": site.url}, allow_redirects=False).status_code == 403
    own = bob.get(f"{site.url}/hub/history/bob")
    assert own.status_code == 200 and "analysis.ipynb" not in own.text
    assert requests.get(f"{site.url}/hub/history/alice",
                        allow_redirects=False).status_code == 302  # to login


def test_push_failure_shows_and_recovers(site, alice, github):
    # The mirror does not exist yet: every push so far failed, visibly.
    events = site.cli("--json", "events", "-n", "200", "--kind", "history-push-failed")
    assert "history-push-failed" in events.stdout
    page = alice.get(f"{site.url}/hub/history/alice")
    assert "pushing fails" in page.text
    assert github.RequestHandlerClass.calls[0]["path"] == "/orgs/acme/repos"
    assert github.RequestHandlerClass.calls[0]["auth"] == "Bearer gh-test-token"
    assert github.RequestHandlerClass.calls[0]["body"]["name"] == "alice"
    assert github.RequestHandlerClass.calls[0]["body"]["private"] is True
    # The mirror appears: the next retry pushes everything.
    mirror = site.mirror / "alice.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(mirror)], check=True)
    head = git(site, "rev-parse", "main").strip()

    def pushed() -> bool:
        out = subprocess.run(["git", "--git-dir", str(mirror), "rev-parse", "main"],
                             capture_output=True, text=True)
        return out.stdout.strip() == head
    wait_for(pushed, timeout=20)
    wait_for(lambda: "up to date" in alice.get(f"{site.url}/hub/history/alice").text, timeout=10)
    ok = site.cli("--json", "events", "-n", "200", "--kind", "history-push-ok")
    assert "history-push-ok" in ok.stdout
    # Later saves are pushed too.
    save(alice, site, "after.ipynb", notebook("z = 1"))
    wait_versions(site, "after.ipynb", 1)
    wait_for(lambda: subprocess.run(["git", "--git-dir", str(mirror), "ls-tree", "--name-only",
                                     "main"], capture_output=True, text=True).stdout
             .count("after.ipynb"), timeout=20)


def test_a_save_right_before_the_daemon_is_killed_is_committed_after_restart(site, alice):
    save(alice, site, "last-words.ipynb", notebook("print('saved just in time')"))
    site.proc.kill()  # SIGKILL: no shutdown, well inside the coalescing window
    site.proc.wait()
    site.proc = None
    assert versions_in_git(site, "last-words.ipynb") == []
    site.start()
    listed = wait_versions(site, "last-words.ipynb", 1, timeout=60)
    assert listed[0]["message"] == "Save last-words.ipynb"
    saved = json.loads(git(site, "show", "main:last-words.ipynb"))
    assert src(saved["cells"][0]) == "print('saved just in time')"


def versions_in_git(site, path: str) -> list[str]:
    out = git(site, "log", "--format=%H", "main", "--", path)
    return [line for line in out.splitlines() if re.fullmatch(r"[0-9a-f]{40}", line)]
