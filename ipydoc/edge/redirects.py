"""``next=`` targets: only paths on this site, never another host."""

from __future__ import annotations

import re
from urllib.parse import unquote

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]+")
MAX_DECODES = 4  # our own links are encoded once or twice; deeper nesting is an attack


def _leaves_site(candidate: str) -> bool:
    return (not candidate.startswith("/") or candidate.startswith("//")
            or "\\" in candidate or bool(_CONTROL.search(candidate))
            or candidate.startswith("/.") and candidate[2:3] in ("/", "\\"))


def safe_next(value: str | None, default: str) -> str:
    """``value`` if it is a local absolute path, else ``default``.

    Refuses what browsers read as another host or scheme: ``//host``, ``/\\host``,
    ``https:host``, ``javascript:``, and the same with percent-encoding at any depth
    (decoded until it stops changing) or control chars.  The value itself must be
    printable ASCII: links made by this site are percent-encoded, and a ``Location``
    header carries nothing else.
    """
    if not value or not _PRINTABLE_ASCII.fullmatch(value):
        return default
    candidate = value
    for _ in range(MAX_DECODES + 1):
        if _leaves_site(candidate):
            return default
        decoded = unquote(candidate)
        if decoded == candidate:
            return value
        candidate = decoded
    return default
