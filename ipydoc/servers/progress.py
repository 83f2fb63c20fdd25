"""Spawn progress: the steps one server start goes through, for pages to follow live.

The server manager appends steps; the progress stream (server-sent events) replays what
happened so far and then follows, so a page reloaded mid-spawn picks up where it was.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

PHASES = ("queued", "creating", "starting", "waiting", "ready", "failed", "stopped")


@dataclass(frozen=True)
class Step:
    phase: str
    message: str
    progress: int          # 0..100, for the bar
    at: float = field(default_factory=time.time)
    url: str = ""           # set on "ready": where to go
    error_kind: str = ""    # set on "failed": image_missing, unreachable, timeout, ...
    position: int = 0       # set on "queued" while waiting for a start slot: 1 = next

    @property
    def failed(self) -> bool:
        return self.phase == "failed"

    @property
    def final(self) -> bool:
        return self.phase in ("ready", "failed", "stopped")

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["ready"] = self.phase == "ready"
        d["failed"] = self.phase == "failed"
        return d


class Progress:
    """The steps of the latest start of one user's server, with live listeners."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self._listeners: list[Callable[[Step], None]] = []

    @property
    def last(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    def add(self, step: Step) -> None:
        self.steps.append(step)
        for listener in list(self._listeners):
            listener(step)

    def listen(self, listener: Callable[[Step], None]) -> Callable[[], None]:
        """Replay past steps to ``listener``, then follow; returns the unsubscribe function."""
        for step in self.steps:
            listener(step)
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None
