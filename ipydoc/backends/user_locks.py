"""One start, stop or purge per server at a time, in this process: what every backend needs
around its own ``_start``, ``_stop`` and ``_purge`` (a stop must not remove a container or
service a start is still creating, a purge must not run beside either).  Locks are per
server key (a user's named servers start side by side); a purge takes the user name,
the key of the default server, and refuses while any server of the user exists."""

from __future__ import annotations

from twisted.internet.defer import DeferredLock

from ipydoc.backends.base import ServerInfo, ServerSpec
from ipydoc.backends.docker_body import checked_key, checked_name


class OneOpPerUser:
    """Mixed into a backend: its ``start``/``stop``/``purge`` run the backend's
    ``_start``/``_stop``/``_purge`` under a lock per (checked) server key."""

    _user_locks: dict[str, DeferredLock]  # the backend's __init__ sets it to {}

    def _lock(self, name: str) -> DeferredLock:
        lock = self._user_locks.get(name)
        if lock is None:
            lock = self._user_locks[name] = DeferredLock()
        return lock

    async def start(self, spec: ServerSpec) -> ServerInfo:
        async with self._lock(checked_key(spec.name)):
            return await self._start(spec)

    async def stop(self, name: str) -> None:
        async with self._lock(checked_key(name)):
            await self._stop(name)

    async def purge(self, name: str) -> None:
        """Delete the user's files; refused while the user has a server."""
        async with self._lock(checked_name(name)):
            await self._purge(name)

    async def _start(self, spec: ServerSpec) -> ServerInfo:
        raise NotImplementedError

    async def _stop(self, name: str) -> None:
        raise NotImplementedError

    async def _purge(self, name: str) -> None:
        raise NotImplementedError
