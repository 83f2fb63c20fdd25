"""Redis snapshots for ``ipydoc backup`` / ``ipydoc restore`` (run in the CLI process).

Taking one: ``redis-cli --rdb FILE``, Redis's own replication transfer of an RDB file: a
point-in-time image of the whole server, made by the server (a fork), so a busy daemon
is never paused.  It works for the embedded redis-server on its unix socket and for
every ``redis.url`` form (the Sentinels are asked for the master first).  The password
goes to redis-cli in ``REDISCLI_AUTH``, never on its command line.  A managed Redis that
forbids ``SYNC`` cannot be snapshotted this way (use its own backups).

Putting one back: a throw-away ``redis-server`` is started on the RDB (temporary
directory, unix socket, no port, no persistence) and every ``ipydoc:*`` key is copied
into the target with ``DUMP`` / ``PTTL`` / ``RESTORE`` (bytes as they are:
``charset=None``), so keys keep their types and expiry and nothing but ipydoc's keys is
touched.  The daemons' leases and once-markers are never copied (they belong to the
processes that took them); sessions are skipped on request (:data:`SESSION_PREFIXES`).

The embedded target is the redis-server of the new state directory, started here with
the daemon's own configuration (:data:`ipydoc.state.redis_service.REDIS_CONF`), told to
persist (``SAVE``) and stopped again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import txredisapi
from twisted.internet import defer

from ipydoc.state import keys
from ipydoc.state.redis_service import REDIS_CONF
from ipydoc.state.redis_url import RedisTarget

SCAN_COUNT = 500
START_WAIT = 15.0  # seconds for a redis-server we start to answer
#: Longest unix socket path Redis takes (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 100


class SnapshotError(RuntimeError):
    """Redis could not be read or written; the message says why (no password in it)."""


def _prefix(key: str) -> str:
    return key[: key.rindex(":") + 1]


#: Keys of logins in progress or done: left out by ``restore --no-sessions``.
SESSION_PREFIXES = (keys.SESSION_PREFIX, _prefix(keys.user_sessions_key("x")),
                    _prefix(keys.host_session_key("x")), _prefix(keys.handoff_key("x")))
#: Keys owned by running daemons: never restored.
DAEMON_PREFIXES = (_prefix(keys.lease_key("x")), _prefix(keys.once_key("x")))


def skip_key(key: str, sessions: bool) -> bool:
    """Whether restore leaves ``key`` out (``sessions``: restore sessions too)."""
    if key.startswith(DAEMON_PREFIXES):
        return True
    return not sessions and key.startswith(SESSION_PREFIXES)


def embedded_socket(state_dir: Path) -> Path:
    return state_dir / "redis" / "redis.sock"


# -- taking a snapshot -----------------------------------------------------------------------
def _cli(redis_cli: str, where: list[str], env: dict[str, str], *args: str,
         timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([redis_cli, *where, *args], capture_output=True, text=True,
                              env=env, timeout=timeout)
    except FileNotFoundError:
        raise SnapshotError(f"{redis_cli} not found (install redis-tools)") from None
    except subprocess.TimeoutExpired:
        raise SnapshotError(f"redis-cli {args[0]} did not finish within {timeout:g} s") from None


def _where(target: RedisTarget | None, socket: Path | None, redis_cli: str,
           env: dict[str, str]) -> list[str]:
    """redis-cli's connection options for the server (the Sentinels' master resolved)."""
    if target is None:
        assert socket is not None
        return ["-s", str(socket)]
    if target.kind == "unix":
        return ["-s", target.path]
    if target.kind == "tcp":
        return ["-h", target.host, "-p", str(target.port)]
    bare = {k: v for k, v in env.items() if k != "REDISCLI_AUTH"}
    for host, port in target.sentinels:
        out = _cli(redis_cli, ["-h", host, "-p", str(port)], bare,
                   "SENTINEL", "get-master-addr-by-name", target.service, timeout=10)
        lines = out.stdout.split()
        if out.returncode == 0 and len(lines) == 2 and lines[1].isdigit():
            return ["-h", lines[0], "-p", lines[1]]
    raise SnapshotError(f"no Sentinel of {target.describe()} named the master")


def take_rdb(target: RedisTarget | None, socket: Path | None, dest: Path,
             redis_cli: str = "redis-cli", timeout: float = 3600) -> None:
    """Write an RDB snapshot of the server (``target``, or the embedded one at
    ``socket``) to ``dest``."""
    env = dict(os.environ)
    env.pop("REDISCLI_AUTH", None)
    if target is not None and target.password:
        env["REDISCLI_AUTH"] = target.password
    where = _where(target, socket, redis_cli, env)
    if target is None:
        # ipydoc's own server has no replicas: no need to wait the default 5 s for more
        # of them before a diskless transfer (an external server's settings are its own).
        _cli(redis_cli, where, env, "CONFIG", "SET", "repl-diskless-sync-delay", "0")
    out = _cli(redis_cli, where, env, "--rdb", str(dest), timeout=timeout)
    if out.returncode != 0 or not dest.is_file() or dest.stat().st_size == 0:
        why = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or ["no output"]
        where_text = target.describe() if target else f"redis at unix:{socket}"
        raise SnapshotError(f"redis-cli --rdb from {where_text} failed: {why[0]}")
    os.chmod(dest, 0o600)


# -- redis-servers of our own ------------------------------------------------------------------
class LocalRedis:
    """A redis-server child of this process on a unix socket, started and stopped here."""

    def __init__(self, socket: Path, argv: list[str], cwd: Path,
                 socket_dir: Path | None = None) -> None:
        self.socket = socket
        self.argv = argv
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._socket_dir = socket_dir  # a private directory of ours, removed at stop

    def start(self) -> None:
        try:
            self.proc = subprocess.Popen(self.argv, cwd=self.cwd, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT)
        except FileNotFoundError:
            raise SnapshotError(f"{self.argv[0]} not found (install redis-server)") from None
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                raise SnapshotError("redis-server exited at start: "
                                    + " | ".join(out.strip().splitlines()[-3:]))
            if self.socket.exists() and _ping(self.socket):
                return
            time.sleep(0.05)
        self.stop()
        raise SnapshotError(f"redis-server did not answer on {self.socket} within "
                            f"{START_WAIT:g} s")

    def stop(self) -> None:
        """SIGTERM (redis persists what its config says on it) and wait."""
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)  # the socket's own dir
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def embedded(state_dir: Path, command: str = "redis-server") -> LocalRedis:
    """The state directory's own redis-server, configured as the daemon configures it."""
    rdir = state_dir / "redis"
    rdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    sock = rdir / "redis.sock"
    conf = rdir / "redis.conf"
    conf.write_text(REDIS_CONF.format(socket=sock, dir=rdir))
    os.chmod(conf, 0o600)
    return LocalRedis(sock, [command, str(conf)], rdir)


