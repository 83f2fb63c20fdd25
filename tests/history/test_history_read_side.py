"""The read side of history: versions followed through renames, deleted files listed and
restored, downloads (one version as the file, the whole history as a git bundle), and
``ipydoc history export``.

First the repository and the reader against real git in a temp folder; then end to end:
a real daemon, real jupyter_server in Docker, changes made through the proxy's contents
API as JupyterLab makes them (one daemon for the module; tests run in file order and
build on each other).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor

from ipydoc.config.history import HistorySection
from ipydoc.history.errors import NoSuchVersion
from ipydoc.history.reader import HistoryReader
from ipydoc.history.repo import Change, GitRepo, Repositories

import pki as pki_lib
from support import CLI, csrf_of, follow_progress, free_port, login, wait_for

ALICE_PW = "alice-secret-pw"
BOB_PW = "bob-secret-pw-1"


def notebook(*sources: str) -> dict:
    return {"cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": s,
                       "execution_count": None, "outputs": []}
                      for i, s in enumerate(sources)],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def nb_bytes(*sources: str) -> bytes:
    return json.dumps(notebook(*sources), indent=1).encode()


def sources(data: bytes | str) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(data)["cells"]]


def git_out(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                          cwd=cwd).stdout


def clone_revs(bundle: Path, into: Path) -> list[str]:
    """``git clone`` the bundle; every commit of the clone (``rev-list --all``)."""
    git_out("clone", "--quiet", str(bundle), str(into))
    return git_out("rev-list", "--all", cwd=into).split()


# -- the repository and the reader, real git in a temp folder ------------------------------
def renamed_repo(tmp_path: Path) -> tuple[GitRepo, list[str]]:
    """a.ipynb saved twice, renamed to b.ipynb (as the worker commits it: the move alone),
    saved again; c.txt saved and deleted; folder d moved to e.  The commits, oldest first."""
    repo = GitRepo(tmp_path / "alice.git")
    revs = []

    def commit(changes: list[Change], message: str, moves: list = ()) -> None:
        rev = repo.commit(changes, author="alice", message=message, when=1000 + len(revs),
                          moves=moves)
        assert rev
        revs.append(rev)

    commit([Change("a.ipynb", repo.write_blob(nb_bytes("x = 1")))], "Save a.ipynb")
    commit([Change("a.ipynb", repo.write_blob(nb_bytes("x = 2")))], "Save a.ipynb")
    commit([], "Rename a.ipynb to b.ipynb", moves=[("a.ipynb", "b.ipynb")])
    commit([Change("b.ipynb", repo.write_blob(nb_bytes("x = 3")))], "Save b.ipynb")
    commit([Change("c.txt", repo.write_blob(b"hello\n"))], "Save c.txt")
    commit([Change("c.txt")], "Delete c.txt")
    commit([Change("d/x.txt", repo.write_blob(b"same\n")),
            Change("d/y.txt", repo.write_blob(b"same\n"))], "Save d")
    commit([], "Rename d to e", moves=[("d", "e")])
    return repo, revs


def test_versions_follow_a_file_through_a_rename(tmp_path):
    repo, revs = renamed_repo(tmp_path)
    log = repo.log("b.ipynb")
    assert [(v.rev, v.change, v.path, v.from_path) for v in log] == [
        (revs[3], "M", "b.ipynb", ""), (revs[2], "R", "b.ipynb", "a.ipynb"),
        (revs[1], "M", "a.ipynb", ""), (revs[0], "A", "a.ipynb", "")]
    for v, x in zip(log, ["x = 3", "x = 2", "x = 2", "x = 1"]):
        assert sources(repo.read(v.rev, v.path)) == [x]
    # The worker's rename commit is the move alone: git sees an exact rename (R100).
    show = git_out("--git-dir", str(repo.path), "show", "-M", "--name-status", "--format=",
                   revs[2])
    assert show.split() == ["R100", "a.ipynb", "b.ipynb"]
    # A new notebook is not taken for a copy of a similar one (``git log --follow`` would).
    repo.commit([Change("f.ipynb", repo.write_blob(nb_bytes("x = 4")))], author="alice",
                message="Save f.ipynb", when=2000)
    assert [(v.change, v.path) for v in repo.log("f.ipynb")] == [("A", "f.ipynb")]
    # Folders: each file follows its own path, even when two have the same content.
    assert [(v.path, v.change) for v in repo.log("e/y.txt")] == [("e/y.txt", "R"),
                                                                ("d/y.txt", "A")]


def test_a_rename_with_edits_in_the_same_commit_is_followed_above_the_threshold(tmp_path):
    """Not what the worker commits (it commits a rename on its own), but a history made
    elsewhere: git's default similarity of 50% decides."""
    repo = GitRepo(tmp_path / "alice.git")
    body = "\n".join(f"line {i}" for i in range(40))
    repo.commit([Change("a.ipynb", repo.write_blob(nb_bytes(body)))], author="alice",
                message="one", when=1)
    edited = repo.write_blob(nb_bytes(body + "\nline 40"))
    repo.commit([Change("a.ipynb"), Change("b.ipynb", edited)], author="alice",
                message="rename and edit", when=2)
    assert [v.path for v in repo.log("b.ipynb")] == ["b.ipynb", "a.ipynb"]
    repo.commit([Change("b.ipynb"), Change("c.ipynb", repo.write_blob(nb_bytes("other")))],
                author="alice", message="delete b, new c", when=3)
    assert [v.path for v in repo.log("c.ipynb")] == ["c.ipynb"]  # not a rename


