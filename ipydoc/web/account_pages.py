"""The logged-in user's account: ``/hub/password`` and personal API tokens (``/hub/token``).

``/hub/password`` changes the user's own password: current password, the new one twice,
the usual strength rule.  Checking the current password counts against the same
per-account and per-address limits as the login form, so a stolen session cannot be used
to guess it.  On success every session of the user ends and this browser gets a fresh one
(a new session id: whoever knew the old one is out too), and the user's personal API
tokens are revoked unless the form's "keep my API tokens" box is ticked: whoever took over
the account may have made one.  What those sessions and tokens have open (kernel and
terminal WebSockets) is closed at once (:mod:`ipydoc.access.gate`).  Accounts of an
external provider have no local password (their hash is not argon2) and get a plain
message.

A new token is shown once: create is POST → redirect → GET, and the token waits (by
session id, a minute at most) for that one page view, so a reload cannot make another.
The form's ``scope`` boxes choose its scopes (:mod:`ipydoc.access.tokens`: ``read`` and
``servers`` ticked by default; ``admin`` offered to admins only; a POST without the boxes
gets the default, as before scopes existed).  Revoking asks for
confirmation without JavaScript (``confirmed=1``).
"""

from __future__ import annotations

import time
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access import tokens
from ipydoc.access.login_limits import LoginLimits, client_group
from ipydoc.access.origin import request_origin
from ipydoc.access.passwords import (
    MIN_LENGTH,
    WeakPassword,
    check_strength,
    hash_password_async,
    verify_password,
)
from ipydoc.access.sessions import Session
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.state.users import User
from ipydoc.web.login_pages import paused
from ipydoc.web.pages import Pages, RedisDown, notice, redis_down
from ipydoc.web.present import when


def has_local_password(user: User | None) -> bool:
    return bool(user and user.password_hash.startswith("$argon2"))


class AccountPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)
    log = Logger()

    def __init__(self, pages: Pages, limits: LoginLimits, routing: Routing) -> None:
        self.pages = pages
        self.limits = limits
        self.routing = routing
        self._reveal: dict[str, tuple[float, str, dict[str, Any]]] = {}

    @property
    def store(self) -> Any:
        return self.pages.store

    # -- /hub/password -------------------------------------------------------------------
    async def _password_page(self, request: IRequest, session: Session, user: User | None, *,
                             error: str = "", code: int = 200) -> bytes:
        return self.pages.render(
            request, "password.html", code, user=session.user, csrf=session.csrf,
            page="password", is_admin=await self.pages.is_admin(session.user),
            local=has_local_password(user), error=error, min_length=MIN_LENGTH)

    @app.route("/password", methods=["GET"])
    async def password_page(self, request: IRequest) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        return await self._password_page(request, session,
                                         await self.store.get_user(session.user))

    @app.route("/password", methods=["POST"])
    async def password_change(self, request: IRequest) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        name = session.user
        user = await self.store.get_user(name)
        page = self._password_page
        if not has_local_password(user):
            return await page(request, session, user, code=409)
        current, new, again = arg(request, "current"), arg(request, "new"), arg(request, "again")
        if new != again:
            return await page(request, session, user, code=400,
                              error="The two new passwords differ; type the same one twice.")
        try:
            check_strength(new)
        except WeakPassword as e:
            return await page(request, session, user, code=400, error=str(e).capitalize() + ".")
        group = client_group(request)
        refusal = await self.limits.check(name, group)
        if refusal is None and not await verify_password(user.password_hash, current):
            refusal = await self.limits.failed(name, group)
            self.log.info("password change refused for {name} from {addr}: wrong current "
                          "password", name=name, addr=group)
            await self.store.add_event("password-refused", name, "wrong current password")
            if refusal is None:
                return await page(request, session, user, code=403,
                                  error="Your current password is wrong.")
        if refusal is not None:
            paused(request, refusal)
            return await page(request, session, user, code=429, error=refusal.message)
        if new == current:
            return await page(request, session, user, code=400,
                              error="The new password is your current one; choose another.")
        await self.store.update_user(name, password=await hash_password_async(new))
        await self.limits.succeeded(name)
        # Tokens first: ending the sessions then checks every open connection once.
        revoked = (0 if arg(request, "keep_tokens") == "1"
                   else await self.store.revoke_tokens(name))
        ended = await self.store.revoke_sessions(name)
        await self.pages.gate.recheck_exchanges()
        await self.pages.sessions.create(request, name)
        others = max(0, ended - 1)
        await self.store.add_event(
            "password-changed", name,
            f"by the user; {others} other session{'s' if others != 1 else ''}"
            f" ended, {revoked} API token{'s' if revoked != 1 else ''} revoked")
        self.log.info("{name} changed their password", name=name)
        return self.pages.redirect(request, "/hub/home?done=password")

    # -- /hub/token ----------------------------------------------------------------------
    async def token_page(self, request: IRequest, session: Session, *, created: str = "",
                         created_info: dict | None = None, error: str = "", note: str = "",
                         chosen: tuple[str, ...] | None = None, code: int = 200) -> bytes:
        return self.pages.render(
            request, "token.html", code, user=session.user, csrf=session.csrf, page="token",
            is_admin=await self.pages.is_admin(session.user),
            tokens=await self.store.list_tokens(session.user), created=created,
            created_info=created_info, error=error, note=note, choices=tokens.EXPIRY_CHOICES,
            scopes=[s for s in tokens.SCOPES
                    if s != "admin" or await self.pages.is_admin(session.user)],
            chosen=chosen if chosen is not None else tokens.DEFAULT_SCOPES,
            notice=notice(request), now=time.time(), origin=request_origin(request),
            server_url=(request_origin(request) if not self.routing.subdomain else "")
            + self.routing.user_url(session.user, "", request))

    @app.route("/token", methods=["GET"])
    async def token_list(self, request: IRequest) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        created, info = "", None
        reveal = self._reveal.pop(session.id, None)
        if reveal is not None and reveal[0] > time.monotonic():
            _, created, info = reveal
        return await self.token_page(request, session, created=created, created_info=info)

    @app.route("/token", methods=["POST"])
    async def token_create(self, request: IRequest) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        note = arg(request, "note").strip()
        try:
            expires_in = int(arg(request, "expires_in") or "0")
        except ValueError:
            expires_in = -1
        if not 0 <= expires_in <= tokens.MAX_EXPIRY:
            return await self.token_page(request, session, note=note, code=400,
                                         error="Choose when the token expires (at most a year).")
        if len(note) > tokens.MAX_NOTE or any(ord(c) < 32 for c in note):
            return await self.token_page(request, session, note=note[:tokens.MAX_NOTE], code=400,
                                         error=f"A note is one line of at most {tokens.MAX_NOTE} "
                                               "characters.")
        wanted = tuple(v.decode("utf-8", "replace") for v in request.args.get(b"scope", []))
        if not wanted and arg(request, "scopes_shown") != "1":
            wanted = tokens.DEFAULT_SCOPES  # a form without the boxes (older pages, scripts)
        try:
            scopes = tokens.checked_scopes(wanted, admin=await self.pages.is_admin(session.user))
        except tokens.BadScopes as e:
            return await self.token_page(request, session, note=note, chosen=wanted, code=400,
                                         error=str(e)[0].upper() + str(e)[1:] + ".")
        token = tokens.new_token()
        expires = time.time() + expires_in if expires_in else None
        info = await self.store.create_token(session.user, tokens.token_hash(token), note, expires,
                                             scopes)
        await self.store.add_event("token-created", session.user,
                                   f"id {info['id']}, scopes {' '.join(scopes)}, expires "
                                   f"{when(expires) if expires else 'never'}")
        now = time.monotonic()
        self._reveal = {k: v for k, v in self._reveal.items() if v[0] > now}
        self._reveal[session.id] = (now + 60, token, info)
        return self.pages.redirect(request, "/hub/token")

    @app.route("/token/<token_id>/revoke", methods=["POST"])
    async def token_revoke(self, request: IRequest, token_id: str) -> bytes:
        session = await self.pages.user_session(request)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        if arg(request, "confirmed") != "1":
            listed = {t["id"]: t for t in await self.store.list_tokens(session.user)}
            if token_id not in listed:
                return self.pages.error(request, 404, "Not found", "There is no such token.",
                                        session)
            note = listed[token_id]["note"]
            return self.pages.confirm(
                request, session, title="Revoke this token?",
                message=f"Scripts using the token {token_id}"
                        f"{f' ({note})' if note else ''} will be refused at once.",
                action=f"/hub/token/{token_id}/revoke", button="Revoke", fields={},
                back="/hub/token")
        if not await self.store.revoke_token(session.user, token_id):
            return self.pages.error(request, 404, "Not found", "There is no such token.", session)
        await self.pages.gate.recheck_exchanges()  # what the token has open is closed too
        await self.store.add_event("token-revoked", session.user, f"id {token_id}")
        return self.pages.redirect(request, "/hub/token?done=revoked")
