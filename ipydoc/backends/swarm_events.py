"""Following a swarm: task deaths and node outages as :class:`BackendEvent`, for
:meth:`ipydoc.backends.swarm.SwarmBackend.follow`.

A manager's ``/events`` stream has service and node events but no task events, and a task
on a node that went down stays "running" in the manager's books.  So two sources:

* the events stream (``type`` service and node), reconnecting with backoff
  (:mod:`ipydoc.backends.event_stream`, as the Docker backend's), whose
  ``on_open(reconnected)`` tells the caller to reconcile; each event only makes the watch
  look at once;
* a light task watch: while we have services (and whenever kicked), every ``poll`` seconds
  one ``GET /services``, ``GET /tasks`` (of those services) and ``GET /nodes``.  A server is
  *alive* while its task runs on a ready node; alive → not alive is a ``die`` (with the
  reason: the task's error, or the node that went down), a service that disappears is a
  ``destroy``, not alive → alive a ``start``.  The first look only learns the baseline:
  what was before following is the reconcile's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent
from ipydoc.backends.docker_body import MANAGED_LABEL, USER_LABEL, key_from_labels
from ipydoc.backends.docker_formats import label_filters
from ipydoc.backends.event_stream import ReconnectingStream
from ipydoc.backends.swarm_api import SwarmAPI
from ipydoc.backends.swarm_body import ENDED, RUNNING, ServiceBody, current_task
from ipydoc.backends.swarm_placement import Node, unusable_message

log = Logger()


@dataclass(frozen=True)
class Seen:
    """One of our services as the last look saw it."""

    id: str
    alive: bool


class SwarmEvents(ReconnectingStream):
    """Task and node changes of our services, as BackendEvents."""

    what = "swarm events"

    def __init__(self, reactor: Any, api: SwarmAPI, body: ServiceBody, poll: float,
                 labels: dict[str, str]) -> None:
        super().__init__(reactor, api)
        self.body = body
        self.poll = poll
        self.labels: dict[str, str | None] = {**labels, MANAGED_LABEL: "1", USER_LABEL: None}
        self._timer: Any = None
        self._looking = False
        self._again = False
        self._seen: dict[str, Seen] | None = None  # None: no baseline yet

    # -- following --------------------------------------------------------------------

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        first = not self._following
        super().follow(listener, on_open)
        if first:
            self.kick()

    def stop_following(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        super().stop_following()

    def kick(self) -> None:
        """Look now (a start or stop of ours, an event of the stream)."""
        if not self._following:
            return
        if self._looking:
            self._again = True
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.reactor.callLater(0, self._look)

    # -- the events stream (reconnecting: ipydoc.backends.event_stream) ----------------

    def _open(self, opened: Callable[[], None]) -> Deferred:
        return self.api.events({"type": ["service", "node"]}, lambda _ev: self.kick(),
                               on_open=opened)

    def _connected(self, reconnected: bool) -> None:
        self.kick()

    # -- the task watch ---------------------------------------------------------------

    def _look(self) -> None:
        self._timer = None
        if not self._following:
            return
        self._looking = True
        d = Deferred.fromCoroutine(self._compare())
        d.addErrback(self._look_failed)
        d.addBoth(self._looked)

    def _look_failed(self, f: Any) -> None:
        msg = f.value.message if f.check(BackendError) else f.getErrorMessage()
        log.warn("swarm task watch: {msg}", msg=msg)

    def _looked(self, _: Any) -> None:
        self._looking = False
        if not self._following:
            return
        if self._again:
            self._again = False
            self._timer = self.reactor.callLater(0, self._look)
        elif self._seen:  # only while we have services
            self._timer = self.reactor.callLater(self.poll, self._look)

    async def _compare(self) -> None:
        services = [s for s in await self.api.list_services(self.labels) if self.body.ours(s)]
        now: dict[str, Seen] = {}
        why: dict[str, str] = {}
        if services:
            tasks = await self.api.list_tasks({"label": label_filters(self.labels)})
            nodes = {n.id: n for n in map(Node.from_api, await self.api.list_nodes())}
            by_service: dict[str, list[dict]] = {}
            for t in tasks:
                by_service.setdefault(t.get("ServiceID", ""), []).append(t)
            for s in services:
                name = key_from_labels((s.get("Spec") or {}).get("Labels") or {})
                task = current_task(by_service.get(s["ID"], []))
                alive, why[name] = self._alive(name, task, nodes)
                now[name] = Seen(s["ID"], alive)
        before, self._seen = self._seen, now
        if before is None:
            return
        for name, seen in now.items():
            old = before.get(name)
            if old is not None and old.id == seen.id and old.alive and not seen.alive:
                self._emit(BackendEvent(name, seen.id, "die", reason=why.get(name, "")))
            elif seen.alive and (old is None or old.id != seen.id or not old.alive):
                self._emit(BackendEvent(name, seen.id, "start"))
            if old is not None and old.id != seen.id:
                self._emit(BackendEvent(name, old.id, "destroy"))
        for name, old in before.items():
            if name not in now:
                self._emit(BackendEvent(name, old.id, "destroy"))

    def _alive(self, name: str, task: dict | None, nodes: dict[str, Node]) -> tuple[bool, str]:
        """Is the server up, and if not, why (for the user's page)?"""
        if task is None:
            return False, ""
        status = task.get("Status") or {}
        state = status.get("State")
        node = nodes.get(task.get("NodeID") or "")
        if state == RUNNING and node is not None and node.state != "ready":
            return False, unusable_message(name, node, node.hostname)
        if state == RUNNING and task.get("DesiredState") == RUNNING:
            return True, ""
        if state in ENDED:
            detail = status.get("Err") or status.get("Message") or state
            return False, f"it ended on node {node.hostname if node else '?'}: {detail}"
        return False, ""

    def _emit(self, event: BackendEvent) -> None:
        if self._listener is not None:
            self._listener(event)
