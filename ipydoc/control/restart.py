"""``ipydoc restart``: the worker asks its supervisor for a successor.

Under ``ipydoc serve`` the daemon is a worker whose parent, the supervisor, holds the
listening sockets.  ``Restart`` checks that (``IPYDOC_SUPERVISOR_PID`` is our parent) and
sends the supervisor SIGUSR2; the supervisor starts a new worker on the same sockets and
retires this one once the new one is ready.  ``Supervision`` says which worker answers
and how the supervisor's last restart went (from ``state_dir/supervisor.json``, which
the supervisor writes), so the CLI can tell a new worker from the old one and report
a failed restart.  Under plain ``twistd`` there is no one to hand over to: ``Restart``
says so.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from ipydoc.control import commands as c
from ipydoc.control.base import ControlBase, responder

SUPERVISOR_ENV = "IPYDOC_SUPERVISOR_PID"     # set by the supervisor for its workers
OUTCOME_ENV = "IPYDOC_SUPERVISOR_STATE"      # the supervisor's state file
MAX_OUTCOME_BYTES = 64 * 1024

NOT_SUPERVISED = (
    "this daemon runs without a supervisor (plain twistd), so there is nothing to hand "
    "over to: restart its systemd unit instead (`systemctl restart ipydoc`; with "
    "etc/ipydoc.socket, connections wait in the socket's queue meanwhile), or run it as "
    "`ipydoc serve` to get restarts with no failed request")


def supervisor_pid() -> int | None:
    """Our supervisor's pid, when we run under one and it is still our parent."""
    raw = os.environ.get(SUPERVISOR_ENV, "")
    if raw.isdigit() and int(raw) == os.getppid():
        return int(raw)
    return None


def supervisor_state() -> dict[str, Any]:
    """What the supervisor last wrote about itself ({} when nothing is readable)."""
    path = os.environ.get(OUTCOME_ENV, "")
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read(MAX_OUTCOME_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RestartCommands(ControlBase):
    """``Restart`` and ``Supervision``."""

    @responder(c.Restart)
    async def restart(self) -> dict:
        parent = supervisor_pid()
        if parent is None:
            raise c.NotAvailable(NOT_SUPERVISED)
        attempt = int(supervisor_state().get("attempt", 0))
        self.log.info("control: restart asked (by {peer}); signalling supervisor {pid}",
                      peer=self.peer(), pid=parent)
        os.kill(parent, signal.SIGUSR2)
        return {"result": json.dumps({"worker": os.getpid(), "attempt": attempt + 1})}

    @responder(c.Supervision)
    async def supervision(self) -> dict:
        return {"result": json.dumps({
            "worker": os.getpid(), "supervised": supervisor_pid() is not None,
            "supervisor": supervisor_state()})}
