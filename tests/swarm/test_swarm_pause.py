"""Pause and resume of a user's server on the real two-node swarm (issue 15 §1): the
task's container is frozen through its node's engine, the kernel keeps its variables,
Swarm leaves the paused task alone, and pauses done outside ipydoc are followed."""

from __future__ import annotations

import json
import uuid

import pytest
import pytest_twisted
import requests
import websocket
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from ipydoc.backends.base import BackendError, BackendEvent, ServerSpec
from ipydoc.backends.swarm import SwarmBackend
from ipydoc.backends.swarm_api import SwarmAPI
from ipydoc.backends.swarm_pause_events import EnginePauseStream
from ipydoc.state.redis_service import RedisService

from kernel_client import connect, execute, start_kernel
from support import follow_progress, login, wait_for
from swarm_support import WORKER, WORKER_HOSTNAME, cleanup_swarm, engine, task_of


class _Instance:
    """What cleanup_swarm needs of a daemon: its instance name."""

    def __init__(self, instance: str) -> None:
        self.instance = instance


@pytest.fixture
def swarm_backends(tmp_path, two_node_swarm):
    """make(node_engines) → a SwarmBackend on a fresh instance; the instance's services
    and volumes are removed afterwards."""
    redis = RedisService("", tmp_path, reactor)
    pytest_twisted.blockon(redis.startService())
    instance = "p" + uuid.uuid4().hex[:6]
    api = SwarmAPI(reactor)
    made: list[SwarmBackend] = []

    def make(node_engines: dict[str, str] | None = None) -> SwarmBackend:
        backend = SwarmBackend(reactor, api, lambda: redis.store, name_prefix=f"{instance}-",
                               volume_prefix=f"{instance}-home-", start_timeout=90,
                               extra_labels={"ipydoc.instance": instance},
                               node_engines=node_engines)
        made.append(backend)
        return backend

    yield make
    for b in made:
        b.stop_following()
        pytest_twisted.blockon(Deferred.fromCoroutine(b.engines.close()))
    pytest_twisted.blockon(Deferred.fromCoroutine(api.close()))
    pytest_twisted.blockon(redis.stopService())
    cleanup_swarm(_Instance(instance))


def spec(name: str, image: str) -> ServerSpec:
    return ServerSpec(name=name, image=image, base_url=f"/user/{name}/",
                      token=uuid.uuid4().hex, mem_limit=512 << 20)


# -- the server's own kernel API (blocking: run in a thread) -------------------------------

def new_kernel(url: str, s: ServerSpec) -> str:
    """A kernel on the server, once Jupyter answers (the backend's start returns when the
    task runs; readiness is the manager's business)."""
    wait_for(lambda: answers(f"{url}{s.base_url}api/status", s.token), timeout=120)
    r = requests.post(f"{url}{s.base_url}api/kernels", json={"name": "python3"},
                      headers={"Authorization": f"token {s.token}"}, timeout=60)
    assert r.status_code == 201, (r.status_code, r.text)
    return r.json()["id"]


def answers(url: str, token: str) -> bool:
    try:
        return requests.get(url, headers={"Authorization": f"token {token}"},
                            timeout=5).status_code == 200
    except requests.RequestException:
        return False


def run(url: str, s: ServerSpec, kernel: str, code: str) -> str:
    ws = websocket.create_connection(
        url.replace("http", "ws", 1) + f"{s.base_url}api/kernels/{kernel}/channels",
        header=[f"Authorization: token {s.token}"], suppress_origin=True, timeout=60)
    try:
        return execute(ws, code)["text/plain"]
    finally:
        ws.close()


def container_state(host: str | None, cid: str) -> dict:
    return json.loads(engine(host, "inspect", "--format", "{{json .State}}", cid))


def task_of_service(sid: str) -> dict:
    """The service's only task (one replica, never restarted: a second one would be a
    reschedule)."""
    [task] = json.loads(engine(None, "inspect", *engine(None, "service", "ps", "-q", sid)
                               .split()))
    return task


async def until(predicate, timeout: float = 60):
    """Poll ``predicate`` (sync) on the reactor until true; its value."""
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"condition not met in {timeout}s")
        await deferLater(reactor, 0.1, lambda: None)


