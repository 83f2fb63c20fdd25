"""A returning browser's login page starts the user's stopped server (issue 15 §2).

A person takes seconds to type a password; a start takes about one.  When the login page
is opened by a browser that logged in before (the signed hint of
:mod:`ipydoc.access.return_hint`), the user's default server starts right away, and the
login that follows finds it up or nearly so (docs/cold_login.md, "A returning browser").

The page is shown to anyone, so nothing here is decided by the browser alone:

- the hint names an account that exists, is enabled and was created when the hint says;
- the server is stopped (never a failed start retried, never one running or starting);
- there is room under ``spawn.max_running`` without stopping anybody (a paused server
  is never evicted for a start nobody has asked for yet);
- one such start per account at a time, cluster-wide (``prestart:{name}`` in Redis,
  :mod:`ipydoc.state.prestarts`); the login deletes the mark, wherever it happens;
- if no login came within ``spawn.prestart_grace`` seconds and the server had no traffic,
  it is stopped again (event ``prestart-unused``) and the account gets no other start from
  the login page for :data:`COOLDOWN` seconds.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.servers import metrics
from ipydoc.servers.manager import ServerManager
from ipydoc.servers.start_handle import StartFailed

#: After a start from the login page went unused: no other one for this long (seconds).
COOLDOWN = 600.0


class LoginPagePrestart:
    log = Logger()

    def __init__(self, manager: ServerManager, reactor: Any, grace: float,
                 last_traffic: Callable[[str], float | None],
                 cooldown: float = COOLDOWN) -> None:
        self.manager = manager
        self.reactor = reactor
        self.grace = grace
        self.cooldown = cooldown
        self.last_traffic = last_traffic  # this daemon's proxied traffic not yet in Redis

    def consider_soon(self, name: str, created_ms: int) -> None:
        """:meth:`consider` in the background: the login page is never held for it."""
        d = defer.Deferred.fromCoroutine(self.consider(name, created_ms))
        d.addErrback(lambda f: self.log.failure("start from the login page for {name}", f,
                                                name=name))

    async def consider(self, name: str, created_ms: int) -> str:
        """Start ``name``'s stopped server if every rule of the module doc allows it;
        the outcome (``started`` or why not)."""
        outcome = await self._consider(name, created_ms)
        metrics.PRESTARTS.labels(outcome).inc()
        return outcome

    async def _consider(self, name: str, created_ms: int) -> str:
        store = self.manager.store
        user = await store.get_user(name)
        if user is None or user.disabled or int(user.created * 1000) != created_ms:
            return "no-account"
        if self.manager.is_busy(name) or name in self.manager.routes:
            return "not-stopped"
        server = await store.get_server(name)
        if server is not None and server.state != "stopped":
            return "not-stopped"
        cap = self.manager.limits.max_running
        if cap and self.manager.running_count() >= cap:
            return "full"
        if not await store.mark_prestart(name, self.grace + self.cooldown):
            return "cooldown"
        began = time.time()
        await store.add_server_event("prestart", name, "started from the login page of a "
                                                       "returning browser")
        d = defer.Deferred.fromCoroutine(self.manager.start(name))
        d.addErrback(lambda f: f.trap(StartFailed))  # the spawn page shows it
        d.addErrback(lambda f: self.log.failure("start of {name}", f, name=name))
        self.reactor.callLater(self.grace, self._unless_used, name, began)
        return "started"

    def _unless_used(self, name: str, began: float) -> defer.Deferred[None]:
        d = defer.Deferred.fromCoroutine(self._stop_unless_used(name, began))
        d.addErrback(lambda f: self.log.failure("unused start of {name}", f, name=name))
        return d

    async def _stop_unless_used(self, name: str, began: float) -> None:
        """The grace is over: stop the server if nobody logged in and it had no traffic."""
        store = self.manager.store
        seen = [t for t in (self.last_traffic(name), await store.last_activity(name)) if t]
        if seen and max(seen) >= began:
            await store.prestart_used(name)  # in use (a session of another browser)
            return
        if not await store.claim_unused_prestart(name, self.cooldown):
            return  # logged in meanwhile (on any daemon)
        metrics.PRESTARTS.labels("unused").inc()
        self.log.info("stopping {name}'s server: started from the login page, no login "
                      "within {s:g} s (spawn.prestart_grace)", name=name, s=self.grace)
        await self.manager.stop(name, f"no login within {self.grace:g} s of a start from "
                                      "the login page (spawn.prestart_grace)",
                                kind="prestart-unused")
