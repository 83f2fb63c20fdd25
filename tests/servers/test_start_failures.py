"""A start that cannot work says why, on the page and in the CLI, and can be retried."""

from __future__ import annotations

import json
import re

from support import csrf_of, follow_progress, login


def _failed_start(daemon, name="erin"):
    daemon.add_user(name, "erin-password-1")
    session, r = login(daemon.url, name, "erin-password-1")
    assert r.status_code == 303
    steps = follow_progress(session, daemon.url, name)
    assert steps[-1]["phase"] == "failed", steps
    return session, steps[-1]


def _page_shows(session, daemon, name, text):
    page = session.get(f"{daemon.url}/hub/spawn/{name}")
    assert page.status_code == 200
    assert text in page.text, page.text
    assert re.search(r'<button[^>]*id="start-button"[^>]*>Try again</button>', page.text)
    return page


def test_missing_image(make_daemon):
    d = make_daemon(spawn={"image": "ipydoc-no-such-image:never"})
    d.start()
    session, step = _failed_start(d)
    assert step["error_kind"] == "image_missing"
    assert "ipydoc-no-such-image:never" in step["message"]
    _page_shows(session, d, "erin", "ipydoc-no-such-image:never")
    servers = json.loads(d.cli("--json", "server", "list").stdout)
    assert servers[0]["state"] == "failed" and "no-such-image" in servers[0]["error"]
    assert d.containers("erin") == []
    # Retrying is possible (and fails the same clear way while the image is missing).
    retry = session.post(f"{d.url}/hub/spawn/erin", data={"_csrf": csrf_of(session, d.url)},
                         headers={"Origin": d.url}, allow_redirects=False)
    assert retry.status_code == 303
    assert follow_progress(session, d.url, "erin")[-1]["error_kind"] == "image_missing"


def test_docker_unreachable(make_daemon, tmp_path):
    sock = tmp_path / "no-docker.sock"
    d = make_daemon(docker={"host": f"unix://{sock}"})
    d.start()
    session, step = _failed_start(d)
    assert step["error_kind"] == "unreachable"
    assert "Docker engine unreachable" in step["message"] and str(sock) in step["message"]
    _page_shows(session, d, "erin", "Docker engine unreachable")
    status = d.cli("status")
    assert status.returncode == 1 and "unreachable" in status.stdout


def test_start_timeout(make_daemon):
    d = make_daemon(spawn={"start_timeout": 0.3})
    d.start()
    session, step = _failed_start(d)
    assert step["error_kind"] == "timeout"
    assert "did not answer within 0.3 s" in step["message"]
    _page_shows(session, d, "erin", "spawn.start_timeout")
    assert d.containers("erin") == []  # the half-started container is cleaned up
