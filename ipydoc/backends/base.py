"""The backend interface: what the rest of ipydoc may ask of whatever runs servers.

The server manager (:mod:`ipydoc.servers.manager`) owns tokens, readiness and Redis; a backend
only creates, stops, lists and watches the processes or containers.  Keeping the line
here lets Docker, local processes and later Swarm/Kubernetes share everything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol

ErrorKind = Literal["image_missing", "unreachable", "conflict", "bad_answer", "failed"]


class BackendError(Exception):
    """A backend operation failed; ``message`` is fit to show to a person."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class SharedVolume:
    """Read-only shared data of a profile: ``source`` an absolute host path (a bind) or a
    volume name; ``target`` where it appears in the server (always read-only)."""

    source: str
    target: str

    @property
    def is_bind(self) -> bool:
        return self.source.startswith("/")


@dataclass(frozen=True)
class ServerSpec:
    """Everything a backend needs to start one user's server."""

    name: str                      # validated server key: "alice", or "alice--gpu" (named)
    image: str
    base_url: str                  # e.g. "/user/alice/"
    token: str                     # jupyter_server token (env JUPYTER_TOKEN, never argv)
    mem_limit: int | None = None   # bytes
    cpu_limit: float | None = None  # CPUs
    pids_limit: int | None = None
    env: dict[str, str] = field(default_factory=dict)
    hub_host: str = ""             # the hub's origin when it is on another host (subdomains)
    volumes: tuple[SharedVolume, ...] = ()  # a profile's read-only extra mounts
    gpus: int = 0                  # GPUs requested (-1: all); Docker DeviceRequests


@dataclass(frozen=True)
class ServerInfo:
    """A backend's view of one user's server."""

    name: str                      # its server key (the owner for the default server)
    id: str                        # container id / pid, opaque to callers
    running: bool
    url: str | None                # "http://127.0.0.1:PORT", None when not running
    image: str = ""
    started_at: float | None = None
    token: str | None = None       # recovered from the server's environment, for adoption
    base_url: str | None = None    # what it was started with, when the backend records it
    paused: bool = False           # running but frozen (``pause``); ``running`` stays True


@dataclass(frozen=True)
class BackendEvent:
    """Something happened to a user's server outside the manager's own calls."""

    name: str
    id: str
    action: Literal["start", "die", "destroy", "pause", "unpause"]
    reason: str = ""               # why, for the user's page (e.g. "its node went down")


class Backend(Protocol):
    """Runs user servers.  Every method is idempotent where it can be."""

    async def start(self, spec: ServerSpec) -> ServerInfo:
        """Create and start the server; return once the process runs and its URL is known."""

    async def stop(self, name: str) -> None:
        """Stop and remove the server; never touch the user's files.  No-op if absent."""

    async def pause(self, name: str) -> None:
        """Freeze the user's server (memory kept, no CPU; Docker's cgroup freezer).  No-op
        when already paused; ``BackendError("conflict", ...)`` when no server runs."""

    async def unpause(self, name: str) -> None:
        """Thaw a paused server.  No-op when it is not paused."""

    async def status(self, name: str) -> ServerInfo | None:
        """The user's server as the backend sees it now, or None."""

    async def list(self) -> list[ServerInfo]:
        """All servers this ipydoc manages (running or not)."""

    def follow(self, listener: Callable[[BackendEvent], None],
               on_open: Callable[[bool], None] | None = None) -> None:
        """Call ``listener`` for each event from now on, reconnecting by itself; call
        ``on_open(reconnected)`` whenever the event source (re)connects."""

    def stop_following(self) -> None:
        """End what :meth:`follow` started (service shutdown).  No-op if not following."""

    async def logs(self, server_id: str, tail: int | None = 100) -> str:
        """The last ``tail`` lines (None: all) of the server's stdout and stderr, interleaved;
        ``server_id`` is :attr:`ServerInfo.id`."""

    async def stats(self, server_id: str) -> dict[str, Any] | None:
        """One sample of a running server's use: ``cpu_percent`` (100 = one CPU busy),
        ``mem_bytes``, ``mem_limit``, ``pids``; None when it is gone."""

    async def check(self) -> str:
        """Raise BackendError if the backend cannot be used; else a short description."""

    async def purge(self, name: str) -> None:
        """Delete the user's files (admin only; never called by stop).  Refused while the
        user has a server (kind "conflict")."""

    def files_of(self, name: str) -> str:
        """Where the user's files are, for people: ``volume X`` / ``directory D``."""

    async def users_with_files(self) -> set[str]:
        """Names whose files the backend finds by listing where it keeps them, account or
        not (used at start to reserve names whose files outlived their accounts); may be
        empty when listing is not cheap (Docker volumes)."""
