"""Local accounts in the hub: the answers to refused logins, and ``/hub/password``.

Kept out of :mod:`ipydoc.web.app` so the login handler only asks :mod:`ipydoc.access.login_limits`
and calls these.  A refused login says plainly why (wrong name or password, or logins
paused with the time left) and never which names exist.

``/hub/password`` changes the logged-in user's own password: current password, the new
one twice, the usual strength rule.  Checking the current password counts against the
same per-account and per-address limits as the login form, so a stolen session cannot be
used to guess it.  On success every session of the user ends and this browser gets a
fresh one (a new session id: whoever knew the old one is out too), and the user's personal
API tokens are revoked unless the form's "keep my API tokens" box is ticked: whoever
took over the account may have made one.  What those sessions and tokens have open
(kernel and terminal WebSockets) is closed at once (:mod:`ipydoc.access.gate`).  Accounts of an external
provider have no local password (their hash is not argon2) and get a plain message.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.login_limits import Refusal, client_group
from ipydoc.access.passwords import (
    MIN_LENGTH,
    WeakPassword,
    check_strength,
    hash_password_async,
    verify_password,
)
from ipydoc.access.sessions import Session
from ipydoc.state.store import User

log = Logger()

WRONG = "Wrong user name or password."


def has_local_password(user: User | None) -> bool:
    return bool(user and user.password_hash.startswith("$argon2"))


def _form(request: IRequest, key: str) -> str:
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")


def _paused(request: IRequest, refusal: Refusal) -> None:
    request.setHeader(b"Retry-After", str(refusal.retry_after).encode())


def login_limited(hub: Any, request: IRequest, nxt: str, typed: str, name: str | None,
                        group: str, refusal: Refusal) -> bytes:
    """A login refused before its password is checked: the account or address is paused."""
    log.info("login refused for {name} from {addr}: {scope} paused for {s} s",
             name=name or "(invalid name)", addr=group, scope=refusal.scope,
             s=refusal.retry_after)
    _paused(request, refusal)
    return hub.login_form(request, nxt, refusal.message, typed, 429)


async def login_failed(hub: Any, request: IRequest, nxt: str, typed: str, name: str | None,
                       group: str) -> bytes:
    """A wrong name or password: count it, and say so (pausing if that was one too many)."""
    refusal = await hub.login_limits.failed(name, group)
    log.info("login refused for {name} from {addr}: wrong name or password",
             name=name or "(invalid name)", addr=group)
    if name:
        await hub.store.add_event("login-refused", name, "wrong name or password")
    if refusal is None:
        return hub.login_form(request, nxt, WRONG, typed, 403)
    where = f"address {group}" if refusal.scope == "address" else "account"
    await hub.store.add_event("login-paused", name or "",
                              f"{where} paused for {refusal.retry_after} s")
    _paused(request, refusal)
    return hub.login_form(request, nxt, f"{WRONG} {refusal.message}", typed, 429)


# -- /hub/password ---------------------------------------------------------------------------
async def _page(hub: Any, request: IRequest, session: Session, user: User | None, *,
                error: str = "", code: int = 200) -> bytes:
    return hub.render(request, "password.html", code, user=session.user, csrf=session.csrf,
                      page="password", is_admin=await hub.is_admin(session.user),
                      local=has_local_password(user), error=error, min_length=MIN_LENGTH)


async def password_page(self: Any, request: IRequest) -> bytes:
    session = await self.user_session(request)
    if not isinstance(session, Session):
        return session
    return await _page(self, request, session, await self.store.get_user(session.user))


async def password_change(self: Any, request: IRequest) -> bytes:
    session = await self.user_session(request)
    if not isinstance(session, Session):
        return session
    if not self.post_allowed(request, session.csrf):
        return self.expired_form(request, session)
    name = session.user
    user = await self.store.get_user(name)
    if not has_local_password(user):
        return await _page(self, request, session, user, code=409)
    current, new, again = _form(request, "current"), _form(request, "new"), _form(request, "again")
    if new != again:
        return await _page(self, request, session, user, code=400,
                           error="The two new passwords differ; type the same one twice.")
    try:
        check_strength(new)
    except WeakPassword as e:
        return await _page(self, request, session, user, code=400,
                           error=str(e).capitalize() + ".")
    group = client_group(request)
    refusal = await self.login_limits.check(name, group)
    if refusal is None and not await verify_password(user.password_hash, current):
        refusal = await self.login_limits.failed(name, group)
        log.info("password change refused for {name} from {addr}: wrong current password",
                 name=name, addr=group)
        await self.store.add_event("password-refused", name, "wrong current password")
        if refusal is None:
            return await _page(self, request, session, user, code=403,
                               error="Your current password is wrong.")
    if refusal is not None:
        _paused(request, refusal)
        return await _page(self, request, session, user, code=429, error=refusal.message)
    if new == current:
        return await _page(self, request, session, user, code=400,
                           error="The new password is your current one; choose another.")
    await self.store.update_user(name, password=await hash_password_async(new))
    await self.login_limits.succeeded(name)
    # Tokens first: ending the sessions then checks every open connection once.
    tokens = 0 if _form(request, "keep_tokens") == "1" else await self.store.revoke_tokens(name)
    ended = await self.store.revoke_sessions(name)
    await self.gate.recheck_exchanges()
    await self.sessions.create(request, name)
    others = max(0, ended - 1)
    await self.store.add_event("password-changed", name,
                               f"by the user; {others} other session{'s' if others != 1 else ''}"
                               f" ended, {tokens} API token{'s' if tokens != 1 else ''} revoked")
    log.info("{name} changed their password", name=name)
    return self.redirect(request, "/hub/home?done=password")


def install(hub_class: Any) -> None:
    """Add ``/hub/password`` to the hub's Klein app."""
    app = hub_class.app
    app.route("/password", methods=["GET"])(password_page)
    app.route("/password", methods=["POST"])(password_change)
