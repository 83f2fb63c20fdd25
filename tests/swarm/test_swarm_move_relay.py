"""The daemon's relay of ``server move`` (:func:`ipydoc.backends.swarm_move.relay`) over
real loopback TCP against helpers that lie, flood, stall or stop early: a copy counts only
when the bytes and sha256 of both ends and of what passed through agree; anything else is
MoveFailed (and the caller leaves the user's pin alone)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.protocol import Factory, Protocol
from zope.interface import implementer

from ipydoc.backends.swarm_move import MAX_FRAME, MoveFailed, relay

SECRET = "s3cret-one-time"
DATA = os.urandom(300_000)


def frames(data: bytes, size: int = 65536) -> bytes:
    return b"".join(struct.pack(">I", len(data[i:i + size])) + data[i:i + size]
                    for i in range(0, len(data), size))


def trailer(data: bytes, rc: int = 0, sha: str | None = None) -> bytes:
    return struct.pack(">I", 0) + json.dumps(
        {"bytes": len(data), "sha256": sha or hashlib.sha256(data).hexdigest(), "rc": rc}
    ).encode() + b"\n"


class Source(Protocol):
    """A source helper: after the secret, sends ``payload`` (then closes unless ``stall``)."""

    def __init__(self, payload: bytes, stall: bool = False) -> None:
        self.payload = payload
        self.stall = stall
        self.got = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.got += data
        if self.got == SECRET.encode() + b"\n":
            self.transport.write(self.payload)
            if not self.stall:
                self.transport.loseConnection()


@implementer(IHalfCloseableProtocol)
class Destination(Protocol):
    """A destination helper: after the secret, hashes what comes until the end of the
    stream, then answers (honestly, or ``answer`` when given)."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.got = b""

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.got += data

    def readConnectionLost(self) -> None:  # noqa: N802
        secret, _, body = self.got.partition(b"\n")
        assert secret == SECRET.encode()
        self.body = body
        self.transport.write(self.answer if self.answer is not None else json.dumps(
            {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(), "rc": 0}
        ).encode() + b"\n")
        self.transport.loseConnection()

    def writeConnectionLost(self) -> None:  # noqa: N802
        pass


def listen(proto: Protocol) -> tuple[Any, tuple[str, int]]:
    port = reactor.listenTCP(0, Factory.forProtocol(lambda: proto), interface="127.0.0.1")
    return port, ("127.0.0.1", port.getHost().port)


async def run(source: Source, dest: Destination, within: float = 30.0) -> tuple[int, str]:
    p1, src = listen(source)
    p2, dst = listen(dest)
    try:
        return await relay(reactor, src, dst, SECRET, time.monotonic() + within, lambda m: None)
    finally:
        await p1.stopListening()
        await p2.stopListening()
        d: Deferred[None] = Deferred()
        reactor.callLater(0, d.callback, None)  # let aborted connections finish closing
        await d


@pytest_twisted.ensureDeferred
async def test_an_honest_copy_is_relayed_and_verified():
    dest = Destination()
    count, sha = await run(Source(frames(DATA) + trailer(DATA)), dest)
    assert (count, sha) == (len(DATA), hashlib.sha256(DATA).hexdigest())
    assert dest.body == DATA


@pytest.mark.parametrize("source, dest, why", [
    # The source claims other bytes than it sent.
    (lambda: Source(frames(DATA) + trailer(DATA, sha="0" * 64)), Destination,
     "does not verify"),
    # The destination reports other bytes than it was sent.
    (lambda: Source(frames(DATA) + trailer(DATA)),
     lambda: Destination(json.dumps({"bytes": len(DATA), "sha256": "1" * 64, "rc": 0}).encode()),
     "does not verify"),
    # tar failed on either side.
    (lambda: Source(frames(DATA) + trailer(DATA, rc=2)), Destination,
     "tar on the source node failed"),
    (lambda: Source(frames(DATA) + trailer(DATA)),
     lambda: Destination(json.dumps({"bytes": len(DATA), "sha256":
                                     hashlib.sha256(DATA).hexdigest(), "rc": 2}).encode()),
     "tar on the target node failed"),
    # A frame larger than any helper sends.
    (lambda: Source(struct.pack(">I", MAX_FRAME + 1) + b"x" * 1000), Destination,
     f"frame of {MAX_FRAME + 1} bytes"),
    # The source stops before its end frame.
    (lambda: Source(frames(DATA)[:100_000]), Destination,
     "closed before the end of the data"),
    # The destination floods instead of answering.
    (lambda: Source(frames(DATA) + trailer(DATA)), lambda: Destination(b"{" * 100_000),
     "answer is not JSON"),
    # Garbage after the source's end frame.
    (lambda: Source(frames(DATA) + trailer(DATA) + b"z" * 10_000), Destination,
     "too much after its last frame"),
])
@pytest_twisted.ensureDeferred
async def test_a_copy_that_does_not_verify_fails(source, dest, why):
    with pytest.raises(MoveFailed) as e:
        await run(source(), dest())
    assert why in e.value.message


@pytest_twisted.ensureDeferred
async def test_a_stalling_source_ends_at_the_deadline():
    with pytest.raises(MoveFailed) as e:
        await run(Source(frames(DATA[:1000]), stall=True), Destination(), within=1.0)
    assert "the copy took longer than" in e.value.message
