"""Where a new user's files (and so their server) go, and the swarm's nodes as ipydoc
sees them.

``memory``: the ready, active node with the most free memory -- the node's memory minus
the memory limits of ipydoc's services pinned to it (limits, not use: a server may grow
to its limit).  ``spread``: the fewest ipydoc servers, ties by most free memory.  Ties
beyond that go by hostname, so the choice is the same on every daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ipydoc.backends.base import BackendError
from ipydoc.backends.swarm_api import node_address


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    addr: str
    state: str          # "ready", "down", "unknown", "disconnected"
    availability: str   # "active", "pause", "drain"
    memory: int         # bytes

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"

    @classmethod
    def from_api(cls, n: dict) -> Node:
        desc = n.get("Description") or {}
        return cls(
            id=n.get("ID", ""),
            hostname=desc.get("Hostname") or "",
            addr=node_address(n),
            state=(n.get("Status") or {}).get("State") or "unknown",
            availability=(n.get("Spec") or {}).get("Availability") or "active",
            memory=int((desc.get("Resources") or {}).get("MemoryBytes") or 0),
        )


@dataclass(frozen=True)
class Load:
    """What ipydoc has on one node: memory limits reserved and servers."""

    reserved: int = 0
    servers: int = 0


def loads(pinned: Iterable[tuple[str | None, int]]) -> dict[str, Load]:
    """(node id, memory limit) of each of our services → the load per node."""
    out: dict[str, Load] = {}
    for node, mem in pinned:
        if node:
            cur = out.get(node, Load())
            out[node] = Load(cur.reserved + mem, cur.servers + 1)
    return out


def choose(nodes: Iterable[Node], load: dict[str, Load], strategy: str) -> Node:
    """The node for a new user by ``strategy`` ("memory" or "spread")."""
    usable = [n for n in nodes if n.usable]
    if not usable:
        raise BackendError("unreachable", "no swarm node is ready and active to place a new "
                                          "server on")

    def free(n: Node) -> int:
        return n.memory - load.get(n.id, Load()).reserved

    if strategy == "spread":
        return min(usable, key=lambda n: (load.get(n.id, Load()).servers, -free(n), n.hostname))
    if strategy == "memory":
        return min(usable, key=lambda n: (-free(n), n.hostname))
    raise BackendError("failed", f"unknown placement strategy {strategy!r}")


def unusable_message(name: str, node: Node | None, hostname: str) -> str:
    """Why ``name`` cannot start: their files are on a node that cannot run servers now."""
    move = f"an admin can move them with `ipydoc server move {name} NODE`"
    if node is None:
        return (f"your files are on node {hostname or 'unknown'}, which has left the swarm; "
                f"{move}")
    what = "is drained" if node.availability == "drain" else \
        "is paused" if node.availability == "pause" else "is down"
    if node.state != "ready":
        what = "is down"
    return f"your files are on node {node.hostname}, which {what}; {move}"
