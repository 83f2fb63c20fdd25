"""The state of one login at a provider, kept server-side between the redirect to the
provider and its callback.

The browser carries only the protocol's ``state`` (in the URL) and a random binding
value (in a cookie scoped to /hub/oauth/); Redis keeps ``state`` → {provider, nonce, PKCE
verifier, next, redirect_uri, hash of the binding} for ten minutes.  The callback takes the
record out exactly once (MULTI GET+DEL), so a code/state pair cannot be replayed, and
refuses it unless the cookie matches, so nobody can finish a login they started in their
own browser inside someone else's (login CSRF).  Only hashes of ``state`` and the binding
value are stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import asdict, dataclass
from typing import Any

from ipydoc.store import P

TTL_SECONDS = 600
BINDING_COOKIE = "ipydoc-oauth"
COOKIE_PATH = "/hub/oauth/"


def state_key(state: str) -> str:
    return f"{P}login-state:{hashlib.sha256(state.encode()).hexdigest()}"


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


async def save(redis: Any, state: str, record: LoginState) -> None:
    await redis.set(state_key(state), json.dumps(asdict(record)), expire=TTL_SECONDS)


async def take(redis: Any, state: str) -> LoginState | None:
    """The record of ``state``, deleting it; None if unknown, expired or already used."""
    if not state or len(state) > 200:
        return None
    t = await redis.multi()
    t.get(state_key(state))
    t.delete(state_key(state))
    raw, _ = await t.commit()
    if not raw:
        return None
    try:
        return LoginState(**json.loads(raw))
    except (TypeError, ValueError):
        return None


def bound_to(record: LoginState, cookie: str) -> bool:
    """Whether the browser that sent ``cookie`` is the one that started this login."""
    return bool(cookie) and hmac.compare_digest(record.binding, _digest(cookie))
