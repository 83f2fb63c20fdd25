"""Swarm placements: which node holds each user's files (``placement:{name}``).

The swarm backend (:mod:`ipydoc.backends.swarm`) pins a user's server to that node; the
record outlives the server (it is where the files are) and goes only with a purge or a
move (``ipydoc server move``).  The first placement wins (HSETNX), so two daemons placing
the same new user at once agree on one node.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import PLACEMENT_PATTERN, placement_key, tail


@dataclass(frozen=True)
class Placement:
    name: str
    node: str          # the swarm node id
    hostname: str      # for messages, also when the node has left the swarm
    placed: float


class Placements(StoreBase):
    async def get_placement(self, name: str) -> Placement | None:
        h = await self.redis.hgetall(placement_key(name))
        if not h or not h.get("node"):
            return None
        return Placement(name, h["node"], h.get("hostname", ""), float(h.get("placed") or 0))

    async def place(self, name: str, node: str, hostname: str) -> Placement:
        """Record ``node`` for ``name`` unless a placement exists; the placement in force."""
        key = placement_key(name)
        t = await self.redis.multi()  # all three fields or none: the record is never partial
        t.hsetnx(key, "node", node)
        t.hsetnx(key, "hostname", hostname)
        t.hsetnx(key, "placed", repr(self._now()))
        await t.commit()
        current = await self.get_placement(name)
        assert current is not None
        return current

    async def set_placement(self, name: str, node: str, hostname: str) -> None:
        """Move ``name`` to ``node`` (an admin's move, after its files were copied)."""
        await self.redis.hmset(placement_key(name), {"node": node, "hostname": hostname,
                                                     "placed": repr(self._now())})

    async def forget_placement(self, name: str) -> None:
        await self.redis.delete(placement_key(name))

    async def placed_users(self) -> set[str]:
        """Every name with a placement (files on some node), by SCAN."""
        return {tail(k) for k in await self._scan(PLACEMENT_PATTERN)}
