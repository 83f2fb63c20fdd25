"""The swarm backend's parts on their own: placement, the service spec and what is read
back from it, the placements in Redis, the [swarm] config; and the backend against the
real swarm where a start must fail clearly."""

from __future__ import annotations

import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from ipydoc.backends.base import BackendError, ServerSpec
from ipydoc.backends.docker_body import ContainerBody
from ipydoc.backends.swarm import SwarmBackend
from ipydoc.backends.swarm_api import SwarmAPI
from ipydoc.backends.swarm_body import ServiceBody
from ipydoc.backends.swarm_placement import Load, Node, choose, loads, unusable_message
from ipydoc.config.errors import ConfigError
from ipydoc.config.load import from_dict
from ipydoc.state.redis_service import RedisService

from swarm_support import WORKER, WORKER_HOSTNAME, cleanup_swarm, engine  # noqa: E402

G = 1 << 30


def node(id_: str, mem: int, state: str = "ready", availability: str = "active") -> Node:
    return Node(id=id_, hostname=f"host-{id_}", addr=f"10.0.0.{len(id_)}", state=state,
                availability=availability, memory=mem)


# -- placement -----------------------------------------------------------------------------

def test_memory_placement_takes_the_node_with_most_free_memory():
    nodes = [node("a", 16 * G), node("b", 8 * G)]
    assert choose(nodes, {}, "memory").id == "a"
    # 10 G of limits on a leave it 6 G free: b's 8 G is more.
    load = loads([("a", 6 * G), ("a", 4 * G)])
    assert load["a"] == Load(10 * G, 2)
    assert choose(nodes, load, "memory").id == "b"


def test_spread_placement_takes_the_fewest_servers_then_most_memory():
    nodes = [node("a", 16 * G), node("b", 8 * G), node("c", 8 * G)]
    load = loads([("a", G), ("b", G)])
    assert choose(nodes, load, "spread").id == "c"
    assert choose(nodes, {}, "spread").id == "a"  # a tie in servers goes to memory


def test_down_drained_and_paused_nodes_get_nobody():
    nodes = [node("a", 64 * G, state="down"), node("b", 64 * G, availability="drain"),
             node("c", 64 * G, availability="pause"), node("d", G)]
    assert choose(nodes, {}, "memory").id == "d"
    assert choose(nodes, {}, "spread").id == "d"
    with pytest.raises(BackendError) as e:
        choose(nodes[:3], {}, "memory")
    assert "no swarm node is ready" in e.value.message


def test_the_message_names_the_node_and_the_way_out():
    msg = unusable_message("alice", node("a", G, state="down"), "host-a")
    assert msg.startswith("your files are on node host-a, which is down")
    assert "ipydoc server move alice NODE" in msg
    assert "which is drained" in unusable_message("alice", node("a", G, availability="drain"),
                                                  "")
    assert "has left the swarm" in unusable_message("alice", None, "old-host")


# -- the service spec ----------------------------------------------------------------------

def bodies(**kw) -> tuple[ContainerBody, ServiceBody]:
    container = ContainerBody(notebook_dir="/home/jovyan", cmd=["jupyter", "lab"], port=8888,
                              volume_prefix="x-home-", storage="volume", bind_root=None,
                              uid=1000, gid=100, name_prefix="x-", network=None,
                              extra_labels={"ipydoc.instance": "x"})
    return container, ServiceBody(container, stop_timeout=7, **kw)


SPEC = ServerSpec(name="alice", image="img:1", base_url="/user/alice/", token="s3cret" * 8,
                  mem_limit=G, cpu_limit=1.5, pids_limit=256)


