"""Following pauses of our Swarm servers: ``pause``/``unpause`` of their containers, done by
ipydoc or outside it (``docker -H NODE pause``), as :class:`BackendEvent` with the
service's id (what :attr:`ServerInfo.id` is on Swarm).

Neither the manager's events nor the task list say anything of a paused container (its
task stays ``running``), and inspecting every server's container on every task poll
would cost a call per server twice a second.  So the events of the node engines
themselves are followed: one container-events stream (``event`` pause/unpause, our labels)
on the manager's engine and on each engine of ``swarm.node_engines``; Swarm labels each
task's container with its service's id and name.  Each stream reconnects with backoff
(:mod:`ipydoc.backends.event_stream`) and asks for a replay since its last event; when a
node engine's stream comes back, ``on_open(True)`` tells the caller to reconcile (``list``
reports who is paused).  Pauses on a node whose engine is not known are not seen.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from ipydoc.backends.base import BackendEvent
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import key_from_labels
from ipydoc.backends.docker_formats import label_filters
from ipydoc.backends.event_stream import ReconnectingStream

ACTIONS = ("pause", "unpause")
SERVICE_ID = "com.docker.swarm.service.id"
SERVICE_NAME = "com.docker.swarm.service.name"


class EnginePauseStream(ReconnectingStream):
    """The pause/unpause events of our services' containers on one engine."""

    what = "swarm pause events"

    def __init__(self, reactor: Any, api: DockerAPI, labels: dict[str, str | None],
                 name_prefix: str) -> None:
        super().__init__(reactor, api)
        self.labels = labels
        self.name_prefix = name_prefix
        self._last_time = 0  # timeNano of the last event, for the replay after a reconnect
        self._last_keys: set[tuple[str, str]] = set()

    def _open(self, opened: Callable[[], None]) -> Deferred:
        since = None
        if self._last_time:
            since = f"{self._last_time // 10**9}.{self._last_time % 10**9:09d}"
        filters = {"type": ["container"], "event": list(ACTIONS),
                   "label": label_filters(self.labels)}
        return self.api.events(filters, self._on_event, since=since, on_open=opened)

    def _on_event(self, ev: dict) -> None:
        action = ev.get("Action") or ev.get("status")
        if action not in ACTIONS:
            return
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        user, sid = key_from_labels(attrs), attrs.get(SERVICE_ID)  # the server key
        if not user or not sid or attrs.get(SERVICE_NAME) != f"{self.name_prefix}{user}":
            return  # not a task of one of our services
        t = int(ev.get("timeNano") or 0)
        key = (sid, action)
        if t and (t < self._last_time or (t == self._last_time and key in self._last_keys)):
            return  # replayed after a reconnect: already delivered
        if t > self._last_time:
            self._last_time, self._last_keys = t, set()
        self._last_keys.add(key)
        if self._listener is not None:
            self._listener(BackendEvent(name=user, id=sid, action=action))


class PauseEvents:
    """One :class:`EnginePauseStream` per engine ipydoc knows."""

    def __init__(self, reactor: Any, engines: list[DockerAPI], labels: dict[str, str | None],
                 name_prefix: str) -> None:
        self.streams = [EnginePauseStream(reactor, e, labels, name_prefix) for e in engines]

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        def reopened(reconnected: bool) -> None:
            # The first connection is the main stream's business (its on_open); only a
            # node engine coming back may have missed pauses.
            if reconnected and on_open is not None:
                on_open(True)

        for stream in self.streams:
            stream.follow(listener, reopened)

    def stop_following(self) -> None:
        for stream in self.streams:
            stream.stop_following()
