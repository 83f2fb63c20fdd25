"""The hub's routes for login providers: ``/hub/oauth/<id>/start`` sends the browser to
the provider, ``/hub/oauth/<id>/callback`` is where it comes back (register this URL with
the provider: ``{server.public_url}/hub/oauth/<id>/callback``).

The providers themselves (:mod:`ipydoc.auth`) know the protocols; this page group is the
web side.  The callback checks, in order: the login state exists, is unused and belongs
to this browser (:mod:`ipydoc.auth.login_state`); the provider's answer
(:mod:`ipydoc.auth.oidc`, :mod:`ipydoc.auth.github`); the identity owns the name or the
name is free (:mod:`ipydoc.auth.identities`); the account is not disabled.  Each refusal
shows the login page with the reason and logs a detail without secrets.
"""

from __future__ import annotations

import re
import time
from typing import Mapping

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.cookies import cookie_header, read_cookie
from ipydoc.access.login_limits import client_group
from ipydoc.access.origin import request_origin
from ipydoc.auth import login_state
from ipydoc.auth.base import Provider, Refused
from ipydoc.auth.identities import Identities, NameTaken
from ipydoc.edge.redirects import safe_next
from ipydoc.edge.request_args import arg
from ipydoc.state.users import NameReserved
from ipydoc.web import metrics
from ipydoc.web.login_pages import LoginPages
from ipydoc.web.pages import Pages, RedisDown, redis_down

EXPIRED = "This login has expired or was started in another browser; please log in again."
_ERROR_CODE = re.compile(r"[a-z_]{1,40}")


def binding_cookie(request: IRequest, value: str, max_age: int) -> None:
    """Set (or, with ``max_age`` 0, clear) the cookie binding a provider flow to this
    browser (login, and the history page's GitHub connect)."""
    request.responseHeaders.addRawHeader(b"Set-Cookie", cookie_header(
        login_state.BINDING_COOKIE, value, secure=request.isSecure(), max_age=max_age,
        path=login_state.COOKIE_PATH).encode())


class ProviderPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)
    log = Logger()

    def __init__(self, pages: Pages, login: LoginPages, providers: Mapping[str, Provider], *,
                 limits: login_state.Limits = login_state.Limits(), base_url: str = "") -> None:
        self.pages = pages
        self.login = login  # the login form (refusals) and where a fresh login goes
        self.providers = providers  # by id ([auth.github], [auth.oidc.<id>])
        self.limits = limits  # auth.oauth_pending_max, auth.oauth_starts_per_address
        self.base_url = base_url.rstrip("/")  # server.public_url; else the request's origin
        self._full_logged: dict[str, tuple[float, int]] = {}  # scope → (last line, since)

    async def _refuse(self, request: IRequest, provider: str, nxt: str, refusal: Refused,
                      code: int = 403) -> bytes:
        metrics.login(provider, "refused")
        self.log.info("login via {provider} refused: {detail}", provider=provider,
                      detail=refusal.detail)
        await self.pages.store.add_event("login-refused", refusal.name,
                                         f"{provider}: {refusal.detail}")
        return self.login.form(request, nxt, refusal.reason, code=code)

    def _log_full(self, provider: str, scope: str, addr: str) -> None:
        """A refused start, logged at most once a minute per limit (a flood must not flood
        the log too), with how many were refused since the last line."""
        last, since = self._full_logged.get(scope, (0.0, 0))
        now = time.monotonic()
        if now - last < 60:
            self._full_logged[scope] = (last, since + 1)
            return
        self._full_logged[scope] = (now, 0)
        self.log.warn("login via {provider} not started: {scope} limit reached ({addr}; {n} "
                      "more refused since the last such line)", provider=provider, scope=scope,
                      addr=addr, n=since)

    @app.route("/oauth/<provider_id>/start", methods=["GET"])
    async def start(self, request: IRequest, provider_id: str) -> bytes:
        pages = self.pages
        provider = self.providers.get(provider_id)
        if provider is None:
            return pages.error(request, 404, "Not found", "There is no such login provider.")
        nxt = safe_next(arg(request, "next"), "")
        base = self.base_url or request_origin(request)
        redirect_uri = f"{base}/hub/oauth/{provider_id}/callback"
        state, cookie, record = login_state.new_login(provider_id, nxt, redirect_uri)
        # Counted and stored first (one Lua script), so a flood of anonymous starts is
        # refused before it costs the provider a request or Redis a key.
        full = await login_state.save(pages.store, state, record, self.limits,
                                      client_group(request))
        if full is not None:
            self._log_full(provider_id, full.scope, client_group(request))
            metrics.login(provider_id, "paused")
            request.setHeader(b"Retry-After", str(full.retry_after).encode())
            request.setHeader(b"Cache-Control", b"no-store")
            return self.login.form(request, nxt, full.message, code=429)
        try:
            url = await provider.authorize_url(redirect_uri, state, record.nonce,
                                               record.challenge)
        except Refused as e:
            await login_state.discard(pages.store, state)
            return await self._refuse(request, provider_id, nxt, e, 502)
        binding_cookie(request, cookie, login_state.TTL_SECONDS)
        return pages.redirect(request, url, 302)

    @app.route("/oauth/<provider_id>/callback", methods=["GET"])
    async def callback(self, request: IRequest, provider_id: str) -> bytes:
        pages, store, refuse = self.pages, self.pages.store, self._refuse
        provider = self.providers.get(provider_id)
        if provider is None:
            return pages.error(request, 404, "Not found", "There is no such login provider.")
        record = await login_state.take(store, arg(request, "state"))
        cookie = (read_cookie(request, login_state.BINDING_COOKIE) or b"").decode(
            "ascii", "replace")
        binding_cookie(request, "", 0)
        if record is None or record.provider != provider_id:
            return await refuse(request, provider_id, "",
                                Refused(EXPIRED, "unknown, expired or already used state"))
        if not login_state.bound_to(record, cookie):
            return await refuse(request, provider_id, "",
                                Refused(EXPIRED, "state not started by this browser"))
        nxt = record.next
        error = arg(request, "error")
        if error:
            error = error if _ERROR_CODE.fullmatch(error) else "unknown"
            reason = (f"You did not allow the login at {provider.display_name}."
                      if error == "access_denied" else
                      f"{provider.display_name} refused the login ({error}).")
            return await refuse(request, provider_id, nxt,
                                Refused(reason, f"provider answered error {error}"))
        code = arg(request, "code")
        if not code:
            return await refuse(request, provider_id, nxt,
                                Refused(EXPIRED, "callback without code"))
        try:
            identity = await provider.complete(code, record.redirect_uri, record.nonce,
                                               record.verifier)
        except Refused as e:
            return await refuse(request, provider_id, nxt, e)
        try:
            resolved = await Identities(store).resolve(identity.provider, identity.subject,
                                                       identity.name, bool(identity.admin))
        except NameReserved as e:  # a removed account's files are kept (ipydoc.control.removal)
            return await refuse(request, provider_id, nxt, Refused(
                f"The user name {e} belonged to an account that was removed from this site; "
                "its files are kept, so no new account can use the name until an "
                "administrator deletes them (or restores the account, if it was yours).",
                f"{identity.detail}: name {e} is reserved by a removed account", str(e)))
        except NameTaken as e:
            return await refuse(request, provider_id, nxt, Refused(
                f"The user name {e} already belongs to another account on this site, so "
                f"your {provider.display_name} account cannot use it; ask an administrator.",
                f"{identity.detail}: name {e} belongs to a local account or another identity",
                str(e)))
        name = resolved.name
        user = await store.get_user(name)
        if user is None or user.disabled:
            return await refuse(request, provider_id, nxt, Refused(
                "This account is disabled.", f"{identity.detail}: account {name} is disabled",
                name))
        if identity.admin is not None and user.admin != identity.admin:
            await store.update_user(name, admin=identity.admin)
            await store.add_event("user-admin", name,
                                  f"{'granted' if identity.admin else 'revoked'}"
                                  f" by {provider_id} at login")
        if identity.groups is not None:  # the provider's memberships (manual ones stay)
            joined, left = await store.sync_provider_groups(name, provider_id,
                                                            list(identity.groups))
            if joined or left:
                await store.add_event("user-groups", name, f"{provider_id} at login: joined "
                                      f"{','.join(joined) or '-'}, left {','.join(left) or '-'}")
        if resolved.created:
            await store.add_event("user-add", name, f"first login via {provider_id}")
        previous = await pages.sessions.from_request(request)
        if previous is not None:  # a new login replaces the session this browser had
            await store.delete_session(previous.id)
        await pages.sessions.create(request, name)
        await store.add_event("login", name, f"{provider_id} ({identity.detail})")
        metrics.login(provider_id, "ok")
        self.log.info("{name} logged in via {provider}", name=name, provider=provider_id)
        return await self.login.after_login(request, name, nxt)
