"""Personal API tokens: their format, how they are hashed, how a request carries one.

A token is ``ipd_`` followed by 43 base64url characters (256 random bits).  The prefix
makes a leaked token easy to recognise (secret scanners, logs) and lets the gate tell a
personal token apart from anything else in an ``Authorization`` header.  Redis keeps
only the token's SHA-256 (a slow password hash buys nothing against 256 random bits),
so a copy of the database cannot be replayed; the token itself is shown once, when made.

A request uses one as ``Authorization: token ipd_...`` (``Bearer`` is accepted too).  It
is never forwarded: the proxy replaces ``Authorization`` with the server token.

**Scopes** (issue 19, stored with the hash) say what a token may do:

* ``read`` -- GET the token user's own things through ``/hub/api/`` (account, server
  state, progress, history, own events, own tokens);
* ``servers`` -- ``read``, plus start, stop, pause and resume the user's own server, and
  use that server through the proxy (running code there is the most a user can do, so the
  proxy asks for this scope);
* ``admin`` -- ``servers``, plus everything an admin can do through the API, but only while
  the token's user *is* an admin (checked on every request, so withdrawing admin rights
  withdraws the token's too).

Tokens made before scopes existed read as ``read servers`` (:data:`ipydoc.state.tokens.
LEGACY_SCOPES`): they keep reaching their user's server exactly as before.  A ``read``-only
token is refused by the proxy (403).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from typing import Any

from ipydoc.access.collaborators import StoreSource
from ipydoc.access.verdicts import Holder, json_reply
from ipydoc.proxy.gate import Reply
from ipydoc.state.keys import token_key
from ipydoc.state.users import User

PREFIX = "ipd_"
_SHAPE = re.compile(r"ipd_[A-Za-z0-9_-]{43}")

#: The expiry choices offered on the tokens page (seconds; 0 is never).
EXPIRY_CHOICES = [(3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"),
                  (30 * 86400, "30 days"), (90 * 86400, "90 days"), (365 * 86400, "1 year"),
                  (0, "Never")]
MAX_EXPIRY = 365 * 86400
MAX_NOTE = 100

SCOPES = ("read", "servers", "admin")
#: What each scope includes (the scope itself too).
IMPLIED = {"read": {"read"}, "servers": {"read", "servers"},
           "admin": {"read", "servers", "admin"}}
#: The scopes the tokens page ticks by default.
DEFAULT_SCOPES = ("read", "servers")
#: What the proxy asks of a token (see the docstring).
PROXY_SCOPE = "servers"


class BadScopes(ValueError):
    """Scopes a token cannot have (unknown, empty, or admin for a non-admin)."""


def effective(scopes: Iterable[str]) -> frozenset[str]:
    """``scopes`` with what they include (unknown names give nothing)."""
    out: set[str] = set()
    for scope in scopes:
        out |= IMPLIED.get(scope, set())
    return frozenset(out)


def checked_scopes(scopes: Iterable[str], *, admin: bool) -> tuple[str, ...]:
    """The scopes of a new token, in :data:`SCOPES` order; else :class:`BadScopes`."""
    chosen = set(scopes)
    unknown = chosen - set(SCOPES)
    if unknown:
        raise BadScopes(f"unknown scope {', '.join(sorted(unknown))} "
                        f"(known: {', '.join(SCOPES)})")
    if not chosen:
        raise BadScopes(f"choose at least one scope ({', '.join(SCOPES)})")
    if "admin" in chosen and not admin:
        raise BadScopes("only an administrator can make a token with the admin scope")
    return tuple(s for s in SCOPES if s in chosen)
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

    async def lookup(self, token: str) -> tuple[str, dict[str, Any], User | None] | None:
        """(digest, the live token's record, its user) or None: the one lookup of the
        proxy and the API (:mod:`ipydoc.web.api.auth`)."""
        store = self._store_source.store
        digest = token_hash(token) if well_formed(token) else ""
        record = await store.get_token(digest) if digest else None
        if record is None:
            return None
        return digest, record, await store.get_user(record["user"])

    async def holder(self, token: str) -> Holder | Reply:
        found = await self.lookup(token)
        if found is None:
            return json_reply(401, "invalid, expired or revoked token")
        digest, record, user = found
        if user is None or user.disabled:
            return json_reply(403, "the token's account is disabled")
        if PROXY_SCOPE not in effective(record["scopes"]):
            return json_reply(403, f"this token's scopes ({' '.join(record['scopes'])}) do not "
                                   f"include {PROXY_SCOPE}, which using a server needs")
        return Holder(user.name, token_key(digest), browser=False, token_digest=digest)

    async def touch(self, digest: str) -> None:
        """Note the token's use (it let a request through)."""
        now = time.time()
        if now - self._touched.get(digest, 0.0) >= TOUCH_INTERVAL:
            if len(self._touched) > TOUCHED_MAX:
                self._touched.clear()
            self._touched[digest] = now
            await self._store_source.store.touch_token(digest, now)
