"""Named servers (issue 19 §1): the per-user maximum and removing a named server.

A user's servers are told apart by their server key (:mod:`ipydoc.names`: ``alice`` the
default server, ``alice--gpu`` a named one); the manager starts, stops, pauses and culls
each on its own.  What is left here is what only named servers have:

* **The maximum** (``spawn.max_named_servers``): a named server comes into being at its
  first start, and exists (its record) until it is removed; a first start of one more
  than the maximum is refused with a clear message (kind ``named_limit``), and every
  named start is refused when the maximum is 0 (kind ``named_off``).  Starting one that
  exists is never refused by the maximum.  The site-wide ``spawn.max_running`` counts
  every server, named or not.
* **Removal** (:meth:`NamedServers.remove_server`): a stopped named server's record,
  route and activity go; the user's files (one volume for all their servers) stay.
  Refused for the default server (it is the account's) and for one that runs.
"""

from __future__ import annotations

from typing import Any, Callable

from ipydoc.names import SERVER_KEY_SEPARATOR, split_server_key
from ipydoc.servers.routes import Routes
from ipydoc.servers.start_handle import StartFailed


class RemoveRefused(Exception):
    """A server that may not be removed; ``kind``: ``default``, ``running``, ``not_found``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class NamedServers:
    """Mixed into :class:`ipydoc.servers.manager.ServerManager`."""

    store: Any
    limits: Any
    routes: Routes
    progress: dict[str, Any]
    is_busy: Callable[[str], bool]
    _handles: dict[str, Any]
    stop: Callable[..., Any]

    async def check_named(self, key: str) -> None:
        """Refuse (StartFailed) a start of the named server ``key`` the maximum does not
        allow; the default server is never refused here."""
        owner, server = split_server_key(key)
        if not server:
            return
        cap = self.limits.max_named
        if cap <= 0:
            raise StartFailed("named_off", "named servers are off on this hub "
                                           "(spawn.max_named_servers = 0)")
        if await self.store.get_server(key) is not None:
            return  # it exists: starting it again adds nothing
        # Those with a record, and first starts in flight here that came before this one
        # (the start handles keep their order), so two first starts at once do not both
        # slip under the maximum.
        prefix = owner + SERVER_KEY_SEPARATOR
        in_flight = list(self._handles)
        earlier = in_flight[:in_flight.index(key)] if key in in_flight else in_flight
        others = set(await self.store.named_server_keys(owner)) | \
            {k for k in earlier if k.startswith(prefix)}
        others.discard(key)
        if len(others) >= cap:
            raise StartFailed("named_limit", (
                f"{owner} has {len(others)} named servers, the most allowed here "
                f"(spawn.max_named_servers = {cap}); remove one first "
                f"(`ipydoc server remove {owner} --server NAME`)"))

    async def keys_of(self, user: str) -> list[str]:
        """The keys of every server ``user`` has (the default first, then the named ones
        with a record or a route)."""
        named = set(await self.store.named_server_keys(user))
        prefix = user + SERVER_KEY_SEPARATOR
        named |= {k for k in self.routes if k.startswith(prefix)}
        return [user, *sorted(named)]

    async def stop_if_running(self, key: str, reason: str) -> bool:
        """Stop the server ``key`` if it runs, starts or is paused; whether it did."""
        record = await self.store.get_server(key)
        if not self.is_busy(key) and key not in self.routes and \
                (record is None or record.state in ("stopped", "failed")):
            return False
        await self.stop(key, reason)
        return True

    async def stop_all(self, user: str, reason: str) -> list[str]:
        """Stop every server of ``user`` (the default and the named ones: logout, a
        disabled or removed account); the keys of those that ran."""
        return [key for key in await self.keys_of(user)
                if await self.stop_if_running(key, reason)]

    async def remove_server(self, key: str) -> None:
        """Forget the stopped named server ``key`` (record, route, activity); its owner's
        files are kept.  :class:`RemoveRefused` for the default server, a running one, or
        one that does not exist."""
        owner, server = split_server_key(key)
        if not server:
            raise RemoveRefused("default", f"the default server of {owner} is the account's; "
                                           "it goes only with the user (`ipydoc user remove`)")
        record = await self.store.get_server(key)
        if record is None:
            raise RemoveRefused("not_found", f"{owner} has no server {server}")
        if self.is_busy(key) or key in self.routes or \
                record.state not in ("stopped", "failed"):
            raise RemoveRefused("running", f"the server {server} of {owner} is "
                                           f"{record.state}; stop it first")
        await self.store.remove_server_record(key)
        self.progress.pop(key, None)
        await self.store.add_server_event("server-remove", key, "removed (files kept)")
