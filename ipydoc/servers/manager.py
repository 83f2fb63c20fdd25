"""The server manager: starts, stops and watches each user's Jupyter server.

It owns what the backends do not: the per-start server token, waiting until
``jupyter_server`` answers, the server record and route in Redis, spawn progress, and
reconciling Redis with what the backend really runs (at start and from its event stream).
Readiness is polled every 25 ms, so a server is routed the moment it answers.

Lifecycle rules (issue 6):

* **Spawn bursts** — at most ``spawn.concurrency`` starts run at once (container creation
  and the server's own boot are CPU-bound; running more at once only makes every one of
  them slower).  Later starts wait in a FIFO queue: their progress shows a ``queued``
  step with their position, re-sent each time it moves.  Load never fails a start.
* **Global cap** — with ``spawn.max_running`` set, a start beyond it fails at once with a
  clear message (kind ``limit``) instead of queueing forever.
* **Limits and images** — memory/CPU/pids come from the config unless an admin stored
  per-user overrides (``ipydoc user set-limits``); the image is the user's choice among
  ``spawn.images`` (the allow-list), else ``spawn.image``.
* **Crashes** — a ``die``/``destroy`` event of the routed container drops the in-memory
  route synchronously (the proxy sends the user to the start page from the very next
  request), then Redis is updated and an event recorded.
* **Engine outages** — each time the events stream (re)connects after a break, the
  manager reconciles again, so containers that died with a restarted dockerd lose their
  routes without a daemon restart.  Reconciles never run concurrently.

Hostile servers (issue 12): the user controls what answers on the server's port, so
readiness polls use the bounded client of :mod:`ipydoc.proxy.fetch` (a total deadline of
``READY_ATTEMPT`` seconds per poll, connect to last body byte, and a small byte budget),
the start as a whole ends at ``spawn.start_timeout``, and a stop (``server stop``, ``user
disable``, logout, the culler) never waits behind a start: it ends the start at its next
wait (the start queue or the readiness poll, the only places a user's server can hold
it), which removes the container, frees the start slot and reports the start as failed
with kind ``stopped``; then the stop runs as usual.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import CancelledError, DeferredLock
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from ipydoc.backends.base import Backend, BackendError, BackendEvent, ServerSpec
from ipydoc.edge.routing import Routing
from ipydoc.proxy.fetch import Fetcher, FetchError
from ipydoc.servers.progress import Progress, Step
from ipydoc.state.store import Server, Store

READY_POLL = 0.025
READY_ATTEMPT = 3.0          # seconds for one readiness poll, connect to last byte
READY_BUDGET = 64 * 1024     # bytes of a /api/status answer (it is ~150)
STOP_CONCURRENCY = 4
T = TypeVar("T")


@dataclass(frozen=True)
class Route:
    url: str
    token: str
    id: str = ""     # the container's id: events about another container leave it alone


@dataclass(frozen=True)
class Limits:
    image: str
    mem_limit: int | None
    cpu_limit: float | None
    pids_limit: int | None
    start_timeout: float
    concurrency: int = 4            # spawn.concurrency: starts running at once
    max_running: int = 0            # spawn.max_running: 0 = no cap
    images: tuple[str, ...] = ()    # spawn.images: allow-list; empty = just ``image``

    @property
    def allowed_images(self) -> tuple[str, ...]:
        return self.images or (self.image,)


class OnePerUser:
    """At most one run of an operation per user; callers meanwhile share its outcome.

    The first caller's operation begins synchronously, so ``busy`` is true as soon as
    ``run`` was called, before any await.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, list[defer.Deferred[Any]]] = {}

    def busy(self, name: str) -> bool:
        return name in self._waiters

    async def run(self, name: str, op: Callable[[], Awaitable[T]]) -> T:
        if name in self._waiters:
            shared: defer.Deferred[T] = defer.Deferred()
            self._waiters[name].append(shared)
            return await shared
        self._waiters[name] = []
        try:
            result = await op()
        except BaseException:
            failure = Failure()
            for waiter in self._waiters.pop(name):
                waiter.errback(failure)
            raise
        for waiter in self._waiters.pop(name):
            waiter.callback(result)
        return result

    async def wait(self, name: str) -> None:
        """Until the run in flight (if any) has ended, however it ended."""
        if name in self._waiters:
            done: defer.Deferred[Any] = defer.Deferred()
            self._waiters[name].append(done)
            try:
                await done
            except Exception:  # noqa: BLE001 - its own caller handles the failure
                pass


