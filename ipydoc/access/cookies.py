"""Signed cookie values, the attributes every ipydoc cookie gets, and how one is read.

A session cookie carries a random id plus an HMAC of it under the daemon's secret, so a
forged or mangled cookie is refused without a Redis round trip; the id is only looked up
(as a hash) in Redis, where revoking the session is deleting the key.

Cookie tossing: a page on a sibling host (in subdomain mode every user's host is one,
and runs that user's code) can write ``document.cookie = "ipydoc-session=...;
Domain=<domain>"``, and the browser then sends it to the hub as well.  Over https every
ipydoc cookie is therefore named ``__Host-<name>`` (with ``Secure``, ``Path=/`` and no
``Domain``, which browsers enforce for that prefix: no other host can set or shadow it),
and only that name is read.  Over plain http the prefix is impossible, so a cookie name
that arrives twice in one request (the real one and a planted one) is read as absent.
"Over https" is :meth:`Request.isSecure`, which behind a TLS-terminating proxy follows
``server.public_url`` and trusted ``X-Forwarded-Proto`` (:mod:`ipydoc.edge.forwarding`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from twisted.web.iweb import IRequest

SESSION_COOKIE = "ipydoc-session"
LOGIN_CSRF_COOKIE = "ipydoc-login-csrf"
#: The prefix browsers accept only with ``Secure``, ``Path=/`` and no ``Domain``.
HOST_PREFIX = "__Host-"


def load_secret(path: Path) -> bytes:
    """The daemon's signing secret, made once (0600) and kept in the state directory.

    A new secret is written to a private temporary file and linked into place, which
    fails if the file appeared meanwhile: two daemons starting at once on one fresh state
    directory (several daemons over one Redis) end up with the same secret, never a
    half-written one or one each."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
        short = True
    except FileNotFoundError:
        short = False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            data = secrets.token_bytes(64)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if short:  # a truncated secret signs nothing safely: replace it
            os.replace(tmp, path)
            return data
        try:
            os.link(tmp, path)
        except FileExistsError:  # another daemon made it first: use theirs
            return load_secret(path)
        return data
    finally:
        if tmp.exists():
            tmp.unlink()


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


def cookie_name(name: str, secure: bool) -> str:
    """What cookie ``name`` is called on the wire: ``__Host-name`` over https."""
    return HOST_PREFIX + name if secure else name


def cookie_header(name: str, value: str, *, secure: bool, max_age: int | None,
                  path: str = "/", same_site: str = "Lax") -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Lax (or ``same_site``), host-only; over
    https (``secure``) also Secure and named ``__Host-name``, which needs ``Path=/``
    (``path`` is then ignored)."""
    if secure:
        name, path = HOST_PREFIX + name, "/"
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", f"SameSite={same_site}"]
    if secure:
        parts.append("Secure")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join(parts)


def cookie_values(request: IRequest, name: bytes) -> list[bytes]:
    """Every value the request's ``Cookie`` header(s) give cookie ``name`` (in order)."""
    found = []
    for header in request.requestHeaders.getRawHeaders(b"cookie") or ():
        for part in header.split(b";"):
            key, eq, value = part.strip().partition(b"=")
            if eq and key.rstrip() == name:
                found.append(value)
    return found


def read_cookie(request: IRequest, name: str) -> bytes | None:
    """The value of ipydoc's cookie ``name`` as :func:`cookie_header` names it for this
    request; None if it is absent or sent more than once (one of them is then planted,
    and which one cannot be told: neither is believed)."""
    values = cookie_values(request, cookie_name(name, request.isSecure()).encode())
    return values[0] if len(values) == 1 else None