def test_service_spec_carries_the_docker_backends_container():
    container, body = bodies()
    spec = body.spec(SPEC, "sha256:abc", "node1")
    c = spec["TaskTemplate"]["ContainerSpec"]
    docker = container.body(SPEC, container.mount("alice"))
    assert spec["Name"] == container.container_name("alice")
    assert c["Image"] == "sha256:abc"
    assert c["Args"] == docker["Cmd"]                       # same command and options
    assert sorted(c["Env"]) == sorted(docker["Env"])         # token in the env only
    assert not any(SPEC.token in a for a in c["Args"])
    assert c["User"] == docker["User"] and c["Dir"] == docker["WorkingDir"]
    assert c["CapabilityDrop"] == docker["HostConfig"]["CapDrop"]
    limits = spec["TaskTemplate"]["Resources"]["Limits"]
    assert (limits["MemoryBytes"], limits["Pids"]) == (docker["HostConfig"]["Memory"],
                                                       docker["HostConfig"]["PidsLimit"])
    assert limits["NanoCPUs"] == docker["HostConfig"]["NanoCpus"]
    assert spec["TaskTemplate"]["RestartPolicy"]["Condition"] == "none"
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == ["node.id==node1"]
    assert spec["EndpointSpec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8888,
                                              "PublishMode": "host"}]
    mount = c["Mounts"][0]
    assert (mount["Source"], mount["Target"]) == (container.volume_name("alice"), "/home/jovyan")
    assert spec["Labels"]["ipydoc.image"] == "img:1"
    assert body.ours({"ID": "s1", "Spec": spec}, "alice")
    assert not body.ours({"ID": "s1", "Spec": spec}, "bob")
    assert body.pinned_node({"Spec": spec}) == "node1"
    assert body.mem_limit({"Spec": spec}) == G


def test_shared_storage_is_not_pinned_and_names_the_driver():
    _, body = bodies(volume_driver="local", volume_options={"type": "nfs",
                                                            "device": ":/homes/{name}"})
    spec = body.spec(SPEC, "img:1", None)
    assert spec["TaskTemplate"]["Placement"]["Constraints"] == []
    driver = spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0]["VolumeOptions"]["DriverConfig"]
    assert driver == {"Name": "local", "Options": {"type": "nfs", "device": ":/homes/alice"}}


def test_info_is_running_only_on_a_ready_node_with_a_port():
    _, body = bodies()
    service = {"ID": "s1", "Spec": body.spec(SPEC, "sha256:abc", "n1")}
    task = {"NodeID": "n1", "DesiredState": "running",
            "Status": {"State": "running", "Timestamp": "2026-01-01T00:00:00.5Z",
                       "PortStatus": {"Ports": [{"TargetPort": 8888, "PublishedPort": 30001,
                                                 "PublishMode": "host"}] * 2}}}
    info = body.info(service, task, {"n1": "10.1.2.3"}, {"n1"})
    assert (info.running, info.url, info.id) == (True, "http://10.1.2.3:30001", "s1")
    assert (info.name, info.token, info.base_url, info.image) == \
        ("alice", SPEC.token, "/user/alice/", "img:1")
    assert info.started_at is not None
    down = body.info(service, task, {"n1": "10.1.2.3"}, set())
    assert (down.running, down.url) == (False, None)
    ended = body.info(service, {**task, "Status": {**task["Status"], "State": "failed"}},
                      {"n1": "10.1.2.3"}, {"n1"})
    assert not ended.running


# -- placements in Redis -------------------------------------------------------------------

@pytest_twisted.ensureDeferred
async def test_the_first_placement_wins_and_a_move_replaces_it(tmp_path):
    service = RedisService("", tmp_path, reactor)
    await service.startService()
    store = service.store
    try:
        assert await store.get_placement("alice") is None
        first = await store.place("alice", "n1", "host1")
        again = await store.place("alice", "n2", "host2")
        assert (first.node, first.hostname) == ("n1", "host1")
        assert (again.node, again.hostname) == ("n1", "host1")
        await store.set_placement("alice", "n2", "host2")
        assert (await store.get_placement("alice")).node == "n2"
        await store.place("bob", "n1", "host1")
        assert await store.placed_users() == {"alice", "bob"}
        await store.forget_placement("alice")
        assert await store.placed_users() == {"bob"}
    finally:
        await service.stopService()


# -- config --------------------------------------------------------------------------------

def test_swarm_config_is_checked():
    cfg = from_dict({"spawn": {"backend": "swarm"},
                     "swarm": {"placement": "spread", "node_engines": {"n2": "unix:///x.sock"}}})
    assert (cfg.spawn.backend, cfg.swarm.placement) == ("swarm", "spread")
    for bad, words in [({"placement": "random"}, "swarm.placement"),
                       ({"volume_options": {"a": "b"}}, "needs swarm.volume_driver"),
                       ({"node_engines": {"n2": "ftp://x"}}, "swarm.node_engines.n2"),
                       ({"node_engines": {"n2": 3}}, "swarm.node_engines.n2"),
                       ({"task_poll": 0}, "swarm.task_poll")]:
        with pytest.raises(ConfigError) as e:
            from_dict({"swarm": bad})
        assert words in str(e.value)


