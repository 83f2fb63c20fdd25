"""Idle servers pause and resume with their kernels (issue 15 §1), for real: the daemon,
Docker's freezer, jupyter_server and its kernels."""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import pytest_twisted
import requests
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ipydoc.backends.base import BackendError, BackendEvent, ServerSpec
from ipydoc.backends.docker import DockerBackend
from ipydoc.backends.docker_api import DockerAPI

from kernel_client import connect, execute, start_kernel
from support import TEST_IMAGE, csrf_of, docker, follow_progress, free_port, login, wait_for

PW = "pause-test-password"


def ready_user(daemon, name):
    daemon.add_user(name, PW)
    session, r = login(daemon.url, name, PW)
    assert r.status_code == 303, r.text
    assert follow_progress(session, daemon.url, name)[-1]["phase"] == "ready"
    return session


def container_state(daemon, name) -> dict:
    ids = daemon.containers(name)
    if not ids:
        return {}
    return json.loads(docker("inspect", "--format", "{{json .State}}", ids[0]))


def is_paused(daemon, name) -> bool:
    return bool(container_state(daemon, name).get("Paused"))


def events(daemon, kind):
    out = daemon.cli("--json", "events", "--count", "500", "--kind", kind)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def server_record(daemon, name) -> dict:
    out = daemon.cli("--json", "server", "show", name)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def make_token(daemon, session) -> str:
    r = session.post(daemon.url + "/hub/token", allow_redirects=False,
                     data={"_csrf": csrf_of(session, daemon.url), "note": "script",
                           "expires_in": "0"}, headers={"Origin": daemon.url})
    assert r.status_code == 303, r.text
    page = session.get(daemon.url + "/hub/token").text
    return re.search(r'id="new-token" readonly value="(ipd_[^"]+)"', page).group(1)


def test_kernel_keeps_its_variables_across_pause_and_every_request_resumes(make_daemon):
    d = make_daemon(cull={"pause_after": 2.0, "interval": 0.5})
    d.start()
    s = ready_user(d, "pia")
    token = make_token(d, s)
    kernel = start_kernel(s, d.url, "pia")
    ws = connect(s, d.url, "pia", kernel)
    assert execute(ws, "x = 41\nx")["text/plain"] == "41"
    ws.close()

    # The lifecycle pauses it: Docker's freezer, the record, the event, the pages.
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    state = container_state(d, "pia")
    assert state["Running"] and state["Paused"]
    record = server_record(d, "pia")
    assert record["state"] == "paused" and record["paused_since"]
    assert record["backend"]["paused"] is True
    assert "cull.pause_after" in events(d, "pause")[0]["detail"]
    listed = d.cli("server", "list")
    assert re.search(r"pia\s+paused since", listed.stdout), listed.stdout
    assert "Paused since" in s.get(f"{d.url}/hub/home").text

    # A new kernel WebSocket to the paused server resumes it; the kernel kept x.
    ws = connect(s, d.url, "pia", kernel)
    assert execute(ws, "x + 1")["text/plain"] == "42"
    ws.close()
    assert not is_paused(d, "pia")
    resumes = events(d, "resume")
    assert len(resumes) == 1 and resumes[0]["detail"].startswith("by proxy")

    # An HTTP GET to a paused server answers 200 directly, marked in the access log.
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    r = s.get(f"{d.url}/user/pia/api/status", allow_redirects=False)
    assert r.status_code == 200 and "last_activity" in r.json()
    wait_for(lambda: re.search(r'"GET /user/pia/api/status HTTP/1.1" 200 .* resumed',
                               d.log()), 10, 0.2)

    # Concurrent first requests resume it once.
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    before = len(events(d, "resume"))
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda _: s.get(f"{d.url}/user/pia/api/kernels",
                                              allow_redirects=False).status_code, range(8)))
    assert codes == [200] * 8
    assert len(events(d, "resume")) == before + 1

    # A personal token's request resumes it too.
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    r = requests.get(f"{d.url}/user/pia/api/kernels",
                     headers={"Authorization": f"token {token}"}, allow_redirects=False)
    assert r.status_code == 200 and any(k["id"] == kernel for k in r.json())
    assert events(d, "resume")[-1]["detail"].startswith("by token")

    # Logging in again (auth.start_on_login) resumes it through the start path, and the
    # record and the event follow (a start in flight did not stop the record's update).
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    again, r = login(d.url, "pia", PW)
    assert r.status_code == 303, r.text
    assert follow_progress(again, d.url, "pia")[-1]["phase"] == "ready"
    assert not is_paused(d, "pia")
    wait_for(lambda: server_record(d, "pia")["state"] == "running", 10, 0.2)
    assert events(d, "resume")[-1]["detail"].startswith("by page")

    # A WebSocket opened before the pause: back at an open notebook, the user runs a
    # cell on it; its bytes resume the server (no new request needed).
    ws = connect(s, d.url, "pia", kernel)
    assert execute(ws, "x")["text/plain"] == "41"
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    assert execute(ws, "x + 2")["text/plain"] == "43"
    ws.close()
    assert events(d, "resume")[-1]["detail"].startswith("by websocket")

    # Stopping a paused server works (the container is thawed, stopped, removed).
    wait_for(lambda: is_paused(d, "pia"), 60, 0.2)
    out = d.cli("--json", "server", "stop", "pia")
    assert out.returncode == 0 and json.loads(out.stdout)["stopped"], out.stderr
    assert d.containers("pia") == []
    assert server_record(d, "pia")["state"] == "stopped"


