"""The server manager: starts, stops and watches each user's Jupyter server.

It owns what the backends do not: the per-start server token, waiting until
``jupyter_server`` answers, the server record and route in Redis, and spawn progress.
Readiness is polled every 25 ms, so a server is routed the moment it answers.  Its
helpers: :mod:`ipydoc.servers.queue` (one start per user, the start slots),
:mod:`ipydoc.servers.reconcile` (Redis and routes in line with what the backend really
runs, at start and from its event stream; crashes and engine outages),
:mod:`ipydoc.servers.routes` (the route table the proxy reads).

Lifecycle rules (issue 6):

* **Spawn bursts** — at most ``spawn.concurrency`` starts run at once (container creation
  and the server's own boot are CPU-bound; running more at once only makes every one of
  them slower).  Later starts wait in a FIFO queue: their progress shows a ``queued``
  step with their position, re-sent each time it moves.  Load never fails a start.
* **Global cap** — with ``spawn.max_running`` set, a start beyond it fails at once with a
  clear message (kind ``limit``) instead of queueing forever.  Paused servers count; when
  one exists, the oldest paused server is stopped to make room instead
  (:mod:`ipydoc.servers.pausing`).
* **Profiles, limits and images** — a start uses a profile (:mod:`ipydoc.servers.profiles`:
  which the user may pick, refused otherwise; recorded on the server record).  Limits: an
  admin's per-user overrides (``ipydoc user set-limits``), else the profile's, else the
  user's groups' defaults, else the config's.  The image is the profile's; a profile
  without one (the implicit ``default``) uses the user's choice among ``spawn.images``
  (the allow-list), else ``spawn.image``.
* **Crashes and engine outages** — see :mod:`ipydoc.servers.reconcile`.

Hostile servers (issue 12): the user controls what answers on the server's port, so
readiness polls use the bounded client of :mod:`ipydoc.proxy.fetch` (a total deadline of
``READY_ATTEMPT`` seconds per poll, connect to last body byte, and a small byte budget),
the start as a whole ends at ``spawn.start_timeout``, and a stop (``server stop``, ``user
disable``, logout, the culler) never waits behind a start: it ends the start at its next
wait (the start queue or the readiness poll, the only places a user's server can hold
it), which removes the container, frees the start slot and reports the start as failed
with kind ``stopped``; then the stop runs as usual.

Several daemons (issue 14): one start per user cluster-wide, routes and stops told to the
other daemons: :mod:`ipydoc.servers.peers`.

Named servers (issue 19): every method takes a *server key* where it took a user name
(``alice`` the default server, ``alice--gpu`` a named one: :mod:`ipydoc.names`); each is
started, stopped, paused and culled on its own, with its own token, profile and limits.
What belongs to the person is read under the owner's name (groups, limit overrides, image
choice).  ``spawn.max_named_servers`` caps a user's named servers (their records; a
stopped one counts until :meth:`ServerManager.remove_server`); ``spawn.max_running``
counts every server.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ipydoc.backends.base import Backend, BackendError, ServerSpec
from ipydoc.edge.routing import Routing
from ipydoc.names import owner_of, split_server_key
from ipydoc.proxy.fetch import Fetcher, FetchError
from ipydoc.servers import metrics
from ipydoc.servers.named import NamedServers
from ipydoc.servers.pausing import Pausing
from ipydoc.servers.peers import SiteDaemons
from ipydoc.servers.profiles import Catalogue, Profile, ProfileChooser
from ipydoc.servers.progress import Progress, Step
from ipydoc.servers.queue import OnePerUser, SpawnQueue
from ipydoc.servers.reconcile import Reconciler
from ipydoc.servers.routes import Route, Routes
from ipydoc.servers.start_handle import StartFailed, StartHandle
from ipydoc.state.leases import LeaseKeeper, start_lease
from ipydoc.state.servers import Server
from ipydoc.state.store import Store

READY_POLL = 0.025
READY_ATTEMPT = 3.0          # seconds for one readiness poll, connect to last byte
READY_BUDGET = 64 * 1024     # bytes of a /api/status answer (it is ~150)
STOP_CONCURRENCY = 4


@dataclass(frozen=True)
class Limits:
    image: str
    mem_limit: int | None
    cpu_limit: float | None
    pids_limit: int | None
    start_timeout: float
    concurrency: int = 4            # spawn.concurrency: starts running at once
    max_running: int = 0            # spawn.max_running: 0 = no cap
    max_named: int = 5              # spawn.max_named_servers: 0 = named servers off
    images: tuple[str, ...] = ()    # spawn.images: allow-list; empty = just ``image``
    catalogue: Catalogue = field(default_factory=Catalogue)  # [[profiles]], [groups]

    @property
    def allowed_images(self) -> tuple[str, ...]:
        return self.images or (self.image,)


class ServerManager(ProfileChooser, Pausing, NamedServers, SiteDaemons, Service):
    name = "servers"
    log = Logger()

    def __init__(self, backend: Backend, store_source: Any, limits: Limits, reactor: Any,
                 routing: Routing | None = None, lease_ttl: float = 10.0) -> None:
        self.backend = backend
        self.lease_ttl = lease_ttl    # cluster.lease_ttl: the start lease's
        self.routing = routing or Routing()
        self._store_source = store_source      # RedisService: its .store exists once started
        self.limits = limits
        self.reactor = reactor
        self.routes: Routes = {}      # the proxy's view; Redis holds the same
        self.progress: dict[str, Progress] = {}
        # Docker tears containers down faster a few at a time than all at once (its
        # network teardown serialises on iptables): a logout wave or cull of many servers.
        self._stop_slots = defer.DeferredSemaphore(STOP_CONCURRENCY)
        self._starts = OnePerUser()
        self._stops = OnePerUser()
        self._resumes = OnePerUser()
        self._pause_locks: dict[str, defer.DeferredLock] = {}
        self.queue = SpawnQueue(limits.concurrency)
        self.reconciler = Reconciler(backend, store_source, self.routes, self.is_busy,
                                     self.base_url, self.follow_outside)
        self._admitted: set[str] = set()
        self._handles: dict[str, StartHandle] = {}
        #: The bounded client for requests to users' servers (also the culler's).
        self.fetcher = Fetcher(reactor, connect_timeout=READY_ATTEMPT)

    @property
    def store(self) -> Store:
        return self._store_source.store

    def base_url(self, name: str) -> str:
        """The server ``name``'s base URL: ``/user/NAME/`` (``/user/NAME/SERVER/`` for a
        named one), or ``/`` in subdomain mode (the key is the host's label)."""
        owner, server = split_server_key(name)
        base = self.routing.base_url(owner)
        return f"{base}{server}/" if server and base != "/" else base

    # -- service ------------------------------------------------------------------------
    def startService(self) -> defer.Deferred[None]:
        super().startService()
        bus = getattr(self.store, "bus", None)  # None: a store without the other daemons
        if bus is not None:
            bus.listen(self._told)
            bus.on_connected(self._bus_connected)
        self.reconciler.follow()
        return defer.Deferred.fromCoroutine(self.reconcile())

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

    async def start(self, name: str, image: str | None = None,
                    profile: str | Profile | None = None) -> Server:
        """Start ``name``'s server unless it runs; concurrent callers share one start.

        ``profile`` is the user's pick (a name, or one :meth:`choose_profile` returned;
        None: their last, else the default); one not offered to them fails the start
        with :class:`~ipydoc.servers.profiles.ProfileRefused`.  ``image`` is the user's
        choice (``user_options``); it must be on the allow-list, and only a profile
        without its own image takes one.

        Synchronous up to the start's registration (``is_starting`` is true when this
        returns its first wait), so a page or command that starts in the background
        sees the start at once.
        """
        if image and image not in self.limits.allowed_images:
            raise StartFailed("bad_image", f"the image {image} is not offered here "
                              f"(spawn.images: {', '.join(self.limits.allowed_images)})")
        return await self._starts.run(
            name, lambda: self._start_unless_running(name, image, profile))

    def running_count(self) -> int:
        """Servers that run or are admitted to start (for ``spawn.max_running``)."""
        return len(set(self.routes) | self._admitted)

    async def _start_unless_running(self, name: str, image: str | None,
                                    profile: str | Profile | None) -> Server:
        # Runs synchronously up to its first await, so a progress page opened right after
        # the request that started it already sees this start, not the previous one (and
        # a stop right after it finds its handle).
        handle = self._handles[name] = StartHandle()
        try:
            return await self._start_with(name, image, handle, profile)
        finally:
            if self._handles.get(name) is handle:
                del self._handles[name]

    async def _start_with(self, name: str, image: str | None, handle: StartHandle,
                          requested: str | Profile | None) -> Server:
        progress = Progress()
        self.progress[name] = progress
        progress.add(Step("queued", "Starting your server", 5))
        try:  # the one profile rule, on every path; the named-server maximum
            await self.check_named(name)
            profile = await self._chosen(name, image, requested)
        except StartFailed as e:
            progress.add(Step("failed", e.message, 100, error_kind=e.kind))
            raise
        await self._stops.wait(name)
        current = await self.store.get_server(name)
        if current and current.state in ("running", "paused") and (
                name in self.routes or self._route_record(current)):
            try:
                if await self.resume(name, "page"):
                    current = await self.store.get_server(name) or current
            except BackendError as e:
                message = f"your paused server could not be resumed: {e.message}"
                progress.add(Step("failed", message, 100, error_kind="failed"))
                raise StartFailed("failed", message) from None
            progress.add(Step("ready", "Your server is ready", 100, url=f"{self.base_url(name)}lab"))
            return current
        while True:  # one start cluster-wide: the start lease, or the holder's outcome
            lease = await self.store.take_lease(start_lease(name), self.lease_ttl)
            if lease is not None:
                break
            remote = await self._await_remote(name, progress, handle)
            if remote is not None:
                return remote
        keeper = LeaseKeeper(self.store, lease, self.lease_ttl, self.reactor,
                             on_lost=handle.lose_lease)
        try:
            return await self._start_leased(name, image, handle, progress, lease.fence,
                                            profile)
        finally:
            await keeper.release()

    async def _start_leased(self, name: str, image: str | None, handle: StartHandle,
                            progress: Progress, fence: int, profile: Profile) -> Server:
        t0 = time.monotonic()
        outcome = "failed"
        try:
            server = await self._start_limited(name, image, handle, progress, fence, profile)
            outcome = "started"
            return server
        except StartFailed as e:
            outcome = e.kind
            raise
        finally:
            metrics.spawn_finished(outcome, time.monotonic() - t0)

    async def _start_limited(self, name: str, image: str | None, handle: StartHandle,
                             progress: Progress, fence: int, profile: Profile) -> Server:
        cap = self.limits.max_running
        if cap and self.running_count() >= cap:
            await self.make_room(name, cap, self.running_count)
        if cap and self.running_count() >= cap:
            message = (f"the hub is full: {cap} servers are running (spawn.max_running); "
                       "try again when someone stops theirs")
            await self.store.set_server(name, "failed", error=message)
            await self.store.add_server_event("spawn-refused", name, message)
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
                return await self._start(name, progress, image, handle, fence, profile)
            finally:
                self.queue.release()
        finally:
            self._admitted.discard(name)

    async def _spec(self, name: str, image: str | None, token: str,
                    profile: Profile | None = None) -> ServerSpec:
        lim = self.limits
        profile = profile or Profile("default")
        if profile.image:
            image = profile.image
        elif not image:
            chosen = await self.store.get_image_choice(owner_of(name))
            image = chosen if chosen in lim.allowed_images else lim.allowed_images[0]
        elif image != await self.store.get_image_choice(owner_of(name)):
            await self.store.set_image_choice(owner_of(name), image)
        limits = await self.limits_for(name, profile)
        return ServerSpec(name=name, image=image, base_url=self.base_url(name), token=token,
                          hub_host=self.routing.hub_host_for_jupyter(),
                          mem_limit=limits["mem"], cpu_limit=limits["cpu"],
                          pids_limit=limits["pids"], env=dict(profile.env),
                          volumes=profile.volumes, gpus=profile.gpus)

    async def _start(self, name: str, progress: Progress, image: str | None = None,
                     handle: StartHandle | None = None, fence: int = 0,
                     profile: Profile | None = None) -> Server:
        handle = handle or StartHandle()
        step = lambda phase, msg, pct, **kw: progress.add(Step(phase, msg, pct, **kw))  # noqa: E731
        token = secrets.token_hex(32)
        lim = self.limits
        t0 = time.monotonic()
        spec = await self._spec(name, image, token, profile)
        await self._write(name, fence, handle, "starting", image=spec.image, error="", id="",
                          profile=profile.name if profile else "default")
        step("creating", f"Creating your server from {spec.image}", 10)
        try:
            handle.check()
            info = await self.backend.start(spec)
            handle.check()
            if not info.url:
                raise StartFailed("failed", "the backend started the server but gave no address")
            await self._write(name, fence, handle, "starting", id=info.id)
            step("waiting", "Container started; waiting for Jupyter to answer", 40)
            await self._wait_ready(name, info.url, token, t0 + lim.start_timeout, handle)
        except (BackendError, StartFailed) as e:
            kind = e.kind
            message = e.message
            await self._fail(name, kind, message, fence)
            raise StartFailed(kind, message) from None
        except Exception as e:  # noqa: BLE001 - any failure must land as a clear state
            self.log.failure("starting {name} failed", name=name)
            await self._fail(name, "failed", f"the server could not be started: {e}", fence)
            raise StartFailed("failed", str(e)) from None
        now = time.time()
        try:
            await self._write(name, fence, handle, "running", route=True, id=info.id,
                              url=info.url, token=token, started=now, error="")
        except StartFailed as e:  # a newer start owns the record (and the container name)
            await self._fail(name, e.kind, e.message, fence)
            raise
        self.routes[name] = Route(info.url, token, info.id)
        self._tell("server-up", name)
        await self.store.add_server_event("spawn", name, f"ready in {time.monotonic() - t0:.2f}s")
        self.log.info("server for {name} ready in {s:.2f}s", name=name, s=time.monotonic() - t0)
        step("ready", "Your server is ready", 100, url=f"{self.base_url(name)}lab")
        return Server(name, "running", info.id, info.url, token, spec.image, now,
                      profile=profile.name if profile else "default")

    async def _write(self, name: str, fence: int, handle: StartHandle, state: str, *,
                     route: bool = False, **fields: Any) -> None:
        """A start's write of the server record, refused for a superseded start."""
        if fence and not await self.store.set_server_fenced(name, fence, state, route=route,
                                                            **fields):
            handle.lose_lease()
            handle.check()
        elif not fence:
            await self.store.set_server(name, state, route=route, **fields)

    async def _fail(self, name: str, kind: str, message: str, fence: int = 0) -> None:
        if kind == "superseded":
            # Another daemon's newer start owns the container name and the record now:
            # touching either would undo its work.
            self.log.warn("start of {name} superseded by another daemon's", name=name)
            self.progress[name].add(Step("failed", message, 100, error_kind=kind))
            return
        self.routes.pop(name, None)
        try:
            await self.backend.stop(name)
        except BackendError:
            pass
        if fence:
            await self.store.set_server_fenced(name, fence, "failed", error=message)
        else:
            await self.store.set_server(name, "failed", error=message)
        self._tell("server-down", name)
        await self.store.add_server_event("spawn-failed", name, message)
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
        elif not self._starts.busy(name):
            await self._stop_remote_start(name)
        await self._starts.wait(name)
        await self._stops.run(name, lambda: self._stop(name, reason, kind))

    async def _stop(self, name: str, reason: str, kind: str = "stop") -> None:
        self.routes.pop(name, None)
        self._tell("server-down", name)
        await self.store.set_server(name, "stopping")
        async with self._stop_slots:
            await self.backend.stop(name)
        await self.store.set_server(name, "stopped", id="", error="")
        self._tell("server-down", name)
        await self.store.add_server_event(kind, name, reason)
        if name in self.progress:
            self.progress[name].add(Step("stopped", "Your server was stopped", 0))

    # -- reconcile -----------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Make Redis agree with the backend (:mod:`ipydoc.servers.reconcile`)."""
        await self.reconciler.reconcile()
