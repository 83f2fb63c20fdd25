"""Every endpoint of ``/hub/api/``, declared once: method, path, scope, the schemas of its
body and answer, its query parameters and the handler that serves it.

The router (:mod:`.app`) matches requests against this table and the OpenAPI document
(:mod:`.openapi`) is written from it, so a route cannot be served without being described
or described without being served (``tests/api/test_api_openapi.py`` checks both ways).

**Scopes.**  ``scope`` is what the caller's credential must hold (:mod:`ipydoc.access.
tokens`: ``read`` ⊂ ``servers`` ⊂ ``admin``; a login session holds ``read servers``, and
``admin`` too while its user is an admin).  On a path with ``{name}`` the caller acts on
their own things with that scope, or on another user's with ``admin`` (and being an admin
now); ``""`` is public, ``"any"`` needs a credential and no scope.

**Shapes for later.**  Today every user has one server, named ``""``
(``/users/{name}/server``, JupyterHub's path for the default server);
``/users/{name}/servers`` lists it.  Named servers (issue 19 §1) are meant to come in as
``/users/{name}/servers/{server}`` with the same bodies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ipydoc.web.api.schemas import DEFAULT_PAGE, MAX_PAGE

PREFIX = "/hub/api"


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    kind: str = "string"         # string, integer, boolean
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None


PAGING = (Param("limit", "integer", f"at most this many items (default {DEFAULT_PAGE})",
                1, MAX_PAGE),
          Param("offset", "integer", "skip this many items (default 0)", 0))


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str                    # below PREFIX, with {name}-style parameters
    handler: str                 # "group.method" of the handler objects (:mod:`.app`)
    summary: str
    scope: str                   # "", "any", "read", "servers" or "admin"
    response: str | None = None  # schema name (None: the handler streams, see ``stream``)
    body: str | None = None      # schema name of the JSON body
    status: int = 200
    query: tuple[Param, ...] = ()
    stream: str = ""             # a media type the handler writes itself
    tag: str = ""
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def changes_state(self) -> bool:
        return self.method not in ("GET", "HEAD")


E = Endpoint
ENDPOINTS: tuple[Endpoint, ...] = (
    E("GET", "", "meta.root", "The API's version and where its description is", "",
      "Root", tag="meta"),
    E("GET", "/openapi.json", "meta.openapi", "This API's OpenAPI 3.1 description", "",
      None, stream="application/json", tag="meta"),
    E("GET", "/user", "users.me", "Who the credential belongs to, and its scopes", "any",
      "Caller", tag="users"),
    # -- users
    E("GET", "/users", "users.list", "Every account, with its server", "admin", "UserPage",
      query=PAGING, tag="users"),
    E("POST", "/users", "users.add", "Add a local account", "admin", "User",
      body="NewUser", status=201, tag="users"),
    E("GET", "/users/{name}", "users.get", "One account, with its server", "read", "User",
      tag="users"),
    E("PATCH", "/users/{name}", "users.change",
      "Grant or withdraw admin rights; disable (logged out everywhere, server stopped) or "
      "enable", "admin", "User", body="UserChange", tag="users"),
    # -- servers
    E("GET", "/servers", "servers.all", "Every server that is not stopped", "admin",
      "ServerPage", query=PAGING, tag="servers"),
    E("GET", "/users/{name}/servers", "servers.list", "The user's servers", "read",
      "ServerPage", query=PAGING, tag="servers"),
    E("GET", "/users/{name}/server", "servers.get", "The user's (default) server", "read",
      "Server", tag="servers"),
    E("POST", "/users/{name}/server", "servers.start",
      "Start the server (with an offered image or profile); follow `progress_url`", "servers",
      "Server", body="StartServer", status=202, tag="servers"),
    E("DELETE", "/users/{name}/server", "servers.stop",
      "Stop the server (unsaved work in notebooks is lost; files stay)", "servers",
      "Stopped", tag="servers"),
    E("POST", "/users/{name}/server/pause", "servers.pause", "Pause (freeze) the server",
      "servers", "Paused", tag="servers"),
    E("POST", "/users/{name}/server/resume", "servers.resume", "Resume a paused server",
      "servers", "Resumed", tag="servers"),
    E("GET", "/users/{name}/server/progress", "servers.progress",
      "The start's progress as Server-Sent Events (`data: {phase, message, progress, ...}`) "
      "until a final step: ready, failed or stopped", "read", None,
      stream="text/event-stream", tag="servers"),
    # -- history and events
    E("GET", "/users/{name}/history", "records.files",
      "The files with a history (deleted ones too: `present` is false)", "read",
      "HistoryFilePage", query=PAGING, tag="history"),
    E("GET", "/users/{name}/history/versions", "records.versions",
      "The versions of one file, newest first (followed through renames)", "read",
      "VersionPage", query=(Param("path", description="the file's path in the home folder "
                                                      "(required)"), *PAGING),
      tag="history"),
    E("GET", "/users/{name}/history/version", "records.version",
      "One version of a file (UTF-8 text, else base64)", "read", "VersionContent",
      query=(Param("path", description="the file's path (required)"),
             Param("rev", description="the version's id, 4 to 40 hex digits (required)")),
      tag="history"),
    E("GET", "/events", "records.events",
      "Events, oldest first: the newest `limit` ones, or those after the cursor `after`. "
      "Admins see every user's; others their own", "read", "EventPage",
      query=(Param("after", description="an event id (`last` of an earlier answer)"),
             Param("user", description="only this user's events"),
             Param("kind", description="only these kinds (comma separated)"),
             Param("limit", "integer", f"at most this many (default {DEFAULT_PAGE})", 1,
                   MAX_PAGE)), tag="events"),
    # -- the caller's own tokens
    E("GET", "/users/{name}/tokens", "tokens.list", "The user's own live tokens", "read",
      "TokenPage", query=PAGING, tag="tokens"),
    E("POST", "/users/{name}/tokens", "tokens.create",
      "Make a token (shown once); a token can only make tokens with scopes it has",
      "servers", "CreatedToken", body="NewToken", status=201, tag="tokens"),
    E("DELETE", "/users/{name}/tokens/{token_id}", "tokens.revoke",
      "Revoke a token at once (what it has open through the proxy is closed)", "servers",
      None, status=204, tag="tokens"),
)


def match(method: str, path: str) -> tuple[Endpoint | None, dict[str, str], list[str]]:
    """The endpoint for ``method path`` (below PREFIX), its path parameters, and the
    methods the path has (for a 405)."""
    allowed: list[str] = []
    for endpoint in ENDPOINTS:
        found = endpoint.pattern.match(path)
        if found is None:
            continue
        if endpoint.method == method or (method == "HEAD" and endpoint.method == "GET"):
            return endpoint, found.groupdict(), []
        allowed.append(endpoint.method)
    return None, {}, allowed
