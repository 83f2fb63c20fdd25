"""Redis for the daemon: connect to a configured server, or run our own child.

With ``redis.url`` empty the daemon runs ``redis-server`` as a child process listening only
on a unix socket in the state directory (mode 0700, no TCP port), with append-only
persistence on, so sessions and server records survive a restart of the daemon.

If that child dies (crash, OOM kill) it is started again (backoff 0.5 s doubling to 10 s,
each restart logged); its data comes back from the append-only file.  The connection pool
reconnects by itself; while no connection is up, commands fail at once with
``txredisapi.ConnectionError`` (:data:`StoreUnavailable`; see :class:`FailFast`) instead
of waiting, and a server that stops answering fails them after ``REPLY_TIMEOUT`` seconds
(``TimeoutError``, a ``ConnectionError``).  Pages and the proxy turn that error into a 503.

Several daemons over one Redis (``redis.url``, forms in :mod:`ipydoc.state.redis_url`,
Sentinel included): this service also runs the pub/sub :class:`~ipydoc.state.bus.Bus`
between them, and at start stores a fingerprint of the signing secret in Redis (or
compares it with the one there): daemons whose secrets differ would each refuse the
others' cookies, so a daemon with another secret refuses to start and says why.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal
from pathlib import Path
from typing import Any

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger

from ipydoc.state.bus import Bus
from ipydoc.state.keys import SECRET_FINGERPRINT
from ipydoc.state.redis_url import RedisTarget, parse
from ipydoc.state.store import Store

REDIS_CONF = """\
# written by ipydoc on each start; edits are overwritten
port 0
unixsocket {socket}
unixsocketperm 700
dir {dir}
daemonize no
pidfile {dir}/redis.pid
logfile ""
appendonly yes
appendfsync everysec
save 3600 1 300 100 60 10000
"""

REPLY_TIMEOUT = 5.0  # seconds without an answer before a command fails (Redis is hung)
RESTART_DELAY = (0.5, 10.0)  # first and longest wait before restarting a dead embedded redis
UNAVAILABLE = "ipydoc's state store (Redis) is unavailable; retrying"
SUBSCRIBE_WAIT = 5.0  # seconds a start waits for the pub/sub subscription before going on
#: Set by ``ipydoc serve`` for its workers: the socket of the embedded redis-server the
#: supervisor runs (it outlives each worker), so a worker connects instead of spawning one.
SUPERVISED_REDIS_ENV = "IPYDOC_SUPERVISED_REDIS"


def redis_url(configured: str) -> str:
    """The URL to connect to: ``redis.url``, else the supervisor's embedded server when
    this process is an ``ipydoc serve`` worker, else "" (spawn our own)."""
    sock = os.environ.get(SUPERVISED_REDIS_ENV, "")
    return configured or (f"unix://{sock}" if sock else "")


def secret_fingerprint(secret: bytes) -> str:
    """What Redis may know of the signing secret: an HMAC of a fixed text under it."""
    return hmac.new(secret, b"ipydoc secret fingerprint", hashlib.sha256).hexdigest()[:32]


class SecretMismatch(RuntimeError):
    """Another daemon over this Redis signs cookies with another secret."""


class _SentinelMaster:
    """A client endpoint that asks the Sentinels for the master before each connection."""

    def __init__(self, sentinel: Any, service: str, reactor: Any) -> None:
        self.sentinel = sentinel
        self.service = service
        self.reactor = reactor

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        d = self.sentinel.discover_master(self.service)
        return d.addCallback(lambda addr: HostnameEndpoint(
            self.reactor, addr[0], addr[1], timeout=10).connect(factory))

#: What a store call raises while Redis is down or hung (``TimeoutError`` is one too).
#: Outside :mod:`ipydoc.state` catch this name: txredisapi is imported only here, because
#: importing it installs the global reactor.
StoreUnavailable = txredisapi.ConnectionError


class FailFast:
    """The pool as the store sees it: a command fails at once while no connection is up.

    txredisapi's pool would queue it until a connection comes back, which holds a page or
    a proxied request for as long as Redis is down.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def __getattr__(self, method: str) -> Any:
        call = getattr(self._pool, method)
        factory = getattr(self._pool, "_factory", None)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if factory is not None and factory.size == 0:
                return defer.fail(txredisapi.ConnectionError(UNAVAILABLE))
            return call(*args, **kwargs)
        return wrapper


class _RedisChild(protocol.ProcessProtocol):
    log = Logger()

    def __init__(self) -> None:
        self.ended: defer.Deferred[None] = defer.Deferred()
        self.tail: list[str] = []

    def outReceived(self, data: bytes) -> None:
        """Kept (not logged) so a failed start can say why."""
        for line in data.decode(errors="replace").splitlines():
            self.tail = (self.tail + [line])[-20:]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        self.ended.callback(None)


