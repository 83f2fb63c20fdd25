"""The state of one login at a provider, kept server-side between the redirect to the
provider and its callback.

The browser carries only the protocol's ``state`` (in the URL) and a random binding
value (in a cookie scoped to /hub/oauth/); Redis keeps ``state`` → {provider, nonce, PKCE
verifier, next, redirect_uri, hash of the binding} for ten minutes.  The callback takes the
record out exactly once (MULTI GET+DEL), so a code/state pair cannot be replayed, and
refuses it unless the cookie matches, so nobody can finish a login they started in their
own browser inside someone else's (login CSRF).  Only hashes of ``state`` and the binding
value are stored.

**Bounded.**  Starting a login is anonymous, so every record is counted: the sorted set
``ipydoc:login-states`` holds one member per outstanding record (scored by its expiry), and
one Lua script (:mod:`ipydoc.state.login_states`) prunes the expired members, refuses
when ``auth.oauth_pending_max`` records are outstanding or the client address (:func:`ipydoc.access.login_limits.client_group`) has
started ``auth.oauth_starts_per_address`` logins in the last ten minutes, and otherwise
writes the record and its member together.  The script runs in Redis, so several daemons
sharing one Redis count the same set; the time is Redis's own (``TIME``), so their clocks
do not matter.  A refusal changes nothing: logins already started finish as before, and
the answer is a 429 saying when a slot frees up (the oldest record's expiry, or the end of
the address's window).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from ipydoc.state.store import Store

TTL_SECONDS = 600
BINDING_COOKIE = "ipydoc-oauth"
COOKIE_PATH = "/hub/oauth/"


@dataclass(frozen=True)
class Limits:
    """``auth.oauth_pending_max`` and ``auth.oauth_starts_per_address`` (0: no limit)."""

    pending_max: int = 10_000
    per_address: int = 100

    @classmethod
    def from_auth(cls, auth: Any) -> Limits:
        return cls(auth.oauth_pending_max, auth.oauth_starts_per_address)


@dataclass(frozen=True)
class Full:
    """Why a login cannot be started now, and for how long."""

    scope: str  # "site" or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        wait = f"{self.retry_after} seconds" if self.retry_after < 120 else \
            f"{-(-self.retry_after // 60)} minutes"
        if self.scope == "address":
            return ("Too many logins were started from your network address in the last "
                    f"ten minutes. Please try again in {wait}.")
        return ("Too many logins are in progress on this site right now. Logins already "
                f"started still complete; please try again in {wait}.")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class LoginState:
    provider: str
    nonce: str
    verifier: str
    next: str
    redirect_uri: str
    binding: str  # sha256 of the cookie value

    @property
    def challenge(self) -> str:
        """The PKCE S256 code_challenge of the verifier."""
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_login(provider: str, nxt: str, redirect_uri: str) -> tuple[str, str, LoginState]:
    """A fresh ``(state, cookie value, record)``."""
    cookie = secrets.token_urlsafe(32)
    record = LoginState(provider, secrets.token_urlsafe(32), secrets.token_urlsafe(48), nxt,
                        redirect_uri, _digest(cookie))
    return secrets.token_urlsafe(32), cookie, record


async def save(store: Store, state: str, record: LoginState, limits: Limits = Limits(),
               group: str = "") -> Full | None:
    """Store ``record`` under ``state`` unless a limit is reached (then a :class:`Full`)."""
    full = await store.save_login_state(state, json.dumps(asdict(record)), TTL_SECONDS,
                                        limits.pending_max, limits.per_address, group)
    return None if full is None else Full(*full)


async def discard(store: Store, state: str) -> None:
    """Forget a record that will not be used (the provider could not be asked)."""
    await store.discard_login_state(state)


async def take(store: Store, state: str) -> LoginState | None:
    """The record of ``state``, deleting it; None if unknown, expired or already used."""
    if not state or len(state) > 200:
        return None
    raw = await store.take_login_state(state)
    if not raw:
        return None
    try:
        return LoginState(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def bound_to(record: LoginState, cookie: str) -> bool:
    """Whether the browser that sent ``cookie`` is the one that started this login."""
    return bool(cookie) and hmac.compare_digest(record.binding, _digest(cookie))