def test_idle_timeout_stops_a_paused_server_counting_from_its_last_activity(make_daemon):
    d = make_daemon(cull={"pause_after": 3.0, "idle_timeout": 9.0, "interval": 0.5})
    d.start()
    ready_user(d, "ivo")
    wait_for(lambda: is_paused(d, "ivo"), 60, 0.2)
    paused = server_record(d, "ivo")
    assert paused["state"] == "paused"
    wait_for(lambda: d.containers("ivo") == [], 60, 0.2)
    culls = events(d, "cull")
    assert [e["user"] for e in culls] == ["ivo"]
    assert "cull.idle_timeout" in culls[0]["detail"]
    # Counted from the pause it could not have stopped before paused_since + 9 s; counted
    # from the last activity (3 s before the pause) it stops about 3 s earlier.
    stopped_at = int(culls[0]["id"].split("-")[0]) / 1000
    assert stopped_at < paused["paused_since"] + 9.0


def test_a_start_on_a_full_hub_stops_the_oldest_paused_server(make_daemon):
    d = make_daemon(cull={"pause_after": 2.0, "interval": 0.5}, spawn={"max_running": 2})
    d.start()
    ready_user(d, "old")
    wait_for(lambda: is_paused(d, "old"), 60, 0.2)
    ready_user(d, "mid")
    wait_for(lambda: is_paused(d, "mid"), 60, 0.2)
    ready_user(d, "new")  # the hub is full of paused servers: the oldest makes room
    assert d.containers("old") == [] and len(d.containers("mid")) == 1
    evicted = events(d, "evict")
    assert [e["user"] for e in evicted] == ["old"]
    assert "new" in evicted[0]["detail"] and "spawn.max_running" in evicted[0]["detail"]
    assert events(d, "spawn-refused") == []


def metric(url: str, name: str, **labels: str) -> float:
    text = requests.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return 0.0


