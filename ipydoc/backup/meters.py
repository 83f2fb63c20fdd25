"""How backup and restore report progress: a factory of meters the caller provides (the
CLI's progress bars, or nothing), so this package never writes to a terminal."""

from __future__ import annotations

from typing import Protocol

from ipydoc.backup.archive import Meter, NoMeter


class Meters(Protocol):
    def __call__(self, description: str, total: int | None, unit: str = "B") -> Meter: ...


def no_meters(description: str, total: int | None, unit: str = "B") -> Meter:
    return NoMeter()
