"""The idle culler, against real servers: idle ones stop, busy ones do not, files stay."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from kernel_client import connect, start_kernel
from support import follow_progress, login, wait_for

PW = "cull-test-password"


def ready_user(daemon, name, admin=False):
    daemon.add_user(name, PW, admin=admin)
    session, r = login(daemon.url, name, PW)
    assert r.status_code == 303, r.text
    assert follow_progress(session, daemon.url, name)[-1]["phase"] == "ready"
    return session


def write_file(session, base, name, path, content):
    r = session.put(f"{base}/user/{name}/api/contents/{path}",
                    json={"type": "file", "format": "text", "content": content},
                    headers={"Origin": base})
    assert r.status_code in (200, 201), r.text


def start_long_computation(session, base, name, seconds=300):
    """A kernel busy in time.sleep (no output, so no kernel messages), no browser left."""
    kernel = start_kernel(session, base, name)
    ws = connect(session, base, name, kernel)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "username": "t", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": f"import time\nfor _ in range({seconds}):\n    time.sleep(1)",
                    "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    while True:  # until the kernel says it is busy with our request
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") == msg_id and \
                msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
            break
    ws.close()


def events(daemon, kind):
    out = daemon.cli("--json", "events", "--count", "500", "--kind", kind)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def test_idle_server_is_culled_busy_one_is_not_and_files_stay(make_daemon):
    d = make_daemon(cull={"idle_timeout": 4.0, "interval": 1.0})
    d.start()
    idle = ready_user(d, "idler")
    busy = ready_user(d, "worker")
    write_file(idle, d.url, "idler", "before-cull.txt", "still here")
    start_long_computation(busy, d.url, "worker")
    t0 = time.monotonic()
    wait_for(lambda: d.containers("idler") == [], 30, 0.2)
    culled_after = time.monotonic() - t0
    assert culled_after >= 3.0  # not before the timeout (4 s minus the setup's own time)
    culls = events(d, "cull")
    assert [e["user"] for e in culls] == ["idler"]
    assert "idle for" in culls[0]["detail"] and "cull.idle_timeout" in culls[0]["detail"]
    # Several more timeouts later the computing server still runs, untouched.
    time.sleep(8)
    assert len(d.containers("worker", all=False)) == 1
    assert [e["user"] for e in events(d, "cull")] == ["idler"]
    # The culled user's next request gets the start page, and the file survived.
    r = idle.get(f"{d.url}/user/idler/lab", headers={"Accept": "text/html"},
                 allow_redirects=False)
    assert r.status_code == 302 and r.headers["Location"].startswith("/hub/spawn/idler")
    assert follow_progress(idle, d.url, "idler")[-1]["phase"] == "stopped"
    idle.post(f"{d.url}/hub/spawn/idler", data={"_csrf": _csrf(idle, d.url)},
              headers={"Origin": d.url})
    assert follow_progress(idle, d.url, "idler")[-1]["phase"] == "ready"
    got = idle.get(f"{d.url}/user/idler/api/contents/before-cull.txt")
    assert got.status_code == 200 and got.json()["content"] == "still here"
    status = json.loads(d.cli("--json", "status").stdout)
    assert status["culler"] is True


def _csrf(session, base):
    from support import csrf_of
    return csrf_of(session, base)


def test_ignore_kernel_activity_admins_exempt_and_cull_now(make_daemon):
    d = make_daemon(cull={"idle_timeout": 2.0, "interval": 3600.0,
                          "ignore_kernel_activity": True, "exempt_admins": True})
    d.start()
    admin = ready_user(d, "boss", admin=True)
    busy = ready_user(d, "cruncher")
    start_long_computation(busy, d.url, "cruncher")
    assert admin is not None
    time.sleep(3)
    r = d.cli("--json", "cull")  # the interval is an hour: only this run can cull
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["stopped"] == ["cruncher"]
    assert d.containers("cruncher") == []
    assert len(d.containers("boss", all=False)) == 1
    (cull,) = events(d, "cull")
    assert cull["user"] == "cruncher" and "idle for" in cull["detail"]


def test_max_age_stops_even_a_busy_server(make_daemon):
    d = make_daemon(cull={"max_age": 3.0, "interval": 1.0})
    d.start()
    s = ready_user(d, "marathon")
    start_long_computation(s, d.url, "marathon")
    wait_for(lambda: d.containers("marathon") == [], 30, 0.2)
    (cull,) = events(d, "cull")
    assert "cull.max_age" in cull["detail"]


@pytest.mark.parametrize("bad, message", [
    ({"idle_timeout": -1.0}, "cull.idle_timeout must be 0 (off) or positive"),
    ({"interval": 0.0}, "cull.interval must be positive"),
])
def test_bad_cull_config_is_refused(bad, message):
    from ipydoc.config.errors import ConfigError
    from ipydoc.config.load import from_dict

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict({"cull": bad})
