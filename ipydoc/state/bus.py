"""Pub/sub between the daemons of one site: "this changed in Redis, drop what you cached".

Each daemon keeps things in memory for speed (the route table, a few seconds of validated
sessions, open WebSockets by credential).  When one daemon changes the state behind them
it publishes a small message on the channel ``ipydoc:cluster`` (JSON ``{"from", "kind",
"name"}``); every other daemon reacts at once: ``server NAME`` → reload NAME's route from
Redis, ``sessions-ended`` → empty the session caches and recheck open exchanges, and so on
(the listeners decide).  A message only ever says *what to re-read*: Redis stays the
truth, so a lost or duplicated message costs a reload, never a wrong answer.

The subscription has its own connection (a subscribed Redis connection can do nothing
else).  It reconnects by itself with backoff; after every (re)connection the
``on_connected`` listeners run with ``reconnected=True`` so they reload everything
they may have missed while it was down.  Messages this daemon sent itself are not
delivered back to it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import txredisapi
from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.state.keys import CLUSTER_CHANNEL
from ipydoc.state.leases import DAEMON_ID

MAX_MESSAGE = 4096  # bytes; anything longer on our channel is not ours

MessageListener = Callable[[str, str], Any]       # (kind, name)
ConnectedListener = Callable[[bool], Any]         # (reconnected)


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:
        self.factory.bus._received(message)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    protocol = _Subscriber
    initialDelay = 0.25
    factor = 2.0
    maxDelay = 5.0

    def __init__(self, bus: Bus, password: str | None, dbid: int | None) -> None:
        super().__init__()
        self.bus = bus
        self.password = password
        self.dbid = dbid
        self.convertNumbers = False

    def buildProtocol(self, addr: Any) -> Any:
        p = super().buildProtocol(addr)
        p.whenConnected().addCallback(self.bus._connected)
        return p


class Bus:
    """Publish through the store's pool (``redis_source()``); receive on a subscriber
    connection to ``endpoint`` once :meth:`start` is called."""

    log = Logger()

    def __init__(self, redis_source: Callable[[], Any], endpoint: Any,
                 password: str | None = None, dbid: int | None = None) -> None:
        self._redis_source = redis_source
        self._endpoint = endpoint
        self._factory = _SubscriberFactory(self, password, dbid)
        self._listeners: list[MessageListener] = []
        self._on_connected: list[ConnectedListener] = []
        self._connections = 0
        self.subscribed: defer.Deferred[None] = defer.Deferred()
        self.received = 0

    # -- listeners ---------------------------------------------------------------------------
    def listen(self, listener: MessageListener) -> None:
        """``listener(kind, name)`` for each message another daemon sends."""
        self._listeners.append(listener)

    def on_connected(self, listener: ConnectedListener) -> None:
        """``listener(reconnected)`` after each subscription (reload what may be missed)."""
        self._on_connected.append(listener)

    # -- sending -----------------------------------------------------------------------------
    async def publish(self, kind: str, name: str = "") -> None:
        """Tell the other daemons; a failure is logged, not raised (Redis is the truth:
        the others reload everything when their subscription comes back)."""
        message = json.dumps({"from": DAEMON_ID, "kind": kind, "name": name})
        try:
            await self._redis_source().publish(CLUSTER_CHANNEL, message)
        except Exception as e:  # noqa: BLE001
            self.log.warn("cannot tell the other daemons {kind} {name}: {e}", kind=kind,
                          name=name, e=e)

    def tell(self, kind: str, name: str = "") -> defer.Deferred[None]:
        """:meth:`publish` from synchronous code."""
        return defer.Deferred.fromCoroutine(self.publish(kind, name))

    # -- receiving ---------------------------------------------------------------------------
    def start(self) -> None:
        self._factory.startConnecting(self._endpoint)

    def stop(self) -> defer.Deferred[Any]:
        return self._factory.disconnect()

    def _connected(self, proto: Any) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self._subscribe(proto))

    async def _subscribe(self, proto: Any) -> None:
        try:
            await proto.subscribe(CLUSTER_CHANNEL)
        except Exception as e:  # noqa: BLE001 - the connection drops; we come back
            self.log.warn("cannot subscribe to {c}: {e}", c=CLUSTER_CHANNEL, e=e)
            proto.transport.loseConnection()
            return
        self._connections += 1
        reconnected = self._connections > 1
        if reconnected:
            self.log.info("subscribed to {c} again; reloading routes and caches",
                          c=CLUSTER_CHANNEL)
        if not self.subscribed.called:
            self.subscribed.callback(None)
        for listener in list(self._on_connected):
            self._call(listener, reconnected)

    def _received(self, raw: Any) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if not isinstance(raw, str) or len(raw) > MAX_MESSAGE:
            return
        try:
            message = json.loads(raw)
            sender, kind, name = message["from"], message["kind"], message.get("name", "")
        except (ValueError, KeyError, TypeError):
            return
        if sender == DAEMON_ID or not isinstance(kind, str) or not isinstance(name, str):
            return
        self.received += 1
        for listener in list(self._listeners):
            self._call(listener, kind, name)

    def _call(self, listener: Callable[..., Any], *args: Any) -> None:
        try:
            result = listener(*args)
        except Exception:  # noqa: BLE001 - one listener must not starve the others
            self.log.failure("cluster message listener")
            return
        if isinstance(result, defer.Deferred):
            result.addErrback(lambda f: self.log.failure("cluster message listener", f))
