"""The returning-browser hint: which account last logged in on this browser (issue 15 §2).

Every login sets it (any provider: the login page's ``after_login``); the login page
reads it to start that account's stopped server while the person types their password
(:mod:`ipydoc.servers.prestart`, docs/cold_login.md).  It grants nothing: it is not a
session and opens no page, it only names an account.  So that it names the right one:

- it is signed with the daemon's secret (its own purpose): a forged or edited hint is
  ignored;
- it carries the account's creation time: a new account of a recycled name is not the
  account that logged in on this browser;
- its expiry is inside the signed value, so a browser keeping it longer gains nothing;
- ``SameSite=Strict``: a link or form on another site that leads to the login page does
  not send it (a bookmark, a typed URL and ipydoc's own redirects do); ``HttpOnly``;
- logging out deletes it (and ``Clear-Site-Data`` with it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from twisted.web.iweb import IRequest

from ipydoc.access.cookies import Signer, cookie_header, read_cookie
from ipydoc.names import InvalidName, validate_name

RETURN_COOKIE = "ipydoc-return"
#: How long a browser is remembered after its last login.
LIFETIME = 30 * 86400


@dataclass(frozen=True)
class ReturnHint:
    name: str
    created_ms: int  # the account's creation time (ms), to tell a recycled name


class ReturnHints:
    def __init__(self, secret: bytes, lifetime: int = LIFETIME,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer = Signer(secret, "return-hint")
        self.lifetime = lifetime
        self.clock = clock

    def issue(self, request: IRequest, name: str, created: float) -> None:
        """Remember on this browser that ``name`` (the account created at ``created``)
        logged in."""
        expires = int(self.clock()) + self.lifetime
        _set(request, self.signer.sign(f"{name}~{int(created * 1000)}~{expires}"),
             self.lifetime)

    def read(self, request: IRequest) -> ReturnHint | None:
        """The account this browser logged in as, or None (none, forged, expired)."""
        value = self.signer.unsign(read_cookie(request, RETURN_COOKIE))
        if value is None:
            return None
        parts = value.split("~")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        if int(parts[2]) <= self.clock():
            return None
        try:
            return ReturnHint(validate_name(parts[0]), int(parts[1]))
        except InvalidName:
            return None

    @staticmethod
    def forget(request: IRequest) -> None:
        """Delete the hint (logout)."""
        _set(request, "", 0)


def _set(request: IRequest, value: str, max_age: int) -> None:
    request.responseHeaders.addRawHeader(b"Set-Cookie", cookie_header(
        RETURN_COOKIE, value, secure=request.isSecure(), max_age=max_age,
        same_site="Strict").encode())