# -- the tests -----------------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_a_server_on_the_worker_pauses_and_resumes_with_its_kernel(
        swarm_backends, two_node_swarm, notebook_image):
    backend = swarm_backends({WORKER_HOSTNAME: WORKER})
    blind = swarm_backends()  # knows no node engine: cannot reach the worker's
    events: list[BackendEvent] = []
    backend.follow(events.append)
    s = spec("erin", notebook_image)
    await backend.pin("erin", two_node_swarm[WORKER_HOSTNAME])
    info = await backend.start(s)
    task = task_of_service(info.id)
    cid = task["Status"]["ContainerStatus"]["ContainerID"]
    assert task["NodeID"] == two_node_swarm[WORKER_HOSTNAME]
    kernel = await threads.deferToThread(new_kernel, info.url, s)
    assert await threads.deferToThread(run, info.url, s, kernel, "x = 41; x") == "41"

    await backend.pause("erin")
    assert container_state(WORKER, cid)["Paused"] is True
    status = await backend.status("erin")
    assert status.running and status.paused and status.url == info.url
    [listed] = await backend.list()
    assert listed.paused and listed.id == info.id
    await backend.pause("erin")  # already paused: nothing to do
    await until(lambda: BackendEvent("erin", info.id, "pause") in events)
    # A node engine ipydoc does not know: a clear refusal, and looking still works.
    with pytest.raises(BackendError) as e:
        await blind.pause("erin")
    assert e.value.kind == "failed" and WORKER_HOSTNAME in e.value.message
    assert "swarm.node_engines" in e.value.message
    blind_status = await blind.status("erin")
    assert blind_status.running and not blind_status.paused
    # Swarm leaves the paused task alone: the same task, still running, not replaced
    # (after a few of the backend's task polls and the worker's heartbeats).
    await deferLater(reactor, 6, lambda: None)
    later = task_of_service(info.id)
    assert (later["ID"], later["Status"]["State"], later["DesiredState"]) == \
        (task["ID"], "running", "running")
    assert not [ev for ev in events if ev.action in ("die", "destroy")]

    await backend.unpause("erin")
    assert container_state(WORKER, cid)["Paused"] is False
    assert not (await backend.status("erin")).paused
    await backend.unpause("erin")  # not paused: nothing to do
    assert await threads.deferToThread(run, info.url, s, kernel, "x + 1") == "42"
    await until(lambda: BackendEvent("erin", info.id, "unpause") in events)

    # A pause done outside ipydoc, on the worker's own engine, is followed.
    seen = len(events)
    engine(WORKER, "pause", cid)
    await until(lambda: BackendEvent("erin", info.id, "pause") in events[seen:])
    assert (await backend.status("erin")).paused
    engine(WORKER, "unpause", cid)
    await until(lambda: BackendEvent("erin", info.id, "unpause") in events[seen:])
    assert not (await backend.status("erin")).paused


@pytest_twisted.ensureDeferred
async def test_a_server_on_the_manager_pauses_and_a_paused_server_stops(
        swarm_backends, two_node_swarm, notebook_image):
    backend = swarm_backends()  # the manager's own engine is enough for its tasks
    events: list[BackendEvent] = []
    backend.follow(events.append)
    with pytest.raises(BackendError) as e:
        await backend.pause("frank")  # no server
    assert e.value.kind == "conflict"
    await backend.unpause("frank")  # nothing to thaw: no error
    s = spec("frank", notebook_image)
    manager = next(h for h in two_node_swarm if h != WORKER_HOSTNAME)
    await backend.pin("frank", two_node_swarm[manager])
    info = await backend.start(s)
    task = task_of_service(info.id)
    cid = task["Status"]["ContainerStatus"]["ContainerID"]
    assert task["NodeID"] == two_node_swarm[manager]
    kernel = await threads.deferToThread(new_kernel, info.url, s)
    assert await threads.deferToThread(run, info.url, s, kernel, "x = 41; x") == "41"
    await backend.pause("frank")
    assert container_state(None, cid)["Paused"] is True
    assert (await backend.status("frank")).paused
    await until(lambda: BackendEvent("frank", info.id, "pause") in events)
    await backend.unpause("frank")
    assert await threads.deferToThread(run, info.url, s, kernel, "x + 1") == "42"

    # A paused server stops (thawed first, so Jupyter shuts down on its SIGTERM).
    await backend.pause("frank")
    await backend.stop("frank")
    assert await backend.status("frank") is None
    await until(lambda: engine(None, "ps", "-aq", "--filter", f"id={cid}") == "")
    with pytest.raises(BackendError) as e:
        await backend.pause("frank")
    assert e.value.kind == "conflict"


# -- through the daemon: the lifecycle pauses, a request resumes ---------------------------

PW = "swarm pause password"


