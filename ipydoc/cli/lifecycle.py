"""Handlers of ``ipydoc serve`` (run the daemon under its supervisor) and ``ipydoc restart``
(replace the running worker with no failed request)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ipydoc.cli.client import Target, _endpoint, with_daemon
from ipydoc.cli.errors import EXIT_OK, EXIT_REFUSED, CliError
from ipydoc.cli.output import emit

POLL = 0.2  # seconds between two looks at who answers the control socket


def serve(args: argparse.Namespace) -> int:
    """Become ``python -m ipydoc`` (same pid: what systemd and scripts started is the
    supervisor)."""
    argv = [sys.executable, "-m", "ipydoc"]
    if args.config:
        argv += ["--config", args.config]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
    return EXIT_OK  # not reached


async def _ask(target: Target, command: Any) -> dict[str, Any] | None:
    """One command on a new connection; None while no worker answers."""
    from twisted.internet import error, reactor
    from twisted.internet.endpoints import connectProtocol
    from twisted.protocols import amp

    try:
        proto = await connectProtocol(_endpoint(reactor, target), amp.AMP())
    except (error.ConnectError, OSError):
        return None
    try:
        answer = await proto.callRemote(command)
        return json.loads(answer["result"])
    except (error.ConnectionLost, error.ConnectionDone, error.ConnectionClosed):
        return None
    finally:
        if proto.transport is not None:
            proto.transport.loseConnection()


def restart(args: argparse.Namespace, target: Target) -> int:
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    from ipydoc.control import commands as c

    began = time.monotonic()

    async def work(proto: Any) -> dict[str, Any]:
        asked = json.loads((await proto.callRemote(c.Restart))["result"])
        old, attempt = asked["worker"], asked["attempt"]
        proto.transport.loseConnection()
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            await deferLater(reactor, POLL, lambda: None)
            seen = await _ask(target, c.Supervision)
            if seen is None:
                continue
            last = seen.get("supervisor", {}).get("last", {})
            if last.get("attempt", 0) >= attempt and not last.get("ok", True):
                return {"ok": False, "old": old, "new": None, "error": last.get("error", "")}
            if seen["worker"] != old and seen["worker"] == seen["supervisor"].get("worker"):
                old_gone = bool(target.host) or not _alive(old)  # tls: another host
                while not old_gone and time.monotonic() < deadline:
                    await deferLater(reactor, POLL, lambda: None)
                    old_gone = not _alive(old)
                return {"ok": True, "old": old, "new": seen["worker"],
                        "seconds": round(time.monotonic() - began, 2), "old_gone": old_gone}
        return {"ok": False, "old": old, "new": None,
                "error": f"no new worker answered within {args.timeout:.0f} s"}

    outcome = with_daemon(target, work)
    if not outcome["ok"]:
        if args.json:
            print(json.dumps(outcome))
        raise CliError(f"restart failed; worker {outcome['old']} keeps serving: "
                       f"{outcome['error']}", EXIT_REFUSED)
    emit(args, outcome, f"restarted: worker {outcome['old']} -> {outcome['new']} in "
                        f"{outcome['seconds']} s")
    return EXIT_OK


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (the old worker drains, then exits); a worker of another
    host (``--control tls:``) cannot be seen from here and counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; its supervisor reaps it
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
