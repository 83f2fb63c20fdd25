"""Make a notebook image usable on every Swarm node when there is no registry.

Swarm nodes do not pull an image referenced by ID (``sha256:...``), and ``docker save`` |
``docker load`` keeps the ID, so the manager's engine exports the image (``GET
/images/get``) and the bytes are streamed straight into each node's engine (``POST
/images/load``): never more than the sockets' buffers in memory (the load's socket
pauses the export when the node reads slower), with progress reports and a total
deadline per node.  Afterwards the node is asked for the image by ID again: only an
image that is there with the same ID counts as distributed.

A node is reached through its engine in ``swarm.node_engines`` (hostname -> Docker
engine URL).  Nodes without one are reported, not guessed at: with ``swarm.pull = true``
they pull the image from the registry instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import treq
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from ipydoc.backends.base import BackendError
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_formats import progress_messages
from ipydoc.backends.docker_transport import CONNECTION_ERRORS, reason

LOAD_DEADLINE = 1800.0          # seconds for one node's whole export + load
PROGRESS_EVERY = 64 * 1024 * 1024  # report progress each time this many more bytes went
LOAD_ANSWER_BUDGET = 1024 * 1024   # bytes of /images/load's JSON answer we read

Outcome = Literal["source", "present", "loaded", "unchecked", "failed"]
#: ``progress(node hostname, message)``: a line for the person waiting.
Progress = Callable[[str, str], None]


@dataclass(frozen=True)
class NodeImage:
    """What happened on one node."""

    node: str        # hostname
    node_id: str
    outcome: Outcome
    message: str
    bytes: int = 0

    @property
    def ok(self) -> bool:
        return self.outcome in ("source", "present", "loaded")


class ImageEngine(DockerAPI):
    """The Engine API client plus the few calls distributing an image needs."""

    async def info(self) -> dict:
        return await self._call("GET", "/info", expect=dict)

    async def swarm_nodes(self) -> list[dict]:
        return await self._call("GET", "/nodes", expect=list)

    async def export_image(self, image: str) -> Any:
        """The (unread) response of ``GET /images/get``: a tar stream of ``image``."""
        try:
            response = await self._http.request(
                "GET", self._url("/images/get"), params={"names": image}, unbuffered=True,
                allow_redirects=False)
        except CONNECTION_ERRORS as e:
            raise self._unreachable(e) from None
        if response.code != 200:
            content = await treq.content(response)
            raise self._error("GET", "/images/get", response.code, content)
        return response

    async def load_image(self, body: IBodyProducer) -> str:
        """``POST /images/load`` from ``body``; the engine's last message ("Loaded image
        ID: ..."), or BackendError with the engine's error."""
        try:
            response = await self._http.request(
                "POST", self._url("/images/load"), params={"quiet": "1"}, data=body,
                headers={"Content-Type": ["application/x-tar"]}, unbuffered=True,
                allow_redirects=False)
            content = await _bounded_content(response, LOAD_ANSWER_BUDGET)
        except CONNECTION_ERRORS as e:
            raise self._unreachable(e) from None
        if response.code != 200:
            raise self._error("POST", "/images/load", response.code, content)
        last = ""
        for kind, message in progress_messages(content):
            if kind == "error":
                raise BackendError("failed", f"loading the image: {message}")
            last = message
        return last


async def _bounded_content(response: Any, budget: int) -> bytes:
    """The body of ``response``, cut off (connection dropped) beyond ``budget`` bytes."""
    chunks: list[bytes] = []
    size = 0
    done: Deferred[None] = Deferred()

    class Collect(Protocol):
        def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
            nonlocal size
            size += len(data)
            if size > budget:
                self.transport.stopProducing()
                return
            chunks.append(data)

        def connectionLost(self, why: Failure = None) -> None:  # noqa: N802
            if size > budget or why is None or why.check(ResponseDone, PotentialDataLoss):
                done.callback(None)
            else:
                done.errback(why)

    response.deliverBody(Collect())
    await done
    return b"".join(chunks)


class _Relay(Protocol):
    """Receives the export's body and writes it into the load request's body."""

    def __init__(self, consumer: Any, finished: Deferred[int], on_bytes: Callable[[int], None]) -> None:
        self.consumer = consumer
        self.finished = finished
        self.on_bytes = on_bytes
        self.count = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted API)
        self.count += len(data)
        self.consumer.write(data)
        self.on_bytes(self.count)

    def connectionLost(self, why: Failure = None) -> None:  # noqa: N802 (Twisted API)
        if self.finished.called:
            return
        if why is None or why.check(ResponseDone):
            self.finished.callback(self.count)
        else:
            self.finished.errback(why)


