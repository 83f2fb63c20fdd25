"""Leases with fencing tokens: work that must happen once across several daemons.

A lease is ``lease:{what}`` holding ``"OWNER FENCE"`` with a TTL in milliseconds.  Taking
it is one Lua step: free → ``INCR fence:{what}`` and ``SET ... PX ttl`` (a new fence,
larger than every earlier holder's); held by the same owner → its TTL is renewed and its
fence kept; held by another → refused.  Renew and release compare the owner first (Lua),
so a holder whose lease expired and was taken by another daemon can neither extend nor
drop the new holder's lease.  The fence goes with what the holder writes (a server record,
:mod:`ipydoc.state.fenced`) so a late write of a stale holder is refused.

The owner is :data:`DAEMON_ID` (``host:pid:random``: unique per process, even for a pid
reused after a restart).  A daemon killed with SIGKILL holds its leases until their TTL
runs out; that TTL is the takeover bound (``cluster.lease_ttl``).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ipydoc.state.connection import StoreBase
from ipydoc.state.keys import fence_key, lease_key, once_key

#: The leases ipydoc takes (``what`` of ``lease:{what}``).
LEADER_CULLER = "leader:culler"


def start_lease(name: str) -> str:
    """The one start of ``name``'s server, cluster-wide."""
    return f"start:{name}"


def history_lease(name: str) -> str:
    """The one worker draining ``name``'s history queue, cluster-wide."""
    return f"history:{name}"


#: This process, as a lease owner and a pub/sub sender.
DAEMON_ID = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

# KEYS: lease, fence.  ARGV: owner, ttl ms.  The fence held (new or kept), or 0.
TAKE_SCRIPT = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  local f = redis.call('INCR', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. f, 'PX', ARGV[2])
  return f
end
local sep = string.find(cur, ' ', 1, true)
if sep and string.sub(cur, 1, sep - 1) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(string.sub(cur, sep + 1))
end
return 0
"""

# KEYS: lease.  ARGV: "OWNER FENCE", ttl ms.  1 if renewed.
RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lease.  ARGV: "OWNER FENCE".  1 if released.
RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    what: str
    owner: str
    fence: int

    @property
    def value(self) -> str:
        return f"{self.owner} {self.fence}"


class Leases(StoreBase):
    async def take_lease(self, what: str, ttl: float, owner: str = DAEMON_ID) -> Lease | None:
        """Take (or, for its owner, renew) the lease ``what`` for ``ttl`` seconds."""
        fence = int(await self._eval(TAKE_SCRIPT, [lease_key(what), fence_key(what)],
                                     owner, str(max(1, int(ttl * 1000)))))
        return Lease(what, owner, fence) if fence else None

    async def renew_lease(self, lease: Lease, ttl: float) -> bool:
        """Extend ``lease`` by ``ttl`` seconds from now; False if it is no longer ours."""
        return bool(await self._eval(RENEW_SCRIPT, [lease_key(lease.what)], lease.value,
                                     str(max(1, int(ttl * 1000)))))

    async def release_lease(self, lease: Lease) -> bool:
        """Give ``lease`` up, unless another holder has it by now."""
        return bool(await self._eval(RELEASE_SCRIPT, [lease_key(lease.what)], lease.value))

    async def lease_holder(self, what: str) -> Lease | None:
        """Who holds ``what`` now (None when nobody does)."""
        cur = await self.redis.get(lease_key(what))
        if not cur or " " not in cur:
            return None
        owner, fence = cur.rsplit(" ", 1)
        return Lease(what, owner, int(fence))

    async def claim_once(self, what: str, ttl: float = 60.0) -> bool:
        """True for the first daemon that claims ``what`` within ``ttl`` seconds (for work
        every daemon sees and one must do, such as recording a container's death)."""
        return bool(await self.redis.execute_command(
            "SET", once_key(what), "1", "NX", "PX", str(int(ttl * 1000))))


class LeaseKeeper:
    """Renews a lease every third of its TTL while work runs under it; ``on_lost`` is
    called (once) when a renewal finds it taken or expired."""

    log = Logger()

    def __init__(self, store: Leases, lease: Lease, ttl: float, reactor: Any,
                 on_lost: Callable[[], None] | None = None) -> None:
        self.store = store
        self.lease = lease
        self.ttl = ttl
        self.lost = False
        self._on_lost = on_lost
        self._loop = LoopingCall(self._renew)
        self._loop.clock = reactor
        self._loop.start(ttl / 3, now=False).addErrback(
            lambda f: self.log.failure("renewing the lease {w}", f, w=lease.what))

    def _renew(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._renew_once())

    async def _renew_once(self) -> None:
        try:
            ok = await self.store.renew_lease(self.lease, self.ttl)
        except Exception as e:  # noqa: BLE001 - Redis down: try again next time
            self.log.warn("cannot renew the lease {w}: {e}", w=self.lease.what, e=e)
            return
        if not ok:
            self.lost = True
            self.log.warn("lease {w} lost (expired and taken, or Redis lost it)",
                          w=self.lease.what)
            self._stop_loop()
            if self._on_lost is not None:
                self._on_lost()

    def _stop_loop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def release(self) -> None:
        """Stop renewing and give the lease up (errors logged: it expires anyway)."""
        self._stop_loop()
        if self.lost:
            return
        try:
            await self.store.release_lease(self.lease)
        except Exception as e:  # noqa: BLE001
            self.log.warn("cannot release the lease {w} ({e}); it expires in {t} s",
                          w=self.lease.what, e=e, t=self.ttl)
