"""What a handler gets (:class:`Call`) and the helpers the handler groups share: looking
up a user (404), the server key a path names (``/users/{name}/server`` → the default
server's, ``/users/{name}/servers/{server}`` → ``NAME--SERVER``: :mod:`ipydoc.names`) and a
server as the API shows it (the pages' own state rule,
:meth:`ipydoc.web.pages.Pages.server_state`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from ipydoc.edge.routing import Routing
from ipydoc.names import (
    SERVER_KEY_SEPARATOR,
    InvalidName,
    server_key,
    validate_name,
    validate_server_name,
)
from ipydoc.state.servers import Server
from ipydoc.state.users import User
from ipydoc.web.api.auth import Caller
from ipydoc.web.api.endpoints import PREFIX, Endpoint
from ipydoc.web.api.errors import ApiError
from ipydoc.web.pages import Pages

#: States in which a server answers (a paused one is resumed by its first request).
LIVE = ("running", "paused")


@dataclass(frozen=True)
class Call:
    request: IRequest
    endpoint: Endpoint
    caller: Caller | None
    params: dict[str, str]
    query: dict[str, Any]
    body: dict[str, Any]

    @property
    def who(self) -> Caller:
        assert self.caller is not None  # every endpoint but the public ones has one
        return self.caller

    def by(self) -> str:
        """For events and logs: who did it, and how."""
        return f"{self.who.name} (API {self.who.kind})"


def paged(items: list[Any], query: dict[str, Any], default: int = 100) -> dict[str, Any]:
    offset, limit = query.get("offset", 0), query.get("limit", default)
    return {"items": items[offset:offset + limit], "total": len(items), "offset": offset,
            "limit": limit}


class Shared:
    """The collaborators every handler group uses."""

    def __init__(self, pages: Pages, routing: Routing) -> None:
        self.pages = pages
        self.routing = routing

    @property
    def store(self) -> Any:
        return self.pages.store

    @property
    def manager(self) -> Any:
        return self.pages.manager

    async def user(self, name: str) -> User:
        try:
            validate_name(name)
        except InvalidName as e:
            raise ApiError("invalid_name", f"invalid user name {name!r}: {e}") from None
        user = await self.store.get_user(name)
        if user is None:
            raise ApiError("not_found", f"no user {name}")
        return user

    async def key(self, call: Call) -> str:
        """The server key the call's path names, once its user exists (404 otherwise)."""
        user = (await self.user(call.params["name"])).name
        server = call.params.get("server")
        if server is None:
            return user
        try:
            return server_key(user, validate_server_name(server))
        except InvalidName as e:
            raise ApiError("invalid_name", f"invalid server name {server!r}: {e}") from None

    def server_item(self, name: str, record: Server | None, activity: dict[str, float],
                    request: IRequest | None) -> dict[str, Any]:
        """The API's view of the server ``name`` (a server key)."""
        state = self.pages.server_state(name, record)
        live = record is not None and state in LIVE
        user, _, server = name.partition(SERVER_KEY_SEPARATOR)
        return {
            "name": server, "user": user, "state": state, "ready": state == "running",
            "image": record.image if live and record else "",
            "profile": getattr(record, "profile", "") if live else "",
            "started": record.started if live and record else None,
            "paused_since": record.paused_since if record and state == "paused" else None,
            "last_activity": activity.get(name),
            "error": record.error if record and state in ("failed", "stopped") else "",
            "url": self.routing.user_url(name, "lab", request),
            "progress_url": (f"{PREFIX}/users/{user}/servers/{server}/progress" if server
                             else f"{PREFIX}/users/{user}/server/progress"),
        }

    async def server(self, name: str, request: IRequest | None) -> dict[str, Any]:
        record = await self.store.get_server(name)
        return self.server_item(name, record, await self.store.activity(), request)

    async def user_item(self, user: User, request: IRequest | None) -> dict[str, Any]:
        return {**user.public(), "server": await self.server(user.name, request)}
