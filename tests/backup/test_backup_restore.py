"""``ipydoc backup`` / ``ipydoc restore`` end to end: a real daemon with users, a personal
token, history made by saves through the proxy and files in a Docker volume is backed
up, wiped (state directory and volumes) and restored, and the site comes back.

One site for the module; tests run in file order: the first builds the site and the
archive, the others restore it in different ways.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from backup_terminal import run_on_terminal
from support import CLI, TEST_IMAGE, Daemon, csrf_of, docker, follow_progress, login, wait_for

ALICE_PW = "alice-backup-pw-1"
BOB_PW = "bob-backup-pw-22"


def notebook(source: str) -> dict:
    return {"cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "source": source,
                       "execution_count": None, "outputs": []}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def versions(d: Daemon, name: str, path: str) -> list[dict]:
    r = d.cli("--json", "history", "list", name, path)
    if r.returncode == 5:
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def make_token(session: requests.Session, base: str) -> str:
    r = session.post(f"{base}/hub/token", data={"_csrf": csrf_of(session, base),
                                                "note": "backup test", "expires_in": "0"},
                     headers={"Origin": base})
    assert r.status_code == 200, r.text
    return re.search(r'id="new-token" readonly value="([^"]+)"', r.text).group(1)


def wipe(d: Daemon) -> None:
    """Stop the daemon; remove its state directory, containers and volumes."""
    d.stop()
    d.cleanup_docker()
    shutil.rmtree(d.root / "state", ignore_errors=True)
    assert not docker("volume", "ls", "-q", "--filter", f"name={d.instance}-home-")


def state_entries(d: Daemon) -> list[str]:
    state = d.root / "state"
    return sorted(p.name for p in state.iterdir()) if state.exists() else []


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE],
                      capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    d = Daemon(tmp_path_factory.mktemp("backup"),
               {"auth": {"stop_on_logout": False}, "history": {"coalesce_seconds": 0.5}})
    d.start()
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def backed_up(site):
    """The site before the wipe: what must come back, and its archive."""
    d = site
    d.add_user("alice", ALICE_PW)
    d.add_user("bob", BOB_PW, admin=True)
    alice, r = login(d.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert follow_progress(alice, d.url, "alice")[-1]["phase"] == "ready"
    token = make_token(alice, d.url)
    base = f"{d.url}/user/alice"
    for text in ("x = 1", "x = 2", "x = 3"):
        r = alice.put(f"{base}/api/contents/analysis.ipynb", headers={"Origin": d.url},
                      json={"type": "notebook", "format": "json", "content": notebook(text)})
        assert r.status_code in (200, 201), r.text
        wait_for(lambda t=text: (v := versions(d, "alice", "analysis.ipynb"))
                 and len(v) >= ["x = 1", "x = 2", "x = 3"].index(t) + 1, timeout=60)
    data = "rows of data\n" * 1000
    r = requests.put(f"{base}/api/contents/data.txt", headers={"Authorization": f"token {token}"},
                     json={"type": "file", "format": "text", "content": data})
    assert r.status_code in (200, 201), r.text
    history = versions(d, "alice", "analysis.ipynb")
    assert len(history) == 3
    archive = d.root / "site.tar.gz"
    r = d.cli("--json", "backup", str(archive), "--volumes")  # the daemon keeps running
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["volumes"] == ["alice"] and "alice" in summary["histories"]
    assert r.stderr == ""  # --json (and no terminal): no progress bars
    return {"archive": archive, "token": token, "history": history, "data": data,
            "cookies": alice.cookies.copy()}


def test_restore_brings_users_tokens_history_and_files_back(site, backed_up):
    d = site
    with tarfile.open(backed_up["archive"]) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert {"redis/dump.rdb", "secret", "config/ipydoc.toml", "history/alice.bundle",
            "volumes/alice.tar"} <= set(names)
    wipe(d)

    r = d.cli("--json", "restore", str(backed_up["archive"]), "--volumes")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["volumes"] == ["alice"] and result["keys"]["copied"] > 0
    secret = d.root / "state" / "secret"
    assert oct(secret.stat().st_mode & 0o777) == "0o600"
    d.start()

    # the old password logs in; the old session cookie is still a session
    old = requests.Session()
    old.cookies.update(backed_up["cookies"])
    home = old.get(f"{d.url}/hub/home", allow_redirects=False)
    assert home.status_code == 200 and "alice" in home.text
    bob, r = login(d.url, "bob", BOB_PW)
    assert r.status_code == 303
    refused, r = login(d.url, "bob", "not-the-password")
    assert r.status_code != 303
    alice, r = login(d.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert follow_progress(alice, d.url, "alice")[-1]["phase"] == "ready"

    # the old token drives the server; the files are back
    auth = {"Authorization": f"token {backed_up['token']}"}
    r = requests.get(f"{d.url}/user/alice/api/contents/data.txt", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["content"] == backed_up["data"]
    nb = requests.get(f"{d.url}/user/alice/api/contents/analysis.ipynb", headers=auth).json()
    assert nb["content"]["cells"][0]["source"] == "x = 3"

    # the old history, and it goes on from there
    assert versions(d, "alice", "analysis.ipynb") == backed_up["history"]
    page = alice.get(f"{d.url}/hub/history/alice/file", params={"path": "analysis.ipynb"})
    assert all(v["rev"][:8] in page.text for v in backed_up["history"])
    r = alice.put(f"{d.url}/user/alice/api/contents/analysis.ipynb", headers={"Origin": d.url},
                  json={"type": "notebook", "format": "json", "content": notebook("x = 4")})
    assert r.status_code == 200, r.text
    after = wait_for(lambda: (v := versions(d, "alice", "analysis.ipynb")) and len(v) == 4 and v,
                     timeout=60)
    assert after[1:] == backed_up["history"]


def test_progress_bars_on_a_terminal_quiet_with_json(site, backed_up, tmp_path):
    d = site
    argv = CLI + ["--config", str(d.config_path), "backup", str(tmp_path / "b.tar"), "--volumes"]
    code, out, shown = run_on_terminal(argv)
    assert code == 0, shown
    assert "writing archive" in shown and "100%" in shown and "volume alice" in shown
    assert "wrote " in out and re.search(r"files of [1-9] user", out)
    code, out, shown = run_on_terminal(argv[:-2] + [str(tmp_path / "c.tar"), "--json"])
    assert code == 0 and shown == ""
    assert json.loads(out)["parts"] == ["redis", "history", "secret", "config"]


def test_no_sessions_leaves_the_old_cookie_out(site, backed_up):
    d = site
    wipe(d)
    r = d.cli("--json", "restore", str(backed_up["archive"]), "--no-sessions")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["sessions"] is False and result["keys"]["skipped"] > 0
    assert result["volumes"] == [] and result["volumes_in_archive"] == ["alice"]
    d.start()
    old = requests.Session()
    old.cookies.update(backed_up["cookies"])
    r = old.get(f"{d.url}/hub/home", allow_redirects=False)
    assert r.status_code in (302, 303) and "/hub/login" in r.headers["Location"]
    # accounts and tokens are there all the same
    _, r = login(d.url, "alice", ALICE_PW)
    assert r.status_code == 303
    assert versions(d, "alice", "analysis.ipynb") == backed_up["history"]


def test_a_non_empty_target_is_refused(site, backed_up):
    d = site
    d.stop()  # the state dir of the last test stays: not empty
    before = state_entries(d)
    r = d.cli("restore", str(backed_up["archive"]))
    assert r.returncode == 1
    assert "is not empty" in r.stderr
    assert state_entries(d) == before
    d.start()  # and a running daemon is refused as such
    r = d.cli("restore", str(backed_up["archive"]))
    assert r.returncode == 1 and "daemon runs" in r.stderr


def test_a_tampered_archive_is_refused_before_anything_is_written(site, backed_up, tmp_path):
    d = site
    wipe(d)
    raw = tmp_path / "site.tar"
    with open(raw, "wb") as f:  # the same archive uncompressed: change one byte of a member
        subprocess.run(["gzip", "-dc", str(backed_up["archive"])], stdout=f, check=True)
    data = bytearray(raw.read_bytes())
    at = data.index(b"rows of data")
    data[at] ^= 0x20
    raw.write_bytes(bytes(data))
    r = d.cli("restore", str(raw), "--volumes")
    assert r.returncode == 1
    assert "sha256" in r.stderr and "nothing was written" in r.stderr
    assert not (d.root / "state").exists()  # not even an empty state dir
    assert not docker("volume", "ls", "-q", "--filter", f"name={d.instance}-home-")


def test_a_path_traversal_member_is_refused(site, tmp_path):
    d = site
    wipe(d)
    evil = tmp_path / "evil.tar"
    body = b"owned"
    manifest = {"format": "ipydoc-backup", "version": 1, "ipydoc": "0.1.0", "created": 1.0,
                "config_path": "/c", "parts": ["secret"],
                "members": [{"name": "secret", "size": 64, "sha256": "0" * 64}]}
    with tarfile.open(evil, "w") as tar:
        for name, data in (("manifest.json", json.dumps(manifest).encode()),
                           ("../../escaped.txt", body)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = d.cli("restore", str(evil))
    assert r.returncode == 1 and "not in the manifest" in r.stderr
    assert not (d.root / "state").exists()  # not even an empty state dir
    assert not list(Path(d.root).rglob("escaped.txt"))
    assert not (d.root.parent / "escaped.txt").exists()


def test_a_volume_escaping_its_directory_is_refused(site, tmp_path):
    d = site
    wipe(d)
    volume = io.BytesIO()
    with tarfile.open(fileobj=volume, mode="w") as tar:
        info = tarfile.TarInfo("ipydoc-volume/../../../etc/cron.d/evil")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"boom"))
    members = {"secret": b"s" * 64, "volumes/alice.tar": volume.getvalue()}
    manifest = {"format": "ipydoc-backup", "version": 1, "ipydoc": "0.1.0", "created": 1.0,
                "config_path": "/c", "parts": ["secret", "volumes"],
                "members": [{"name": n, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
                            for n, b in members.items()]}
    evil = tmp_path / "evil-volume.tar"
    with tarfile.open(evil, "w") as tar:
        for name, data in (("manifest.json", json.dumps(manifest).encode()), *members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    r = d.cli("restore", str(evil), "--volumes")
    assert r.returncode == 1 and "outside the volume" in r.stderr, r.stderr
    assert not (d.root / "state").exists()  # not even an empty state dir
    assert not docker("volume", "ls", "-q", "--filter", f"name={d.instance}-home-")


def test_a_failure_while_applying_says_what_is_left(site, backed_up):
    d = site
    wipe(d)
    d.overrides["redis"] = {"command": "/bin/false"}  # no redis-server can start
    try:
        d.write_config()
        r = d.cli("restore", str(backed_up["archive"]))
    finally:
        del d.overrides["redis"]
        d.write_config()
    assert r.returncode == 1
    assert "redis-server exited at start" in r.stderr and "stopped partway" in r.stderr
    assert "secret" in state_entries(d) and not any(
        n.startswith(".restore-") for n in state_entries(d))  # the work dir is gone
