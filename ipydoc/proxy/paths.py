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

#: A "." or ".." segment: after the start or a separator, before a separator or the end.
_DOT_SEGMENT = re.compile(rb"(?:\A|[/\\])\.\.?(?=[/\\]|\Z)")


def dot_segment(path: bytes) -> bool:
    """True if ``path`` (no query) has a ``.`` or ``..`` segment, raw or decoded."""
    # most API paths: no regex needed (``find``, not ``in``: docs/front_end.md, "bytes in bytes")
    escaped = path.find(b"%") != -1
    if not escaped and path.find(b".") == -1:
        return False
    if _DOT_SEGMENT.search(path):
        return True
    return escaped and _DOT_SEGMENT.search(unquote_to_bytes(path)) is not None