def test_the_summary_lists_deleted_files_but_not_renamed_ones(tmp_path):
    repo, revs = renamed_repo(tmp_path)
    files = repo.summary()
    assert set(files) == {"b.ipynb", "c.txt", "e/x.txt", "e/y.txt"}
    assert files["b.ipynb"]["present"] and files["b.ipynb"]["versions"] == 4
    assert files["b.ipynb"]["deleted"] is None
    c = files["c.txt"]
    assert c["present"] is False and c["rev"] == revs[4] and c["versions"] == 2
    assert c["deleted"] == 1005  # the time of the delete commit
    assert files["e/x.txt"]["present"] and files["e/x.txt"]["deleted"] is None


def test_a_bundle_clones_into_the_same_commits(tmp_path):
    repo, revs = renamed_repo(tmp_path)
    size = repo.bundle(tmp_path / "h.bundle")
    assert size == (tmp_path / "h.bundle").stat().st_size > 0
    assert clone_revs(tmp_path / "h.bundle", tmp_path / "clone") == list(reversed(revs))
    empty = GitRepo(tmp_path / "bob.git")
    empty.ensure()
    with pytest.raises(Exception, match="empty"):
        empty.bundle(tmp_path / "empty.bundle")


@pytest_twisted.ensureDeferred
async def test_the_reader_reads_versions_at_the_path_they_had(tmp_path):
    repo, revs = renamed_repo(tmp_path)
    reader = HistoryReader(HistorySection(), Repositories(tmp_path, "git", reactor),
                           store_source=None, servers=None, contents=None, enqueue=None)
    at, data = await reader.raw("alice", "b.ipynb", revs[0][:8])
    assert at == "a.ipynb" and sources(data) == ["x = 1"]
    # a commit that did not touch the file: the path it had then
    assert await reader.path_at("alice", "b.ipynb", revs[1]) == "a.ipynb"
    assert await reader.path_at("alice", "b.ipynb", revs[5]) == "b.ipynb"
    diff = await reader.diff("alice", "b.ipynb", revs[0], revs[3])
    assert diff["diff"].as_dict()["summary"] == "1 cell changed"
    at, data = await reader.raw("alice", "c.txt", revs[4])
    assert (at, data) == ("c.txt", b"hello\n")
    with pytest.raises(NoSuchVersion):
        await reader.raw("alice", "c.txt", revs[5])  # deleted in that version
    files = await reader.files("alice")
    assert [(f["path"], f["rev"]) for f in files if not f["present"]] == [("c.txt", revs[4])]
    f, size, sha = await reader.bundle("alice")
    try:
        body = f.read()
        assert len(body) == size and hashlib.sha256(body).hexdigest() == sha
    finally:
        f.close()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle")] == []


