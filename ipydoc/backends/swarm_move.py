"""Copy a user's volume from one Swarm node to another, verified, for ``ipydoc server move``.

Two helper tasks (Swarm services: one replica, never restarted, pinned by ``node.id``,
labelled ``ipydoc.managed`` and ``ipydoc.helper``, removed afterwards whatever happens)
run the user's own image, of which they use only ``python3`` and ``tar``:

* the **source** mounts the volume read-only and, to a connection that first sends the
  one-time secret, sends ``tar --numeric-owner -c`` of it in frames (4-byte length, then
  the bytes; a zero length ends them), then a JSON line with its byte count, sha256 and
  tar's exit code;
* the **destination** mounts the volume of the same name on the target node, empties it,
  and after the secret extracts the raw stream it is sent with ``tar -xp
  --numeric-owner`` as root (owners and modes kept); at the end of the stream it answers
  its own count, sha256 and tar's exit code.

Each publishes its port in host mode on its node; the **daemon** connects to both (nodes
need not reach each other), relays the bytes with back-pressure (the destination's socket
pauses the source's: memory stays at the sockets' buffers), hashes what it relays, and
ends everything at a total deadline.  The copy counts only if all three counts and
hashes agree and both tars exited 0; only then may the caller re-pin the user.  The
secret travels in the helpers' environment, never in argv or a log line.  Everything the
helpers send is treated as hostile: frames and answers are bounded.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import error as ierror
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ipydoc.backends.base import BackendError
from ipydoc.backends.swarm_api import SwarmAPI, node_address

HELPER_LABEL = "ipydoc.helper"
MOVE_USER_LABEL = "ipydoc.move.user"
HELPER_PORT = 7000
MOUNT = "/data"
SECRET_ENV = "IPYDOC_MOVE_SECRET"
MAX_FRAME = 4 * 1024 * 1024      # bytes of one frame from the source (it sends <= 1 MiB)
MAX_ANSWER = 4096                # bytes of a helper's closing JSON line
COPY_DEADLINE = 3600.0           # seconds for the whole copy, helpers included
HELPER_START = 120.0             # seconds for a helper task to run and listen

log = Logger()

_AUTH = r'''
import hmac, os, socket, sys
def accept(secret):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", %d)); s.listen(4)
    for _ in range(20):
        c, _ = s.accept(); c.settimeout(30); line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 200:
                b = c.recv(1)
                if not b: break
                line += b
        except OSError:
            pass
        if hmac.compare_digest(line.strip(), secret):
            c.settimeout(600); s.close(); return c
        c.close()
    sys.exit(3)
''' % HELPER_PORT

#: The source helper: tar of the volume in frames, then count, sha256, exit code.
SOURCE_SCRIPT = _AUTH + r'''
import hashlib, json, struct, subprocess
c = accept(os.environ.pop("%s").encode())
p = subprocess.Popen(["tar", "-C", "%s", "--numeric-owner", "-cf", "-", "."], stdout=subprocess.PIPE)
h = hashlib.sha256(); n = 0
while True:
    b = p.stdout.read(1 << 20)
    if not b: break
    h.update(b); n += len(b); c.sendall(struct.pack(">I", len(b)) + b)
rc = p.wait()
c.sendall(struct.pack(">I", 0) + json.dumps({"bytes": n, "sha256": h.hexdigest(), "rc": rc}).encode() + b"\n")
c.close()
''' % (SECRET_ENV, MOUNT)

#: The destination helper: empty the volume, untar the stream, answer count, sha256, code.
DESTINATION_SCRIPT = _AUTH + r'''
import hashlib, json, shutil, subprocess
c = accept(os.environ.pop("%s").encode())
for e in os.listdir("%s"):
    path = os.path.join("%s", e)
    if os.path.isdir(path) and not os.path.islink(path): shutil.rmtree(path)
    else: os.unlink(path)
p = subprocess.Popen(["tar", "-C", "%s", "--numeric-owner", "-xpf", "-"], stdin=subprocess.PIPE)
h = hashlib.sha256(); n = 0; broken = False
while True:
    b = c.recv(1 << 20)
    if not b: break
    h.update(b); n += len(b)
    if not broken:
        try: p.stdin.write(b)
        except BrokenPipeError: broken = True
try: p.stdin.close()
except BrokenPipeError: pass
rc = p.wait()
c.sendall(json.dumps({"bytes": n, "sha256": h.hexdigest(), "rc": rc}).encode() + b"\n")
c.close()
''' % (SECRET_ENV, MOUNT, MOUNT, MOUNT)

#: ``progress(message)``: a line for the person waiting.
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CopyResult:
    """A verified copy: how many tar bytes, their sha256, how long it took."""

    bytes: int
    sha256: str
    seconds: float


class MoveFailed(BackendError):
    """The copy did not happen or could not be verified; the user's pin is unchanged."""

    def __init__(self, message: str) -> None:
        super().__init__("failed", message)


