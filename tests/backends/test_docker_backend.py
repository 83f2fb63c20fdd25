"""DockerBackend against the real Docker engine and a real Jupyter image.

The image is ``$IPYDOC_TEST_IMAGE`` (default ``ipydoc-test-notebook:latest``, built by
``ipydoc/image/build.sh``).  These tests fail (they do not skip) when the engine or the
image is missing.  Every container and volume they make carries the label
``ipydoc.test=<run id>`` and a per-run name prefix, and is removed at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, UNIXServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater

from ipydoc.backends.base import BackendError, ServerSpec
from ipydoc.backends.docker import DockerBackend
from ipydoc.backends.docker_api import DockerAPI

IMAGE = os.environ.get("IPYDOC_TEST_IMAGE", "ipydoc-test-notebook:latest")
SOCKET = "/var/run/docker.sock"
# A quick stand-in server for tests that are about containers rather than Jupyter: serves
# the notebook directory over HTTP; the Jupyter options ipydoc appends land in "$@".
HTTP_CMD = ["sh", "-c", "exec python3 -m http.server 8888", "sh"]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=120)


def inspect(kind: str, name: str) -> dict | None:
    r = docker(kind, "inspect", name, check=False)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


@pytest.fixture(scope="session")
def image() -> str:
    r = docker("version", "--format", "{{.Server.Version}}", check=False)
    if r.returncode != 0:
        pytest.fail(f"these tests need a Docker engine at {SOCKET}: {r.stderr.strip()}")
    if inspect("image", IMAGE) is None:
        pytest.fail(
            f"test image {IMAGE} is missing: build it with `ipydoc/image/build.sh {IMAGE}` "
            f"or point IPYDOC_TEST_IMAGE at a Jupyter image"
        )
    return IMAGE


@pytest.fixture
def run_id():
    rid = uuid.uuid4().hex[:8]
    yield rid
    for kind in ("container", "volume"):
        listing = "ps" if kind == "container" else "volume"
        args = [listing, "-q", "--filter", f"label=ipydoc.test={rid}"]
        if kind == "container":
            args.insert(1, "-a")
        else:
            args.insert(1, "ls")
        ids = docker(*args, check=False).stdout.split()
        if ids:
            docker(kind, "rm", "-f", *ids, check=False)
    nets = docker("network", "ls", "-q", "--filter", f"label=ipydoc.test={rid}", check=False).stdout.split()
    if nets:
        docker("network", "rm", *nets, check=False)


@pytest.fixture
def api():
    a = DockerAPI(reactor)
    yield a
    pytest_twisted.blockon(Deferred.fromCoroutine(a.close()))


def make_backend(api: DockerAPI, run_id: str, **kw) -> DockerBackend:
    kw.setdefault("name_prefix", f"ipydoc-t{run_id}-")
    kw.setdefault("volume_prefix", f"ipydoc-t{run_id}-home-")
    kw.setdefault("extra_labels", {"ipydoc.test": run_id})
    kw.setdefault("stop_timeout", 2)
    return DockerBackend(reactor, api, **kw)


def spec(image: str, name: str, **kw) -> ServerSpec:
    kw.setdefault("token", uuid.uuid4().hex)
    return ServerSpec(name=name, image=image, base_url=f"/user/{name}/", **kw)


async def sleep(s: float) -> None:
    await deferLater(reactor, s, lambda: None)


async def eventually(check, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result = await check()
            if result:
                return result
        except Exception as e:  # noqa: BLE001 - polling a server that is coming up
            last = e
        await sleep(0.25)
    raise AssertionError(f"{what} not reached within {timeout} s (last error: {last!r})")


async def http_get(url: str, **kw):
    r = await treq.get(url, timeout=5, **kw)
    body = await r.content()
    return r.code, body


@pytest_twisted.ensureDeferred
async def test_jupyter_server_starts_with_token_limits_and_loopback_port(image, run_id, api):
    backend = make_backend(api, run_id)
    s = spec(image, "alice", mem_limit=512 * 2**20, cpu_limit=0.5, pids_limit=200)
    info = await backend.start(s)
    assert info.running and info.name == "alice" and info.token == s.token
    assert info.url and info.url.startswith("http://127.0.0.1:")

    async def ready():
        code, _ = await http_get(f"{info.url}/user/alice/api/status",
                                 headers={"Authorization": f"token {s.token}"})
        return code == 200

    await eventually(ready, timeout=60, what="Jupyter answering /api/status")
    # The token really is the one in force: no token, or a wrong one, is refused.
    code, _ = await http_get(f"{info.url}/user/alice/api/status")
    assert code in (401, 403)
    code, _ = await http_get(f"{info.url}/user/alice/api/status", headers={"Authorization": "token nope"})
    assert code in (401, 403)

    c = inspect("container", f"ipydoc-t{run_id}-alice")
    assert c["Id"] == info.id
    assert c["Config"]["Labels"]["ipydoc.user"] == "alice"
    assert c["Config"]["Labels"]["ipydoc.managed"] == "1"
    assert f"JUPYTER_TOKEN={s.token}" in c["Config"]["Env"]
    assert "IPYDOC_USER=alice" in c["Config"]["Env"]
    assert not any(s.token in a for a in c["Args"] + c["Config"]["Cmd"]), "token leaked into argv"
    assert "--ServerApp.base_url=/user/alice/" in c["Config"]["Cmd"]
    hc = c["HostConfig"]
    assert hc["PortBindings"] == {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    published = c["NetworkSettings"]["Ports"]["8888/tcp"]
    assert [b["HostIp"] for b in published] == ["127.0.0.1"]
    assert hc["Memory"] == 512 * 2**20 and hc["MemorySwap"] == 512 * 2**20
    assert hc["NanoCpus"] == 500_000_000
    assert hc["PidsLimit"] == 200
    assert hc["CapDrop"] == ["ALL"] and hc["SecurityOpt"] == ["no-new-privileges"]
    assert hc["RestartPolicy"]["Name"] == "no"
    # The kernel enforces the limits inside the container.
    limits = docker("exec", info.id, "sh", "-c",
                    "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max"
                    " 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes"
                    " /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                    check=False).stdout.split()
    assert limits[:2] == [str(512 * 2**20), "200"], limits
    assert limits[2] == "50000", limits  # 0.5 CPU = 50 ms per 100 ms period
    mounts = c["Mounts"]
    assert [(m["Type"], m["Name"], m["Destination"]) for m in mounts] == [
        ("volume", f"ipydoc-t{run_id}-home-alice", "/home/jovyan")
    ]
    # Its output and its use, through the backend interface (the CLI's logs, admin stats).
    assert "Jupyter Server" in await backend.logs(info.id, tail=None)
    assert len((await backend.logs(info.id, tail=1)).strip().splitlines()) <= 1
    use = await backend.stats(info.id)
    assert use is not None and use["mem_limit"] == 512 * 2**20 and 0 < use["pids"] <= 200

    await backend.stop("alice")
    assert await backend.stats(info.id) is None  # gone: no stats, no error
    assert inspect("container", f"ipydoc-t{run_id}-alice") is None
    assert inspect("volume", f"ipydoc-t{run_id}-home-alice") is not None
    assert await backend.status("alice") is None
    await backend.stop("alice")  # idempotent


@pytest_twisted.ensureDeferred
async def test_files_on_the_volume_survive_stop_and_start(image, run_id, api):
    backend = make_backend(api, run_id, cmd=HTTP_CMD)
    first = await backend.start(spec(image, "bob"))
    # Docker seeded the new volume from the image's home: owned by the notebook user.
    out = docker("exec", first.id, "stat", "-c", "%u:%g", "/home/jovyan", "/home/jovyan/.bashrc").stdout.split()
    assert out == ["1000:100", "1000:100"]
    docker("exec", first.id, "sh", "-c", "echo kept > /home/jovyan/notes.txt")
    await backend.stop("bob")
    assert inspect("container", f"ipydoc-t{run_id}-bob") is None

    second = await backend.start(spec(image, "bob"))
    assert second.id != first.id

    async def served():
        code, body = await http_get(f"{second.url}/notes.txt")
        return code == 200 and body == b"kept\n"

    await eventually(served, what="the file written before the restart served again")
    await backend.stop("bob")


@pytest_twisted.ensureDeferred
async def test_bind_storage_creates_owned_directory_and_purge_removes_it(image, run_id, api, tmp_path):
    backend = make_backend(api, run_id, cmd=HTTP_CMD, storage="bind", bind_root=str(tmp_path))
    info = await backend.start(spec(image, "carol"))
    home = tmp_path / "carol"
    st = home.stat()
    assert (st.st_uid, st.st_gid) == (1000, 100)
    docker("exec", info.id, "sh", "-c", "echo hi > /home/jovyan/a.txt")
    assert (home / "a.txt").read_text() == "hi\n"
    await backend.stop("carol")
    assert (home / "a.txt").read_text() == "hi\n"
    await backend.start(spec(image, "carol"))
    with pytest.raises(BackendError) as e:
        await backend.purge("carol")
    assert e.value.kind == "conflict" and "stop it" in e.value.message
    await backend.stop("carol")
    await backend.purge("carol")
    assert not home.exists()


@pytest_twisted.ensureDeferred
async def test_volume_purge(image, run_id, api):
    backend = make_backend(api, run_id, cmd=HTTP_CMD)
    await backend.start(spec(image, "dave"))
    await backend.stop("dave")
    assert inspect("volume", f"ipydoc-t{run_id}-home-dave") is not None
    await backend.purge("dave")
    assert inspect("volume", f"ipydoc-t{run_id}-home-dave") is None
    await backend.purge("dave")  # idempotent


@pytest_twisted.ensureDeferred
async def test_list_status_and_token_recovery_after_restart(image, run_id, api):
    backend = make_backend(api, run_id, cmd=HTTP_CMD)
    s1, s2 = spec(image, "erin"), spec(image, "frank")
    i1 = await backend.start(s1)
    i2 = await backend.start(s2)
    # Somebody else's container with one of our names but not our labels.
    docker("create", "--name", f"ipydoc-t{run_id}-gina", "--label", f"ipydoc.test={run_id}", image, "true")
    # Another deployment (other prefix) on the same engine.
    other = make_backend(api, run_id, cmd=HTTP_CMD, name_prefix=f"ipydoc-o{run_id}-")
    await other.start(spec(image, "erin"))

    fresh = make_backend(api, run_id, cmd=HTTP_CMD)  # as after a daemon restart
    servers = {i.name: i for i in await fresh.list()}
    assert set(servers) == {"erin", "frank"}
    assert servers["erin"].token == s1.token and servers["frank"].token == s2.token
    assert servers["erin"].id == i1.id and servers["erin"].url == i1.url and servers["erin"].running
    assert servers["erin"].image == image
    assert servers["erin"].started_at and abs(servers["erin"].started_at - time.time()) < 120

    st = await fresh.status("frank")
    assert st.token == s2.token and st.url == i2.url and st.running
    assert await fresh.status("gina") is None
    assert await fresh.status("nobody") is None
    with pytest.raises(BackendError) as e:
        await fresh.start(spec(image, "gina"))
    assert e.value.kind == "conflict" and "not managed by ipydoc" in e.value.message
    await fresh.stop("gina")  # not ours: left alone
    assert inspect("container", f"ipydoc-t{run_id}-gina") is not None

    docker("stop", "-t", "1", i2.id)
    st = await fresh.status("frank")
    assert st is not None and not st.running and st.url is None and st.token == s2.token

    # A left-over container is replaced by start.
    again = await fresh.start(spec(image, "frank"))
    assert again.id != i2.id and inspect("container", i2.id) is None


async def _collect_events(backend: DockerBackend) -> list:
    events: list = []
    backend.follow(events.append)
    return events


@pytest_twisted.ensureDeferred
async def test_events_for_start_kill_and_remove(image, run_id, api):
    backend = make_backend(api, run_id, cmd=HTTP_CMD)
    events = await _collect_events(backend)
    try:
        await sleep(0.5)  # the stream is open
        info = await backend.start(spec(image, "hank"))
        await eventually(lambda: _has(events, "hank", "start"), 10, "start event")
        docker("kill", info.id)
        await eventually(lambda: _has(events, "hank", "die"), 10, "die event")
        docker("rm", info.id)
        await eventually(lambda: _has(events, "hank", "destroy"), 10, "destroy event")
        assert all(e.name == "hank" and e.id == info.id for e in events)
        assert [e.action for e in events] == ["start", "die", "destroy"]
    finally:
        backend.stop_following()


async def _has(events, name, action):
    return any(e.name == name and e.action == action for e in events)


class _Relay(Protocol):
    """One client connection of the socket relay, spliced to the real Docker socket."""

    def connectionMade(self):  # noqa: N802
        self.factory.conns.append(self)
        self.transport.pauseProducing()
        self.peer = None
        d = UNIXClientEndpoint(reactor, SOCKET).connect(Factory.forProtocol(_Back))
        d.addCallbacks(self._up, lambda f: self.transport.loseConnection())

    def _up(self, back):
        self.peer = back
        back.peer = self
        self.transport.resumeProducing()

    def dataReceived(self, data):  # noqa: N802
        self.peer.transport.write(data)

    def connectionLost(self, reason):  # noqa: N802
        if self.peer:
            self.peer.transport.loseConnection()


class _Back(Protocol):
    peer = None

    def dataReceived(self, data):  # noqa: N802
        self.peer.transport.write(data)

    def connectionLost(self, reason):  # noqa: N802
        if self.peer:
            self.peer.transport.loseConnection()


@pytest_twisted.ensureDeferred
async def test_events_reconnect_after_drop_and_engine_outage(image, run_id, tmp_path):
    """The stream drops, then the engine is away for a while: events keep coming."""
    path = str(tmp_path / "docker.sock")
    factory = Factory.forProtocol(_Relay)
    factory.conns = []
    port = await UNIXServerEndpoint(reactor, path).listen(factory)
    relayed = DockerAPI(reactor, f"unix://{path}")
    direct = DockerAPI(reactor)
    watcher = make_backend(relayed, run_id, cmd=HTTP_CMD)
    actor = make_backend(direct, run_id, cmd=HTTP_CMD)
    events: list = []
    watcher.follow(events.append)
    try:
        await actor.start(spec(image, "ivan"))
        await eventually(lambda: _has(events, "ivan", "start"), 10, "start event")

        # 1. the stream drops and the engine stays away while the container dies and is
        #    removed: on reconnecting, the backend replays what it missed.
        await port.stopListening()
        for c in list(factory.conns):
            c.transport.loseConnection()
        await actor.stop("ivan")  # die + destroy, nobody listening
        await sleep(1.5)  # a failed reconnect or two
        assert [e.action for e in events] == ["start"]
        n = len(factory.conns)
        port = await UNIXServerEndpoint(reactor, path).listen(factory)
        await eventually(lambda: _has(events, "ivan", "destroy"), 15, "destroy replayed")
        assert len(factory.conns) > n
        assert [e.action for e in events] == ["start", "die", "destroy"], events

        # 2. a plain drop with the engine still there: reconnects, nothing duplicated.
        for c in list(factory.conns):
            c.transport.loseConnection()
        await sleep(1.0)
        await actor.start(spec(image, "judy"))
        await eventually(lambda: _has(events, "judy", "start"), 20, "start after a drop")
        assert [(e.name, e.action) for e in events] == [
            ("ivan", "start"), ("ivan", "die"), ("ivan", "destroy"), ("judy", "start")
        ]
    finally:
        watcher.stop_following()
        await actor.stop("judy")
        await actor.stop("ivan")
        await port.stopListening()
        await relayed.close()
        await direct.close()
    # stop_following really stops: no new connection is made afterwards.
    n = len(factory.conns)
    await sleep(1.0)
    assert len(factory.conns) == n


@pytest_twisted.ensureDeferred
async def test_private_network_instead_of_a_published_port(image, run_id, api):
    net = f"ipydoc-t{run_id}-net"
    docker("network", "create", "--label", f"ipydoc.test={run_id}", net)
    backend = make_backend(api, run_id, cmd=HTTP_CMD, network=net)
    info = await backend.start(spec(image, "owen"))
    c = inspect("container", info.id)
    ip = c["NetworkSettings"]["Networks"][net]["IPAddress"]
    assert info.url == f"http://{ip}:8888"
    assert not c["HostConfig"]["PortBindings"] and not c["NetworkSettings"]["Ports"].get("8888/tcp")

    async def served():
        code, _ = await http_get(f"{info.url}/")
        return code == 200

    await eventually(served, what="the server answering on the private network")
    assert (await backend.status("owen")).url == info.url
    await backend.stop("owen")


@pytest_twisted.ensureDeferred
async def test_missing_image_is_a_clear_error(run_id, api):
    backend = make_backend(api, run_id, cmd=HTTP_CMD)
    missing = f"ipydoc-no-such-image-{run_id}:latest"
    with pytest.raises(BackendError) as e:
        await backend.start(spec(missing, "kate"))
    assert e.value.kind == "image_missing"
    assert missing in e.value.message and "could not be pulled" in e.value.message
    assert inspect("container", f"ipydoc-t{run_id}-kate") is None


@pytest_twisted.ensureDeferred
async def test_server_that_cannot_start_is_reported_and_removed(image, run_id, api):
    # A misconfigured network: Docker creates the container and refuses to start it.
    backend = make_backend(api, run_id, cmd=HTTP_CMD, network=f"ipydoc-t{run_id}-no-such-net")
    with pytest.raises(BackendError) as e:
        await backend.start(spec(image, "liam"))
    assert e.value.kind == "failed"
    assert e.value.message.startswith("could not start the server of liam: ")
    assert f"network ipydoc-t{run_id}-no-such-net not found" in e.value.message
    assert inspect("container", f"ipydoc-t{run_id}-liam") is None
    assert inspect("volume", f"ipydoc-t{run_id}-home-liam") is not None  # files are never removed


@pytest_twisted.ensureDeferred
async def test_check_describes_the_engine(api, run_id):
    desc = await make_backend(api, run_id).check()
    assert desc.startswith("Docker ") and "(API 1.41)" in desc and SOCKET in desc


@pytest_twisted.ensureDeferred
async def test_unreachable_engine(run_id, tmp_path):
    sock = tmp_path / "nothing-here.sock"
    api = DockerAPI(reactor, f"unix://{sock}")
    backend = make_backend(api, run_id)
    for call in (backend.check(), backend.start(spec("whatever:1", "mia")), backend.list()):
        with pytest.raises(BackendError) as e:
            await call
        assert e.value.kind == "unreachable"
        assert e.value.message.startswith(f"Docker engine unreachable at unix://{sock}: ")
        assert "No such file or directory" in e.value.message
