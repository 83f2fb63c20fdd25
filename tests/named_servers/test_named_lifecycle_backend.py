"""The Docker backend with server keys (issue 19 §1), against the real engine: a named
server's container, labels and list/status/events by key, the owner's volume shared, and
a purge of the user refused while any of their servers has a container.  The Swarm
service body is checked as written (no swarm needed)."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred

from ipydoc.backends.base import BackendError, ServerSpec
from ipydoc.backends.docker import DockerBackend
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import ContainerBody, key_from_labels
from ipydoc.backends.jupyter_args import server_args
from ipydoc.backends.swarm_body import ServiceBody

from support import TEST_IMAGE

HTTP_CMD = ["sh", "-c", "exec python3 -m http.server 8888", "sh"]


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120).stdout


@pytest.fixture
def run_id():
    rid = uuid.uuid4().hex[:8]
    yield rid
    ids = docker("ps", "-aq", "--filter", f"label=ipydoc.test={rid}").split()
    if ids:
        docker("rm", "-f", *ids)
    vols = docker("volume", "ls", "-q", "--filter", f"label=ipydoc.test={rid}").split()
    if vols:
        docker("volume", "rm", "-f", *vols)


@pytest.fixture
def api():
    a = DockerAPI(reactor)
    yield a
    pytest_twisted.blockon(Deferred.fromCoroutine(a.close()))


def spec(key: str, base_url: str) -> ServerSpec:
    return ServerSpec(name=key, image=TEST_IMAGE, base_url=base_url, token=uuid.uuid4().hex)


@pytest_twisted.ensureDeferred
async def test_named_server_container_by_key_and_purge_refused_while_one_exists(run_id, api):
    backend = DockerBackend(reactor, api, name_prefix=f"ipydoc-t{run_id}-",
                            volume_prefix=f"ipydoc-t{run_id}-home-", cmd=HTTP_CMD,
                            extra_labels={"ipydoc.test": run_id}, stop_timeout=1)
    events = []
    backend.follow(events.append)
    try:
        info = await backend.start(spec("bob--gpu", "/user/bob/gpu/"))
        assert info.running and info.name == "bob--gpu"
        c = json.loads(docker("inspect", f"ipydoc-t{run_id}-bob--gpu"))[0]
        labels = c["Config"]["Labels"]
        assert (labels["ipydoc.user"], labels["ipydoc.server"]) == ("bob", "gpu")
        assert [m["Name"] for m in c["Mounts"]] == [f"ipydoc-t{run_id}-home-bob"]
        assert (await backend.status("bob--gpu")).id == info.id
        assert await backend.status("bob") is None  # the default server is another one
        assert [i.name for i in await backend.list()] == ["bob--gpu"]

        with pytest.raises(BackendError) as refused:
            await backend.purge("bob")  # the default server has no container; gpu does
        assert refused.value.kind == "conflict" and "bob--gpu" in refused.value.message

        await backend.pause("bob--gpu")
        assert (await backend.status("bob--gpu")).paused
        await backend.unpause("bob--gpu")
        await backend.stop("bob--gpu")
        assert await backend.status("bob--gpu") is None
        await backend.purge("bob")
        assert docker("volume", "ls", "-q", "--filter", f"label=ipydoc.test={run_id}") == ""
        seen = {(e.name, e.action) for e in events}
        assert ("bob--gpu", "start") in seen and ("bob--gpu", "pause") in seen
        assert {e.name for e in events} == {"bob--gpu"}
    finally:
        backend.stop_following()
        await backend.stop("bob--gpu")


def test_bodies_name_the_key_and_mount_the_owners_files():
    body = ContainerBody(notebook_dir="/home/jovyan", cmd=["jupyter", "lab"], port=8888,
                         volume_prefix="v-home-", storage="volume", bind_root=None, uid=1000,
                         gid=100, name_prefix="p-", network="users", extra_labels={})
    s = spec("alice--gpu", "/user/alice/gpu/")
    created = body.body(s, body.mount("alice"))
    assert body.container_name("alice--gpu") == "p-alice--gpu"
    assert created["Labels"]["ipydoc.user"] == "alice"
    assert created["Labels"]["ipydoc.server"] == "gpu"
    assert "--ServerApp.base_url=/user/alice/gpu/" in created["Cmd"]
    assert created["HostConfig"]["Mounts"][0]["Source"] == "v-home-alice"
    hub = json.loads(next(a for a in server_args(s, port=1, root_dir="/") if "tornado" in a)
                     .split("=", 1)[1])
    assert hub["user"] == "alice" and hub["server_name"] == "gpu"
    assert body.ours({"Name": "/p-alice--gpu", "Config": {"Labels": created["Labels"]}},
                     "alice--gpu")
    # Labels that say another server than the name does are not ours.
    assert not body.ours({"Name": "/p-alice", "Config": {"Labels": created["Labels"]}})
    assert key_from_labels({"ipydoc.user": "alice"}) == "alice"  # older containers
    assert key_from_labels({"ipydoc.user": "alice", "ipydoc.server": "lab"}) == ""

    service = ServiceBody(body, stop_timeout=5).spec(s, "sha256:abc", "node1")
    assert service["Name"] == "p-alice--gpu"
    container = service["TaskTemplate"]["ContainerSpec"]
    assert container["Mounts"][0]["Source"] == "v-home-alice"
    assert {"IPYDOC_USER=alice", "IPYDOC_SERVER=gpu"} <= set(container["Env"])
    assert service["TaskTemplate"]["Placement"]["Constraints"] == ["node.id==node1"]
    assert ServiceBody(body, stop_timeout=5).ours({"Spec": service}, "alice--gpu")
