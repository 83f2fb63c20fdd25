"""Redis for the daemon: connect to a configured server, or run our own child.

With ``redis.url`` empty the daemon runs ``redis-server`` as a child process listening only
on a unix socket in the state directory (mode 0700, no TCP port), with append-only
persistence on, so sessions and server records survive a restart of the daemon.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import txredisapi
from twisted.application.service import Service
from twisted.internet import defer, error, protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger

from ipydoc.store import Store

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
                 poolsize: int = 8) -> None:
        self.url = url
        self.state_dir = state_dir
        self.reactor = reactor
        self.command = command
        self.poolsize = poolsize
        self.pool: Any = None
        self.store: Store | None = None
        self._child: _RedisChild | None = None
        self._transport: Any = None

    @property
    def embedded(self) -> bool:
        return not self.url

    def describe(self) -> str:
        if self.embedded:
            return f"embedded redis at unix:{self.state_dir / 'redis' / 'redis.sock'}"
        u = urlsplit(self.url)
        return f"redis at {u.scheme}://{u.hostname or ''}{':' if u.port else ''}{u.port or ''}{u.path}"

    def startService(self) -> defer.Deferred[None]:
        super().startService()
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        if self.embedded:
            sock = await self._spawn()
            self.pool = await txredisapi.UnixConnectionPool(
                str(sock), dbid=0, poolsize=self.poolsize, convertNumbers=False, replyTimeout=30)
        else:
            self.pool = await self._connect_url()
        self.store = Store(self.pool, self.reactor)
        await self.store.ping()
        self.log.info("connected to {what}", what=self.describe())

    async def _connect_url(self) -> Any:
        u = urlsplit(self.url)
        password = unquote(u.password) if u.password else None
        if u.scheme == "unix":
            db = int(parse_qs(u.query).get("db", ["0"])[0])
            return await txredisapi.UnixConnectionPool(
                u.path, dbid=db, poolsize=self.poolsize, password=password,
                convertNumbers=False, replyTimeout=30)
        db = int(u.path.strip("/") or 0)
        return await txredisapi.ConnectionPool(
            u.hostname or "localhost", u.port or 6379, dbid=db, poolsize=self.poolsize,
            password=password, convertNumbers=False, replyTimeout=30, connectTimeout=10)

    async def _spawn(self) -> Path:
        rdir = self.state_dir / "redis"
        rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(rdir, 0o700)
        sock = rdir / "redis.sock"
        _kill_stale(rdir / "redis.pid")
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
