"""The server manager's side of several daemons over one Redis.

Several daemons (issue 14; docs/several-daemons.md): a start holds the lease
``start:NAME`` in Redis (:mod:`ipydoc.state.leases`, renewed every third of
``cluster.lease_ttl`` while it runs, queue wait included).  A daemon that finds it held
does not start a second server: it waits for the holder's outcome in Redis and routes to
that server (or reports its failure); if the holder dies, its lease expires and the waiter
takes the start over (the backend removes a left-over container of the same name).  The
lease's fencing token goes into the server record with every write of the start
(:mod:`ipydoc.state.fenced`): a stale holder's late "running" is refused.  Route changes
are told to the other daemons over the pub/sub bus (``server-up``/``server-down NAME``:
they reload NAME's route from Redis); a stop asked of a daemon while another runs the
start is passed on (``stop-start NAME``).  :meth:`ServerManager.route_from_store` is the
proxy's fallback on a route miss.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet import defer
from twisted.internet.task import deferLater

from ipydoc.servers.progress import Progress, Step
from ipydoc.servers.routes import Route, Routes
from ipydoc.servers.start_handle import StartFailed, StartHandle
from ipydoc.state.leases import start_lease
from ipydoc.state.servers import ROUTED_STATES, Server
from ipydoc.state.store import Store

REMOTE_POLL = 0.1            # seconds between looks at another daemon's start


class SiteDaemons:
    """Mixed into :class:`ipydoc.servers.manager.ServerManager`: what it does because
    other daemons of the site share its Redis (their starts, their route changes)."""

    # Provided by the manager.
    store: Store
    routes: Routes
    progress: dict[str, Progress]
    reactor: Any
    lease_ttl: float
    limits: Any
    _handles: dict[str, StartHandle]
    is_busy: Callable[[str], bool]
    base_url: Callable[[str], str]

    def _tell(self, kind: str, name: str) -> None:
        bus = getattr(self.store, "bus", None)
        if bus is not None:
            bus.tell(kind, name)

    def _route_record(self, record: Server) -> bool:
        """Route to a server Redis says runs (another daemon started it); True if so."""
        if record.state not in ROUTED_STATES or not record.url or not record.token:
            return False
        paused = record.state == "paused"
        self.routes[record.name] = Route(record.url, record.token, record.id, paused,
                                         (record.paused_since or time.time()) if paused else 0.0)
        return True

    async def route_from_store(self, name: str) -> Route | None:
        """The proxy's fallback on a route miss: ``name``'s route as Redis has it (one
        read, only on a miss), kept in the table when found."""
        if self.is_busy(name):
            return None
        record = await self.store.get_server(name)
        if record is not None and self._route_record(record):
            return self.routes.get(name)
        return None

    async def _await_remote(self, name: str, progress: Progress,
                            handle: StartHandle) -> Server | None:
        """Another daemon holds ``name``'s start lease: its outcome (its server, routed
        here too), or None when the lease ended without one (its daemon died: take over).
        A failure there is raised as this start's failure."""
        progress.add(Step("waiting", "Your server is being started (by another ipydoc "
                                     "daemon of this site)", 20))
        while True:
            handle.check()
            if await self.store.lease_holder(start_lease(name)) is None:
                record = await self.store.get_server(name)
                if record is not None and self._route_record(record):
                    progress.add(Step("ready", "Your server is ready", 100,
                                      url=f"{self.base_url(name)}lab"))
                    return record
                if record is not None and record.state == "failed":
                    progress.add(Step("failed", record.error, 100, error_kind="failed"))
                    raise StartFailed("failed", record.error or "the server failed to start")
                if record is not None and record.state in ("stopped", "stopping"):
                    message = "the server was stopped while it was starting"
                    progress.add(Step("failed", message, 100, error_kind="stopped"))
                    raise StartFailed("stopped", message)
                return None
            await handle.wait(deferLater(self.reactor, REMOTE_POLL, lambda: None))

    async def _stop_remote_start(self, name: str) -> None:
        """A stop asked here while another daemon runs ``name``'s start: ask that daemon
        to end it, and wait (bounded) until its lease is free."""
        holder = await self.store.lease_holder(start_lease(name))
        if holder is None:
            return
        self._tell("stop-start", name)
        deadline = time.monotonic() + self.limits.start_timeout + 2 * self.lease_ttl
        while time.monotonic() < deadline:
            if await self.store.lease_holder(start_lease(name)) is None:
                return
            await deferLater(self.reactor, REMOTE_POLL, lambda: None)

    def _told(self, kind: str, name: str) -> defer.Deferred[None] | None:
        """A message from another daemon (:mod:`ipydoc.state.bus`)."""
        if kind == "server-down" and not self.is_busy(name):
            self.routes.pop(name, None)  # synchronously: the next request sees it
        elif kind == "server-up" and not self.is_busy(name):
            return defer.Deferred.fromCoroutine(self.route_from_store(name)).addCallback(
                lambda _: None)
        elif kind == "stop-start":
            handle = self._handles.get(name)
            if handle is not None:
                handle.request_stop()
        return None

    def _bus_connected(self, reconnected: bool) -> defer.Deferred[None] | None:
        if not reconnected:
            return None
        return defer.Deferred.fromCoroutine(self.reload_routes())

    async def reload_routes(self) -> None:
        """Make the route table what Redis says (messages may have been missed)."""
        stored = await self.store.routes()
        records = await self.store.get_servers(sorted(stored))
        for name in list(self.routes):
            if name not in stored and not self.is_busy(name):
                self.routes.pop(name, None)
        for record in records.values():
            if not self.is_busy(record.name):
                self._route_record(record)
