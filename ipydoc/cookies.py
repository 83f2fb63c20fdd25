"""Signed cookie values and the attributes every ipydoc cookie gets.

A session cookie carries a random id plus an HMAC of it under the daemon's secret, so a
forged or mangled cookie is refused without a Redis round trip; the id is only looked up
(as a hash) in Redis, where revoking the session is deleting the key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SESSION_COOKIE = "ipydoc-session"
LOGIN_CSRF_COOKIE = "ipydoc-login-csrf"


def load_secret(path: Path) -> bytes:
    """The daemon's signing secret, made once (0600) and kept in the state directory."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        data = secrets.token_bytes(64)
        f.write(data)
    return data


class Signer:
    def __init__(self, secret: bytes, purpose: str) -> None:
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()

    def _mac(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:43]

    def sign(self, value: str) -> str:
        return f"{value}.{self._mac(value)}"

    def unsign(self, signed: str | bytes | None) -> str | None:
        """The value, or None if ``signed`` is missing or not signed by us."""
        if signed is None:
            return None
        if isinstance(signed, bytes):
            try:
                signed = signed.decode("ascii")
            except UnicodeDecodeError:
                return None
        value, _, mac = signed.rpartition(".")
        if not value or not hmac.compare_digest(mac, self._mac(value)):
            return None
        return value


def new_id() -> str:
    return secrets.token_urlsafe(32)


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None,
                  path: str = "/") -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Lax, Secure under TLS, host-only."""
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Lax"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)
