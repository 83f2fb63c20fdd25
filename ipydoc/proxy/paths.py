"""Which request paths the proxy refuses to forward: dot segments, however spelled.

A user's server is chosen from the *raw* path (``/user/<name>/``, or the host in
subdomain mode) and the name segment must be a valid name, so ``%2f``, ``%2e`` or a
backslash never get a request routed to someone else.  What follows the name goes to
the user's own server unchanged, and there a ``..`` is that server's business, but a
path that means something else once decoded (``/user/alice/..%2f..%2fbob/``) is never
sent by JupyterLab, only by someone probing.  So the rule is simple and strict: after
one round of percent-decoding, no segment (split on ``/`` *and* ``\\``) may be ``.`` or
``..``.  Such a request is answered 404 here and never forwarded.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

_SEPARATORS = re.compile(rb"[/\\]")


def dot_segment(path: bytes) -> bool:
    """True if ``path`` (no query) has a ``.`` or ``..`` segment, raw or decoded."""
    for candidate in (path, unquote_to_bytes(path)):
        if any(seg in (b".", b"..") for seg in _SEPARATORS.split(candidate)):
            return True
    return False
