"""The worker: one ipydoc daemon process under ``ipydoc serve``, run as ``twistd -n`` runs it.

It builds the same service (``ipydoc.tap``'s ``Options`` and ``makeService``, handed in
by ``ipydoc/__main__.py``; no twistd plugin discovery), logs to stdout in twistd's line
format, lets the reactor handle SIGTERM/SIGINT (stop: the daemon drains), and exits 1
when the start fails.  Its listening sockets come from the supervisor
(:mod:`ipydoc.edge.inherited_sockets`); when the daemon is ready it writes one line to
the descriptor in ``IPYDOC_READY_FD``, which is how the supervisor knows it may retire
the previous worker.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.python import usage

READY_FD_ENV = "IPYDOC_READY_FD"

log = Logger()


def _say_ready(_: Any) -> None:
    fd = os.environ.get(READY_FD_ENV, "")
    if not fd.isdigit():
        return
    try:
        os.write(int(fd), f"ready {os.getpid()}\n".encode())
        os.close(int(fd))
    except OSError as e:
        log.warn("could not tell the supervisor this worker is ready: {e}", e=e)


def run(options_class: type[usage.Options], make_service: Callable[[Any], Any],
        argv: list[str]) -> int:
    """Parse ``argv`` (``--config FILE``), build the service, run the reactor until it
    stops; the exit code."""
    options = options_class()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"ipydoc: {e}", file=sys.stderr)
        return 2
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)],
                                     redirectStandardIO=False)
    from twisted.internet import reactor
    from twisted.python.reflect import qual

    log.info("reactor class: {reactor}.", reactor=qual(type(reactor)))  # as twistd says it
    service = make_service(options)  # SystemExit(1) with a message on a config error
    ready = getattr(service, "ready", None)
    if ready is not None:
        ready.addCallback(_say_ready)
    service.privilegedStartService()
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()  # installs the SIGTERM/SIGINT handlers, as twistd does
    return 0
