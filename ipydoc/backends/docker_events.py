"""Following the Engine's events stream: start/die/destroy of our containers, for
:meth:`ipydoc.backends.base.Backend.follow`.

The stream drops whenever dockerd restarts or the socket hiccups, so it reconnects by
itself (backing off from 0.5 s to 10 s) and asks for a replay since the last event it saw;
replayed events already delivered are dropped.  Events missed while it was down (a dockerd
restart forgets them) are the caller's to reconcile, told through ``on_open(reconnected)``.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger

from ipydoc.backends.base import BackendError, BackendEvent
from ipydoc.backends.docker_api import DockerAPI
from ipydoc.backends.docker_body import USER_LABEL

log = Logger()

EVENT_ACTIONS = ("start", "die", "destroy")


class DockerEvents:
    """The events of the containers named ``{name_prefix}USER`` and labelled with USER."""

    def __init__(self, reactor: Any, api: DockerAPI, name_prefix: str) -> None:
        self.reactor = reactor
        self.api = api
        self.name_prefix = name_prefix
        self._listener: Callable[[BackendEvent], None] | None = None
        self._on_open: Callable[[bool], None] | None = None
        self._opened_before = False
        self._following = False
        self._stream: Deferred | None = None
        self._retry = None
        self._backoff = 0.5
        self._last_time = 0  # timeNano of the last event seen, for replay after a reconnect
        self._last_keys: set[tuple] = set()

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        """Call ``listener`` for start/die/destroy of our containers; reconnects by itself.

        ``on_open(reconnected)`` is called each time the stream is connected."""
        self._listener = listener
        self._on_open = on_open
        if self._following:
            return
        self._following = True
        self._backoff = 0.5
        self._connect()

    def stop_following(self) -> None:
        self._following = False
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None

    def _connect(self) -> None:
        self._retry = None
        if not self._following:
            return
        since = None
        if self._last_time:
            since = f"{self._last_time // 10**9}.{self._last_time % 10**9:09d}"
        filters = {"type": ["container"], "label": [USER_LABEL], "event": list(EVENT_ACTIONS)}

        def opened() -> None:
            self._backoff = 0.5
            reconnected, self._opened_before = self._opened_before, True
            if reconnected:
                log.info("Docker events stream at {host} reconnected", host=self.api.host)
            if self._on_open is not None:
                self._on_open(reconnected)

        d = self.api.events(filters, self._on_event, since=since, on_open=opened)
        self._stream = d
        d.addCallbacks(self._ended, self._failed)

    def _ended(self, _: Any) -> None:
        self._stream = None
        if self._following:
            log.info("the Docker events stream ended; reconnecting")
            self._schedule()

    def _failed(self, f: Any) -> None:
        self._stream = None
        if f.check(CancelledError) or not self._following:
            return
        msg = f.value.message if f.check(BackendError) else f.getErrorMessage()
        log.warn("Docker events: {msg}; retrying in {s:g} s", msg=msg, s=self._backoff)
        self._schedule()

    def _schedule(self) -> None:
        delay = self._backoff
        self._backoff = min(self._backoff * 2, 10.0)
        self._retry = self.reactor.callLater(delay, self._connect)

    def _on_event(self, ev: dict) -> None:
        action = ev.get("Action") or ev.get("status")
        if ev.get("Type", "container") != "container" or action not in EVENT_ACTIONS:
            return
        actor = ev.get("Actor") or {}
        attrs = actor.get("Attributes") or {}
        user = attrs.get(USER_LABEL)
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
