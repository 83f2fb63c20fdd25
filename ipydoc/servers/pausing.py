"""Pausing idle servers and resuming them on their first request (issue 15 §1).

A paused server is frozen by its backend (Docker's cgroup freezer): its memory and its
kernels' variables stay, its CPU use is zero.  It keeps its route, marked
:attr:`~ipydoc.servers.routes.Route.paused`, so the proxy's route lookup (the one dict
read every request already does) tells it to resume first; a running server's request
costs nothing more.

* **Pause** (:meth:`Pausing.pause`, from the culler or ``ipydoc server pause``): the route
  is marked paused *before* the freeze, so a request arriving meanwhile waits for the
  pause and then resumes the server instead of being sent to a frozen one.
* **Resume** (:meth:`Pausing.resume`): one per user at a time (single flight: concurrent
  first requests share one resume, one ``resume`` event); the backend thaws the server,
  the route is unmarked at once, then Redis and the other daemons are told.
* **Room** (:meth:`Pausing.make_room`): paused servers count in ``spawn.max_running``;
  a start that finds the hub full stops the oldest paused server (event ``evict``).

The server record holds ``state = paused``, ``paused_since`` and ``idle_since`` (the last
activity the culler saw before the pause: a frozen server cannot be asked, so
``cull.idle_timeout`` counts from it).  A ``pause``/``unpause`` done outside ipydoc
(``docker pause``) is followed by :meth:`Pausing.follow_outside`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.backends.base import Backend, BackendError
from ipydoc.servers import metrics
from ipydoc.servers.queue import OnePerUser
from ipydoc.servers.routes import Route, Routes
from ipydoc.state.store import Store

#: What resumed a server, as the ``resume`` event says it.
TRIGGERS = ("proxy", "token", "page", "cli", "outside")


class Pausing:
    """Mixed into :class:`ipydoc.servers.manager.ServerManager`."""

    log = Logger()

    # Provided by the manager.
    backend: Backend
    store: Store
    routes: Routes
    is_busy: Callable[[str], bool]
    _tell: Callable[[str, str], None]
    stop: Callable[..., Any]

    _pause_locks: dict[str, defer.DeferredLock]
    _resumes: OnePerUser

    def _pause_lock(self, name: str) -> defer.DeferredLock:
        lock = self._pause_locks.get(name)
        if lock is None:
            lock = self._pause_locks[name] = defer.DeferredLock()
        return lock

    def is_paused(self, name: str) -> bool:
        route = self.routes.get(name)
        return route is not None and route.paused

    async def pause(self, name: str, reason: str = "paused by an admin",
                    idle_since: float | None = None) -> bool:
        """Freeze ``name``'s running server; False when it has none or is already paused.

        ``idle_since``: the last activity seen (the culler's), from which
        ``cull.idle_timeout`` keeps counting while the server is frozen."""
        async with self._pause_lock(name):
            route = self.routes.get(name)
            if route is None or route.paused or self.is_busy(name):
                return False
            now = time.time()
            self.routes[name] = replace(route, paused=True, paused_since=now)
            try:
                await self.backend.pause(name)
            except BackendError:
                if self.routes.get(name) is not None:
                    self.routes[name] = route
                raise
            await self.store.set_server(name, "paused", route=True, url=route.url,
                                        paused_since=now, idle_since=idle_since or now)
            self._tell("server-up", name)
            await self.store.add_server_event("pause", name, reason)
            metrics.paused()
            self.log.info("paused the server of {name}: {reason}", name=name, reason=reason)
            return True

    async def resume(self, name: str, trigger: str) -> bool:
        """Thaw ``name``'s paused server (one resume at a time per user; callers meanwhile
        share it).  True when this call waited for a resume, False when it was not paused.
        Raises :class:`BackendError` when the backend cannot thaw it."""
        if not self.is_paused(name) and not self._resumes.busy(name):
            return False
        return await self._resumes.run(name, lambda: self._resume(name, trigger))

    async def _resume(self, name: str, trigger: str) -> bool:
        t0 = time.monotonic()
        async with self._pause_lock(name):
            route = self.routes.get(name)
            if route is None or not route.paused:
                return False  # stopped meanwhile, or resumed outside ipydoc
            await self.backend.unpause(name)
            self.routes[name] = self._running_route(route)
            took = time.monotonic() - t0
            metrics.resumed(trigger, took)
        await self._record_resume(name, route, trigger,
                                  f"by {trigger} in {took * 1000:.0f} ms (paused "
                                  f"{time.time() - route.paused_since:.0f} s)")
        return True

    @staticmethod
    def _running_route(route: Route) -> Route:
        return replace(route, paused=False, paused_since=0.0)

    async def _record_resume(self, name: str, route: Route, trigger: str,
                             detail: str) -> None:
        if self.routes.get(name) is None or self._stops.busy(name):
            return  # stopped meanwhile: its stop writes the record (a start asking for
            # this resume is no reason to skip it: the record would stay "paused")
        # A resume is activity: someone asked for the server.  Without it a resume by a
        # login or the CLI (no request through the proxy yet) was paused again by the
        # culler's next pass, before the browser's first request arrived.
        await self.store.record_activity({name: time.time()})
        await self.store.set_server(name, "running", route=True, url=route.url)
        self._tell("server-up", name)
        await self.store.add_server_event("resume", name, detail)
        self.log.info("resumed the server of {name} {detail}", name=name, detail=detail)

    def follow_outside(self, name: str, cid: str, action: str) -> defer.Deferred[None] | None:
        """A ``pause``/``unpause`` event of ``name``'s container not done by ipydoc."""
        route = self.routes.get(name)
        if route is None or route.id != cid or self.is_busy(name) or \
                self._pause_lock(name).locked or self._resumes.busy(name):
            return None  # not ours to follow, or our own pause/resume in flight
        if action == "pause" and not route.paused:
            now = time.time()
            self.routes[name] = replace(route, paused=True, paused_since=now)
            return defer.Deferred.fromCoroutine(self._record_outside_pause(name, route, now))
        if action == "unpause" and route.paused:
            self.routes[name] = self._running_route(route)
            return defer.Deferred.fromCoroutine(self._record_resume(
                name, route, "outside", "unpaused outside ipydoc"))
        return None

    async def _record_outside_pause(self, name: str, route: Route, now: float) -> None:
        await self.store.set_server(name, "paused", route=True, url=route.url,
                                    paused_since=now, idle_since=now)
        self._tell("server-up", name)
        await self.store.add_server_event("pause", name, "paused outside ipydoc")

    # -- the global cap --------------------------------------------------------------------
    def oldest_paused(self, but: str = "") -> str | None:
        paused = [(r.paused_since, n) for n, r in self.routes.items() if r.paused and n != but]
        return min(paused)[1] if paused else None

    async def make_room(self, name: str, cap: int, count: Callable[[], int]) -> None:
        """While the hub is full, stop the oldest paused server (not ``name``'s)."""
        while count() >= cap:
            victim = self.oldest_paused(but=name)
            if victim is None:
                return
            reason = (f"stopped to make room for {name}'s server: the oldest paused server "
                      f"(spawn.max_running = {cap})")
            self.log.info("{victim}: {reason}", victim=victim, reason=reason)
            await self.stop(victim, reason, kind="evict")
