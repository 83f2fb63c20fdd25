"""Issue 18, a user's own repository: the real daemon, real jupyter_server in Docker,
real git, and the GitHub stand-in (``tests/github_stand_in.py``) serving OAuth, the
repositories API and git smart HTTP (``git http-backend``) behind the tokens it issued.

One daemon for the module; tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import threading
import time
from http.server import ThreadingHTTPServer

import pytest
import requests

from github_stand_in import GitHubStandIn
from support import TEST_IMAGE, Daemon, follow_progress, login, wait_for

PAULA_PW = "paula-secret-pw"


@pytest.fixture(scope="module")
def github(tmp_path_factory):
    GitHubStandIn.git_root = tmp_path_factory.mktemp("github-repos")
    server = ThreadingHTTPServer(("127.0.0.1", 0), GitHubStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    GitHubStandIn.git_root = None


@pytest.fixture(scope="module")
def site(tmp_path_factory, github):
    if subprocess.run(["docker", "image", "inspect", TEST_IMAGE],
                      capture_output=True).returncode:
        pytest.fail(f"test image {TEST_IMAGE} missing (.ci/run builds it)")
    d = Daemon(tmp_path_factory.mktemp("user-repo"), {
        "auth": {"stop_on_logout": False},
        "auth.github": {"client_id": "gh-client", "client_secret": "gh-secret",
                        "url": github.base, "api_url": github.base + "/api",
                        "orgs": ["acme"]},
        "history": {"coalesce_seconds": 1.0, "push_backoff_max": 1.0,
                    "user_repo_allow_http": True},
    })
    d.start()
    d.add_user("paula", PAULA_PW)
    yield d
    d.stop()
    d.cleanup_docker()


@pytest.fixture(scope="module")
def octo(site):
    GitHubStandIn.next_login = "Octo-Cat"
    s = requests.Session()
    r = s.get(site.url + "/hub/oauth/github/start", params={"next": "/hub/home"})
    assert r.status_code == 200 and 'title="Logged in as octo-cat"' in r.text, r.text
    assert follow_progress(s, site.url, "octo-cat")[-1]["phase"] == "ready"
    return s


# -- helpers ---------------------------------------------------------------------------------
def notebook(text: str) -> dict:
    return {"cells": [{"cell_type": "code", "id": "c0", "metadata": {}, "source": text,
                       "execution_count": None, "outputs": []}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def local_git(site, name: str, *args: str) -> str:
    repo = site.root / "state" / "history" / f"{name}.git"
    return subprocess.run(["git", "--git-dir", str(repo), *args], capture_output=True,
                          text=True, check=True).stdout


def remote_log(owner: str, repo: str) -> list[str]:
    path = GitHubStandIn.git_root / owner / f"{repo}.git"
    out = subprocess.run(["git", "--git-dir", str(path), "log", "--format=%H", "main"],
                         capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 else []


def versions(site, name: str) -> list[str]:
    r = subprocess.run(["git", "--git-dir", str(site.root / "state" / "history" /
                                                 f"{name}.git"),
                        "log", "--format=%H", "main"], capture_output=True, text=True)
    return r.stdout.split() if r.returncode == 0 else []


def save(session, site, name: str, path: str, text: str) -> None:
    before = len(versions(site, name))
    r = session.put(f"{site.url}/user/{name}/api/contents/{path}",
                    json={"type": "notebook", "format": "json", "content": notebook(text)},
                    headers={"Origin": site.url})
    assert r.status_code in (200, 201), r.text
    wait_for(lambda: len(versions(site, name)) > before, timeout=60)


def csrf(session, site, name: str) -> str:
    page = session.get(f"{site.url}/hub/repository/{name}")
    assert page.status_code == 200, page.text
    return re.search(r'name="_csrf" value="([^"]+)"', page.text).group(1)


def post(session, site, name: str, action: str, **data):
    return session.post(f"{site.url}/hub/repository/{name}/{action}",
                        data={"_csrf": csrf(session, site, name), **data},
                        headers={"Origin": site.url})


def redis(site, *args: str) -> str:
    sock = site.root / "state" / "redis" / "redis.sock"
    return subprocess.run(["redis-cli", "-s", str(sock), *args], capture_output=True,
                          text=True, check=True).stdout


def link_state(site, name: str) -> dict[str, str]:
    out = redis(site, "--json", "HGETALL", f"ipydoc:history-repo:{name}").strip()
    return json.loads(out) if out.startswith("{") else {}


def events(site, name: str, kind: str) -> list[dict]:
    r = site.cli("events", "--json", "--user", name, "-n", "500", "--kind", kind)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def tokens_of(login_name: str) -> list[str]:
    return [t for t, who in GitHubStandIn.tokens.items() if who == login_name]


def pushed_everything(site, name: str, owner: str, repo: str) -> bool:
    local = versions(site, name)
    return bool(local) and remote_log(owner, repo) == local and \
        link_state(site, name).get("status") == "ok"


# -- GitHub: link through the connect flow --------------------------------------------------
def test_history_page_offers_a_repository_of_ones_own(site, octo):
    page = octo.get(f"{site.url}/hub/history/octo-cat")
    assert page.status_code == 200
    assert "none linked" in page.text and 'href="/hub/repository/octo-cat"' in page.text
    repo_page = octo.get(f"{site.url}/hub/repository/octo-cat")
    assert "Connect with GitHub" in repo_page.text
    other = octo.get(f"{site.url}/hub/repository/paula")
    assert other.status_code == 403


def test_github_link_creates_the_repository_and_pushes_three_saves(site, octo):
    r = post(octo, site, "octo-cat", "github", repo="notes", private="1")
    assert r.status_code == 200 and r.url.endswith("/hub/repository/octo-cat?done=linked"), \
        r.text
    assert GitHubStandIn.scopes[-1] == "repo"
    assert (GitHubStandIn.git_root / "Octo-Cat" / "notes.git").is_dir()  # created
    assert events(site, "octo-cat", "history-repo-created")
    for n in (1, 2, 3):
        save(octo, site, "octo-cat", "analysis.ipynb", f"x = {n}")
    wait_for(lambda: pushed_everything(site, "octo-cat", "Octo-Cat", "notes"), timeout=60)
    local = versions(site, "octo-cat")
    assert len(local) == 3  # coalesce_seconds = 1: each save waited for is its own commit
    remote = GitHubStandIn.git_root / "Octo-Cat" / "notes.git"
    shown = subprocess.run(["git", "--git-dir", str(remote), "show", "main:analysis.ipynb"],
                           capture_output=True, text=True, check=True).stdout
    assert shown == local_git(site, "octo-cat", "show", "main:analysis.ipynb")
    page = octo.get(f"{site.url}/hub/history/octo-cat").text
    assert "Octo-Cat/notes.git" in page and local[0][:8] in page


def test_the_token_is_sealed_in_redis_and_never_logged(site, octo):
    state = link_state(site, "octo-cat")
    assert state["via"] == "github" and state["login"] == "Octo-Cat"
    token = tokens_of("Octo-Cat")[-1]
    assert token not in state["secret"] and token not in json.dumps(state)
    assert state["secret"].startswith("gAAAA")  # a Fernet token, not the credential
    assert not (site.root / "state" / "user-repos.key").exists()  # derived, not stored
    assert token not in octo.get(f"{site.url}/hub/repository/octo-cat").text
    for t in tokens_of("Octo-Cat"):
        assert t not in site.log()


def test_revoked_authorization_stops_pushing_and_says_why(site, octo):
    for t in tokens_of("Octo-Cat"):
        GitHubStandIn.revoke(t)
    save(octo, site, "octo-cat", "analysis.ipynb", "x = 4")
    wait_for(lambda: link_state(site, "octo-cat").get("status") == "refused", timeout=60)
    refused = events(site, "octo-cat", "history-push-refused")
    assert refused and "authorization was refused" in refused[0]["detail"]
    page = octo.get(f"{site.url}/hub/repository/octo-cat").text
    assert "pushing stopped" in page and "authorization was refused" in page
    assert 'data-status="refused"' in octo.get(f"{site.url}/hub/history/octo-cat").text
    seen = GitHubStandIn.requests_to("Octo-Cat/notes")
    save(octo, site, "octo-cat", "analysis.ipynb", "x = 5")
    save(octo, site, "octo-cat", "other.ipynb", "y = 1")
    time.sleep(3)  # were pushes still tried, they would have been by now (backoff max 1 s)
    assert GitHubStandIn.requests_to("Octo-Cat/notes") == seen
    assert link_state(site, "octo-cat")["status"] == "refused"


def test_linking_again_fixes_it(site, octo):
    r = post(octo, site, "octo-cat", "github", repo="notes", private="1")
    assert r.status_code == 200 and "done=linked" in r.url, r.text
    wait_for(lambda: pushed_everything(site, "octo-cat", "Octo-Cat", "notes"), timeout=60)
    assert not events(site, "octo-cat", "history-repo-created")[1:]  # it existed already
    for t in tokens_of("Octo-Cat"):
        assert t not in site.log()


def test_protected_branch_is_refused_and_try_again_resumes(site, octo):
    GitHubStandIn.protected.add("Octo-Cat/notes")
    try:
        save(octo, site, "octo-cat", "analysis.ipynb", "x = 6")
        wait_for(lambda: link_state(site, "octo-cat").get("status") == "refused", timeout=60)
        assert "protected branch" in link_state(site, "octo-cat")["error"]
    finally:
        GitHubStandIn.protected.discard("Octo-Cat/notes")
    page = octo.get(f"{site.url}/hub/repository/octo-cat").text
    assert "Try again" in page
    r = post(octo, site, "octo-cat", "retry")
    assert r.status_code == 200
    wait_for(lambda: pushed_everything(site, "octo-cat", "Octo-Cat", "notes"), timeout=60)


def test_unlinking_stops_pushes_and_deletes_the_credential(site, octo):
    r = post(octo, site, "octo-cat", "unlink")  # without confirmed=1: asks first
    assert r.status_code == 200 and "Unlink your repository?" in r.text
    assert link_state(site, "octo-cat")
    r = post(octo, site, "octo-cat", "unlink", confirmed="1")
    assert r.status_code == 200 and "done=unlinked" in r.url
    assert link_state(site, "octo-cat") == {}
    assert events(site, "octo-cat", "history-repo-unlinked")
    seen = GitHubStandIn.requests_to("Octo-Cat/notes")
    save(octo, site, "octo-cat", "analysis.ipynb", "x = 7")
    time.sleep(3)
    assert GitHubStandIn.requests_to("Octo-Cat/notes") == seen
    assert "none linked" in octo.get(f"{site.url}/hub/history/octo-cat").text


# -- a pasted token for one repository -------------------------------------------------------
@pytest.fixture(scope="module")
def paula(site):
    s, r = login(site.url, "paula", PAULA_PW)
    assert r.status_code == 303
    assert follow_progress(s, site.url, "paula")[-1]["phase"] == "ready"
    return s


def test_pasted_token_links_and_pushes(site, paula, github):
    page = paula.get(f"{site.url}/hub/repository/paula").text
    assert "Connect with GitHub" not in page  # a local account: no GitHub identity
    GitHubStandIn.make_repo("Octo-Cat", "pasted")
    token = "github_pat_" + "p" * 40
    GitHubStandIn.tokens[token] = "Octo-Cat"
    url = f"{github.base}/Octo-Cat/pasted.git"
    bad = post(paula, site, "paula", "token", url="ftp://example.org/x.git", token=token)
    assert bad.status_code == 400 and "must start with https://" in bad.text
    assert token not in bad.text
    creds = post(paula, site, "paula", "token", url="http://me:pw@127.0.0.1/x.git",
                 token=token)
    assert creds.status_code == 400 and "no user name or password" in creds.text
    in_url = paula.post(f"{site.url}/hub/repository/paula/token?token={token}",
                        data={"_csrf": csrf(paula, site, "paula"), "url": url},
                        headers={"Origin": site.url})
    assert in_url.status_code == 400 and link_state(site, "paula") == {}
    forged = paula.post(f"{site.url}/hub/repository/paula/token",
                        data={"_csrf": "wrong", "url": url, "token": token},
                        headers={"Origin": site.url})
    assert forged.status_code == 403
    r = post(paula, site, "paula", "token", url=url, token=token)
    assert r.status_code == 200 and "done=linked" in r.url, r.text
    save(paula, site, "paula", "paula.ipynb", "z = 1")
    save(paula, site, "paula", "paula.ipynb", "z = 2")
    wait_for(lambda: pushed_everything(site, "paula", "Octo-Cat", "pasted"), timeout=60)
    state = link_state(site, "paula")
    assert state["via"] == "token" and token not in json.dumps(state)
    assert token not in site.log()


def test_deleted_repository_is_refused(site, paula):
    GitHubStandIn.delete_repo("Octo-Cat", "pasted")
    save(paula, site, "paula", "paula.ipynb", "z = 3")
    wait_for(lambda: link_state(site, "paula").get("status") == "refused", timeout=60)
    assert "does not exist" in link_state(site, "paula")["error"]
    assert "does not exist" in paula.get(f"{site.url}/hub/history/paula").text


def test_removing_the_account_deletes_the_link(site, paula):
    assert link_state(site, "paula")
    r = site.cli("user", "remove", "paula")
    assert r.returncode == 0, r.stderr
    assert link_state(site, "paula") == {}
    assert "paula" not in redis(site, "SMEMBERS", "ipydoc:history-repos")


# -- the parts on their own ------------------------------------------------------------------
@pytest.mark.parametrize("url, allow_http, ok", [
    ("https://github.com/me/notes.git", False, True),
    ("https://git.example.org:8443/me/notes", False, True),
    ("http://127.0.0.1:9/me/notes.git", False, False),
    ("http://127.0.0.1:9/me/notes.git", True, True),
    ("https://me:secret@github.com/me/notes.git", False, False),
    ("https://github.com/me/notes.git?token=x", False, False),
    ("https://github.com", False, False),
    ("ext::sh -c touch% /tmp/pwned", False, False),
    ("file:///etc", True, False),
    ("--upload-pack=touch /tmp/x", True, False),
])
def test_pasted_urls_are_checked(url, allow_http, ok):
    from ipydoc.history.errors import HistoryError
    from ipydoc.history.user_repo import check_remote

    if ok:
        assert check_remote(url, allow_http) == url
    else:
        with pytest.raises(HistoryError):
            check_remote(url, allow_http)


def test_the_key_comes_from_the_signing_secret_and_no_other():
    from ipydoc.history.sealing import Sealer, Unreadable

    secret = secrets.token_bytes(64)
    a, b = Sealer.from_secret(secret), Sealer.from_secret(secret)
    sealed = a.seal("ghp_secret")
    assert "ghp_secret" not in sealed and b.open(sealed) == "ghp_secret"
    with pytest.raises(Unreadable):  # a new signing secret: users link again
        Sealer.from_secret(secrets.token_bytes(64)).open(sealed)
