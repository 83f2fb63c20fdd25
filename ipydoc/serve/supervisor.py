"""``ipydoc serve`` / ``python -m ipydoc``: a small process that keeps ipydoc's listening
sockets (and its embedded Redis) while daemon processes, the workers, come and go.

At start it binds every listener of the config (:mod:`ipydoc.serve.sockets`), starts the
embedded redis-server when ``redis.url`` is empty, and starts a worker
(:mod:`ipydoc.serve.worker_process`) on those sockets.  It never accepts a connection.

SIGHUP or SIGUSR2 (``systemctl reload``, ``ipydoc restart``) replaces the worker: the
config is read again, listeners it adds are bound, a new worker starts on the same
sockets and, once it is ready, the old one gets SIGTERM (it finishes its requests, see
``server.drain_timeout``) and is reaped; listeners the new config dropped are closed then.
If the new worker fails (bad config, exits, not ready in time) the old one keeps serving
and the reason is logged and written to ``state_dir/supervisor.json``, which
``ipydoc restart`` reads through the worker.  A worker that dies on its own is started
again with a backoff.  SIGTERM/SIGINT: the worker is stopped (it drains), then Redis;
exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from ipydoc import __version__
from ipydoc.config.errors import ConfigError
from ipydoc.config.load import Config, find_config, load
from ipydoc.control.restart import OUTCOME_ENV
from ipydoc.edge.inherited_sockets import listener_specs
from ipydoc.serve.sockets import Sockets
from ipydoc.serve.worker_process import WorkerProcess, spawn
from ipydoc.state.redis_service import SUPERVISED_REDIS_ENV, RedisService

READY_TIMEOUT = 180.0            # seconds a new worker has to say it is ready
STOP_MARGIN = 20.0               # seconds past server.drain_timeout before SIGKILL
RESPAWN_DELAY = (0.5, 10.0)      # first and longest wait before restarting a dead worker
OUTCOME_FILE = "supervisor.json"


class Supervisor:
    """Owns the sockets, the embedded Redis and the current worker."""

    log = Logger()

    def __init__(self, reactor: Any, config_path: str, cfg: Config) -> None:
        self.reactor = reactor
        self.config_path = config_path
        self.cfg = cfg
        self.sockets = Sockets()
        self.redis: RedisService | None = None
        self.worker: WorkerProcess | None = None
        self.pending: WorkerProcess | None = None  # started, not ready yet
        self.attempt = 0
        self.last: dict[str, Any] = {}
        self.exit_code = 0
        self._replacing = False
        self._again = False
        self._stopping = False
        self._delay = RESPAWN_DELAY[0]

    # -- start --------------------------------------------------------------------------
    async def start(self) -> None:
        state = self.cfg.state_path
        state.mkdir(parents=True, exist_ok=True)
        os.chmod(state, 0o750)
        self.sockets.ensure(listener_specs(self.cfg))
        if not self.cfg.redis.url:
            self.redis = RedisService("", state, self.reactor, self.cfg.redis.command,
                                      poolsize=1)
            await self.redis.startService()
        self.log.info("ipydoc serve {v}: supervisor pid {pid}, listening on {specs}",
                      v=__version__, pid=os.getpid(), specs=", ".join(self.sockets.bound))
        worker = self._spawn()
        await self._until_ready(worker)
        self._adopt(worker)
        self._write_outcome()

    def _spawn(self, cfg: Config | None = None) -> WorkerProcess:
        """A worker for ``cfg`` (default: the current one) on the sockets it lists."""
        state = (cfg or self.cfg).state_path
        env = {OUTCOME_ENV: str(state / OUTCOME_FILE)}
        if self.redis is not None:
            env[SUPERVISED_REDIS_ENV] = str(self.cfg.state_path / "redis" / "redis.sock")
        # Only its own: a socket a worker inherits but does not adopt would still listen
        # (connections queued, never accepted) after the supervisor drops it.
        fds = {spec: self.sockets.bound[spec].fileno() for spec in listener_specs(cfg or self.cfg)}
        worker = spawn(self.reactor, self.config_path, fds, env)
        self.pending = worker
        self.log.info("worker {pid} starting", pid=worker.pid)
        return worker

    async def _until_ready(self, worker: WorkerProcess) -> None:
        try:
            await worker.ready.addTimeout(READY_TIMEOUT, self.reactor)
        except defer.TimeoutError:
            worker.signal("KILL")
            raise TimeoutError(f"the new worker was not ready within {READY_TIMEOUT:.0f} s "
                               "(its log lines are above)") from None

    def _adopt(self, worker: WorkerProcess) -> None:
        self.worker = worker
        self.pending = None
        worker.ended.addCallback(lambda code: self._ended(worker, code))
        self.log.info("worker {pid} ready", pid=worker.pid)

    # -- replacing ----------------------------------------------------------------------
    def request_restart(self, why: str) -> None:
        """Replace the worker (from a signal); a request during a replacement runs after it."""
        if self._stopping:
            return
        if self._replacing:
            self._again = True
            return
        defer.Deferred.fromCoroutine(self.replace(why))

    async def replace(self, why: str) -> None:
        self._replacing = True
        self.attempt += 1
        old = self.worker
        began = time.monotonic()
        self.log.info("replacing worker {pid} ({why})", pid=old.pid if old else None, why=why)
        self._write_outcome(state="replacing")
        new: WorkerProcess | None = None
        try:
            cfg = load(find_config(self.config_path))
            specs = listener_specs(cfg)
            added = self.sockets.ensure(specs)
            if added:
                self.log.info("new listeners: {specs}", specs=", ".join(added))
            new = self._spawn(cfg)
            await self._until_ready(new)
        except Exception as e:  # noqa: BLE001 - any failure: the old worker stays
            reason = f"configuration error: {e}" if isinstance(e, ConfigError) else str(e)
            self.pending = None
            self.sockets.keep_only(listener_specs(self.cfg))  # what this attempt bound
            self.log.error("restart failed, worker {pid} keeps serving: {why}",
                           pid=old.pid if old else None, why=reason)
            self._finish(ok=False, old=old, new=new, began=began, error=reason)
            return
        self.cfg = cfg
        self._adopt(new)
        ready_after = time.monotonic() - began
        self._finish(ok=True, old=old, new=new, began=began, ready=ready_after)
        if old is not None and old.running:
            await self._retire(old)
        closed = self.sockets.keep_only(listener_specs(self.cfg))
        if closed:
            self.log.info("closed listeners no longer configured: {specs}",
                          specs=", ".join(closed))
        total = time.monotonic() - began
        self.last["seconds_total"] = round(total, 3)
        self._write_outcome()
        self.log.info("worker {old} replaced by {new}: new ready after {r:.2f} s, old gone "
                      "after {t:.2f} s", old=old.pid if old else None, new=new.pid,
                      r=ready_after, t=total)

    def _finish(self, ok: bool, old: WorkerProcess | None, new: WorkerProcess | None,
                began: float, error: str = "", ready: float = 0.0) -> None:
        self.last = {"attempt": self.attempt, "ok": ok, "old": old.pid if old else None,
                     "new": new.pid if new else None, "error": error,
                     "seconds_ready": round(ready, 3), "at": time.time()}
        self._write_outcome()
        self._replacing = False
        if self._again and not self._stopping:
            self._again = False
            self.reactor.callLater(0, self.request_restart, "asked again during a restart")

    async def _retire(self, worker: WorkerProcess) -> None:
        """SIGTERM (it drains), then wait; SIGKILL past the drain deadline and a margin."""
        worker.signal("TERM")
        limit = self.cfg.server.drain_timeout + STOP_MARGIN
        try:
            await _wait(worker.ended, limit, self.reactor)
        except defer.TimeoutError:
            self.log.warn("worker {pid} still running {s:.0f} s after SIGTERM; killing it",
                          pid=worker.pid, s=limit)
            worker.signal("KILL")
            await worker.ended

    # -- a worker that dies on its own --------------------------------------------------
    def _ended(self, worker: WorkerProcess, code: int | None) -> None:
        if worker is not self.worker or self._stopping:
            return
        delay = self._delay
        self._delay = min(delay * 2, RESPAWN_DELAY[1])
        self.log.error("worker {pid} exited unexpectedly (code {code}); starting another "
                       "in {d} s", pid=worker.pid, code=code, d=delay)
        self.worker = None
        deferLater(self.reactor, delay, lambda: None).addCallback(
            lambda _: defer.Deferred.fromCoroutine(self._respawn()))

    async def _respawn(self) -> None:
        if self._stopping or self.worker is not None:
            return
        worker = self._spawn()
        try:
            await self._until_ready(worker)
        except Exception as e:  # noqa: BLE001 - try again later
            self.log.error("worker did not start: {e}", e=e)
            self.worker = worker  # so _ended schedules the next try
            if worker.running:
                worker.signal("KILL")
            worker.ended.addCallback(lambda code: self._ended(worker, code))
            return
        self._adopt(worker)
        self._write_outcome()
        self._delay = RESPAWN_DELAY[0]

    # -- stop ---------------------------------------------------------------------------
    async def stop(self) -> None:
        self._stopping = True
        workers = [w for w in (self.pending, self.worker) if w is not None and w.running]
        for w in workers:
            self.log.info("stopping worker {pid}", pid=w.pid)
            await self._retire(w)
        if self.redis is not None and self.redis.running:
            await self.redis.stopService()
        if self.sockets.bound:  # ours (a supervisor that could not bind leaves the file)
            (self.cfg.state_path / OUTCOME_FILE).unlink(missing_ok=True)
        self.sockets.close_all()
        self.log.info("ipydoc serve stopped")

    def _write_outcome(self, state: str = "serving") -> None:
        """What ``ipydoc restart`` reads (through the worker): the current worker, the
        last restart's outcome."""
        path = self.cfg.state_path / OUTCOME_FILE
        data = {"supervisor": os.getpid(), "state": state, "attempt": self.attempt,
                "worker": self.worker.pid if self.worker else None, "last": self.last}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