@implementer(IBodyProducer)
class ExportBody:
    """A request body that is another response's body, read as fast as it is sent on.

    The HTTP client registers this producer with the load request's socket, which pauses
    it when its buffer is full; pausing pauses the export's socket in turn, so memory stays
    at the two sockets' buffers whatever the image's size.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, response: Any, on_bytes: Callable[[int], None]) -> None:
        self._response = response
        self._on_bytes = on_bytes
        self._relay: _Relay | None = None
        self.done: Deferred[int] = Deferred()

    @property
    def count(self) -> int:
        return self._relay.count if self._relay else 0

    def startProducing(self, consumer: Any) -> Deferred[int]:  # noqa: N802 (Twisted API)
        self._relay = _Relay(consumer, self.done, self._on_bytes)
        self._response.deliverBody(self._relay)
        return self.done

    def _transport(self) -> Any:
        return self._relay.transport if self._relay is not None else None

    def pauseProducing(self) -> None:  # noqa: N802 (Twisted API)
        if (t := self._transport()) is not None:
            t.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802 (Twisted API)
        if (t := self._transport()) is not None:
            t.resumeProducing()

    def stopProducing(self) -> None:  # noqa: N802 (Twisted API)
        if (t := self._transport()) is not None:
            t.stopProducing()


def _size(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n} bytes"


class ImageDistributor:
    """Put one image, by ID, on every node of the swarm whose engine is known.

    ``manager`` is the engine holding the image (the swarm manager this daemon or CLI
    runs next to); ``node_engines`` maps node hostnames to their engines' URLs.
    """

    def __init__(self, reactor: Any, manager: ImageEngine, node_engines: Mapping[str, str], *,
                 progress: Progress | None = None, deadline: float = LOAD_DEADLINE,
                 timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.manager = manager
        self.node_engines = dict(node_engines)
        self.progress = progress or (lambda node, message: None)
        self.deadline = deadline
        self.timeout = timeout

    async def image_id(self, image: str) -> str:
        found = await self.manager.inspect_image(image)
        if found is None:
            raise BackendError("image_missing", f"the image {image} is not on this engine "
                                                f"({self.manager.host}): build or pull it first")
        return str(found["Id"])

    async def distribute(self, image: str) -> list[NodeImage]:
        """Every node's outcome (the manager's own node first); never raises for one node."""
        image_id = await self.image_id(image)
        own = ((await self.manager.info()).get("Swarm") or {}).get("NodeID") or ""
        if not own:
            raise BackendError("failed", f"the engine at {self.manager.host} is not in a swarm "
                                         "(docker swarm init), so there are no nodes to serve")
        nodes = await self.manager.swarm_nodes()
        work: list[Deferred[NodeImage]] = []
        results: list[NodeImage] = []
        for node in sorted(nodes, key=lambda n: (n.get("ID") != own,
                                                  _hostname(n))):
            node_id, host = str(node.get("ID") or ""), _hostname(node)
            if node_id == own:
                results.append(NodeImage(host, node_id, "source", "the image is built here"))
            elif host not in self.node_engines:
                results.append(NodeImage(host, node_id, "unchecked", (
                    f"cannot check {host}: no engine in swarm.node_engines; with "
                    "swarm.pull = true it pulls from your registry")))
            else:
                work.append(Deferred.fromCoroutine(
                    self._to_node(host, node_id, image, image_id)))
        for ok, value in await DeferredList(work, consumeErrors=True):
            results.append(value if ok else NodeImage("?", "", "failed", str(value.value)))
        return results

    async def _to_node(self, host: str, node_id: str, image: str, image_id: str) -> NodeImage:
        engine = ImageEngine(self.reactor, self.node_engines[host], timeout=self.timeout)
        try:
            if await engine.inspect_image(image_id) is not None:
                return NodeImage(host, node_id, "present", f"{host} has {image_id[:19]}")
            self.progress(host, f"{host}: copying {image} ({image_id[:19]}) from "
                                f"{self.manager.host} to {engine.host}")
            sent = await self._copy(host, engine, image)
            found = await engine.inspect_image(image_id)
            if found is None:
                return NodeImage(host, node_id, "failed", (
                    f"{host}: loaded {_size(sent)} but the engine does not have "
                    f"{image_id[:19]} afterwards"), sent)
            return NodeImage(host, node_id, "loaded", f"{host}: loaded {_size(sent)}", sent)
        except BackendError as e:
            return NodeImage(host, node_id, "failed", f"{host}: {e.message}")
        finally:
            await engine.close()

    async def _copy(self, host: str, engine: ImageEngine, image: str) -> int:
        """Stream the export into the node's load within the deadline; bytes sent."""
        started = time.monotonic()
        next_report = [PROGRESS_EVERY]

        def on_bytes(count: int) -> None:
            if count >= next_report[0]:
                next_report[0] = count + PROGRESS_EVERY
                rate = count / max(1e-3, time.monotonic() - started)
                self.progress(host, f"{host}: {_size(count)} sent ({rate / 1e6:.0f} MB/s)")

        response = await self.manager.export_image(image)
        body = ExportBody(response, on_bytes)
        work = Deferred.fromCoroutine(engine.load_image(body))
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            body.stopProducing()
            work.cancel()

        timer = self.reactor.callLater(self.deadline, expire)
        try:
            last = await work
            await body.done  # the export ended cleanly (else it raises here)
            sent = body.count
        except (CancelledError, BackendError, *CONNECTION_ERRORS) as e:
            body.stopProducing()
            body.done.addErrback(lambda _: None)
            if isinstance(e, BackendError) and not timed_out:
                raise
            if timed_out:
                raise BackendError("failed", f"copying the image took longer than "
                                             f"{self.deadline:g} s; stopped") from None
            raise BackendError("failed", f"copying the image broke off after "
                                         f"{_size(body.count)}: {reason(e)}") from None
        finally:
            if timer.active():
                timer.cancel()
        self.progress(host, f"{host}: {last or 'loaded'} ({_size(sent)} in "
                            f"{time.monotonic() - started:.1f} s)")
        return sent


def _hostname(node: dict) -> str:
    return str(((node.get("Description") or {}).get("Hostname")) or node.get("ID") or "?")

