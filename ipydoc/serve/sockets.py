"""The supervisor's listening sockets: bound once, kept for every worker, never accepted on.

Endpoint strings are the ones :func:`ipydoc.edge.inherited_sockets.listener_specs` lists:
``tcp:PORT[:interface=A][:backlog=N]`` (``tcp6:`` too), ``unix:PATH[:mode=OCT][:lockfile=1]``
and ``systemd:domain=D:index=N`` / ``:name=NAME`` (a socket systemd passed to the
supervisor, found by Twisted's systemd endpoint parser).  A unix socket with
``lockfile=1`` is guarded by ``PATH.lock`` like Twisted's ``wantPID``: a stale socket of a
dead daemon is replaced, a live one is an error.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from twisted.internet import endpoints
from twisted.python.lockfile import FilesystemLock

DEFAULT_BACKLOG = 50  # Twisted's


class BindError(Exception):
    """A listener could not be bound; the message names it."""


def _split(spec: str) -> tuple[str, list[str], dict[str, str]]:
    parts = [p.replace("\\:", ":").replace("\\\\", "\\")
             for p in re.split(r"(?<!\\):", spec)]
    kind, args, opts = parts[0], [], {}
    for part in parts[1:]:
        name, eq, value = part.partition("=")
        if eq and re.fullmatch(r"[A-Za-z]+", name):
            opts[name] = value
        else:
            args.append(part)
    return kind, args, opts


def _systemd_fd(spec: str) -> int:
    """The descriptor systemd passed for ``spec``, found by Twisted's own parser (importing
    Twisted's endpoints consumes ``LISTEN_FDS``, so it is the one that knows)."""
    try:
        endpoint = endpoints.serverFromString(object(), spec)
    except (IndexError, KeyError):
        raise BindError(f"{spec!r} names a socket systemd did not pass to this process "
                        "(LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES)") from None
    return int(endpoint.fileno)


@dataclass
class Bound:
    """One listening socket the supervisor holds."""

    spec: str
    sock: socket.socket
    lock: FilesystemLock | None = None
    path: Path | None = None
    owned: bool = field(default=True)  # False: systemd's; never closed by us

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Stop listening: the socket is closed, a unix socket's file and lock removed."""
        if self.owned:
            self.sock.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.unlock()


def bind(spec: str) -> Bound:
    """Bind and listen on ``spec``; BindError when it cannot."""
    kind, args, opts = _split(spec)
    backlog = int(opts.get("backlog", DEFAULT_BACKLOG))
    try:
        if kind in ("tcp", "tcp6"):
            port = int(opts.get("port") or args[0])
            host = opts.get("interface", "::" if kind == "tcp6" else "")
            family = socket.AF_INET6 if ":" in host or kind == "tcp6" else socket.AF_INET
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(backlog)
            return Bound(spec, s)
        if kind == "unix":
            return _bind_unix(spec, Path(opts.get("address") or args[0]),
                              int(opts.get("mode", "666"), 8), opts.get("lockfile") == "1",
                              backlog)
        if kind == "systemd":
            fd = _systemd_fd(spec)
            return Bound(spec, socket.socket(fileno=fd), owned=False)
    except (OSError, ValueError, IndexError) as e:
        raise BindError(f"cannot listen on {spec!r}: {e}") from None
    raise BindError(f"cannot listen on {spec!r}: ipydoc serve binds tcp:, tcp6:, unix: "
                    "and systemd: endpoints (run twistd -n ipydoc for others)")


def _bind_unix(spec: str, path: Path, mode: int, locked: bool, backlog: int) -> Bound:
    lock = None
    if locked:
        lock = FilesystemLock(f"{path}.lock")
        if not lock.lock():
            raise BindError(f"cannot listen on {path}: another ipydoc holds {path}.lock")
    try:
        path.unlink(missing_ok=True)  # stale: we hold the lock, or none is used
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o777 & ~mode)
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, mode)
        s.listen(backlog)
    except BaseException:
        if lock is not None:
            lock.unlock()
        raise
    return Bound(spec, s, lock=lock, path=path)


class Sockets:
    """Every socket the supervisor holds, by endpoint string."""

    def __init__(self) -> None:
        self.bound: dict[str, Bound] = {}

    def ensure(self, specs: list[str]) -> list[str]:
        """Bind those of ``specs`` not bound yet; the ones newly bound.  All or nothing:
        when one fails, the ones bound by this call are closed again."""
        new: list[str] = []
        try:
            for spec in specs:
                if spec not in self.bound:
                    self.bound[spec] = bind(spec)
                    new.append(spec)
        except BindError:
            for spec in new:
                self.bound.pop(spec).close()
            raise
        return new

    def keep_only(self, specs: list[str]) -> list[str]:
        """Close the sockets not in ``specs``; the ones closed."""
        gone = [s for s in self.bound if s not in specs]
        for spec in gone:
            self.bound.pop(spec).close()
        return gone

    def close_all(self) -> None:
        self.keep_only([])
