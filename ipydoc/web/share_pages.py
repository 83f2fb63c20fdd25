"""Sharing from the hub's pages (issue 19 §3): the shares section of home, its forms.

Home shows the owner the shares of each of their servers (with a form to add one and a
button to revoke each) and every user the servers shared with them (with an open link);
:func:`home_shares` gathers that for the ``shares.html`` partial that ``home.html``
includes.  ``POST /hub/shares/NAME`` adds or changes a share, ``POST /hub/unshare/NAME``
revokes one (confirmed, like every destructive action: the page's script asks, and
without JavaScript a confirmation page does).  Only NAME's own session may (admins use
the CLI or the API); the forms follow the one CSRF and ``Origin`` rule of
:mod:`ipydoc.web.pages`; the checks and events are :mod:`ipydoc.access.shares`'.
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from twisted.web.iweb import IRequest

from ipydoc.access.sessions import Session
from ipydoc.access.shares import ShareError, add_share, remove_share, share_target
from ipydoc.edge.request_args import arg
from ipydoc.edge.routing import Routing
from ipydoc.web.pages import Pages, RedisDown, redis_down


async def home_shares(store: Any, routing: Routing, name: str,
                      request: IRequest | None = None) -> dict[str, Any]:
    """What the shares section of ``name``'s home shows: ``given`` (the shares of their
    servers) and ``received`` (the servers shared with them, each once, the larger mode
    first, with its URL)."""
    given = [s.public() for s in await store.owner_shares(name)]
    received: dict[str, dict[str, Any]] = {}
    for s in await store.shared_with(name):
        seen = received.get(s.server)
        if seen is None or (seen["mode"] == "view" and s.mode == "rw"):
            received[s.server] = {**s.public(),
                                  "lab_url": routing.user_url(s.server, "lab", request),
                                  "tree_url": routing.user_url(s.server, "", request)}
    return {"given": given, "received": list(received.values())}


class SharePages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)

    def __init__(self, pages: Pages) -> None:
        self.pages = pages

    async def _form(self, request: IRequest, name: str) -> Session | bytes:
        session = await self.pages.owner_session(request, name)
        if not isinstance(session, Session):
            return session
        if not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        return session

    @app.route("/shares/<name>", methods=["POST"])
    async def add(self, request: IRequest, name: str) -> bytes:
        """Share one of NAME's servers (``server``: "" the default) with a user or a
        group (``kind``, ``guest``) in ``mode``."""
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        try:
            key = share_target(name, arg(request, "server").strip().lower())
            await add_share(self.pages.store, key, arg(request, "kind") or "user",
                            arg(request, "guest").strip().lower(),
                            arg(request, "mode") or "rw", f"web:{name}")
        except ShareError as e:
            return self.pages.error(request, e.status, "Not shared", e.message, session)
        return self.pages.redirect(request, "/hub/home#shares")

    @app.route("/unshare/<name>", methods=["POST"])
    async def remove(self, request: IRequest, name: str) -> bytes:
        """Revoke one share of NAME's server: the guest is cut off at once."""
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        server, kind, guest = (arg(request, "server"), arg(request, "kind"),
                               arg(request, "guest"))
        if arg(request, "confirmed") != "1":
            return self.pages.confirm(
                request, session, title=f"Stop sharing with {guest}?",
                message="Their next request is refused and their open notebooks and "
                        "terminals on this server are disconnected.",
                action=f"/hub/unshare/{name}", button="Stop sharing",
                fields={"server": server, "kind": kind, "guest": guest},
                back="/hub/home#shares")
        try:
            key = share_target(name, server)
            if not await remove_share(self.pages.store, key, kind, guest, f"web:{name}"):
                raise ShareError(f"{key} is not shared with the {kind} {guest}", 404)
        except ShareError as e:
            return self.pages.error(request, e.status, "Not revoked", e.message, session)
        return self.pages.redirect(request, "/hub/home#shares")
