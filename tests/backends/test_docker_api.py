"""DockerAPI against a fake engine on a real unix socket, plus the event-follow loop.

What the real engine cannot be made to do on demand (answer garbage, hang, split its
events stream mid-object, close it) is played by a small twisted.web site here.  The real
engine is exercised in test_docker_backend.py.
"""

from __future__ import annotations

import json
import struct

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXServerEndpoint
from twisted.internet.task import Clock, deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from ipydoc.backends.base import BackendError, BackendEvent
from ipydoc.backends.docker import DockerBackend
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import parse_docker_time
from ipydoc.backends.docker_formats import demux_logs, progress_messages, split_image


class FakeEngine(Resource):
    """Answers each request with ``routes[(method, path)](request)``."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.routes = {}
        self.requests = []
        self.open_streams = []

    def render(self, request):
        path = request.path.decode()
        self.requests.append((request.method.decode(), path, request.args))
        handler = self.routes.get((request.method.decode(), path))
        if handler is None:
            request.setResponseCode(404)
            return json.dumps({"message": f"page not found: {path}"}).encode()
        return handler(request)


@pytest.fixture
def fake(tmp_path):
    engine = FakeEngine()
    path = str(tmp_path / "fake-docker.sock")
    port = pytest_twisted.blockon(UNIXServerEndpoint(reactor, path).listen(Site(engine)))
    api = DockerAPI(reactor, f"unix://{path}", timeout=1.0)
    yield engine, api
    pytest_twisted.blockon(Deferred.fromCoroutine(api.close()))
    pytest_twisted.blockon(port.stopListening())


def answer(code, body, content_type=b"application/json"):
    def handler(request):
        request.setResponseCode(code)
        request.setHeader(b"content-type", content_type)
        return body if isinstance(body, bytes) else json.dumps(body).encode()
    return handler


@pytest_twisted.ensureDeferred
async def test_json_answers_and_versioned_paths(fake):
    engine, api = fake
    engine.routes[("GET", "/v1.41/version")] = answer(200, {"Version": "99.0", "ApiVersion": "1.41"})
    engine.routes[("GET", "/v1.41/containers/json")] = answer(200, [{"Id": "abc"}])
    assert (await api.version())["Version"] == "99.0"
    assert await api.list_containers({"ipydoc.user": None, "ipydoc.managed": "1"}) == [{"Id": "abc"}]
    _, _, args = engine.requests[-1]
    assert json.loads(args[b"filters"][0]) == {"label": ["ipydoc.user", "ipydoc.managed=1"]}
    assert args[b"all"] == [b"1"]
    assert await api.inspect_container("nope") is None  # 404 -> None


@pytest_twisted.ensureDeferred
async def test_error_kinds_and_messages(fake):
    engine, api = fake
    engine.routes[("POST", "/v1.41/containers/create")] = answer(
        409, {"message": 'Conflict. The container name "/x" is already in use'})
    with pytest.raises(BackendError) as e:
        await api.create_container("x", {"Image": "i"})
    assert e.value.kind == "conflict" and "already in use" in e.value.message

    engine.routes[("POST", "/v1.41/containers/create")] = answer(404, {"message": "No such image: i:latest"})
    with pytest.raises(BackendError) as e:
        await api.create_container("x", {"Image": "i"})
    assert e.value.kind == "image_missing" and "No such image: i:latest" in e.value.message

    engine.routes[("POST", "/v1.41/containers/abc/start")] = answer(500, {"message": "OCI runtime create failed"})
    with pytest.raises(BackendError) as e:
        await api.start_container("abc")
    assert e.value.kind == "failed" and "(500): OCI runtime create failed" in e.value.message

    engine.routes[("GET", "/v1.41/version")] = answer(200, b"<html>proxy error</html>", b"text/html")
    with pytest.raises(BackendError) as e:
        await api.version()
    assert e.value.kind == "bad_answer" and "not JSON" in e.value.message

    engine.routes[("GET", "/v1.41/containers/json")] = answer(200, {"not": "a list"})
    with pytest.raises(BackendError) as e:
        await api.list_containers()
    assert e.value.kind == "bad_answer"

    engine.routes[("POST", "/v1.41/containers/create")] = answer(201, {"Warnings": []})
    with pytest.raises(BackendError) as e:
        await api.create_container("x", {"Image": "i"})
    assert e.value.kind == "bad_answer"


@pytest_twisted.ensureDeferred
async def test_request_timeout(fake):
    engine, api = fake
    engine.routes[("GET", "/v1.41/version")] = lambda request: NOT_DONE_YET  # never answers
    with pytest.raises(BackendError) as e:
        await api.version()
    assert e.value.kind == "unreachable"
    assert "did not answer GET /version within 1 s" in e.value.message


@pytest_twisted.ensureDeferred
async def test_pull_reports_errors_from_the_progress_stream(fake):
    engine, api = fake
    lines = [
        {"status": "Pulling from library/x", "id": "latest"},
        {"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"},
    ]
    engine.routes[("POST", "/v1.41/images/create")] = answer(
        200, b"\r\n".join(json.dumps(x).encode() for x in lines) + b"\r\n")
    with pytest.raises(BackendError) as e:
        await api.pull_image("registry.example:5000/team/x")
    assert "manifest unknown" in e.value.message
    _, _, args = engine.requests[-1]
    # No tag means latest, never "every tag"; a registry port is not a tag.
    assert args[b"fromImage"] == [b"registry.example:5000/team/x"] and args[b"tag"] == [b"latest"]

    engine.routes[("POST", "/v1.41/images/create")] = answer(200, b'{"status":"Downloaded newer image"}\n')
    await api.pull_image("x:1.2")
    _, _, args = engine.requests[-1]
    assert args[b"fromImage"] == [b"x"] and args[b"tag"] == [b"1.2"]


def test_split_image_and_time_parsing():
    assert split_image("x") == ("x", "latest")
    assert split_image("host:5000/x") == ("host:5000/x", "latest")
    assert split_image("host:5000/x:3") == ("host:5000/x", "3")
    assert split_image("x@sha256:abc") == ("x@sha256:abc", None)
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456789)
    assert parse_docker_time("2024-01-02T05:04:05+02:00") == 1704164645.0
    assert parse_docker_time("garbage") is None


def test_progress_messages_of_pull_and_load_answers():
    answer = (b'{"status":"Pulling fs layer","id":"a1"}\n'
              b'{"stream":"Loaded image: x:1\\n"}\n'
              b'not json\n\n[1, 2]\n'
              b'{"errorDetail":{"message":"no space left"},"error":"short"}\n'
              b'{"error":"plain error"}\n')
    assert list(progress_messages(answer)) == [
        ("stream", "Loaded image: x:1"), ("error", "no space left"), ("error", "plain error")]


def test_demux_logs():
    def frame(stream, data):
        return struct.pack(">BxxxL", stream, len(data)) + data

    data = frame(1, b"out 1\n") + frame(2, "err é\n".encode()) + frame(1, b"out 2\n")
    assert demux_logs(data) == "out 1\nerr é\nout 2\n"
    assert demux_logs(b"plain tty output\n") == "plain tty output\n"
    assert demux_logs(b"") == ""


@pytest_twisted.ensureDeferred
async def test_events_stream_split_anywhere_then_closed(fake):
    """Objects cut across chunks (even inside a UTF-8 character), several per chunk."""
    engine, api = fake
    objs = [{"Type": "container", "Action": "start", "n": i, "s": "é" * i} for i in range(5)]
    raw = b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)
    raw += b"not json\n" + json.dumps({"n": 5}).encode() + b"\n"
    pieces = [raw[i:i + 7] for i in range(0, len(raw), 7)]

    def stream(request):
        request.setHeader(b"content-type", b"application/json")
        request.write(b"")

        def more():
            if pieces:
                request.write(pieces.pop(0))
                reactor.callLater(0.001, more)
            else:
                request.finish()

        more()
        return NOT_DONE_YET

    engine.routes[("GET", "/v1.41/events")] = stream
    got = []
    opened = []
    d = api.events({"type": ["container"]}, got.append, since="12.000000005", on_open=lambda: opened.append(1))
    assert await d is None  # the engine ended the stream
    assert [g["n"] for g in got] == [0, 1, 2, 3, 4, 5]
    assert got[4]["s"] == "é" * 4 and opened == [1]
    _, _, args = engine.requests[-1]
    assert json.loads(args[b"filters"][0]) == {"type": ["container"]} and args[b"since"] == [b"12.000000005"]


@pytest_twisted.ensureDeferred
async def test_events_cancel_closes_the_connection(fake):
    engine, api = fake
    closed = []

    def stream(request):
        request.write(b'{"Action": "start"}\n{"Act')
        request.notifyFinish().addBoth(closed.append)
        return NOT_DONE_YET

    engine.routes[("GET", "/v1.41/events")] = stream
    got = []
    d = api.events(None, got.append)
    await deferLater(reactor, 0.3, lambda: None)
    assert got == [{"Action": "start"}]
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await deferLater(reactor, 0.3, lambda: None)
    assert len(closed) == 1  # the server saw the connection go


@pytest_twisted.ensureDeferred
async def test_events_engine_unreachable(tmp_path):
    api = DockerAPI(reactor, f"unix://{tmp_path}/absent.sock")
    with pytest.raises(BackendError) as e:
        await api.events(None, lambda ev: None)
    assert e.value.kind == "unreachable" and "absent.sock" in e.value.message


class FakeEventsAPI:
    """Just enough of DockerAPI for DockerBackend.follow: hands out controllable streams."""

    host = "fake://"

    def __init__(self):
        self.calls = []

    def events(self, filters, on_event, *, since=None, on_open=None):
        d = Deferred()
        self.calls.append({"filters": filters, "on_event": on_event, "since": since,
                           "on_open": on_open, "d": d})
        return d


def ev(action, user, cid="c1", t=1_000_000_000_000_000_000, name=None, type_="container"):
    return {"Type": type_, "Action": action, "timeNano": t,
            "Actor": {"ID": cid, "Attributes": {"ipydoc.user": user, "name": name or f"ipydoc-{user}"}}}


def test_follow_maps_events_backs_off_and_replays():
    clock = Clock()
    api = FakeEventsAPI()
    backend = DockerBackend(clock, api)
    got: list[BackendEvent] = []
    backend.follow(got.append)
    assert len(api.calls) == 1
    c = api.calls[0]
    assert c["filters"] == {"type": ["container"], "label": ["ipydoc.user"],
                            "event": ["start", "die", "destroy", "pause", "unpause"]}
    assert c["since"] is None
    c["on_open"]()
    c["on_event"](ev("start", "alice", t=1_700_000_000_123_456_789))
    c["on_event"](ev("die", "bob", name="other-bob"))  # another deployment's prefix
    c["on_event"](ev("exec_start", "alice"))
    c["on_event"]({"Type": "container", "Action": "start", "Actor": {"ID": "x", "Attributes": {}}})
    c["on_event"](ev("pause", "alice", t=1_700_000_000_200_000_000))
    c["on_event"](ev("unpause", "alice", t=1_700_000_000_300_000_000))
    assert got == [BackendEvent("alice", "c1", "start"), BackendEvent("alice", "c1", "pause"),
                   BackendEvent("alice", "c1", "unpause")]

    # The engine goes away: retries at 0.5, 1, 2, 4, 8, 10, 10 s.
    delays = []
    c["d"].errback(BackendError("unreachable", "gone"))
    for _ in range(7):
        before = clock.seconds()
        n = len(api.calls)
        while len(api.calls) == n:
            clock.advance(0.25)
        delays.append(clock.seconds() - before)
        api.calls[-1]["d"].errback(BackendError("unreachable", "still gone"))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]

    # Back: replay since the last event seen; the replayed start is not delivered twice.
    clock.advance(10)
    c = api.calls[-1]
    assert c["since"] == "1700000000.300000000"
    c["on_open"]()
    c["on_event"](ev("start", "alice", t=1_700_000_000_123_456_789))
    c["on_event"](ev("die", "alice", t=1_700_000_001_000_000_000))
    assert got[3:] == [BackendEvent("alice", "c1", "die")]
    # A clean end of stream reconnects after the (reset) shortest delay.
    n = len(api.calls)
    c["d"].callback(None)
    clock.advance(0.5)
    assert len(api.calls) == n + 1

    backend.stop_following()
    assert api.calls[-1]["d"].called  # cancelled
    clock.advance(60)
    assert len(api.calls) == n + 1


def _make_certs(directory):
    """A CA, a server certificate for localhost and a client certificate, as the docker CLI
    expects them in DOCKER_CERT_PATH (ca.pem, cert.pem, key.pem)."""
    import pki

    ca = pki.ca("test ca")
    server, server_key = pki.leaf(ca, "localhost", san=pki.LOCALHOST)
    client, client_key = pki.leaf(ca, "client", usage=pki.CLIENT)
    (directory / "ca.pem").write_bytes(pki.pem(ca[0]))
    (directory / "cert.pem").write_bytes(pki.pem(client))
    (directory / "key.pem").write_bytes(pki.pem_key(client_key))
    return pki.pem(ca[0]), pki.pem(server) + pki.pem_key(server_key)


@pytest.mark.parametrize("verify", ["1", ""])
@pytest_twisted.ensureDeferred
async def test_tcp_with_tls_client_certificate(tmp_path, monkeypatch, verify):
    from twisted.internet import ssl
    from twisted.internet.endpoints import SSL4ServerEndpoint

    ca_pem, server_pem = _make_certs(tmp_path)
    ca = ssl.Certificate.loadPEM(ca_pem)
    server = ssl.PrivateCertificate.loadPEM(server_pem)
    seen = []

    engine = FakeEngine()

    def version(request):
        peer = request.channel.transport.getPeerCertificate().to_cryptography()
        seen.append(peer.subject.rfc4514_string())
        return answer(200, {"Version": "tls", "ApiVersion": "1.41"})(request)

    engine.routes[("GET", "/v1.41/version")] = version
    options = ssl.CertificateOptions(
        privateKey=server.privateKey.original, certificate=server.original,
        verify=True, caCerts=[ca.original], requireCertificate=True,
    )
    port = await SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1").listen(Site(engine))
    monkeypatch.setenv("DOCKER_HOST", f"tcp://localhost:{port.getHost().port}")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    monkeypatch.setenv("DOCKER_TLS_VERIFY", verify)
    api = DockerAPI(reactor)
    try:
        assert (await api.version())["Version"] == "tls"
        assert seen == ["CN=client"]  # the engine saw our client certificate
    finally:
        await api.close()
        await port.stopListening()


def test_bad_hosts_and_tls_files(tmp_path, monkeypatch):
    with pytest.raises(BackendError) as e:
        DockerAPI(reactor, "ssh://me@host")
    assert e.value.kind == "failed" and "unix:///PATH or tcp://HOST:PORT" in e.value.message
    monkeypatch.setenv("DOCKER_CERT_PATH", str(tmp_path))
    with pytest.raises(BackendError) as e:
        DockerAPI(reactor, "tcp://localhost:2376")
    assert "cannot read" in e.value.message and "cert.pem" in e.value.message


@pytest_twisted.ensureDeferred
async def test_backend_reports_a_server_that_exited_at_once(fake):
    """Between start and inspect the process died: the error carries its last output and
    the container is removed (the real engine cannot be made to lose this race on demand)."""
    engine, api = fake
    frame = struct.pack(">BxxxL", 2, 24) + b"jupyter: bad option --x\n"
    engine.routes.update({
        ("GET", "/v1.41/images/img/json"): answer(200, {"Id": "sha256:1"}),
        ("GET", "/v1.41/containers/ipydoc-nina/json"): answer(404, {"message": "No such container"}),
        ("POST", "/v1.41/volumes/create"): answer(201, {"Name": "ipydoc-home-nina"}),
        ("POST", "/v1.41/containers/create"): answer(201, {"Id": "c1", "Warnings": []}),
        ("POST", "/v1.41/containers/c1/start"): answer(204, b""),
        ("GET", "/v1.41/containers/c1/json"): answer(200, {
            "Id": "c1", "Name": "/ipydoc-nina",
            "Config": {"Labels": {"ipydoc.user": "nina", "ipydoc.managed": "1"}, "Env": []},
            "State": {"Running": False, "ExitCode": 2, "Error": ""},
            "NetworkSettings": {"Ports": {}}}),
        ("GET", "/v1.41/containers/c1/logs"): answer(200, frame, b"application/vnd.docker.raw-stream"),
        ("DELETE", "/v1.41/containers/c1"): answer(204, b""),
    })
    backend = DockerBackend(reactor, api)
    from ipydoc.backends.base import ServerSpec

    with pytest.raises(BackendError) as e:
        await backend.start(ServerSpec(name="nina", image="img", base_url="/user/nina/", token="t"))
    assert e.value.kind == "failed"
    assert "exited at once with status 2" in e.value.message
    assert "jupyter: bad option --x" in e.value.message
    assert ("DELETE", "/v1.41/containers/c1", {b"force": [b"1"], b"v": [b"0"]}) in engine.requests
