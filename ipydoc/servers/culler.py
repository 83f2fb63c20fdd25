"""The idle culler: stops servers nobody uses, inside the daemon (no extra service).

Every ``cull.interval`` seconds it looks at each running or paused server and stops it
when

* ``cull.idle_timeout`` > 0 and the server has been idle that long, or
* ``cull.max_age`` > 0 and it has run that long, whatever it does;

or else pauses it (issue 15, :mod:`ipydoc.servers.pausing`) when ``cull.pause_after`` > 0
and it has been idle that long.  A paused server cannot be asked (it is frozen): it is
judged on the activity recorded before its pause (``idle_since`` in its record) and the
proxy's, so ``idle_timeout`` counts from the last real activity, not from the pause.

*Idle since* is the latest of: the server's start, the last request the proxy forwarded
to it (in memory, before the batched write to Redis, and in Redis), and — unless
``cull.ignore_kernel_activity`` — what the server itself reports: ``last_activity`` of
``GET /api/status`` (API use, kernel messages, terminals) and, since a kernel busy in a
long ``time.sleep`` sends no messages, "now" while any kernel is ``busy`` in
``GET /api/kernels``.  Both calls carry ``no_track_activity=1`` and ``/api/status`` does
not count as activity, so looking never keeps a server alive.  A server that does not
answer is judged on the proxy's activity alone.

Each server is judged on its own: its owner controls what answers there, so both reads go
through the bounded client of :mod:`ipydoc.proxy.fetch` (``STATUS_TIMEOUT`` seconds and
``STATUS_BUDGET`` bytes per read, no ``Content-Encoding``), only answers of the expected
shape (an object for the status, a list of objects for the kernels) are used, and any
failure while judging one server (a malformed, huge, trickling or hostile answer, or a
bug) is logged and that server is judged on the proxy's activity alone; the pass goes on
for the others.

Admins are exempt when ``cull.exempt_admins``.  Each stop is an event of kind ``cull``
whose detail gives the reason; files are never touched (stop keeps them).  The first run
is one interval after the daemon starts, so a daemon restart does not cull servers before
their activity could be seen.

Several daemons: the timed runs happen on one daemon at a time, the holder of the lease
``leader:culler`` (:mod:`ipydoc.state.leases`, taken or renewed at each tick for
``cull.interval + cluster.lease_ttl`` seconds).  When the leader dies another daemon leads
from its first tick after the lease expired, so a pass is late by at most
``2 × interval + lease_ttl``.  The leader judges every server of the site (its route table
holds them all) on the activity in Redis, which every daemon writes every few seconds.
``ipydoc server cull`` runs a pass on the daemon asked, leader or not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from ipydoc.names import owner_of
from ipydoc.proxy.fetch import FetchError
from ipydoc.servers import metrics
from ipydoc.servers.manager import ServerManager
from ipydoc.state.leases import LEADER_CULLER

STATUS_TIMEOUT = 5.0            # seconds per read of /api/status or /api/kernels
STATUS_BUDGET = 1024 * 1024     # bytes per answer (a kernel list of hundreds fits)


@dataclass(frozen=True)
class CullSettings:
    idle_timeout: float = 0.0       # seconds; 0 = never for idleness
    max_age: float = 0.0            # seconds; 0 = no maximum
    interval: float = 60.0
    ignore_kernel_activity: bool = False
    exempt_admins: bool = False
    pause_after: float = 0.0        # seconds idle before a pause; 0 = never

    @property
    def enabled(self) -> bool:
        return self.idle_timeout > 0 or self.max_age > 0 or self.pause_after > 0


def parse_jupyter_time(value: Any) -> float | None:
    """jupyter_server's ISO 8601 times ("2024-05-01T10:00:00.123456Z") to Unix time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Culler(Service):
    """``last_request(name)``: when the proxy last forwarded a request to ``name``'s
    server, as recorded in memory (not yet written to Redis), or None."""

    name = "culler"
    log = Logger()

    def __init__(self, manager: ServerManager, last_request: Callable[[str], float | None],
                 settings: CullSettings, reactor: Any, lease_ttl: float = 10.0,
                 requests_under_way: Callable[[str], int] = lambda name: 0) -> None:
        self.manager = manager
        self.requests_under_way = requests_under_way
        self.lease_ttl = lease_ttl
        self.leading = False
        self.last_request = last_request
        self.settings = settings
        self.reactor = reactor
        self._loop: LoopingCall | None = None
        self._running: defer.Deferred[list[str]] | None = None

    def startService(self) -> None:
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.reactor
        self._loop.start(self.settings.interval, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _tick(self) -> defer.Deferred[None]:
        d = defer.Deferred.fromCoroutine(self._lead_and_cull())
        return d.addErrback(lambda f: self.log.failure("idle culler run", f))

    async def _lead_and_cull(self) -> None:
        """A timed pass, on the leader only (see the module doc)."""
        lease = await self.manager.store.take_lease(
            LEADER_CULLER, self.settings.interval + self.lease_ttl)
        if (lease is not None) != self.leading:
            self.leading = lease is not None
            self.log.info("idle culler: this daemon {what}",
                          what="leads (culls the site)" if self.leading
                          else "no longer leads (another daemon culls)")
        if self.leading:
            await self.cull()

    def cull(self) -> defer.Deferred[list[str]]:
        """Run once now (runs do not overlap); fires with the names whose servers stopped."""
        if self._running is not None:
            shared: defer.Deferred[list[str]] = defer.Deferred()
            self._running.addBoth(lambda r: (shared.callback(r if isinstance(r, list) else []),
                                             r)[1])
            return shared
        d = defer.Deferred.fromCoroutine(self._cull())

        def done(result: Any) -> Any:
            self._running = None
            return result
        self._running = d
        d.addBoth(done)
        return d

    async def _cull(self) -> list[str]:
        s = self.settings
        store = self.manager.store
        names = [n for n in list(self.manager.routes) if not self.manager.is_busy(n)]
        if not names:
            return []
        stored = await store.activity()
        servers = await store.get_servers(names)
        admins: set[str] = set()
        if s.exempt_admins:
            # the one admin rule (groups too), on each server's owner (named servers too)
            admins = await store.admins_among(sorted({owner_of(n) for n in names}))
        checks = [defer.Deferred.fromCoroutine(self._judge_safely(n, servers.get(n), stored))
                  for n in names if owner_of(n) not in admins]
        verdicts = await defer.gatherResults(checks, consumeErrors=True) if checks else []
        stopped = []
        for name, reason, last in verdicts:
            if reason is None or name not in self.manager.routes or self.manager.is_busy(name):
                continue
            if last is not None:  # a pause
                await self._pause(name, reason, last)
                continue
            self.log.info("culling the server of {name}: {reason}", name=name, reason=reason)
            try:
                await self.manager.stop(name, reason, kind="cull")
            except Exception as e:  # noqa: BLE001 - one failure must not spare the others
                self.log.error("could not cull {name}: {e}", name=name, e=e)
                continue
            metrics.culled(reason)
            stopped.append(name)
        return stopped

    async def _pause(self, name: str, reason: str, last: float) -> None:
        if (self.last_request(name) or 0) > last:
            return  # a request came while judging: not idle after all
        if self.requests_under_way(name):
            return  # a long download or a handshake under way would freeze mid-way
        self.log.info("pausing the server of {name}: {reason}", name=name, reason=reason)
        try:
            await self.manager.pause(name, reason, idle_since=last)
        except Exception as e:  # noqa: BLE001 - one failure must not spare the others
            self.log.error("could not pause {name}: {e}", name=name, e=e)

    async def _judge_safely(self, name: str, server: Any, stored: dict[str, float]
                            ) -> tuple[str, str | None, float | None]:
        """:meth:`_judge`, but a failure spares that one server and not the pass."""
        try:
            return await self._judge(name, server, stored)
        except Exception:  # noqa: BLE001
            self.log.failure("culler: judging {name}'s server failed; it is kept this time",
                             name=name)
            return name, None, None

    async def _judge(self, name: str, server: Any, stored: dict[str, float]
                     ) -> tuple[str, str | None, float | None]:
        """``(name, reason or None, None)`` to stop it, ``(name, reason, last activity)``
        to pause it."""
        s = self.settings
        now = time.time()
        started = server.started if server and server.started else None
        if s.max_age > 0 and started and now - started > s.max_age:
            return name, (f"running for {now - started:.0f} s (cull.max_age = "
                          f"{s.max_age:g} s)"), None
        paused = self.manager.is_paused(name)
        if s.idle_timeout <= 0 and (s.pause_after <= 0 or paused):
            return name, None, None
        seen = [t for t in (started, stored.get(name), self.last_request(name)) if t]
        if paused:
            if server is not None and server.idle_since:
                seen.append(server.idle_since)
        elif not s.ignore_kernel_activity:
            try:
                own = await self._server_activity(name)
            except FetchError as e:
                own = None
                (self.log.warn if e.budget else self.log.debug)(
                    "culler: no activity from {name}'s server ({e}); judged on the "
                    "proxy's activity alone", name=name, e=e)
            except Exception as e:  # noqa: BLE001 - one server's answer must not stop the pass
                self.log.warn("culler: the activity of {name}'s server cannot be read ({e}); "
                              "judged on the proxy's activity alone", name=name, e=e)
                own = None
            if own is not None:
                seen.append(own)
        if not seen:
            return name, None, None
        last = max(seen)
        if s.idle_timeout > 0 and now - last > s.idle_timeout:
            return name, (f"idle for {now - last:.0f} s (cull.idle_timeout = "
                          f"{s.idle_timeout:g} s)"), None
        if s.pause_after > 0 and not paused and now - last >= s.pause_after:
            return name, (f"idle for {now - last:.0f} s (cull.pause_after = "
                          f"{s.pause_after:g} s)"), last
        return name, None, None

    async def _server_activity(self, name: str) -> float | None:
        """The server's own view of its last activity; now while a kernel is busy.

        Raises (:class:`FetchError`, ``ValueError``) when the server answers out of bounds
        or not as jupyter_server does; None when it says nothing usable."""
        route = self.manager.routes.get(name)
        if route is None:
            return None
        headers = {"Authorization": f"token {route.token}"}
        root = f"{route.url}{self.manager.base_url(name)}api"
        fetch = self.manager.fetcher
        kernels: list[dict[str, Any]] = []
        r = await fetch.get(f"{root}/kernels", params={"no_track_activity": "1"},
                            headers=headers, max_body=STATUS_BUDGET, timeout=STATUS_TIMEOUT)
        if r.code == 200:
            listed = r.json()
            if not isinstance(listed, list):
                raise ValueError(f"/api/kernels answered a {type(listed).__name__}, not a list")
            kernels = [k for k in listed if isinstance(k, dict)]
            if any(k.get("execution_state") == "busy" for k in kernels):
                return time.time()
        r = await fetch.get(f"{root}/status", headers=headers, max_body=STATUS_BUDGET,
                            timeout=STATUS_TIMEOUT)
        status: Any = r.json() if r.code == 200 else {}
        if not isinstance(status, dict):
            raise ValueError(f"/api/status answered a {type(status).__name__}, not an object")
        times = [parse_jupyter_time(status.get("last_activity"))]
        times += [parse_jupyter_time(k.get("last_activity")) for k in kernels]
        found = [t for t in times if t]
        return max(found) if found else None