def _answer(raw: bytes, who: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MoveFailed(f"the {who} helper's answer is not JSON: {raw[:100]!r}") from None
    if (not isinstance(obj, dict) or not isinstance(obj.get("bytes"), int)
            or not isinstance(obj.get("sha256"), str) or not isinstance(obj.get("rc"), int)):
        raise MoveFailed(f"the {who} helper's answer is not a count, sha256 and code: {obj!r}")
    return obj


class _Destination(Protocol):
    """The connection to the destination helper: we write, it answers once at the end."""

    def __init__(self) -> None:
        self.answer = b""
        self.closed: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.answer += data
        if len(self.answer) > MAX_ANSWER:
            self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802 (Twisted API)
        self.closed.callback(None)


class _Source(Protocol):
    """The connection to the source helper: frames in, their bytes out to ``sink``."""

    def __init__(self, sink: _Destination) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.hash = hashlib.sha256()
        self.count = 0
        self.trailer: bytes | None = None  # set at the end frame
        self.error = ""
        self.closed: Deferred[None] = Deferred()

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        # Back-pressure: the destination's socket pauses ours when its buffer is full.
        self.sink.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.buffer += data
        while not self.error:
            if self.trailer is not None:
                if len(self.buffer) > MAX_ANSWER:
                    self._fail("the source helper sent too much after its last frame")
                return
            if len(self.buffer) < 4:
                return
            (size,) = struct.unpack(">I", self.buffer[:4])
            if size > MAX_FRAME:
                self._fail(f"the source helper sent a frame of {size} bytes")
                return
            if size == 0:
                self.trailer = b""
                del self.buffer[:4]
                continue
            if len(self.buffer) < 4 + size:
                return
            chunk = bytes(self.buffer[4:4 + size])
            del self.buffer[:4 + size]
            self.hash.update(chunk)
            self.count += size
            self.sink.transport.write(chunk)

    def _fail(self, message: str) -> None:
        self.error = message
        self.transport.abortConnection()

    def connectionLost(self, reason: Failure = None) -> None:  # noqa: N802 (Twisted API)
        if self.trailer is not None:
            self.trailer = bytes(self.buffer)
        sink = self.sink.transport
        if sink is not None:
            sink.unregisterProducer()
        self.closed.callback(None)


class VolumeMover:
    """Copies one user's volume between nodes with two helper tasks and a relay here.

    ``volume_name(user)`` and ``labels(user)`` are the Swarm backend's (the same volume
    name on every node; its instance labels, so tests and operators find the helpers).
    """

    def __init__(self, reactor: Any, api: SwarmAPI, volume_name: Callable[[str], str],
                 labels: Callable[[str], dict[str, str]], *,
                 deadline: float = COPY_DEADLINE, helper_start: float = HELPER_START) -> None:
        self.reactor = reactor
        self.api = api
        self.volume_name = volume_name
        self.labels = labels
        self.deadline = deadline
        self.helper_start = helper_start

    def _spec(self, user: str, role: str, image_ref: str, node_id: str, secret: str) -> dict:
        labels = {**self.labels(user), HELPER_LABEL: f"move-{role}", MOVE_USER_LABEL: user}
        labels.pop("ipydoc.user", None)  # a helper is not the user's server
        script = SOURCE_SCRIPT if role == "source" else DESTINATION_SCRIPT
        return {
            "Name": f"ipydoc-move-{role}-{user}-{secrets.token_hex(3)}",
            "Labels": labels,
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": image_ref,
                    # -I: no PYTHON* variables, no user site, no current
                    # directory on the module path (it runs as root).
                    "Command": ["python3", "-I", "-c", script],
                    "Dir": "/",
                    "Env": [f"{SECRET_ENV}={secret}"],
                    "Labels": labels,
                    "User": "0:0",
                    "Mounts": [{"Type": "volume", "Source": self.volume_name(user),
                                "Target": MOUNT, "ReadOnly": role == "source",
                                "VolumeOptions": {"Labels": self.labels(user)}}],
                    "Init": False,
                },
                "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
                "Placement": {"Constraints": [f"node.id=={node_id}"]},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            "EndpointSpec": {"Ports": [{"Protocol": "tcp", "TargetPort": HELPER_PORT,
                                        "PublishMode": "host"}]},
        }

    async def copy(self, user: str, image_ref: str, source_node: str, target_node: str,
                   progress: Progress | None = None) -> CopyResult:
        """Copy ``user``'s volume from ``source_node`` to ``target_node`` (node ids) and
        verify it; MoveFailed (nothing re-pinned by us) when it cannot be verified."""
        say = progress or (lambda message: None)
        started = time.monotonic()
        deadline = started + self.deadline
        secret = secrets.token_urlsafe(32)
        services: list[str] = []
        try:
            src_id = await self.api.create_service(
                self._spec(user, "source", image_ref, source_node, secret))
            services.append(src_id)
            dst_id = await self.api.create_service(
                self._spec(user, "destination", image_ref, target_node, secret))
            services.append(dst_id)
            say("started the helper tasks on both nodes")
            src_addr, dst_addr = await _all(
                self._listening(src_id, "source", deadline),
                self._listening(dst_id, "destination", deadline))
            say(f"copying from {src_addr[0]} to {dst_addr[0]} through the daemon")
            result = await relay(self.reactor, src_addr, dst_addr, secret, deadline, say)
        finally:
            for sid in services:
                try:
                    await self.api.remove_service(sid)
                except BackendError as e:
                    log.warn("move of {user}: could not remove helper {sid}: {e}", user=user,
                             sid=sid, e=e.message)
        return CopyResult(result[0], result[1], time.monotonic() - started)

    async def _listening(self, sid: str, who: str, deadline: float) -> tuple[str, int]:
        """(node address, published port) of the helper's task once it runs."""
        give_up = min(deadline, time.monotonic() + self.helper_start)
        while True:
            tasks = await self.api.list_tasks({"service": [sid]})
            for task in tasks:
                status = task.get("Status") or {}
                state = status.get("State")
                if state in ("failed", "rejected", "shutdown", "complete", "orphaned"):
                    raise MoveFailed(f"the {who} helper task ended ({state}): "
                                     f"{status.get('Err') or status.get('Message') or '?'}")
                if state == "running":
                    ports = (status.get("PortStatus") or {}).get("Ports") or []
                    port = next((p.get("PublishedPort") for p in ports
                                 if p.get("TargetPort") == HELPER_PORT), None)
                    node = await self.api.inspect_node(task.get("NodeID") or "")
                    addr = node_address(node or {})
                    if port and addr:
                        return addr, int(port)
            if time.monotonic() > give_up:
                raise MoveFailed(f"the {who} helper task did not run within "
                                 f"{self.helper_start:g} s")
            await deferLater(self.reactor, 0.2, lambda: None)


