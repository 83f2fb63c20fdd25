"""Following the Engine's events stream: start/die/destroy/pause/unpause of our containers, for
:meth:`ipydoc.backends.base.Backend.follow`.

The stream reconnects by itself (:mod:`ipydoc.backends.event_stream`, backing off from
0.5 s to 10 s) and asks for a replay since the last event it saw;
replayed events already delivered are dropped.  Events missed while it was down (a dockerd
restart forgets them) are the caller's to reconcile, told through ``on_open(reconnected)``.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred

from ipydoc.backends.base import BackendEvent
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import USER_LABEL, key_from_labels
from ipydoc.backends.event_stream import ReconnectingStream

EVENT_ACTIONS = ("start", "die", "destroy", "pause", "unpause")


class DockerEvents(ReconnectingStream):
    """The events of the containers named ``{name_prefix}KEY`` and labelled with the
    owner and server name of the server key KEY (events name the server by its key)."""

    what = "Docker events"

    def __init__(self, reactor: Any, api: DockerAPI, name_prefix: str) -> None:
        super().__init__(reactor, api)
        self.name_prefix = name_prefix
        self._last_time = 0  # timeNano of the last event seen, for replay after a reconnect
        self._last_keys: set[tuple] = set()

    def _open(self, opened: Callable[[], None]) -> Deferred:
        since = None
        if self._last_time:
            since = f"{self._last_time // 10**9}.{self._last_time % 10**9:09d}"
        filters = {"type": ["container"], "label": [USER_LABEL], "event": list(EVENT_ACTIONS)}
        return self.api.events(filters, self._on_event, since=since, on_open=opened)

    def _on_event(self, ev: dict) -> None:
        action = ev.get("Action") or ev.get("status")
        if ev.get("Type", "container") != "container" or action not in EVENT_ACTIONS:
            return
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        user = key_from_labels(attrs)
        if not user or attrs.get("name") != f"{self.name_prefix}{user}":
            return  # another deployment's container, or not one of ours
        cid = actor.get("ID") or ev.get("id") or ""
        t = ev.get("timeNano") or 0
        key = (cid, action)
        if t and t < self._last_time:
            return  # replayed after a reconnect, already delivered
        if t == self._last_time and key in self._last_keys:
            return
        if t > self._last_time:
            self._last_time = t
            self._last_keys = set()
        self._last_keys.add(key)
        if self._listener is not None:
            self._listener(BackendEvent(name=user, id=cid, action=action))
