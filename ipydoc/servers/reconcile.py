"""Reconciling: Redis and the route table agree with what the backend really runs.

At start the daemon adopts running containers (labelled ``ipydoc.user=<name>`` and, for a
named server, ``ipydoc.server=<server>``: each is known by its server key), drops
routes whose containers are gone, and follows the backend's events stream from then on:

* **Crashes** — a ``die``/``destroy`` event of the routed container drops the in-memory
  route synchronously (the proxy sends the user to the start page from the very next
  request), then Redis is updated and an event recorded.
* **Engine outages** — each time the events stream (re)connects after a break, it
  reconciles again, so containers that died with a restarted dockerd lose their routes
  without a daemon restart.  Reconciles never run concurrently.  At start-up the first
  reconcile waits (briefly) for the stream's first connection, so it lists after it and
  no second reconcile is needed.

* **Paused containers** (issue 15) — a container found paused stays paused and routable
  (its route marked paused: the first request resumes it); ``pause``/``unpause`` events
  done outside ipydoc are passed to ``on_pause_event`` (:mod:`ipydoc.servers.pausing`).

A server whose start or stop is in flight (``busy``) is left to that operation.

Start-up cost: the records of the running servers are read in one pipeline and adopted
side by side (Redis writes in flight together), so a daemon restarted with a hundred
running servers routes to all of them after a few round trips (bench/restart.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import DeferredLock
from twisted.logger import Logger

from ipydoc.backends.base import Backend, BackendError, BackendEvent, ServerInfo
from ipydoc.servers.routes import Route, Routes
from ipydoc.state.leases import start_lease
from ipydoc.state.servers import Server
from ipydoc.state.store import Store

#: Seconds the first reconcile waits for the events stream's first connection.
STREAM_WAIT = 2.0


class Reconciler:
    """Keeps ``routes`` and Redis in line with the backend (the manager's collaborators:
    its route table, whether a user's start or stop is in flight, its base URLs)."""

    log = Logger()

    def __init__(self, backend: Backend, store_source: Any, routes: Routes,
                 busy: Callable[[str], bool], base_url: Callable[[str], str],
                 on_pause_event: Callable[[str, str, str], Any] | None = None,
                 clock: Any = None) -> None:
        self.backend = backend
        self._store_source = store_source      # RedisService: its .store exists once started
        self.routes = routes
        self.busy = busy
        self.base_url = base_url
        self.on_pause_event = on_pause_event
        # For the first reconcile's wait for the events stream (the backend's reactor when
        # none is given; without a clock the first reconcile does not wait).
        self._clock = clock if clock is not None else getattr(backend, "reactor", None)
        self._lock = DeferredLock()
        self._reconciled = False
        self._following = False
        self._stream_opened: defer.Deferred[None] = defer.Deferred()
        self._waiting_for_stream = False

    @property
    def store(self) -> Store:
        return self._store_source.store

    def follow(self) -> None:
        """Follow the backend's events stream (until ``backend.stop_following``)."""
        self._following = True
        self.backend.follow(self._on_event, self._on_stream_open)

    def _on_stream_open(self, reconnected: bool) -> None:
        """The events stream is (again) connected: what happened meanwhile is unknown
        (dockerd keeps no events across its own restart), so reconcile.  Not on the
        first connection when the first reconcile lists after it (it was waiting for it)
        or has already run."""
        waiting = self._waiting_for_stream  # (firing below resumes that reconcile at once)
        if not self._stream_opened.called:
            self._stream_opened.callback(None)
        if not reconnected and (self._reconciled or waiting):
            return
        self.log.info("Docker events stream connected; reconciling")
        d = defer.Deferred.fromCoroutine(self.reconcile())
        d.addErrback(lambda f: self.log.failure("reconcile after reconnect", f))

    async def reconcile(self) -> None:
        """Make Redis agree with the backend: adopt running servers, drop dead routes."""
        await self._stream_first()
        async with self._lock:
            await self._reconcile()

    async def _stream_first(self) -> None:
        """At start-up, list only once the events stream is connected (at most
        ``STREAM_WAIT`` s): nothing can then happen unseen between the listing and the
        stream, and the stream's first connection needs no second reconcile (which, with
        a hundred running servers, inspected every container again just as the daemon
        began to serve)."""
        if (not self._following or self._reconciled or self._stream_opened.called
                or self._clock is None):
            return
        self._waiting_for_stream = True
        ready: defer.Deferred[None] = defer.Deferred()

        def go(_: Any = None) -> None:
            if not ready.called:
                ready.callback(None)

        self._stream_opened.addCallback(lambda r: (go(), r)[1])
        timer = self._clock.callLater(STREAM_WAIT, go)
        try:
            await ready
        finally:
            self._waiting_for_stream = False
            if timer.active():
                timer.cancel()

    async def _reconcile(self) -> None:
        began = time.monotonic()
        try:
            listed = await self.backend.list()
        except BackendError as e:
            # Serve anyway: pages say what is wrong, and nothing in Redis is touched.
            self.log.error("cannot reconcile servers: {why}", why=e.message)
            return
        self._reconciled = True
        running = {i.name: i for i in listed if i.running and i.url
                   and not self.busy(i.name)}
        adopted = dropped = 0
        for name in list(self.routes):
            if name not in running and not self.busy(name):
                self.routes.pop(name, None)  # the proxy stops sending traffic at once
        # One pipelined read of the records, then the adoptions side by side: at start-up
        # with many running servers this is a few round trips, not two per server, and a
        # record that already says what the backend runs is not written again.
        records = await self.store.get_servers(sorted(running))
        stored_routes = await self.store.routes() if running else {}
        outcomes = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self._adopt(info, records.get(info.name),
                                                      stored_routes.get(info.name)))
             for info in list(running.values())], consumeErrors=True) if running else []
        for info, adopted_it in zip(list(running.values()), outcomes):
            if adopted_it is None:
                running.pop(info.name, None)   # stopped: its base URL was wrong
            elif adopted_it:
                adopted += 1
        # Only the states of every record (one pipelined HGET each): most are "stopped".
        for name, state in (await self.store.server_states()).items():
            if name not in running and state not in ("stopped", "failed") \
                    and not self.busy(name) \
                    and await self.store.lease_holder(start_lease(name)) is None:
                # (a start lease held: another daemon of the site is starting it)
                self.routes.pop(name, None)
                await self.store.set_server(name, "stopped", id="")
                await self.store.add_server_event("server-gone", name,
                                           "container gone while ipydoc was not watching")
                dropped += 1
        self.log.info("reconciled: {a} running servers adopted, {d} stale routes dropped "
                      "({s:.3f} s)", a=adopted, d=dropped, s=time.monotonic() - began)

    async def _adopt(self, info: ServerInfo, record: Server | None,
                     stored_route: str | None) -> bool | None:
        """Adopt one running server (its record and route); False when it was stopped for
        having no token, None when stopped because its base URL is wrong.  The record is
        written only when it differs from what runs (``stored_route``: its URL in the
        stored route table)."""
        if info.base_url and info.base_url != self.base_url(info.name):
            # Started before server.routing changed: its URLs are wrong, so it
            # could not be reached; the user's next visit starts a fresh one.
            self.log.warn("container {id} of {name} has base URL {b}, not {want} "
                          "(server.routing changed); stopping it", id=info.id[:12],
                          name=info.name, b=info.base_url, want=self.base_url(info.name))
            await self.backend.stop(info.name)
            await self.store.set_server(info.name, "stopped", id="")
            return None
        token = (record.token if record and record.token and record.id == info.id
                 else info.token)
        if not token:
            self.log.warn("container {id} of {name} has no token; stopping it",
                          id=info.id[:12], name=info.name)
            await self.backend.stop(info.name)
            return False
        paused_since = 0.0
        if _unchanged(info, record, token, stored_route):
            if info.paused and record is not None:
                paused_since = record.paused_since or 0.0
        elif info.paused:
            kept = record.paused_since if record and record.id == info.id else None
            paused_since = kept or time.time()
            await self.store.set_server(
                info.name, "paused", route=True, id=info.id, url=info.url, token=token,
                image=info.image, started=info.started_at or time.time(),
                paused_since=paused_since,
                idle_since=(record.idle_since if record and record.idle_since
                            else paused_since))
        else:
            await self.store.set_server(info.name, "running", route=True, id=info.id,
                                        url=info.url, token=token, image=info.image,
                                        started=info.started_at or time.time())
        self.routes[info.name] = Route(info.url, token, info.id, info.paused, paused_since)
        return True

    def _on_event(self, event: BackendEvent) -> None:
        if event.action in ("pause", "unpause"):
            if self.on_pause_event is not None:
                d = self.on_pause_event(event.name, event.id, event.action)
                if d is not None:
                    d.addErrback(lambda f: self.log.failure("handling {e}", f, e=event))
            return
        if event.action == "start" or self.busy(event.name):
            return
        route = self.routes.get(event.name)
        if route is not None and route.id == event.id:
            # Synchronously: the very next request is sent to the start page, not a 502.
            del self.routes[event.name]
        defer.Deferred.fromCoroutine(self._gone(event)).addErrback(
            lambda f: self.log.failure("handling {e}", f, e=event))

    async def _gone(self, event: BackendEvent) -> None:
        record = await self.store.get_server(event.name)
        if record is None or record.id != event.id or record.state in ("stopped", "failed"):
            return
        current = self.routes.get(event.name)
        if current is not None and current.id in ("", event.id):
            self.routes.pop(event.name, None)
        if not await self.store.claim_once(f"gone:{event.id}"):
            return  # several daemons see the event: one records it
        # The backend's reason (e.g. "its node went down") is what the user's page shows.
        await self.store.set_server(event.name, "stopped", id="", error=event.reason)
        current = self.routes.get(event.name)  # re-read from Redis before the write landed
        if current is not None and current.id == event.id:
            self.routes.pop(event.name, None)
        await self.store.add_server_event("server-gone", event.name,
                                   event.reason or f"container {event.action} outside ipydoc")
        self.log.info("server of {name} went away ({action})", name=event.name,
                      action=event.action)


def _unchanged(info: ServerInfo, record: Server | None, token: str,
               stored_route: str | None) -> bool:
    """Redis already says what the backend runs (a daemon restarted over running
    servers): same container, state, URL, token, image and start, and the route stored."""
    return (record is not None and record.id == info.id and stored_route == info.url
            and record.state == ("paused" if info.paused else "running")
            and record.url == info.url and record.token == token
            and record.image == info.image
            and (not info.paused or bool(record.paused_since))
            and (info.started_at is None or record.started == info.started_at))
