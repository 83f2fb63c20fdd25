"""Listening sockets a supervisor (``ipydoc serve``) bound and passed down to its worker.

Under ``ipydoc serve`` the supervisor binds every listener of the config once and keeps
it; each worker inherits the sockets as file descriptors, named in ``IPYDOC_INHERITED_FDS``
(JSON ``{endpoint string: fd}``), and adopts them.  Two workers can then accept on the
same sockets during a restart, and no connection is refused while they swap.

:func:`listener_specs` is the one list of what a config listens on, so the supervisor
binds exactly what the worker (``tap.py``) asks :func:`listen_endpoint` for; without an
inherited descriptor that falls back to ``serverFromString`` (plain ``twistd -n ipydoc``).

A unix socket adopted this way is not the worker's to remove: when the worker stops, the
file stays (its successor serves it) and the lock stays with the supervisor.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any

from twisted.internet import defer, endpoints, fdesc, tcp, unix

from ipydoc.edge.listen_spec import parse_listen

ENV = "IPYDOC_INHERITED_FDS"


def control_spec(path: Any) -> str:
    """The control socket as an endpoint string: mode 0600, with a pid lock file."""
    escaped = str(path).replace("\\", "\\\\").replace(":", "\\:")
    return f"unix:{escaped}:mode=600:lockfile=1"


def listener_specs(cfg: Any) -> list[str]:
    """Every plain endpoint string a config listens on, in a stable order: each
    ``server.listen`` (the stream under TLS), ``server.redirect_listen``, the control
    socket, ``control.listen_tls`` and ``metrics.listen``."""
    specs: list[str] = []
    for spec in cfg.server.listen:
        tls = parse_listen(spec)
        specs.append(tls.endpoint if tls is not None else spec)
    specs += list(cfg.server.redirect_listen)
    specs.append(control_spec(cfg.control_socket))
    if cfg.control.listen_tls:
        specs.append(cfg.control.listen_tls)
    if cfg.metrics.listen:
        specs.append(cfg.metrics.listen)
    return list(dict.fromkeys(specs))


def inherited() -> dict[str, int]:
    """The descriptors this process was given, by endpoint string (empty when none)."""
    raw = os.environ.get(ENV, "")
    if not raw:
        return {}
    try:
        fds = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in fds.items()} if isinstance(fds, dict) else {}


class _SharedUnixPort(unix.Port):
    """An adopted unix listener: closing it leaves the socket file in place (and its mode
    as the supervisor set it), and it is closed without ``shutdown()``, which would stop
    the shared socket listening in every process (Twisted's TCP ports adopted the same
    way already skip it; its unix ports do not)."""

    _shouldShutdown = False  # private Twisted name, see tests/serve/test_inherited_sockets.py

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted API)
        tcp.Port.connectionLost(self, reason)


class AdoptedEndpoint:
    """Listen on an inherited descriptor; the descriptor itself stays open (a copy is
    adopted), so the supervisor's socket outlives this worker's port."""

    def __init__(self, reactor: Any, fd: int) -> None:
        self.reactor = reactor
        self.fd = fd

    def listen(self, factory: Any) -> defer.Deferred[Any]:
        try:
            family, address = _describe(self.fd)
            fdesc.setNonBlocking(self.fd)
            if family == socket.AF_UNIX:
                # Private: Twisted adopts unix listeners only through this classmethod
                # (checked in tests/serve/test_inherited_sockets.py).
                port = _SharedUnixPort._fromListeningDescriptor(self.reactor, self.fd, factory)
                # Twisted would chmod an adopted socket's file to 0666: keep the binder's mode.
                port.mode = stat.S_IMODE(os.stat(address).st_mode)
                port.startListening()
            else:
                port = self.reactor.adoptStreamPort(self.fd, family, factory)
        except Exception:  # noqa: BLE001 - as endpoint.listen does: a failed Deferred
            return defer.fail()
        return defer.succeed(port)


def _describe(fd: int) -> tuple[int, Any]:
    """The address family and local address of a socket descriptor."""
    s = socket.socket(fileno=os.dup(fd))
    try:
        return int(s.family), s.getsockname()
    finally:
        s.close()


def listen_endpoint(reactor: Any, spec: str) -> Any:
    """The endpoint to listen on ``spec`` with: the inherited socket when this process was
    given one for it, else ``serverFromString`` (which raises as it always does)."""
    fd = inherited().get(spec)
    if fd is not None:
        return AdoptedEndpoint(reactor, fd)
    return endpoints.serverFromString(reactor, spec)
