"""Path mode's steps of the ladder: ``/user/NAME/...`` on the hub's own host.

The name is the path's first segment after ``/user/``; the credential is the hub's
session cookie; the server shares the hub's origin (``Origin`` must be this site, or
``server.public_url``); a browser without a session is sent to ``/hub/login``.

Named servers (issue 19 §1): ``/user/NAME/SERVER/...`` is NAME's server SERVER (key
``NAME--SERVER``) when NAME has one by that name (a record in any state); any other
second segment belongs to the default server (reserved names such as ``lab``, ``api``
or ``static`` can never be server names, so they are decided without a look-up).  The
route table answers first; Redis is asked (one read) only when the segment could be a
server name and is neither routed nor starting here, and only once the request holds a
credential (:meth:`PathMode.server`).
"""

from __future__ import annotations

from collections.abc import Collection
from urllib.parse import quote

from twisted.web.iweb import IRequest

from ipydoc.access.lru import LRU
from ipydoc.access.metrics import NAMED_LOOKUPS
from ipydoc.access.origin import request_origin
from ipydoc.access.sessions import Sessions
from ipydoc.access.verdicts import Holder, json_reply, redirect
from ipydoc.names import (
    MAX_SERVER_LENGTH,
    RESERVED_SERVER_NAMES,
    SERVER_KEY_SEPARATOR,
    InvalidName,
    validate_name,
    validate_server_name,
)
from ipydoc.proxy.gate import Reply
from ipydoc.servers.manager import ServerManager

PREFIX = b"/user/"
#: Valid user names remembered by :meth:`PathMode.locate`.
NAMES_CACHED = 10_000
_RESERVED = frozenset(n.encode() for n in RESERVED_SERVER_NAMES)


def may_name_server(segment: bytes) -> bool:
    """Whether a path segment could name a server at all: not empty, not reserved (``lab``,
    ``api``, ``static``...), not too long.  Decided without a look-up."""
    return bool(segment) and segment not in _RESERVED and len(segment) <= MAX_SERVER_LENGTH


async def named_key(servers: ServerManager, user: str, segment: bytes) -> str | None:
    """``USER--SEGMENT`` if ``segment`` names one of ``user``'s named servers (routed or
    starting here, else a record in Redis: one read), else None."""
    if not may_name_server(segment):
        return None
    try:
        key = user + SERVER_KEY_SEPARATOR + validate_server_name(segment.decode("ascii"))
    except (UnicodeDecodeError, InvalidName):
        return None
    if key in servers.routes or servers.is_starting(key):
        return key
    found = await servers.store.get_server(key) is not None
    NAMED_LOOKUPS.labels("named" if found else "default").inc()
    return key if found else None


class PathMode:
    def __init__(self, sessions: Sessions, extra_origins: Collection[str] = (),
                 servers: ServerManager | None = None) -> None:
        self.sessions = sessions
        self.extra_origins = frozenset(extra_origins)
        self.servers = servers  # None: no named servers (the default one only)
        # path segments already found to be valid user names: the name rule (a regex)
        # is not run again for every request of a user (only valid names are kept)
        self._names: LRU[bytes, str] = LRU(NAMES_CACHED)

    async def locate(self, request: IRequest) -> str | Reply:
        segment = request.path[len(PREFIX):].split(b"/", 1)[0]
        name = self._names.get(segment)
        if name is None:
            try:
                name = validate_name(segment.decode("ascii"))
            except (UnicodeDecodeError, InvalidName):
                return json_reply(404, "no such user server")
            self._names.put(segment, name)
        if request.path == PREFIX + segment:  # /user/alice → /user/alice/ (the base URL)
            query = request.uri[len(request.path):]
            return redirect((request.path + b"/" + query).decode("latin-1"))
        return name

    async def server(self, request: IRequest, name: str) -> str:
        """Step 1 again, once the request holds a credential: the key of the server the
        path names (``name``, or ``NAME--SERVER`` for ``/user/NAME/SERVER/...``)."""
        if self.servers is None:
            return name
        segment = request.path[len(PREFIX) + len(name) + 1:].partition(b"/")[0]
        if not may_name_server(segment):  # most requests: no coroutine for named_key
            return name
        return await named_key(self.servers, name, segment) or name

    async def holder(self, request: IRequest) -> Holder | None:
        session = await self.sessions.from_request(request)
        return None if session is None else Holder(session.user, session.key)

    def sign_in(self, request: IRequest, name: str) -> Reply:
        nxt = quote(request.uri.decode("latin-1"), safe="/")
        return redirect(f"/hub/login?next={nxt}")

    def origins(self, request: IRequest, name: str) -> Collection[str]:
        return {request_origin(request), *self.extra_origins}
