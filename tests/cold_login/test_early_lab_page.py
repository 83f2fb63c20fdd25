"""A cold login's browser goes straight to JupyterLab: the server's own lab page, kept
from its last run, is sent while it starts; everything else waits for the start
(ipydoc/servers/lab_pages.py, docs/cold_login.md)."""

from __future__ import annotations

import re
import threading

import pytest
import requests

from support import docker, follow_progress, login, wait_for

PAGE = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
LAB = "/user/alice/lab"


def lab_page(daemon, session) -> requests.Response:
    return session.get(daemon.url + LAB, headers=PAGE, allow_redirects=False, timeout=120)


def same_page(a: str, b: str) -> bool:
    """Equal but for ``store_id``, the count of the pages a Jupyter process has rendered."""
    def plain(page: str) -> str:
        return re.sub(r'"store_id": \d+', '"store_id": N', page)
    return plain(a) == plain(b)


@pytest.fixture
def kept(make_daemon):
    """alice's server ran once, she opened JupyterLab, the daemon kept its page; stopped."""
    daemon = make_daemon()
    daemon.start()
    daemon.add_user("alice", "alice-password-1")
    daemon.add_user("bob", "bob-password-1")
    alice, r = login(daemon.url, "alice", "alice-password-1")
    assert r.status_code == 303, r.text
    assert r.headers["Location"] == LAB  # straight there: the ladder holds it for the start
    first = lab_page(daemon, alice)  # held until the server answers, then its own page
    assert first.status_code == 200 and "jupyter-config-data" in first.text, first.text[:300]
    wait_for(lambda: "kept the lab page of alice" in daemon.log(), timeout=60)
    stop = daemon.cli("server", "stop", "alice")
    assert stop.returncode == 0, stop.stderr
    wait_for(lambda: not daemon.containers("alice"), timeout=60)
    return daemon, alice, first


def test_the_kept_page_is_sent_while_the_server_starts(kept):
    daemon, _, first = kept
    alice, r = login(daemon.url, "alice", "alice-password-1")  # starts the server
    assert r.headers["Location"] == LAB
    early = lab_page(daemon, alice)
    assert early.status_code == 200
    assert "early-lab" in wait_for(lambda: "early-lab" in daemon.log() and daemon.log())
    assert early.headers["Cache-Control"] == "no-store"
    assert early.headers["Content-Security-Policy"] == first.headers["Content-Security-Policy"]
    # The server's own page, byte for byte, plus the script that follows the start.
    watch = re.search(r"<script>\(function\(\)\{var c=.*?</script>", early.text)
    assert watch is not None
    assert same_page(early.text.replace(watch.group(0), ""), first.text)
    assert '"progress": "/hub/api/users/alice/server/progress"' in watch.group(0)
    # JupyterLab's entry bundle and its extensions' files come from the image's cache.
    main = re.search(r'src="(/user/alice/static/lab/main\.[0-9a-f]+\.js\?v=[0-9a-f]+)"',
                     early.text).group(1)
    entries = re.findall(r'"name": "([^"]+)", "style"', early.text)
    load = re.search(r'"load": "([^"]+)"', early.text).group(1)
    for path in (main, f"/user/alice/lab/extensions/{entries[0]}/{load}"):
        assert alice.get(daemon.url + path, headers=JSON).status_code == 200, path
    # What needs the server waits for the start, then is answered by it.
    status = alice.get(daemon.url + "/user/alice/api/status", headers=JSON, timeout=120)
    assert status.status_code == 200 and "started" in status.json()
    steps = follow_progress(alice, daemon.url, "alice")
    assert steps[-1]["phase"] == "ready"


def test_the_kept_page_is_only_the_owners_and_only_while_starting(kept):
    daemon, _, first = kept
    bob, _ = login(daemon.url, "bob", "bob-password-1")
    alice, _ = login(daemon.url, "alice", "alice-password-1")  # starts alice's server
    refused = lab_page(daemon, bob)
    assert refused.status_code == 403 and "jupyter-config-data" not in refused.text
    nobody = requests.get(daemon.url + LAB, headers=PAGE, allow_redirects=False)
    assert nobody.status_code == 302 and nobody.headers["Location"].startswith("/hub/login")
    # Another page than ``lab`` itself (a tree path, a query) waits for the server.
    tree = alice.get(daemon.url + LAB + "/tree/x.ipynb", headers=PAGE, allow_redirects=False,
                     timeout=120)
    assert tree.status_code == 200 and '"treePath": "x.ipynb"' in tree.text
    assert "early-lab" not in daemon.log()
    # A stopped (not starting) server: a browser is sent to the start page, as ever.
    daemon.cli("server", "stop", "alice")
    wait_for(lambda: not daemon.containers("alice"), timeout=60)
    stopped = lab_page(daemon, alice)
    assert stopped.status_code == 302
    assert stopped.headers["Location"].startswith("/hub/spawn/alice?next=/user/alice/lab")


def test_a_failed_start_sends_the_page_to_the_start_page(kept):
    """The kept page is sent, then the start fails: what waited gets its 503 and the
    progress stream the page follows says "failed" (the page then goes to the start
    page: tests/cold_login/test_cold_login_browser.py checks that in Chromium)."""
    daemon, _, _ = kept
    hang_next_start(daemon, "alice")
    alice, _ = login(daemon.url, "alice", "alice-password-1")
    early = lab_page(daemon, alice)
    assert early.status_code == 200 and "jupyter-config-data" in early.text
    answers: list[requests.Response] = []
    t = threading.Thread(target=lambda: answers.append(alice.get(
        daemon.url + "/user/alice/api/status", headers=JSON, timeout=120)))
    t.start()
    (cid,) = wait_for(lambda: daemon.containers("alice"), timeout=60)
    docker("kill", cid, check=False)  # its Jupyter never answers: it dies while starting
    t.join(120)
    steps = follow_progress(alice, daemon.url, "alice")
    assert steps[-1]["phase"] == "failed", steps
    assert answers and answers[0].status_code == 503, answers and answers[0].text
    assert "early-lab" in wait_for(lambda: "early-lab" in daemon.log() and daemon.log())


def hang_next_start(daemon, name: str) -> None:
    """A Jupyter config in the user's home that never lets the next start answer (the
    user owns their home: a start that hangs is theirs to cause)."""
    assert daemon.cli("server", "start", name).returncode == 0
    (cid,) = daemon.containers(name)
    docker("exec", cid, "sh", "-c", "mkdir -p ~/.jupyter && echo 'import time; "
           "time.sleep(600)' > ~/.jupyter/jupyter_server_config.py")
    daemon.cli("server", "stop", name)
    wait_for(lambda: not daemon.containers(name), timeout=60)