def embedded_running(state_dir: Path) -> bool:
    """Whether the state directory's redis-server answers (its daemon runs)."""
    sock = embedded_socket(state_dir)
    return sock.exists() and _ping(sock)


def _ping(sock: Path) -> bool:
    out = _cli("redis-cli", ["-s", str(sock)], dict(os.environ), "ping", timeout=10)
    return out.stdout.strip() == "PONG"


def throwaway(rdb: Path, workdir: Path, command: str = "redis-server") -> LocalRedis:
    """A redis-server that loads ``rdb`` and persists nothing (a source to copy from)."""
    workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if rdb.parent != workdir or rdb.name != "dump.rdb":
        shutil.copyfile(rdb, workdir / "dump.rdb")
    sock = workdir / "source.sock"
    socket_dir = None
    if len(os.fsencode(sock)) >= MAX_SOCKET_PATH:  # a deep state directory
        socket_dir = Path(tempfile.mkdtemp(prefix="ipydoc-restore-"))  # mode 0700
        sock = socket_dir / "source.sock"
    return LocalRedis(sock, [command, "--port", "0", "--unixsocket", str(sock),
                             "--unixsocketperm", "700", "--dir", str(workdir),
                             "--dbfilename", "dump.rdb", "--appendonly", "no", "--save", "",
                             "--daemonize", "no"], workdir, socket_dir)