class SpawnQueue:
    """A FIFO of starts waiting for one of ``size`` slots, with positions to show.

    ``acquire`` calls ``on_position(n)`` with the caller's 1-based place in the queue
    whenever it changes (n ahead + 1); it returns once the caller holds a slot.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self.active = 0
        self._waiting: list[tuple[defer.Deferred[None], Callable[[int], None]]] = []

    def __len__(self) -> int:
        return len(self._waiting)

    async def acquire(self, on_position: Callable[[int], None]) -> None:
        if self.active < self.size and not self._waiting:
            self.active += 1
            return
        d: defer.Deferred[None] = defer.Deferred()
        entry = (d, on_position)
        self._waiting.append(entry)
        on_position(len(self._waiting))
        try:
            await d
        except BaseException:
            if entry in self._waiting:
                self._waiting.remove(entry)
                self._announce()
            raise

    def release(self) -> None:
        if self._waiting:
            d, _ = self._waiting.pop(0)  # the slot passes straight on: active stays
            self._announce()
            d.callback(None)
        else:
            self.active -= 1

    def _announce(self) -> None:
        for i, (_, on_position) in enumerate(self._waiting):
            on_position(i + 1)


class StartFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class StartHandle:
    """One start in flight, which a stop can end at its next wait."""

    def __init__(self) -> None:
        self.stop_requested = False
        self._waiting: defer.Deferred[Any] | None = None

    def request_stop(self) -> None:
        self.stop_requested = True
        if self._waiting is not None:
            self._waiting.cancel()

    def check(self) -> None:
        if self.stop_requested:
            raise StartFailed("stopped", "the server was stopped while it was starting")

    async def wait(self, d: defer.Deferred[T]) -> T:
        """``await d``, unless a stop comes first (then ``d`` is cancelled)."""
        if self.stop_requested:
            d.cancel()
            d.addErrback(lambda _: None)
            self.check()
        self._waiting = d
        try:
            return await d
        except CancelledError:
            self.check()
            raise
        finally:
            self._waiting = None


class ServerManager(Service):
    name = "servers"
    log = Logger()

    def __init__(self, backend: Backend, store_source: Any, limits: Limits, reactor: Any,
                 routing: Routing | None = None) -> None:
        self.backend = backend
        self.routing = routing or Routing()
        self._store_source = store_source      # RedisService: its .store exists once started
        self.limits = limits
        self.reactor = reactor
        self.routes: dict[str, Route] = {}      # the proxy's view; Redis holds the same
        self.progress: dict[str, Progress] = {}
        # Docker tears containers down faster a few at a time than all at once (its
        # network teardown serialises on iptables): a logout wave or cull of many servers.
        self._stop_slots = defer.DeferredSemaphore(STOP_CONCURRENCY)
        self._starts = OnePerUser()
        self._stops = OnePerUser()
        self.queue = SpawnQueue(limits.concurrency)
        self._reconcile_lock = DeferredLock()
        self._reconciled = False
        self._admitted: set[str] = set()
        self._handles: dict[str, StartHandle] = {}
        #: The bounded client for requests to users' servers (also the culler's).
        self.fetcher = Fetcher(reactor, connect_timeout=READY_ATTEMPT)

    @property
    def store(self) -> Store:
        return self._store_source.store

    def base_url(self, name: str) -> str:
        """``name``'s server's base URL: ``/user/NAME/``, or ``/`` in subdomain mode."""
        return self.routing.base_url(name)

    # -- service ------------------------------------------------------------------------
    def startService(self) -> defer.Deferred[None]:
        super().startService()
        self.backend.follow(self._on_event, self._on_stream_open)
        return defer.Deferred.fromCoroutine(self.reconcile())

    def _on_stream_open(self, reconnected: bool) -> None:
        """The events stream is (again) connected: what happened meanwhile is unknown
        (dockerd keeps no events across its own restart), so reconcile."""
        if not reconnected and self._reconciled:
            return
        self.log.info("Docker events stream connected; reconciling")
        d = defer.Deferred.fromCoroutine(self.reconcile())
        d.addErrback(lambda f: self.log.failure("reconcile after reconnect", f))

    def stopService(self) -> None:
        super().stopService()
        stop_following = getattr(self.backend, "stop_following", None)
        if stop_following:
            stop_following()

    # -- start ---------------------------------------------------------------------------
    def is_starting(self, name: str) -> bool:
        return self._starts.busy(name)

    def is_busy(self, name: str) -> bool:
        return self._starts.busy(name) or self._stops.busy(name)

    async def start(self, name: str, image: str | None = None) -> Server:
        """Start ``name``'s server unless it runs; concurrent callers share one start.

        ``image`` is the user's choice (``user_options``); it must be on the allow-list.
        """
        if image and image not in self.limits.allowed_images:
            raise StartFailed("bad_image", f"the image {image} is not offered here "
                              f"(spawn.images: {', '.join(self.limits.allowed_images)})")
        return await self._starts.run(name, lambda: self._start_unless_running(name, image))

    def running_count(self) -> int:
        """Servers that run or are admitted to start (for ``spawn.max_running``)."""
        return len(set(self.routes) | self._admitted)

    async def _start_unless_running(self, name: str, image: str | None = None) -> Server:
        # Runs synchronously up to its first await, so a progress page opened right after
        # the request that started it already sees this start, not the previous one (and
        # a stop right after it finds its handle).
        handle = self._handles[name] = StartHandle()
        try:
            return await self._start_with(name, image, handle)
        finally:
            if self._handles.get(name) is handle:
                del self._handles[name]

    async def _start_with(self, name: str, image: str | None, handle: StartHandle) -> Server:
        progress = Progress()
        self.progress[name] = progress
        progress.add(Step("queued", "Starting your server", 5))
        await self._stops.wait(name)
        current = await self.store.get_server(name)
        if current and current.state == "running" and name in self.routes:
            progress.add(Step("ready", "Your server is ready", 100, url=f"{self.base_url(name)}lab"))
            return current
        cap = self.limits.max_running
        if cap and self.running_count() >= cap:
            message = (f"the hub is full: {cap} servers are running (spawn.max_running); "
                       "try again when someone stops theirs")
            await self.store.set_server(name, "failed", error=message)
            await self.store.add_event("spawn-refused", name, message)
            progress.add(Step("failed", message, 100, error_kind="limit"))
            raise StartFailed("limit", message)

        def queued(position: int) -> None:
            progress.add(Step("queued", f"Waiting for a free start slot: number {position} "
                                        f"in the queue", 5, position=position))

        self._admitted.add(name)
        try:
            try:
                await handle.wait(defer.Deferred.fromCoroutine(self.queue.acquire(queued)))
            except StartFailed as e:  # stopped while queued: nothing was created yet
                progress.add(Step("failed", e.message, 100, error_kind=e.kind))
                raise
            try:
                return await self._start(name, progress, image, handle)
            finally:
                self.queue.release()
        finally:
            self._admitted.discard(name)

    async def _spec(self, name: str, image: str | None, token: str) -> ServerSpec:
        lim = self.limits
        own = await self.store.get_limits(name)
        if not image:
            chosen = await self.store.get_image_choice(name)
            image = chosen if chosen in lim.allowed_images else lim.allowed_images[0]
        elif image != await self.store.get_image_choice(name):
            await self.store.set_image_choice(name, image)
        return ServerSpec(name=name, image=image, base_url=self.base_url(name), token=token,
                          hub_host=self.routing.hub_host_for_jupyter(),
                          mem_limit=own.get("mem", lim.mem_limit),
                          cpu_limit=own.get("cpu", lim.cpu_limit),
                          pids_limit=own.get("pids", lim.pids_limit))

    async def _start(self, name: str, progress: Progress, image: str | None = None,
                     handle: StartHandle | None = None) -> Server:
        handle = handle or StartHandle()
        step = lambda phase, msg, pct, **kw: progress.add(Step(phase, msg, pct, **kw))  # noqa: E731
        token = secrets.token_hex(32)
        lim = self.limits
        t0 = time.monotonic()
        spec = await self._spec(name, image, token)
        await self.store.set_server(name, "starting", image=spec.image, error="", id="")
        step("creating", f"Creating your server from {spec.image}", 10)
        try:
            info = await self.backend.start(spec)
            handle.check()
            if not info.url:
                raise StartFailed("failed", "the backend started the server but gave no address")
            await self.store.set_server(name, "starting", id=info.id)
            step("waiting", "Container started; waiting for Jupyter to answer", 40)
            await self._wait_ready(name, info.url, token, t0 + lim.start_timeout, handle)
        except (BackendError, StartFailed) as e:
            kind = e.kind
            message = e.message
            await self._fail(name, kind, message)
            raise StartFailed(kind, message) from None
        except Exception as e:  # noqa: BLE001 - any failure must land as a clear state
            self.log.failure("starting {name} failed", name=name)
            await self._fail(name, "failed", f"the server could not be started: {e}")
            raise StartFailed("failed", str(e)) from None
        now = time.time()
        await self.store.set_server(name, "running", route=True, id=info.id, url=info.url,
                                    token=token, started=now, error="")
        self.routes[name] = Route(info.url, token, info.id)
        await self.store.add_event("spawn", name, f"ready in {time.monotonic() - t0:.2f}s")
        self.log.info("server for {name} ready in {s:.2f}s", name=name, s=time.monotonic() - t0)
        step("ready", "Your server is ready", 100, url=f"{self.base_url(name)}lab")
        return Server(name, "running", info.id, info.url, token, spec.image, now)

    async def _fail(self, name: str, kind: str, message: str) -> None:
        self.routes.pop(name, None)
        try:
            await self.backend.stop(name)
        except BackendError:
            pass
        await self.store.set_server(name, "failed", error=message)
        await self.store.add_event("spawn-failed", name, message)
        self.log.warn("server for {name} failed to start: {message}", name=name, message=message)
        self.progress[name].add(Step("failed", message, 100, error_kind=kind))

    async def _wait_ready(self, name: str, url: str, token: str, deadline: float,
                          handle: StartHandle | None = None) -> None:
        """Poll ``/api/status`` until it answers 200, each poll bounded in time and bytes
        (the server may trickle or flood its answer), the whole until ``deadline``."""
        handle = handle or StartHandle()
        status_url = f"{url}{self.base_url(name)}api/status"
        headers = {"Authorization": f"token {token}"}
        next_check = time.monotonic() + 1.0
        last = ""
        while True:
            handle.check()
            left = deadline - time.monotonic()
            try:
                r = await handle.wait(self.fetcher.get(
                    status_url, headers=headers, max_body=READY_BUDGET,
                    timeout=max(0.05, min(READY_ATTEMPT, left))))
                if r.code == 200:
                    return
                last = f"HTTP {r.code}"
            except FetchError as e:  # not listening yet, or an answer out of bounds
                last = str(e) if e.budget else last
            now = time.monotonic()
            if now > deadline:
                raise StartFailed("timeout", f"the server did not answer within "
                                             f"{self.limits.start_timeout:g} s (spawn.start_timeout)"
                                  + (f"; its last answer: {last}" if last else ""))
            if now > next_check:
                next_check = now + 1.0
                info = await self.backend.status(name)
                if info is None or not info.running:
                    raise StartFailed("exited", "the server exited while starting; "
                                                "see `ipydoc server logs` or the Docker logs")
            await handle.wait(deferLater(self.reactor, READY_POLL, lambda: None))

    # -- stop ----------------------------------------------------------------------------
    async def stop(self, name: str, reason: str = "stop", kind: str = "stop") -> None:
        """Stop ``name``'s server; files are kept.  A start in flight is ended first (at
        its next wait: it never holds the stop for long), then the stop runs.

        ``kind`` names the event recorded (``stop``, or ``cull`` for the idle culler)."""
        handle = self._handles.get(name)
        if handle is not None:
            handle.request_stop()
        await self._starts.wait(name)
        await self._stops.run(name, lambda: self._stop(name, reason, kind))

    async def _stop(self, name: str, reason: str, kind: str = "stop") -> None:
        self.routes.pop(name, None)
        await self.store.set_server(name, "stopping")
        async with self._stop_slots:
            await self.backend.stop(name)
        await self.store.set_server(name, "stopped", id="", error="")
        await self.store.add_event(kind, name, reason)
        if name in self.progress:
            self.progress[name].add(Step("stopped", "Your server was stopped", 0))

    # -- reconcile -----------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Make Redis agree with the backend: adopt running servers, drop dead routes."""
        async with self._reconcile_lock:
            await self._reconcile()

    async def _reconcile(self) -> None:
        try:
            listed = await self.backend.list()
        except BackendError as e:
            # Serve anyway: pages say what is wrong, and nothing in Redis is touched.
            self.log.error("cannot reconcile servers: {why}", why=e.message)
            return
        self._reconciled = True
        running = {i.name: i for i in listed if i.running and i.url
                   and not self.is_busy(i.name)}
        adopted = dropped = 0
        for name in list(self.routes):
            if name not in running and not self.is_busy(name):
                self.routes.pop(name, None)  # the proxy stops sending traffic at once
        for info in list(running.values()):
            record = await self.store.get_server(info.name)
            if info.base_url and info.base_url != self.base_url(info.name):
                # Started before server.routing changed: its URLs are wrong, so it
                # could not be reached; the user's next visit starts a fresh one.
                self.log.warn("container {id} of {name} has base URL {b}, not {want} "
                              "(server.routing changed); stopping it", id=info.id[:12],
                              name=info.name, b=info.base_url, want=self.base_url(info.name))
                await self.backend.stop(info.name)
                await self.store.set_server(info.name, "stopped", id="")
                running.pop(info.name, None)
                continue
            token = (record.token if record and record.token and record.id == info.id
                     else info.token)
            if not token:
                self.log.warn("container {id} of {name} has no token; stopping it",
                              id=info.id[:12], name=info.name)
                await self.backend.stop(info.name)
                continue
            await self.store.set_server(info.name, "running", route=True, id=info.id,
                                        url=info.url, token=token, image=info.image,
                                        started=info.started_at or time.time())
            self.routes[info.name] = Route(info.url, token, info.id)
            adopted += 1
        for record in await self.store.list_servers():
            if record.name not in running and record.state not in ("stopped", "failed") \
                    and not self.is_busy(record.name):
                self.routes.pop(record.name, None)
                await self.store.set_server(record.name, "stopped", id="")
                await self.store.add_event("server-gone", record.name,
                                           "container gone while ipydoc was not watching")
                dropped += 1
        self.log.info("reconciled: {a} running servers adopted, {d} stale routes dropped",
                      a=adopted, d=dropped)

    def _on_event(self, event: BackendEvent) -> None:
        if event.action == "start" or self.is_busy(event.name):
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
        await self.store.set_server(event.name, "stopped", id="")
        await self.store.add_event("server-gone", event.name,
                                   f"container {event.action} outside ipydoc")
        self.log.info("server of {name} went away ({action})", name=event.name,
                      action=event.action)