# -- end to end ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A test CA, the daemon's certificate and an admin's client certificate."""
    d = tmp_path_factory.mktemp("pki")
    ca = pki_lib.ca("read-side-ca")
    files = {"ca": d / "ca.pem"}
    files["ca"].write_bytes(pki_lib.pem(ca[0]))
    for who, server in (("localhost", True), ("admin", False)):
        cert, key = pki_lib.leaf(ca, who, usage=pki_lib.SERVER if server else pki_lib.CLIENT,
                                 san=pki_lib.LOCALHOST if server else ())
        files[f"{who}.crt"], files[f"{who}.key"] = d / f"{who}.crt", d / f"{who}.key"
        files[f"{who}.crt"].write_bytes(pki_lib.pem(cert))
        files[f"{who}.key"].write_bytes(pki_lib.pem_key(key))
        files[f"{who}.key"].chmod(0o600)
    return files


@pytest.fixture(scope="module")
def site(tmp_path_factory, pki):
    from support import TEST_IMAGE, Daemon

    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE], capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    port = free_port()
    d = Daemon(tmp_path_factory.mktemp("read-side"), overrides={
        "auth": {"stop_on_logout": False}, "history": {"coalesce_seconds": 0.5},
        "control": {"listen_tls": f"tcp:{port}:interface=127.0.0.1",
                    "tls_cert": str(pki["localhost.crt"]), "tls_key": str(pki["localhost.key"]),
                    "tls_client_ca": str(pki["ca"])}})
    d.tls_port = port
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


def repo_dir(site) -> Path:
    return site.root / "state" / "history" / "alice.git"


def versions(site, path: str | None = None, *flags: str) -> list[dict]:
    r = site.cli("--json", "history", "list", "alice", *([path] if path else []), *flags)
    if r.returncode == 5:
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_versions(site, path: str, n: int) -> list[dict]:
    return wait_for(lambda: len(v := versions(site, path)) >= n and v, timeout=60)


def contents(session, site, path: str) -> str:
    r = session.get(f"{site.url}/user/alice/api/contents/{path}",
                    params={"type": "file", "format": "text"})
    assert r.status_code == 200, r.text
    return r.json()["content"]


