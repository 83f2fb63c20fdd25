"""``next=`` targets: only paths on this site, never another host."""

from __future__ import annotations

import re
from urllib.parse import unquote

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def safe_next(value: str | None, default: str) -> str:
    """``value`` if it is a local absolute path, else ``default``.

    Refuses what browsers read as another host or scheme: ``//host``, ``/\\host``,
    ``https:host``, ``javascript:``, and the same with percent-encoding or control chars.
    """
    if not value:
        return default
    for candidate in (value, unquote(value), unquote(unquote(value))):
        if (not candidate.startswith("/") or candidate.startswith("//")
                or "\\" in candidate or _CONTROL.search(candidate)
                or candidate.startswith("/.") and candidate[2:3] in ("/", "\\")):
            return default
    return value
