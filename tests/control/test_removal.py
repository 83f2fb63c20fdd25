"""Issue 12 item 5: a removed account's files and history never reach the next account of
the same name.  The real daemon, real Docker volumes and jupyter_server in the real image,
real git history, and the GitHub stand-in (tests/github_stand_in.py) for logins that
create accounts.  Tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import ThreadingHTTPServer

import pytest
import pytest_twisted
import requests
from twisted.internet import reactor

from github_stand_in import PEOPLE, GitHubStandIn
from support import Daemon, docker, login, wait_for

ALICE_PW = "alice-secret-pw"
NEW_ALICE_PW = "another-alice-pw"
SECRET = "alice's private notes: the launch code is 0000"


@pytest.fixture(scope="module")
def site(tmp_path_factory, notebook_image):
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # A GitHub account whose login is "alice" but who is not the local alice.
    PEOPLE["alice"] = (201, {"acme": "active"}, {})
    daemon = Daemon(tmp_path_factory.mktemp("removal"), {
        "auth": {"start_on_login": False, "stop_on_logout": False},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret", "url": base,
                        "api_url": base + "/api", "orgs": ["acme"],
                        "admin_teams": ["acme/admins"]},
        "history": {"coalesce_seconds": 0.5},
    })
    daemon.start()
    yield daemon
    daemon.stop()
    daemon.cleanup_docker()
    server.shutdown()
    PEOPLE.pop("alice", None)


def github_login(daemon: Daemon, who: str) -> tuple[requests.Session, requests.Response]:
    GitHubStandIn.next_login = who
    s = requests.Session()
    return s, s.get(daemon.url + "/hub/oauth/github/start", params={"next": "/hub/home"})


def volume(site: Daemon, name: str) -> str:
    return f"{site.instance}-home-{name}"


def volume_exists(site: Daemon, name: str) -> bool:
    return subprocess.run(["docker", "volume", "inspect", volume(site, name)],
                          capture_output=True).returncode == 0


def repo_dir(site: Daemon, name: str):
    return site.root / "state" / "history" / f"{name}.git"


def redis(site: Daemon, *args: str) -> str:
    sock = site.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True, check=True).stdout


def start_server(site: Daemon, name: str) -> None:
    r = site.cli("server", "start", name)
    assert r.returncode == 0, r.stderr


def versions(site: Daemon, name: str, path: str) -> list[dict]:
    r = site.cli("--json", "history", "list", name, path)
    if r.returncode == 5:
        return []
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def put_file(s: requests.Session, site: Daemon, name: str, path: str, text: str) -> None:
    r = s.put(f"{site.url}/user/{name}/api/contents/{path}",
              json={"type": "file", "format": "text", "content": text},
              headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text


def get_file(s: requests.Session, site: Daemon, name: str, path: str) -> requests.Response:
    return s.get(f"{site.url}/user/{name}/api/contents/{path}",
                 params={"type": "file", "format": "text"})


def test_alice_saves_a_file_and_it_is_versioned(site):
    site.add_user("alice", ALICE_PW)
    s, r = login(site.url, "alice", ALICE_PW)
    assert r.status_code == 303
    start_server(site, "alice")
    put_file(s, site, "alice", "secret.txt", SECRET)
    wait_for(lambda: len(versions(site, "alice", "secret.txt")) == 1, timeout=30)
    assert repo_dir(site, "alice").is_dir() and volume_exists(site, "alice")


def test_remove_keeps_the_files_says_so_and_reserves_the_name(site):
    r = site.cli("user", "remove", "alice")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert f"kept the files (volume {volume(site, 'alice')}) and history (1 version)" in out
    assert "the name stays reserved until `ipydoc user purge alice --yes`" in out
    assert "`ipydoc user restore alice`" in out
    assert volume_exists(site, "alice") and repo_dir(site, "alice").is_dir()
    assert not site.containers("alice", all=False)
    record = json.loads(site.cli("--json", "user", "list").stdout)
    assert "alice" not in [u["name"] for u in record]
    removed = json.loads(site.cli("--json", "user", "removed").stdout)
    assert [(i["name"], i["files"], i["versions"]) for i in removed] == \
        [("alice", f"volume {volume(site, 'alice')}", 1)]
    assert "password" not in json.dumps(removed) and "argon2" not in json.dumps(removed)


def test_admin_cannot_give_the_name_to_someone_else(site):
    r = site.cli("user", "add", "alice", "--password-stdin", input=NEW_ALICE_PW + "\n")
    assert r.returncode == 1
    assert "the name alice belonged to a removed account whose files are kept" in r.stderr
    assert f"volume {volume(site, 'alice')}" in r.stderr
    assert "`ipydoc user purge alice --yes`" in r.stderr
    assert "`ipydoc user restore alice`" in r.stderr
    # the CLI's other answers for the name say why too
    shown = site.cli("user", "show", "alice")
    assert shown.returncode == 5 and "removed account whose files are kept" in shown.stderr
    # and nobody can log in as alice
    _, r = login(site.url, "alice", NEW_ALICE_PW)
    assert r.status_code != 303


def test_a_github_login_named_alice_cannot_take_the_name(site):
    s, r = github_login(site, "alice")
    assert r.status_code == 403, r.text
    assert "The user name alice belonged to an account that was removed" in r.text
    assert s.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    assert site.cli("user", "show", "alice").returncode == 5
    assert volume_exists(site, "alice")
    assert "name alice is reserved by a removed account" in site.log()


def test_restore_gives_the_same_person_back_their_files(site):
    r = site.cli("user", "restore", "alice")
    assert r.returncode == 0, r.stderr
    assert "restored alice" in r.stdout and "history (1 version)" in r.stdout
    s, r = login(site.url, "alice", ALICE_PW)  # the old password: the same account
    assert r.status_code == 303
    start_server(site, "alice")
    assert get_file(s, site, "alice", "secret.txt").json()["content"] == SECRET
    assert len(versions(site, "alice", "secret.txt")) == 1
    r = site.cli("user", "remove", "alice")
    assert r.returncode == 0 and "kept the files" in r.stdout


def test_purge_deletes_files_history_and_records_and_frees_the_name(site):
    r = site.cli("user", "purge", "alice")
    assert r.returncode == 2 and "--yes" in r.stderr
    assert volume_exists(site, "alice")
    r = site.cli("user", "purge", "alice", "--yes")
    assert r.returncode == 0, r.stderr
    assert (f"purged alice: deleted the files (volume {volume(site, 'alice')}) and history "
            "(1 version); the name alice is free") in r.stdout
    assert not volume_exists(site, "alice")
    assert not repo_dir(site, "alice").exists()
    keys = redis(site, "--scan", "--pattern", "ipydoc:*alice*").split()
    assert keys == [], keys
    assert "no removed accounts" in site.cli("user", "removed").stdout
    # purging again is harmless; purging a live account is refused
    assert site.cli("user", "purge", "alice", "--yes").returncode == 0
    site.add_user("bob", "bob-secret-pw-1")
    r = site.cli("user", "purge", "bob", "--yes")
    assert r.returncode == 1 and "is an account" in r.stderr


def test_a_new_alice_starts_with_an_empty_home_and_history(site):
    s, r = github_login(site, "alice")  # now the GitHub alice may have the name
    assert r.status_code == 200 and 'title="Logged in as alice"' in r.text, r.text
    start_server(site, "alice")
    assert get_file(s, site, "alice", "secret.txt").status_code == 404
    listed = s.get(f"{site.url}/user/alice/api/contents/").json()["content"]
    assert [i["name"] for i in listed if i["name"] == "secret.txt"] == []
    assert versions(site, "alice", "secret.txt") == []
    assert "no history yet" in site.cli("history", "list", "alice").stdout
    # her own save is versioned from scratch
    put_file(s, site, "alice", "mine.txt", "new alice")
    wait_for(lambda: len(versions(site, "alice", "mine.txt")) == 1, timeout=30)


def test_remove_with_purge_deletes_the_history_repository(site):
    assert repo_dir(site, "alice").is_dir()
    r = site.cli("user", "remove", "alice", "--purge", "--yes")
    assert r.returncode == 0, r.stderr
    assert f"deleted the files (volume {volume(site, 'alice')}) and history (1 version)" \
        in r.stdout and "the name alice is free" in r.stdout
    assert not repo_dir(site, "alice").exists()
    assert not volume_exists(site, "alice")
    assert redis(site, "--scan", "--pattern", "ipydoc:*alice*").split() == []
    # the name is free: an admin may give it to someone
    site.add_user("alice", NEW_ALICE_PW)
    r = site.cli("user", "remove", "alice", "--purge", "--yes")
    assert r.returncode == 0 and "history (none)" in r.stdout


def test_the_owner_identity_is_refused_too_until_restored(site):
    s, r = github_login(site, "Octo-Cat")
    assert r.status_code == 200 and 'title="Logged in as octo-cat"' in r.text
    assert site.cli("user", "remove", "octo-cat").returncode == 0
    assert s.get(site.url + "/hub/home", allow_redirects=False).status_code == 302
    _, r = github_login(site, "Octo-Cat")
    assert r.status_code == 403 and "belonged to an account that was removed" in r.text
    assert site.cli("user", "restore", "octo-cat").returncode == 0
    s, r = github_login(site, "Octo-Cat")  # the same identity owns it again
    assert r.status_code == 200 and 'title="Logged in as octo-cat"' in r.text
    assert json.loads(site.cli("--json", "user", "show", "octo-cat").stdout)["admin"] is True
    # after a purge the binding is gone with the files
    assert site.cli("user", "remove", "octo-cat", "--purge", "--yes").returncode == 0
    assert redis(site, "--scan", "--pattern", "ipydoc:*identity*").split() == []
    docker("volume", "ls")  # the engine is still fine


# -- the scripts that create accounts, against a real redis-server -------------------------
@pytest_twisted.ensureDeferred
async def test_every_account_creation_refuses_a_reserved_name(tmp_path):
    from ipydoc.auth.identities import Identities
    from ipydoc.state.redis_service import RedisService
    from ipydoc.state.users import NameReserved

    service = RedisService("", tmp_path, reactor)
    await service.startService()
    store = service.store
    try:
        assert await store.add_user("carol", "hash", admin=False)
        user = await store.get_user("carol")
        await store.remove_user("carol", {"removed": "1", "by": "t", "files": "volume v",
                                          "versions": "2", "mirror": "", "password": "hash",
                                          "admin": "0", "disabled": "0",
                                          "created": repr(user.created)})
        assert await store.get_user("carol") is None
        with pytest.raises(NameReserved):
            await store.add_user("carol", "other", admin=True)
        with pytest.raises(NameReserved):
            await Identities(store).resolve("github", "999", "carol", False)
        assert await store.get_user("carol") is None
        assert await store.restore_user("carol") == 1
        back = await store.get_user("carol")
        assert (back.password_hash, back.created) == ("hash", user.created)
        assert await store.get_reservation("carol") is None
        assert await store.restore_user("carol") == 0
        assert await store.restore_user("dave") == -1
    finally:
        await service.stopService()


def test_files_left_by_an_older_ipydoc_reserve_their_name_at_start(make_daemon):
    """An account removed before reservations existed left its history behind: the daemon
    reserves the name when it starts instead of giving the history to a new account."""
    d = make_daemon()
    repo = d.root / "state" / "history" / "zed.git"
    repo.parent.mkdir(parents=True)
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    d.start()
    r = d.cli("user", "add", "zed", "--password-stdin", input=NEW_ALICE_PW + "\n")
    assert r.returncode == 1 and "belonged to a removed account whose files are kept" \
        in r.stderr, r.stderr
    assert "reserved 1 names whose files outlived their accounts (zed)" in d.log()
    r = d.cli("user", "restore", "zed")
    assert r.returncode == 1 and "no account to restore" in r.stderr
    assert d.cli("user", "purge", "zed", "--yes").returncode == 0
    assert not repo.exists()
    d.add_user("zed", NEW_ALICE_PW)