def container_on_its_node(d, name: str, nodes: dict[str, str]) -> tuple[str | None, str]:
    """(engine host, container id) of NAME's running task."""
    task = task_of(d, name)
    host = WORKER if task["NodeID"] == nodes[WORKER_HOSTNAME] else None
    return host, task["Status"]["ContainerStatus"]["ContainerID"]


def paused_record(d, name: str) -> dict | None:
    """``server show NAME`` when it says paused."""
    out = d.cli("--json", "server", "show", name)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    return record if record["state"] == "paused" else None


def test_the_lifecycle_pauses_servers_on_both_nodes_and_requests_resume_them(
        swarm_daemon, two_node_swarm):
    # pause_after well above a kernel's start: the culler does not yet count a request in
    # flight (a WebSocket upgrade waiting for a new kernel) as activity, and a server
    # paused under it leaves that request hanging (reported to the core's owner).
    d = swarm_daemon(cull={"pause_after": 5.0, "interval": 0.5},
                     swarm={"placement": "spread", "node_engines": {WORKER_HOSTNAME: WORKER}})
    d.start()
    try:
        lifecycle(d, two_node_swarm)
    except BaseException:
        print(d.log()[-8000:])  # shown with the failure
        raise


def lifecycle(d, two_node_swarm) -> None:
    sessions, kernels, where = {}, {}, {}
    for name in ("alice", "bob"):
        d.add_user(name, PW)
        session, r = login(d.url, name, PW)
        assert r.status_code == 303, r.text
        assert follow_progress(session, d.url, name, timeout=120)[-1]["phase"] == "ready"
        sessions[name] = session
        kernels[name] = start_kernel(session, d.url, name)
        ws = connect(session, d.url, name, kernels[name])
        assert execute(ws, "x = 41\nx")["text/plain"] == "41"
        ws.close()
        where[name] = container_on_its_node(d, name, two_node_swarm)
    assert {host for host, _ in where.values()} == {None, WORKER}  # one on each node

    def paused(name: str) -> bool:
        return container_state(*where[name]).get("Paused") is True

    for name in ("alice", "bob"):
        wait_for(lambda n=name: paused(n), 90, 0.2)
        # The record follows the freeze (written once the engine said done).
        record = wait_for(lambda n=name: paused_record(d, n), 30, 0.2)
        assert record["backend"]["paused"] is True
        # The kernel WebSocket through the proxy resumes it; the kernel kept x.
        ws = connect(sessions[name], d.url, name, kernels[name])
        assert execute(ws, "x + 1")["text/plain"] == "42"
        ws.close()
        assert not paused(name)
        # Paused again, an HTTP GET answers 200 directly.
        wait_for(lambda n=name: paused(n), 90, 0.2)
        r = sessions[name].get(f"{d.url}/user/{name}/api/status", allow_redirects=False)
        assert r.status_code == 200 and "last_activity" in r.json()
        assert not paused(name)
    # Swarm left the paused tasks alone: each user still has one running task.
    for name in ("alice", "bob"):
        assert container_on_its_node(d, name, two_node_swarm) == where[name]
    # A restarted daemon finds the paused servers paused, keeps them so, and routes them:
    # a request resumes.
    for name in ("alice", "bob"):
        wait_for(lambda n=name: paused(n), 90, 0.2)
    d.stop()
    d.start()
    for name in ("alice", "bob"):
        assert paused(name)
        assert paused_record(d, name) is not None
        ws = connect(sessions[name], d.url, name, kernels[name])
        assert execute(ws, "x + 1")["text/plain"] == "42"
        ws.close()


def test_pause_events_are_ours_only_and_a_replay_is_not_delivered_twice():
    got: list[BackendEvent] = []
    stream = EnginePauseStream(reactor, SwarmAPI(reactor), {"ipydoc.managed": "1"}, "inst-")
    stream._listener = got.append  # what follow() sets, without opening the stream

    def event(action: str, t: int, user: str = "ann", service: str = "inst-ann") -> dict:
        return {"Type": "container", "Action": action, "timeNano": t,
                "Actor": {"ID": "c1", "Attributes": {
                    "ipydoc.user": user, "com.docker.swarm.service.id": "s1",
                    "com.docker.swarm.service.name": service}}}

    stream._on_event(event("pause", 10))
    stream._on_event(event("pause", 11, service="other-ann"))  # another deployment's
    stream._on_event(event("pause", 12, user="bob"))  # service name is not bob's
    stream._on_event(event("die", 13))  # not a pause
    stream._on_event(event("pause", 10))  # replayed after a reconnect
    stream._on_event(event("unpause", 20))
    assert got == [BackendEvent("ann", "s1", "pause"), BackendEvent("ann", "s1", "unpause")]
