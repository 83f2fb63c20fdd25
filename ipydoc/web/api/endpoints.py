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

**Servers** follow JupyterHub's shapes: the default server is ``/users/{name}/server``
(its ``name`` is ``""``); a named server (issue 19 §1) is
``/users/{name}/servers/{server}`` with the same bodies and answers, comes into being at
its first start, and ``DELETE ...?remove=true`` stops it and removes its record (its
files are the user's, shared by all their servers, and stay).
``/users/{name}/servers`` lists them all, the default one first.
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
    #: The OpenAPI operationId, when the handler serves more than one path (named servers)
    operation: str = ""
    pattern: re.Pattern[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    @property
    def full_path(self) -> str:
        return PREFIX + self.path

    @property
    def operation_id(self) -> str:
        return self.operation or self.handler.replace(".", "_")

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
    E("DELETE", "/users/{name}", "users.remove",
      "Remove the account: logged out everywhere, every server stopped; its files and "
      "history are kept and the name stays reserved until `ipydoc user purge` (or "
      "`restore`)", "admin", "Removed", tag="users"),
    # -- servers
    E("GET", "/servers", "servers.all", "Every server that is not stopped", "admin",
      "ServerPage", query=PAGING, tag="servers"),
    E("GET", "/users/{name}/servers", "servers.list",
      "The user's servers: the default one first, then the named ones by name", "read",
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
    # -- named servers (issue 19 §1): the same bodies and answers as the default one's
    E("GET", "/users/{name}/servers/{server}", "servers.get", "One of the user's named "
      "servers (`stopped` with no record yet: it comes into being at its first start)",
      "read", "Server", tag="servers", operation="servers_get_named"),
    E("POST", "/users/{name}/servers/{server}", "servers.start",
      "Start a named server (creating it; at most `spawn.max_named_servers` per user); "
      "follow `progress_url`", "servers", "Server", body="StartServer", status=202,
      tag="servers", operation="servers_start_named"),
    E("DELETE", "/users/{name}/servers/{server}", "servers.stop",
      "Stop a named server; with `remove=true` (or JupyterHub's body `{\"remove\": "
      "true}`) also remove it (its record goes; the user's files stay)", "servers",
      "Stopped", body="StopServer",
      query=(Param("remove", "boolean", "also remove the server once stopped (default "
                                        "false)"),), tag="servers",
      operation="servers_stop_named"),
    E("POST", "/users/{name}/servers/{server}/pause", "servers.pause",
      "Pause (freeze) a named server", "servers", "Paused", tag="servers",
      operation="servers_pause_named"),
    E("POST", "/users/{name}/servers/{server}/resume", "servers.resume",
      "Resume a paused named server", "servers", "Resumed", tag="servers",
      operation="servers_resume_named"),
    E("GET", "/users/{name}/servers/{server}/progress", "servers.progress",
      "A named server's start progress as Server-Sent Events (as the default server's)",
      "read", None, stream="text/event-stream", tag="servers",
      operation="servers_progress_named"),
    # -- shares (issue 19 §3): of the default server and of a named one
    *(e for suffix, pre, label in (("/server/shares", "", "the (default) server"),
                                   ("/servers/{server}/shares", "_named", "a named server"))
      for e in (
        E("GET", "/users/{name}" + suffix, "shares.list", f"Who {label} is shared with",
          "read", "SharePage", query=PAGING, tag="shares", operation=f"shares_list{pre}"),
        E("POST", "/users/{name}" + suffix, "shares.add",
          f"Share {label} with a `user` or a `group` (`mode` rw or view), or change the "
          "mode of that share", "servers", "Share", body="NewShare", status=201,
          tag="shares", operation=f"shares_add{pre}"),
        E("DELETE", "/users/{name}" + suffix, "shares.remove",
          f"Revoke a share of {label} (`user`, `group` or `all=true`): the guests' open "
          "connections to it are closed at once", "servers", "SharesRemoved",
          query=(Param("user", description="the guest user"),
                 Param("group", description="the guest group"),
                 Param("all", "boolean", "revoke every share of the server")),
          tag="shares", operation=f"shares_remove{pre}"))),
    E("GET", "/users/{name}/shared", "shares.shared_with",
      "The servers shared with the user (directly or through a group)", "read", "SharePage",
      query=PAGING, tag="shares"),
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