async def _all(*ds: Any) -> list[Any]:
    """Await coroutines together; the first failure is raised (the others are waited for)."""
    results = await DeferredList([Deferred.fromCoroutine(d) for d in ds], consumeErrors=True)
    for ok, value in results:
        if not ok:
            if value.check(CancelledError):
                raise MoveFailed("cancelled")
            value.raiseException()
    return [value for _, value in results]


async def _connect(reactor: Any, addr: tuple[str, int], proto: Protocol, secret: str,
                   deadline: float) -> None:
    """Connect (the helper may not listen yet: retry) and send the secret."""
    while True:
        try:
            await connectProtocol(TCP4ClientEndpoint(reactor, *addr, timeout=5), proto)
            proto.transport.write(secret.encode() + b"\n")
            return
        except (ierror.ConnectError, OSError) as e:
            if time.monotonic() > deadline:
                raise MoveFailed(f"cannot reach the helper at {addr[0]}:{addr[1]}: {e}") \
                    from None
            await deferLater(reactor, 0.2, lambda: None)


async def relay(reactor: Any, src: tuple[str, int], dst: tuple[str, int], secret: str,
                deadline: float, say: Progress) -> tuple[int, str]:
    """Connect to both helpers (``(host, port)``), send each the secret, relay the
    source's frames to the destination until ``deadline`` (a ``time.monotonic()`` time),
    and check both ends' answers against what passed through; (bytes, sha256), or
    MoveFailed."""
    allowed = max(0.0, deadline - time.monotonic())
    sink = _Destination()
    source = _Source(sink)
    timed_out: list[bool] = []

    def expire() -> None:
        timed_out.append(True)
        for p in (source, sink):
            if p.transport is not None:
                p.transport.abortConnection()

    timer = reactor.callLater(max(0.0, deadline - time.monotonic()), expire)
    try:
        await _connect(reactor, dst, sink, secret, deadline)
        await _connect(reactor, src, source, secret, deadline)
        if timed_out:   # the deadline passed while connecting: nothing was aborted yet
            raise MoveFailed(f"the copy took longer than {allowed:.0f} s")
        await source.closed
        if source.trailer is None or source.error or timed_out:
            if sink.transport is not None:
                sink.transport.abortConnection()
            await sink.closed
            why = (f"the copy took longer than {allowed:.0f} s" if timed_out
                   else source.error or "the source helper closed before the end of the data")
            raise MoveFailed(f"{why} ({source.count} bytes relayed)")
        sink.transport.loseWriteConnection()   # end of the tar stream
        say(f"relayed {source.count} bytes; waiting for the destination to finish")
        await sink.closed
    finally:
        if timer.active():
            timer.cancel()
        for p in (source, sink):
            if p.transport is not None and p.transport.connected:
                p.transport.abortConnection()
    if timed_out:
        raise MoveFailed(f"the copy took longer than {allowed:.0f} s")
    relayed = source.hash.hexdigest()
    sent = _answer(source.trailer.strip(), "source")
    received = _answer(sink.answer.strip(), "destination")
    if sent["rc"] != 0:
        raise MoveFailed(f"tar on the source node failed (exit {sent['rc']}); see the "
                         "helper's logs")
    if received["rc"] != 0:
        raise MoveFailed(f"tar on the target node failed (exit {received['rc']})")
    if not (sent["bytes"] == source.count == received["bytes"]
            and sent["sha256"] == relayed == received["sha256"]):
        raise MoveFailed(
            f"the copy does not verify: source {sent['bytes']} bytes {sent['sha256'][:12]}, "
            f"relayed {source.count} {relayed[:12]}, target {received['bytes']} "
            f"{received['sha256'][:12]}")
    return source.count, relayed
