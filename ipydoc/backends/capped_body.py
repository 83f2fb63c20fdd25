"""Reading a trusted service's answer with a size cap that holds while it streams.

GitHub, an OpenID provider and the Docker engine are trusted, but a misbehaving proxy in
front of them, or a bug, must not make the daemon buffer an endless chunked answer:
``treq.content`` reads everything before a caller can look at the size.  Here the cap is
checked as each chunk arrives, and the connection is dropped the moment it is passed.
(Users' servers are hostile and have their own client: :mod:`ipydoc.proxy.fetch`.)
"""

from __future__ import annotations

from typing import Any

import treq


class BodyTooLarge(ValueError):
    """The answer was longer than the caller's cap (it was cut off)."""


async def read_capped(response: Any, limit: int) -> bytes:
    """The whole body of a treq ``response``, or :class:`BodyTooLarge` past ``limit`` bytes."""
    declared = response.length if isinstance(response.length, int) else None
    parts: list[bytes] = []
    size = 0

    def take(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise BodyTooLarge(f"answer longer than {limit} bytes")
        parts.append(data)

    if declared is not None and declared > limit:
        response.deliverBody(_Drop())  # refused before any byte is read
        raise BodyTooLarge(f"answer of {declared} bytes is over {limit}")
    await treq.collect(response, take)
    return b"".join(parts)


class _Drop:
    """A body receiver that closes the connection at once (a declared size was too big)."""

    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any) -> None:
        pass