def test_restart_keeps_a_paused_server_and_outside_pause_unpause_are_followed(make_daemon):
    port = free_port()
    d = make_daemon(metrics={"listen": f"tcp:{port}:interface=127.0.0.1"})
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    d.start()
    s = ready_user(d, "rex")
    out = d.cli("--json", "server", "pause", "rex")
    assert out.returncode == 0 and json.loads(out.stdout)["paused"], out.stderr
    assert is_paused(d, "rex")
    wait_for(lambda: metric(metrics_url, "ipydoc_servers", state="paused") == 1, 30, 0.5)
    assert metric(metrics_url, "ipydoc_servers", state="running") == 0
    d.stop()
    assert is_paused(d, "rex")  # the daemon's stop leaves it as it was
    d.start()
    record = server_record(d, "rex")
    assert record["state"] == "paused" and is_paused(d, "rex")
    r = s.get(f"{d.url}/user/rex/api/status", allow_redirects=False)
    assert r.status_code == 200
    assert not is_paused(d, "rex") and server_record(d, "rex")["state"] == "running"
    assert metric(metrics_url, "ipydoc_resume_duration_seconds_count", trigger="proxy") == 1

    # docker pause / unpause done by hand are followed.
    cid = d.containers("rex")[0]
    docker("pause", cid)
    wait_for(lambda: server_record(d, "rex")["state"] == "paused", 30, 0.2)
    docker("unpause", cid)
    wait_for(lambda: server_record(d, "rex")["state"] == "running", 30, 0.2)
    docker("pause", cid)
    wait_for(lambda: server_record(d, "rex")["state"] == "paused", 30, 0.2)
    r = s.get(f"{d.url}/user/rex/api/status", allow_redirects=False)
    assert r.status_code == 200 and not is_paused(d, "rex")
    out = d.cli("--json", "server", "resume", "rex")
    assert out.returncode == 0 and json.loads(out.stdout)["resumed"] is False


@pytest_twisted.ensureDeferred
async def test_docker_backend_pause_unpause_stop_and_events():
    """The backend interface on its own: pause/unpause are idempotent, a missing server
    is a conflict, events name the container, stop works on a frozen container."""
    run = uuid.uuid4().hex[:8]
    api = DockerAPI(reactor)
    backend = DockerBackend(reactor, api, name_prefix=f"ipydoc-p{run}-",
                            volume_prefix=f"ipydoc-p{run}-home-",
                            extra_labels={"ipydoc.test": run}, stop_timeout=2,
                            cmd=["sh", "-c", "exec python3 -m http.server 8888", "sh"])
    seen: list[BackendEvent] = []
    backend.follow(seen.append)
    try:
        with pytest.raises(BackendError) as refused:
            await backend.pause("pam")
        assert refused.value.kind == "conflict"
        await backend.unpause("pam")  # nothing to thaw: no-op
        info = await backend.start(ServerSpec("pam", TEST_IMAGE, "/user/pam/", "t" * 32))
        await backend.unpause("pam")  # not paused: no-op
        await backend.pause("pam")
        await backend.pause("pam")  # already paused: no-op
        status = await backend.status("pam")
        assert status is not None and status.running and status.paused
        assert [i.paused for i in await backend.list() if i.name == "pam"] == [True]
        await backend.unpause("pam")
        assert not (await backend.status("pam")).paused
        await backend.pause("pam")
        await backend.stop("pam")  # frozen: thawed, then stopped and removed
        assert await backend.status("pam") is None
        for _ in range(100):
            if [e.action for e in seen if e.action in ("pause", "unpause")] == \
                    ["pause", "unpause", "pause", "unpause"]:
                break
            await deferLater(reactor, 0.1, lambda: None)
        assert [e.action for e in seen if e.action in ("pause", "unpause")] == \
            ["pause", "unpause", "pause", "unpause"]
        assert {(e.name, e.id) for e in seen} == {("pam", info.id)}
    finally:
        backend.stop_following()
        for cid in docker("ps", "-aq", "--filter", f"label=ipydoc.test={run}").split():
            docker("rm", "-f", cid, check=False)
        for vol in docker("volume", "ls", "-q", "--filter", f"label=ipydoc.test={run}").split():
            docker("volume", "rm", "-f", vol, check=False)
        await api.close()
