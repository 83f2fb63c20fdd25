"""Personal API tokens: their format, how they are hashed, how a request carries one.

A token is ``ipd_`` followed by 43 base64url characters (256 random bits).  The prefix
makes a leaked token easy to recognise (secret scanners, logs) and lets the gate tell a
personal token apart from anything else in an ``Authorization`` header.  Redis keeps
only the token's SHA-256 (a slow password hash buys nothing against 256 random bits),
so a copy of the database cannot be replayed; the token itself is shown once, when made.

A request uses one as ``Authorization: token ipd_...`` (``Bearer`` is accepted too).
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIX = "ipd_"
_SHAPE = re.compile(r"ipd_[A-Za-z0-9_-]{43}")

#: The expiry choices offered on the tokens page (seconds; 0 is never).
EXPIRY_CHOICES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"),
                  (30 * 86400, "30 days"), (90 * 86400, "90 days"), (365 * 86400, "1 year"),
                  (0, "Never")]
MAX_EXPIRY = 365 * 86400
MAX_NOTE = 100


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def from_authorization(value: bytes | None) -> str | None:
    """The personal token in an ``Authorization`` value, or None if it carries none."""
    if not value:
        return None
    scheme, _, credential = value.decode("latin-1").strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("token", "bearer") or not credential.startswith(PREFIX):
        return None
    return credential


def well_formed(token: str) -> bool:
    return bool(_SHAPE.fullmatch(token))