# -- copying keys ------------------------------------------------------------------------------
async def connect(target: RedisTarget | None, socket: Path | None, db: int = 0) -> Any:
    """A one-connection client that reads and writes bytes as they are (``db``: the
    database on ``socket``; a target names its own)."""
    opts: dict[str, Any] = dict(poolsize=1, charset=None, convertNumbers=False,
                                replyTimeout=60, reconnect=False)
    try:
        if target is None:
            return await txredisapi.UnixConnectionPool(str(socket), dbid=db or None, **opts)
        db = target.db or None
        if target.kind == "unix":
            return await txredisapi.UnixConnectionPool(target.path, dbid=db,
                                                       password=target.password, **opts)
        if target.kind == "sentinel":
            sentinel = txredisapi.Sentinel(list(target.sentinels))
            opts.pop("reconnect")
            handler = sentinel.master_for(target.service, dbid=db, password=target.password,
                                          **opts)
            await handler._factory.deferred
            return handler
        return await txredisapi.ConnectionPool(target.host, target.port, dbid=db,
                                               password=target.password, connectTimeout=10,
                                               **opts)
    except Exception as e:  # noqa: BLE001 - any failure to connect is one message
        where = target.describe() if target else f"redis at unix:{socket}"
        raise SnapshotError(f"cannot connect to {where}: {e}") from None


async def _batches(redis: Any, pattern: str) -> Any:
    """The keys matching ``pattern``, one SCAN answer at a time."""
    cursor = b"0"
    while True:
        cursor, batch = await redis.execute_command("SCAN", cursor, "MATCH", pattern,
                                                    "COUNT", SCAN_COUNT)
        if batch:
            yield batch
        if cursor in (b"0", 0, "0"):
            return


async def has_ipydoc_keys(redis: Any) -> bool:
    async for _ in _batches(redis, keys.P + "*"):
        return True
    return False


async def _pipelined(redis: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """The answers of ``commands``, sent in one write (a pipeline), in order."""
    if not commands:
        return []
    pipe = await redis.pipeline()
    for command in commands:
        pipe.execute_command(*command)
    try:
        return await pipe.execute_pipeline()
    except defer.FirstError as e:
        raise e.subFailure.value from None


async def copy_keys(source: Any, target: Any, sessions: bool,
                    progress: Callable[[int], None] = lambda n: None) -> dict[str, int]:
    """Copy every ``ipydoc:*`` key of ``source`` into ``target`` (which must not have it):
    counts of ``copied`` and ``skipped`` keys.  A SCAN answer's keys go together: their
    DUMPs and PTTLs in one pipeline, then their RESTOREs in another."""
    copied = skipped = 0
    async for batch in _batches(source, keys.P + "*"):
        wanted = [k for k in batch if not skip_key(k.decode("utf-8", "replace"), sessions)]
        skipped += len(batch) - len(wanted)
        answers = await _pipelined(source, [c for k in wanted
                                            for c in (("DUMP", k), ("PTTL", k))])
        kept = [(k, d, int(t)) for k, d, t in zip(wanted, answers[::2], answers[1::2])
                if d is not None and int(t) != -2]  # not expired meanwhile
        try:
            await _pipelined(target, [("RESTORE", k, max(t, 0), d) for k, d, t in kept])
        except txredisapi.ResponseError as e:  # BUSYKEY, a payload of a newer Redis, ...
            raise SnapshotError(f"RESTORE refused: {e}") from None
        copied += len(kept)
        progress(len(kept))
    return {"copied": copied, "skipped": skipped}


async def persist(redis: Any) -> None:
    """Make what was written durable now (the embedded server keeps an AOF too)."""
    await redis.execute_command("SAVE")
