"""One worker as the supervisor sees it: spawned with the listening sockets, ready or not,
ended or not.

The worker is ``python -m ipydoc --worker --config FILE``.  Its stdout and stderr are the
supervisor's (one log stream, e.g. journald); descriptor :data:`READY_FD` is a pipe the
worker writes ``ready PID`` to once its daemon is ready; the listening sockets follow
from :data:`FIRST_SOCKET_FD` on, named in ``IPYDOC_INHERITED_FDS``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet import defer, error, protocol
from twisted.logger import Logger

from ipydoc.control.restart import OUTCOME_ENV, SUPERVISOR_ENV
from ipydoc.edge.inherited_sockets import ENV as FDS_ENV
from ipydoc.serve.worker import READY_FD_ENV

READY_FD = 3
FIRST_SOCKET_FD = 4
MAX_READY_LINE = 256  # bytes: more from the ready pipe is not a worker of ours


class WorkerExited(Exception):
    """The worker ended before it was ready."""


class WorkerProcess(protocol.ProcessProtocol):
    """A worker: ``ready`` fires when it says so, ``ended`` with its exit code."""

    log = Logger()

    def __init__(self) -> None:
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[int | None] = defer.Deferred()
        self.pid: int | None = None
        self._said = b""

    def connectionMade(self) -> None:  # noqa: N802 (Twisted API)
        self.pid = self.transport.pid

    def childDataReceived(self, fd: int, data: bytes) -> None:  # noqa: N802
        if fd != READY_FD or self.ready.called:
            return
        self._said = (self._said + data)[:MAX_READY_LINE]
        if self._said.startswith(b"ready"):
            self.ready.callback(None)

    def processEnded(self, reason: Any) -> None:  # noqa: N802
        code = getattr(reason.value, "exitCode", None)
        signal = getattr(reason.value, "signal", None)
        if not self.ready.called:
            how = f"exit code {code}" if code is not None else f"signal {signal}"
            self.ready.errback(WorkerExited(f"the new worker exited before it was ready "
                                            f"({how}; its log lines are above)"))
        self.ended.callback(code)

    def signal(self, name: str) -> None:
        try:
            self.transport.signalProcess(name)
        except (error.ProcessExitedAlready, OSError):
            pass

    @property
    def running(self) -> bool:
        return not self.ended.called


def spawn(reactor: Any, config: str, sockets: dict[str, int], env: dict[str, str]
          ) -> WorkerProcess:
    """Start a worker on ``sockets`` ({endpoint string: our fd}) with ``env`` added."""
    child_fds: dict[int, Any] = {0: 0, 1: 1, 2: 2, READY_FD: "r"}
    names: dict[str, int] = {}
    for i, (spec, fd) in enumerate(sorted(sockets.items())):
        child_fds[FIRST_SOCKET_FD + i] = fd
        names[spec] = FIRST_SOCKET_FD + i
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("LISTEN_") and k not in (FDS_ENV, OUTCOME_ENV)}
    environ.update(env)
    environ.update({FDS_ENV: json.dumps(names), READY_FD_ENV: str(READY_FD),
                    SUPERVISOR_ENV: str(os.getpid())})
    worker = WorkerProcess()
    argv = [sys.executable, "-m", "ipydoc", "--worker", "--config", config]
    reactor.spawnProcess(worker, sys.executable, argv, env=environ, childFDs=child_fds)
    return worker