def put(session, site, path: str, model: dict) -> None:
    r = session.put(f"{site.url}/user/alice/api/contents/{path}", json=model,
                    headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text


def save_nb(session, site, path: str, *cells: str) -> str:
    """Save as JupyterLab does; what the server then has on disk, byte for byte."""
    put(session, site, path, {"type": "notebook", "format": "json", "content": notebook(*cells)})
    return contents(session, site, path)


def restore_form(session, site, path: str, rev: str) -> requests.Response:
    return session.post(f"{site.url}/hub/history/alice/restore",
                        data={"_csrf": csrf_of(session, site.url), "path": path, "rev": rev},
                        headers={"Origin": site.url}, allow_redirects=False)


def test_a_renamed_notebook_keeps_its_versions_on_the_page_and_in_the_cli(site, alice):
    first = save_nb(alice, site, "a.ipynb", "x = 1")
    wait_versions(site, "a.ipynb", 1)
    save_nb(alice, site, "a.ipynb", "x = 2")
    wait_versions(site, "a.ipynb", 2)
    r = alice.patch(f"{site.url}/user/alice/api/contents/a.ipynb", json={"path": "b.ipynb"},
                    headers={"Origin": site.url})
    assert r.status_code == 200, r.text
    wait_versions(site, "b.ipynb", 3)
    save_nb(alice, site, "b.ipynb", "x = 3")
    listed = wait_versions(site, "b.ipynb", 4)
    saves = [v for v in listed if v["message"].startswith("Save")]
    assert [(v["path"], v["change"]) for v in saves] == [
        ("b.ipynb", "M"), ("a.ipynb", "M"), ("a.ipynb", "A")]
    rename = [v for v in listed if v["change"] == "R"]
    assert [(v["path"], v["from_path"]) for v in rename] == [("b.ipynb", "a.ipynb")]
    # the worker committed the rename on its own: an exact rename for git
    show = git_out("--git-dir", str(repo_dir(site)), "show", "-M", "--name-status",
                   "--format=", rename[0]["rev"])
    assert show.split() == ["R100", "a.ipynb", "b.ipynb"]
    page = alice.get(f"{site.url}/hub/history/alice/file", params={"path": "b.ipynb"})
    assert page.status_code == 200
    for v in listed:
        assert f'data-rev="{v["rev"]}"' in page.text
    assert page.text.count("<code>a.ipynb</code>") >= 3  # two saves + "renamed from"
    table = site.cli("history", "list", "alice", "b.ipynb").stdout
    assert "PATH THEN" in table and "a.ipynb" in table
    # A diff across the rename, and the raw download of the first version.
    oldest, newest = saves[-1]["rev"], saves[0]["rev"]
    diff = alice.get(f"{site.url}/hub/history/alice/diff",
                     params={"path": "b.ipynb", "a": oldest, "b": newest})
    assert diff.status_code == 200 and "x = 1" in diff.text and "x = 3" in diff.text
    raw = alice.get(f"{site.url}/hub/history/alice/raw", params={"path": "b.ipynb", "rev": oldest})
    assert raw.status_code == 200
    assert raw.content == first.encode()
    assert raw.headers["Content-Disposition"].startswith('attachment; filename="a.ipynb"')
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert raw.headers["Content-Type"] == "application/x-ipynb+json"
    assert "sandbox" in raw.headers["Content-Security-Policy"]
    # An old version restored into b.ipynb, as a new save.
    assert restore_form(alice, site, "b.ipynb", oldest[:10]).status_code == 303
    assert sources(contents(alice, site, "b.ipynb")) == ["x = 1"]
    after = wait_versions(site, "b.ipynb", 5)
    assert after[0]["message"] == f"Restore b.ipynb to version {oldest[:8]}"
    assert after[0]["path"] == "b.ipynb"


def test_a_deleted_file_is_listed_and_comes_back(site, alice):
    put(alice, site, "c.txt", {"type": "file", "format": "text", "content": "hello\n"})
    saved = wait_versions(site, "c.txt", 1)[0]["rev"]
    r = alice.delete(f"{site.url}/user/alice/api/contents/c.txt", headers={"Origin": site.url})
    assert r.status_code == 204
    wait_versions(site, "c.txt", 2)
    gone = versions(site, None, "--deleted")
    assert [(f["path"], f["rev"]) for f in gone] == [("c.txt", saved)]
    assert "no deleted files" in site.cli("history", "list", "bob", "--deleted").stdout
    index = alice.get(f"{site.url}/hub/history/alice")
    section = index.text[index.text.index('id="deleted-files"'):]
    assert f'data-path="c.txt" data-rev="{saved}"' in section
    assert "b.ipynb" not in section and "a.ipynb" not in section  # renamed, not deleted
    head = git_out("--git-dir", str(repo_dir(site)), "rev-parse", "main").strip()
    assert restore_form(alice, site, "c.txt", saved).status_code == 303
    assert contents(alice, site, "c.txt") == "hello\n"
    listed = wait_versions(site, "c.txt", 3)
    assert listed[0]["message"] == f"Restore c.txt to version {saved[:8]}"
    assert git_out("--git-dir", str(repo_dir(site)), "rev-parse", "main").strip() != head
    assert versions(site, None, "--deleted") == []
    # The CLI restores a deleted file too.
    r = alice.delete(f"{site.url}/user/alice/api/contents/c.txt", headers={"Origin": site.url})
    assert r.status_code == 204
    wait_versions(site, "c.txt", 4)
    table = site.cli("history", "list", "alice", "--deleted").stdout
    assert re.search(r"c\.txt\s+" + listed[0]["rev"][:12], table), table
    r = site.cli("history", "restore", "alice", "c.txt", listed[0]["rev"][:12])
    assert r.returncode == 0, r.stderr
    assert contents(alice, site, "c.txt") == "hello\n"


def test_the_bundle_and_the_export_clone_into_the_same_commits(site, alice, pki, tmp_path):
    from ipydoc.control.commands import PAGE_BYTES

    # A file that does not compress, so the export takes several chunks.
    put(alice, site, "noise.txt", {"type": "file", "format": "text",
                                   "content": secrets.token_hex(4 * PAGE_BYTES)})
    wait_versions(site, "noise.txt", 1)
    wait_for(lambda: site.cli("--json", "history", "list", "alice").returncode == 0 and
             not alice.get(f"{site.url}/hub/history/alice").text.count("still being recorded"),
             timeout=60)
    expected = git_out("--git-dir", str(repo_dir(site)), "rev-list", "--all").split()
    with alice.get(f"{site.url}/hub/history/alice/bundle", stream=True) as r:
        assert r.status_code == 200
        assert r.headers["Content-Disposition"].startswith(
            'attachment; filename="alice-history.bundle"')
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        with open(tmp_path / "web.bundle", "wb") as f:
            for chunk in r.iter_content(1 << 16):
                f.write(chunk)
    assert clone_revs(tmp_path / "web.bundle", tmp_path / "web") == expected
    r = site.cli("--json", "history", "export", "alice", str(tmp_path / "cli.bundle"))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["size"] == (tmp_path / "cli.bundle").stat().st_size
    assert (tmp_path / "cli.bundle").stat().st_size > 2 * PAGE_BYTES
    assert clone_revs(tmp_path / "cli.bundle", tmp_path / "cli") == expected
    assert not (tmp_path / "cli.bundle.part").exists()
    # The same over the TLS control listener, as a remote admin without a config file.
    r = subprocess.run(CLI + ["--control", f"tls:localhost:{site.tls_port}",
                              "--tls-ca", str(pki["ca"]), "--tls-cert", str(pki["admin.crt"]),
                              "--tls-key", str(pki["admin.key"]), "history", "export", "alice",
                              str(tmp_path / "tls.bundle")],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 0, r.stderr
    assert clone_revs(tmp_path / "tls.bundle", tmp_path / "tls") == expected
    assert site.cli("history", "export", "bob", str(tmp_path / "bob.bundle")).returncode == 5
    assert not (tmp_path / "bob.bundle").exists()
    # No temp files left next to the repositories.
    assert not list((site.root / "state" / "history").glob(".bundle-*"))


def test_another_user_cannot_download_alices_history(site, alice):
    bob, r = login(site.url, "bob", BOB_PW)
    assert r.status_code == 303
    rev = versions(site, "b.ipynb")[-1]["rev"]
    for path, params in (("raw", {"path": "b.ipynb", "rev": rev}), ("bundle", {})):
        got = bob.get(f"{site.url}/hub/history/alice/{path}", params=params,
                      allow_redirects=False)
        assert got.status_code in (403, 404), path
        assert "x = 1" not in got.text and "attachment" not in got.headers.get(
            "Content-Disposition", "")
        anonymous = requests.get(f"{site.url}/hub/history/alice/{path}", params=params,
                                 allow_redirects=False)
        assert anonymous.status_code == 302  # to login
    assert bob.get(f"{site.url}/hub/history/bob/bundle").status_code == 404  # no history


def test_a_file_of_a_deleted_folder_comes_back_with_its_folder(site, alice):
    put(alice, site, "notes", {"type": "directory"})
    put(alice, site, "notes/d.txt", {"type": "file", "format": "text", "content": "deep\n"})
    saved = wait_versions(site, "notes/d.txt", 1)[0]["rev"]
    r = alice.delete(f"{site.url}/user/alice/api/contents/notes", headers={"Origin": site.url})
    assert r.status_code == 204, r.text
    wait_versions(site, "notes/d.txt", 2)
    assert ("notes/d.txt", saved) in [(f["path"], f["rev"])
                                      for f in versions(site, None, "--deleted")]
    r = site.cli("history", "restore", "alice", "notes/d.txt", saved)
    assert r.returncode == 0, r.stderr
    assert contents(alice, site, "notes/d.txt") == "deep\n"