# -- the backend where a start fails -----------------------------------------------------

class _Daemonish:
    """What cleanup_swarm needs of a daemon: its instance name."""

    def __init__(self, instance: str) -> None:
        self.instance = instance


@pytest_twisted.ensureDeferred
async def test_a_task_that_fails_is_a_clear_error_and_leaves_no_service(tmp_path,
                                                                         two_node_swarm,
                                                                         notebook_image):
    redis = RedisService("", tmp_path, reactor)
    await redis.startService()
    instance = "u" + uuid.uuid4().hex[:6]
    api = SwarmAPI(reactor)
    backend = SwarmBackend(reactor, api, lambda: redis.store, name_prefix=f"{instance}-",
                           volume_prefix=f"{instance}-home-", start_timeout=60,
                           extra_labels={"ipydoc.instance": instance},
                           volume_driver="ipydoc-no-such-driver")
    try:
        assert "2 nodes, 2 ready" in await backend.check()
        spec = ServerSpec(name="carol", image=notebook_image, base_url="/user/carol/",
                          token="t" * 32)
        # No node has the volume plugin: the scheduler cannot place the task, and the
        # start says so (well before start_timeout) with the swarm's own reason.
        with pytest.raises(BackendError) as e:
            await backend.start(spec)
        assert "the swarm cannot place the server of carol" in e.value.message
        assert "missing plugin" in e.value.message
        assert await backend.status("carol") is None  # the failed service is gone
        with pytest.raises(BackendError) as e:
            await backend.start(ServerSpec(name="carol", image="ipydoc-no-such:image",
                                           base_url="/user/carol/", token="t" * 32))
        assert e.value.kind == "image_missing"
        assert await backend.node_of("carol") is None  # shared storage: nobody is pinned
    finally:
        await api.close()
        await redis.stopService()
        cleanup_swarm(_Daemonish(instance))
        assert engine(None, "service", "ls", "-q", "--filter", f"name={instance}-") == ""


@pytest_twisted.ensureDeferred
async def test_a_pinned_server_on_the_worker_its_logs_stats_and_list(tmp_path, two_node_swarm,
                                                                     notebook_image):
    redis = RedisService("", tmp_path, reactor)
    await redis.startService()
    instance = "u" + uuid.uuid4().hex[:6]
    api = SwarmAPI(reactor)
    common = dict(name_prefix=f"{instance}-", volume_prefix=f"{instance}-home-",
                  start_timeout=60, extra_labels={"ipydoc.instance": instance})
    backend = SwarmBackend(reactor, api, lambda: redis.store,
                           node_engines={WORKER_HOSTNAME: WORKER}, **common)
    blind = SwarmBackend(reactor, api, lambda: redis.store, **common)
    worker = two_node_swarm[WORKER_HOSTNAME]
    try:
        await backend.pin("dave", worker)
        assert await backend.node_of("dave") == worker
        spec = ServerSpec(name="dave", image=notebook_image, base_url="/user/dave/",
                          token="t" * 32, mem_limit=512 << 20, pids_limit=200)
        info = await backend.start(spec)
        assert info.running and info.url.startswith("http://10.231.0.2:")
        [listed] = await backend.list()
        assert (listed.id, listed.url, listed.token, listed.image) == \
            (info.id, info.url, spec.token, notebook_image)
        assert (await backend.status("dave")).running
        sample = await backend.stats(info.id)
        assert sample is not None and sample["mem_limit"] == 512 << 20
        assert await blind.stats(info.id) is None  # no engine known for the worker
        logs = await wait_logs(backend, info.id)
        assert "Jupyter" in logs or "jupyter" in logs
        assert spec.token not in logs
        await backend.stop("dave")
        assert await backend.status("dave") is None
        assert f"{instance}-home-dave" in engine(WORKER, "volume", "ls", "-q").split()
    finally:
        await api.close()
        await redis.stopService()
        cleanup_swarm(_Daemonish(instance))


async def wait_logs(backend: SwarmBackend, sid: str) -> str:
    """The service's logs once it has printed something."""
    for _ in range(100):
        logs = await backend.logs(sid, tail=50)
        if logs.strip():
            return logs
        await deferLater(reactor, 0.1, lambda: None)
    return ""
