"""Redis outages against the real daemon and its embedded redis-server: a killed server is
restarted with its data, and while Redis cannot answer the proxy and the hub say so (503)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal

import requests

from support import login, wait_for

PW = "outage-password"
MESSAGE = "ipydoc's state store (Redis) is unavailable; retrying"


def redis_pid(daemon) -> int:
    return int((daemon.root / "state" / "redis" / "redis.pid").read_text().strip())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def session_works(session, base, name) -> bool:
    """The gate knows the session: it forwards, or says the server is starting/not running
    (login starts it), never "log in" (401) or "Redis is unavailable"."""
    r = session.get(f"{base}/user/{name}/api/status", timeout=10)
    return r.status_code != 401 and MESSAGE not in r.text and r.status_code < 500 or (
        r.status_code == 503 and "your server" in r.text)


def test_killed_redis_is_restarted_with_its_data(make_daemon):
    d = make_daemon()
    d.start()
    d.add_user("rosa", PW)
    s, r = login(d.url, "rosa", PW)
    assert r.status_code == 303, r.text
    assert session_works(s, d.url, "rosa")
    old = redis_pid(d)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not alive(old), timeout=5)

    def back() -> bool:
        try:
            pid = redis_pid(d)
        except (OSError, ValueError):
            return False
        return pid != old and alive(pid)
    wait_for(back, timeout=10)
    # the pool reconnects by itself; the session (created before the kill) is still there
    wait_for(lambda: s.get(f"{d.url}/hub/home", allow_redirects=False,
                           timeout=10).status_code == 200, timeout=10, interval=0.2)
    assert session_works(s, d.url, "rosa")
    status = d.cli("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    assert json.loads(status.stdout)["redis_ok"] is True
    assert "restarting it in" in d.log() and "embedded redis-server restarted" in d.log()


def test_hung_redis_gives_503_not_500(make_daemon):
    d = make_daemon()
    d.start()
    d.add_user("hugo", PW)
    s, r = login(d.url, "hugo", PW)
    assert r.status_code == 303, r.text
    pid = redis_pid(d)
    os.kill(pid, signal.SIGSTOP)
    try:
        # not a cached session lookup: a fresh client's cookie was never seen by the gate
        def proxied():
            return s.get(f"{d.url}/user/hugo/api/status", timeout=20)

        def page():
            return s.get(f"{d.url}/hub/home", headers={"Accept": "text/html"},
                         allow_redirects=False, timeout=20)

        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            proxied_r, page_r = ex.submit(proxied), ex.submit(page)
            proxied_r, page_r = proxied_r.result(), page_r.result()
        assert proxied_r.status_code == 503, proxied_r.text
        assert proxied_r.json()["message"] == MESSAGE
        assert page_r.status_code == 503, page_r.text
        assert "state store (Redis) is unavailable" in page_r.text
        assert "Traceback" not in page_r.text and "txredisapi" not in page_r.text
        # once the pool has noticed, requests fail at once instead of waiting
        r = requests.get(f"{d.url}/hub/home", cookies=s.cookies, timeout=20)
        assert r.status_code == 503
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_for(lambda: s.get(f"{d.url}/hub/home", allow_redirects=False,
                           timeout=10).status_code == 200, timeout=15, interval=0.2)
    assert session_works(s, d.url, "hugo")