async def _wait(d: defer.Deferred[Any], seconds: float, reactor: Any) -> None:
    """Wait for ``d`` at most ``seconds`` without cancelling it."""
    waiter: defer.Deferred[None] = defer.Deferred()

    def relay(result: Any) -> Any:
        if not waiter.called:
            waiter.callback(None)
        return result
    d.addBoth(relay)
    await waiter.addTimeout(seconds, reactor)


def main(config: str | None) -> int:
    """Run the supervisor until SIGTERM/SIGINT; the exit code."""
    try:
        path = find_config(config)
        cfg = load(path)
    except ConfigError as e:
        print(f"ipydoc: configuration error: {e}", file=sys.stderr)
        return 4
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)],
                                     redirectStandardIO=False)
    from twisted.internet import reactor

    sup = Supervisor(reactor, os.path.abspath(path), cfg)

    def on_signal(signum: int, _frame: Any) -> None:
        reactor.callFromThread(sup.request_restart, signal.Signals(signum).name)

    async def begin() -> None:
        try:
            await sup.start()
        except Exception as e:  # noqa: BLE001 - say why, then stop with an error
            sup.log.critical("ipydoc serve could not start: {e}", e=e)
            sup.exit_code = 1
            reactor.stop()

    signal.signal(signal.SIGHUP, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(begin()))
    reactor.addSystemEventTrigger("before", "shutdown",
                                  lambda: defer.Deferred.fromCoroutine(sup.stop()))
    reactor.run()
    return sup.exit_code
