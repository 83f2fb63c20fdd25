"""Who is calling the API, and whether they may call this endpoint.

A request carries either a personal token (``Authorization: token ipd_...`` or ``Bearer``)
or the hub's login cookie; a request with an ``Authorization`` header is a token request
and never falls back to the cookie.

* Token requests skip CSRF and ``Origin``: a browser never attaches a token by itself.
* Cookie requests follow the pages' rule exactly (:meth:`ipydoc.web.pages.Pages.
  post_allowed`): a state change needs the session's CSRF token (``X-CSRF-Token``) and a
  same-site ``Origin``; else 403 ``csrf``.
* Scopes: :mod:`ipydoc.access.tokens`.  A session holds ``read servers``, plus ``admin``
  while its user is an admin.  ``admin`` counts only while the user is an admin: it is
  checked on every request.
* On ``/users/{name}/...`` another user's things need ``admin``: 403 ``forbidden`` before
  anything about the name is looked up, so a non-admin cannot probe which users exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.iweb import IRequest

from ipydoc.access.tokens import TokenCheck, effective, from_authorization
from ipydoc.web.api.endpoints import Endpoint
from ipydoc.web.api.errors import ApiError
from ipydoc.web.pages import Pages

CHALLENGE = b'token realm="ipydoc", charset="UTF-8"'


@dataclass(frozen=True)
class Caller:
    name: str
    admin: bool                  # an admin now (and the credential may act as one)
    kind: str                    # "token" or "session"
    scopes: frozenset[str]       # effective scopes
    token_id: str = ""
    token_digest: str = ""

    def holds(self, scope: str) -> bool:
        return scope in ("", "any") or scope in self.scopes

    @property
    def acts_as_admin(self) -> bool:
        return self.admin and "admin" in self.scopes


class Authenticator:
    def __init__(self, pages: Pages, tokens: TokenCheck) -> None:
        self.pages = pages
        self.tokens = tokens

    async def caller(self, request: IRequest, endpoint: Endpoint) -> Caller | None:
        """The caller (None for a public endpoint without a credential); raises 401/403."""
        header = request.getHeader(b"authorization")
        if header is not None:
            caller = await self._token_caller(header)
        else:
            caller = await self._session_caller(request, endpoint)
        if caller is None and endpoint.scope:
            raise ApiError("unauthorized", "log in, or send a personal token as "
                                           "'Authorization: token ipd_...'")
        return caller

    async def _token_caller(self, header: bytes) -> Caller:
        token = from_authorization(header)
        found = await self.tokens.lookup(token) if token else None
        if found is None:
            raise ApiError("unauthorized", "invalid, expired or revoked token")
        digest, record, user = found
        if user is None or user.disabled:
            raise ApiError("forbidden", "the token's account is disabled")
        await self.tokens.touch(digest)
        scopes = effective(record["scopes"])
        admin = await self.pages.store.is_admin(user.name)  # the one rule: groups count
        return Caller(user.name, admin, "token", scopes, record["id"], digest)

    async def _session_caller(self, request: IRequest, endpoint: Endpoint) -> Caller | None:
        session = await self.pages.sessions.from_request(request)
        if session is None:
            return None
        if endpoint.changes_state and not self.pages.post_allowed(request, session.csrf):
            raise ApiError("csrf", "a cookie request that changes something needs the "
                                   "X-CSRF-Token header and this site's Origin")
        user = await self.pages.store.get_user(session.user)
        if user is None or user.disabled:
            raise ApiError("forbidden", "this account is disabled")
        admin = await self.pages.store.is_admin(user.name)  # the one rule: groups count
        scopes = effective(("servers", "admin") if admin else ("servers",))
        return Caller(user.name, admin, "session", scopes)


def authorize(caller: Caller | None, endpoint: Endpoint, params: dict[str, str]) -> None:
    """Raise 403 unless ``caller`` may call ``endpoint`` for ``params``."""
    if caller is None:
        return  # a public endpoint (caller() raised 401 for the others)
    if endpoint.scope == "admin":
        if not caller.admin:
            raise ApiError("forbidden", "this is for administrators")
        need = "admin"
    else:
        need = endpoint.scope
    owner = params.get("name")
    if owner is not None and owner != caller.name:
        if not caller.admin:
            raise ApiError("forbidden", "these are another user's; only administrators "
                                        "may act on them")
        need = "admin"
    if not caller.holds(need):
        raise ApiError("missing_scope", f"this needs a token with the {need} scope (this "
                                        f"one has: {' '.join(sorted(caller.scopes))})")