def _kill_stale(pidfile: Path) -> None:
    """A redis-server left running by a daemon that was killed: stop it before we start ours."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if b"redis-server" in cmdline:
        os.kill(pid, signal.SIGTERM)


class RedisService(Service):
    """Owns the Redis connection pool (and the embedded server when there is one)."""

    name = "redis"
    log = Logger()

    def __init__(self, url: str, state_dir: Path, reactor: Any, command: str = "redis-server",
                 poolsize: int = 8, fingerprint: str = "") -> None:
        self.url = url
        self.target: RedisTarget | None = parse(url) if url else None
        self.fingerprint = fingerprint   # of the signing secret (empty: not checked)
        self.bus: Bus | None = None
        self._sentinel: Any = None
        self.state_dir = state_dir
        self.reactor = reactor
        self.command = command
        self.poolsize = poolsize
        self.pool: Any = None
        self.store: Store | None = None
        self._child: _RedisChild | None = None
        self._transport: Any = None
        self._stopping = False
        self._restart_delay = RESTART_DELAY[0]
        self._watchdog: LoopingCall | None = None

    @property
    def embedded(self) -> bool:
        return not self.url

    def describe(self) -> str:
        if self.embedded:
            return f"embedded redis at unix:{self.state_dir / 'redis' / 'redis.sock'}"
        assert self.target is not None
        return self.target.describe()

    def startService(self) -> defer.Deferred[None]:
        super().startService()
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self.embedded:
            sock = await self._spawn()
            self._watch_child()
            # dbid=None: no SELECT on (re)connect.  txredisapi stops reconnecting for good
            # when the SELECT of a new connection fails (e.g. times out on a hung server).
            self.pool = await txredisapi.UnixConnectionPool(
                str(sock), dbid=None, poolsize=self.poolsize, convertNumbers=False,
                replyTimeout=REPLY_TIMEOUT)
        else:
            self.pool = await self._connect_url()
        self._tune(self.pool)
        self.bus = Bus(lambda: self.store.redis if self.store else None,
                       self._subscriber_endpoint(),
                       password=self.target.password if self.target else None,
                       dbid=None)
        store = self.store = Store(FailFast(self.pool), self.reactor, bus=self.bus)
        self.bus.listen(lambda kind, name: store.sessions_ended_elsewhere()
                        if kind == "sessions-ended" else None)
        self.bus.on_connected(lambda again: store.sessions_ended_elsewhere() if again else None)
        await self.store.ping()
        self.log.info("connected to {what}", what=self.describe())
        if self.fingerprint:
            await self._check_secret(store)
        self.bus.start()
        try:  # messages sent from now on reach us (a timeout: go on, it reconnects)
            await self.bus.subscribed.addTimeout(SUBSCRIBE_WAIT, self.reactor)
        except defer.TimeoutError:
            self.log.warn("no pub/sub subscription to redis within {s} s; caches of other "
                          "daemons' changes may lag until it is up", s=SUBSCRIBE_WAIT)
        self._watchdog = LoopingCall(self._check_pool)
        self._watchdog.clock = self.reactor
        self._watchdog.start(1.0, now=False)

    async def _check_secret(self, store: Store) -> None:
        """Store our secret's fingerprint, or refuse to start when another is stored."""
        redis = store.redis
        await redis.execute_command("SET", SECRET_FINGERPRINT, self.fingerprint, "NX")
        stored = await redis.get(SECRET_FINGERPRINT)
        if stored != self.fingerprint:
            raise SecretMismatch(
                f"another ipydoc daemon using {self.describe()} signs cookies with a "
                f"different secret (server.state_dir/secret): every daemon of a site must "
                f"have the same secret file (share server.state_dir, or copy the file); "
                f"after replacing the secret on purpose, delete the Redis key "
                f"{SECRET_FINGERPRINT}")

    def _subscriber_endpoint(self) -> Any:
        """Where the pub/sub connection goes: the same Redis as the pool."""
        t = self.target
        if t is None:
            return UNIXClientEndpoint(self.reactor, str(self.state_dir / "redis" / "redis.sock"))
        if t.kind == "unix":
            return UNIXClientEndpoint(self.reactor, t.path)
        if t.kind == "sentinel":
            return _SentinelMaster(self._sentinel, t.service, self.reactor)
        return HostnameEndpoint(self.reactor, t.host, t.port, timeout=10)

    @staticmethod
    def _tune(pool: Any) -> None:
        """Reconnect sooner than txredisapi's default (1 s, ×e, up to 10 s)."""
        factory = getattr(pool, "_factory", None)
        if factory is not None:
            factory.initialDelay = 0.25
            factory.factor = 2.0
            factory.maxDelay = 5.0

    def _check_pool(self) -> defer.Deferred[None] | None:
        """The pool reconnects by itself, except when txredisapi gave up on it (a failed
        AUTH/SELECT on a new connection stops the whole pool): then make a new one."""
        factory = getattr(self.pool, "_factory", None)
        if self._stopping or factory is None or not factory.stopped or factory.disconnectCalled:
            return None
        self.log.warn("redis connection pool stopped reconnecting; opening a new one")
        return defer.Deferred.fromCoroutine(self._renew_pool()).addErrback(
            lambda f: self.log.failure("could not reopen the redis pool", f))

    async def _renew_pool(self) -> None:
        old = self.pool
        if self.embedded:
            pool = await txredisapi.UnixConnectionPool(
                str(self.state_dir / "redis" / "redis.sock"), dbid=None,
                poolsize=self.poolsize, convertNumbers=False, replyTimeout=REPLY_TIMEOUT)
        else:
            pool = await self._connect_url()
        self._tune(pool)
        self.pool = pool
        if self.store is not None:
            self.store.redis = FailFast(pool)
        try:
            await old.disconnect()
        except Exception:  # noqa: BLE001 - the old pool is gone either way
            pass

    def _watch_child(self) -> None:
        child = self._child
        assert child is not None
        child.ended.addCallback(lambda _: self._child_ended(child))

    def _child_ended(self, child: _RedisChild) -> None:
        if self._stopping or child is not self._child:
            return
        delay = self._restart_delay
        self._restart_delay = min(delay * 2, RESTART_DELAY[1])
        self.log.error("embedded redis-server exited ({tail}); restarting it in {delay} s",
                       tail=" | ".join(child.tail[-3:]) or "no output", delay=delay)
        deferLater(self.reactor, delay, lambda: None).addCallback(
            lambda _: defer.Deferred.fromCoroutine(self._restart()))

    async def _restart(self) -> None:
        if self._stopping:
            return
        try:
            await self._spawn()
        except Exception as e:  # noqa: BLE001 - try again later
            self.log.error("restarting embedded redis-server failed: {e}", e=e)
            if self._child is not None and not self._child.ended.called:
                try:  # started but never answered: end it, which schedules the next try
                    self._transport.signalProcess("KILL")
                except error.ProcessExitedAlready:
                    pass
            self._watch_child()
            return
        self._watch_child()
        self.log.info("embedded redis-server restarted")
        child = self._child
        deferLater(self.reactor, 30, lambda: None).addCallback(
            lambda _: self._reset_delay(child))

    def _reset_delay(self, child: _RedisChild | None) -> None:
        """Up for 30 s: the next crash is retried quickly again."""
        if child is self._child and child is not None and not child.ended.called:
            self._restart_delay = RESTART_DELAY[0]

    async def _connect_url(self) -> Any:
        t = self.target
        assert t is not None
        if t.kind == "unix":
            return await txredisapi.UnixConnectionPool(
                t.path, dbid=t.db or None, poolsize=self.poolsize, password=t.password,
                convertNumbers=False, replyTimeout=REPLY_TIMEOUT)
        if t.kind == "sentinel":
            if self._sentinel is None:
                self._sentinel = txredisapi.Sentinel(list(t.sentinels))
            handler = self._sentinel.master_for(
                t.service, dbid=t.db or None, poolsize=self.poolsize, password=t.password,
                convertNumbers=False, replyTimeout=REPLY_TIMEOUT)
            await handler._factory.deferred  # the whole pool is connected
            return handler
        return await txredisapi.ConnectionPool(
            t.host, t.port, dbid=t.db or None, poolsize=self.poolsize,
            password=t.password, convertNumbers=False, replyTimeout=REPLY_TIMEOUT,
            connectTimeout=10)

    async def _spawn(self) -> Path:
        rdir = self.state_dir / "redis"
        rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(rdir, 0o700)
        sock = rdir / "redis.sock"
        _kill_stale(rdir / "redis.pid")
        if self._child is not None and self._child.ended.called:
            (rdir / "redis.pid").unlink(missing_ok=True)  # ours died without removing it
        conf = rdir / "redis.conf"
        conf.write_text(REDIS_CONF.format(socket=sock, dir=rdir))
        os.chmod(conf, 0o600)
        for _ in range(100):  # a stale server shutting down still holds its socket
            if not (rdir / "redis.pid").exists():
                break
            await deferLater(self.reactor, 0.05, lambda: None)
        self._child = _RedisChild()
        self._transport = self.reactor.spawnProcess(
            self._child, self.command, [self.command, str(conf)], env=dict(os.environ),
            path=str(rdir))
        for _ in range(400):
            if self._child.ended.called:
                raise RuntimeError("embedded redis-server exited at start: "
                                   + " | ".join(self._child.tail[-5:]))
            if sock.exists():
                try:
                    pool = await txredisapi.UnixConnectionPool(
                        str(sock), poolsize=1, reconnect=False, convertNumbers=False)
                    if await pool.ping():
                        await pool.disconnect()
                        return sock
                except Exception:  # noqa: BLE001 - not ready yet, keep polling
                    pass
            await deferLater(self.reactor, 0.025, lambda: None)
        raise RuntimeError(f"embedded redis-server did not open {sock} within 10 s")

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._stopping = True
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        if self.bus is not None:
            try:
                await self.bus.stop()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        if self._sentinel is not None:
            try:
                await self._sentinel.disconnect()
            except Exception:  # noqa: BLE001
                pass
        if self.pool is not None:
            try:
                await self.pool.disconnect()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        if self._child is not None and not self._child.ended.called:
            try:
                self._transport.signalProcess("TERM")  # redis saves its data on SIGTERM
            except error.ProcessExitedAlready:
                pass
            await self._child.ended
