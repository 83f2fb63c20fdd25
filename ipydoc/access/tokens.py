"""Personal API tokens: their format, how they are hashed, how a request carries one.

A token is ``ipd_`` followed by 43 base64url characters (256 random bits).  The prefix
makes a leaked token easy to recognise (secret scanners, logs) and lets the gate tell a
personal token apart from anything else in an ``Authorization`` header.  Redis keeps
only the token's SHA-256 (a slow password hash buys nothing against 256 random bits),
so a copy of the database cannot be replayed; the token itself is shown once, when made.

A request uses one as ``Authorization: token ipd_...`` (``Bearer`` is accepted too).  It
is never forwarded: the proxy replaces ``Authorization`` with the server token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from ipydoc.access.collaborators import StoreSource
from ipydoc.access.verdicts import Holder, json_reply
from ipydoc.proxy.gate import Reply
from ipydoc.state.keys import token_key

PREFIX = "ipd_"
_SHAPE = re.compile(r"ipd_[A-Za-z0-9_-]{43}")

#: The expiry choices offered on the tokens page (seconds; 0 is never).
EXPIRY_CHOICES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"),
                  (30 * 86400, "30 days"), (90 * 86400, "90 days"), (365 * 86400, "1 year"),
                  (0, "Never")]
MAX_EXPIRY = 365 * 86400
MAX_NOTE = 100
TOUCH_INTERVAL = 60.0  # seconds between writes of a token's last_used
TOUCHED_MAX = 10_000


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


class TokenCheck:
    """Step 2 of :mod:`ipydoc.access.ladder` for ``Authorization: token ipd_...``.

    Looked up in Redis on every request (no cache), so revoking a token, its expiry, or
    disabling its user takes effect at once.  ``last_used`` is written at most once a
    minute per token."""

    def __init__(self, store_source: StoreSource) -> None:
        self._store_source = store_source
        self._touched: dict[str, float] = {}

    async def holder(self, token: str) -> Holder | Reply:
        store = self._store_source.store
        digest = token_hash(token) if well_formed(token) else ""
        record = await store.get_token(digest) if digest else None
        if record is None:
            return json_reply(401, "invalid, expired or revoked token")
        user = await store.get_user(record["user"])
        if user is None or user.disabled:
            return json_reply(403, "the token's account is disabled")
        return Holder(user.name, token_key(digest), browser=False, token_digest=digest)

    async def touch(self, digest: str) -> None:
        """Note the token's use (it let a request through)."""
        now = time.time()
        if now - self._touched.get(digest, 0.0) >= TOUCH_INTERVAL:
            if len(self._touched) > TOUCHED_MAX:
                self._touched.clear()
            self._touched[digest] = now
            await self._store_source.store.touch_token(digest, now)
