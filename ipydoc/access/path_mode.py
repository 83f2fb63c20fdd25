"""Path mode's steps of the ladder: ``/user/NAME/...`` on the hub's own host.

The name is the path's first segment after ``/user/``; the credential is the hub's
session cookie; the server shares the hub's origin (``Origin`` must be this site, or
``server.public_url``); a browser without a session is sent to ``/hub/login``.
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ipydoc.access.origin import request_origin
from ipydoc.access.sessions import Sessions
from ipydoc.access.verdicts import Holder, json_reply, redirect
from ipydoc.names import InvalidName, validate_name
from ipydoc.proxy.gate import Reply
from ipydoc.state.keys import session_key

PREFIX = b"/user/"


class PathMode:
    def __init__(self, sessions: Sessions, extra_origins: Collection[str] = ()) -> None:
        self.sessions = sessions
        self.extra_origins = frozenset(extra_origins)

    async def locate(self, request: IRequest) -> str | Reply:
        segment = request.path[len(PREFIX):].split(b"/", 1)[0]
        try:
            name = validate_name(segment.decode("ascii"))
        except (UnicodeDecodeError, InvalidName):
            return json_reply(404, "no such user server")
        if request.path == PREFIX + segment:  # /user/alice → /user/alice/ (the base URL)
            query = request.uri[len(request.path):]
            return redirect((request.path + b"/" + query).decode("latin-1"))
        return name

    async def holder(self, request: IRequest) -> Holder | None:
        session = await self.sessions.from_request(request)
        return None if session is None else Holder(session.user, session_key(session.id))

    def sign_in(self, request: IRequest, name: str) -> Reply:
        nxt = quote(request.uri.decode("latin-1"), safe="/")
        return redirect(f"/hub/login?next={nxt}")

    def origins(self, request: IRequest, name: str) -> Collection[str]:
        return {request_origin(request), *self.extra_origins}
