"""The JSON Schemas of every body the API reads or writes (OpenAPI 3.1 uses JSON Schema
2020-12 as is), by name.  The same dicts check request bodies (:mod:`.body`) and become
``components.schemas`` of ``/hub/api/openapi.json`` (:mod:`.openapi`); the tests validate
live answers against them."""

from __future__ import annotations

from typing import Any

from ipydoc.access.tokens import MAX_EXPIRY, MAX_NOTE, SCOPES

MAX_PAGE = 500          # the largest ``limit`` of a list
DEFAULT_PAGE = 100

STR: dict[str, Any] = {"type": "string"}
BOOL: dict[str, Any] = {"type": "boolean"}
INT: dict[str, Any] = {"type": "integer"}
TIME: dict[str, Any] = {"type": ["number", "null"], "description": "unix time"}
NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 63,
                        "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"}
SCOPE_LIST: dict[str, Any] = {"type": "array", "items": {"enum": list(SCOPES)},
                              "uniqueItems": True}
SERVER_STATES = ["starting", "running", "paused", "stopping", "stopped", "failed"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict[str, Any], required: tuple[str, ...] | None = None,
        **extra: Any) -> dict[str, Any]:
    """A closed object; every property required unless ``required`` says otherwise."""
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required),
            "additionalProperties": False, **extra}


def page_of(item: str) -> dict[str, Any]:
    return obj({"items": {"type": "array", "items": ref(item)}, "total": INT,
                "offset": INT, "limit": INT})


SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj({"error": obj({"status": INT, "code": STR, "message": STR})}),
    "Root": obj({"version": STR, "openapi": STR}),
    "Caller": obj({"name": NAME, "admin": BOOL, "kind": {"enum": ["token", "session"]},
                   "scopes": SCOPE_LIST}),
    "Server": obj({
        "name": {"type": "string", "description": "\"\" is the user's default server; "
                 "else the named server's name"},
        "user": NAME, "state": {"enum": SERVER_STATES}, "ready": BOOL,
        "image": STR, "profile": STR, "started": TIME, "paused_since": TIME,
        "last_activity": TIME, "error": STR,
        "url": {"type": "string", "description": "where the server is opened"},
        "progress_url": STR}),
    "User": obj({"name": NAME, "admin": BOOL, "disabled": BOOL, "created": TIME,
                 "server": ref("Server")}),
    "UserPage": page_of("User"),
    "ServerPage": page_of("Server"),
    "NewUser": obj({"name": STR, "password": {"type": "string", "maxLength": 1024},
                    "admin": BOOL}, required=("name", "password")),
    "UserChange": obj({"admin": BOOL, "disabled": BOOL}, required=(), minProperties=1),
    "StartServer": obj({"image": {"type": "string", "maxLength": 512},
                        "profile": {"type": "string", "maxLength": 64}}, required=()),
    "StopServer": obj({"remove": {"type": "boolean", "description": "also remove the "
                                  "named server (JupyterHub's form of `?remove=true`)"}},
                      required=()),
    "Stopped": obj({"stopped": BOOL, "server": ref("Server"),
                    "removed": {"type": "boolean", "description": "the named server was "
                                "removed (`remove=true`)"}},
                   required=("stopped", "server")),
    "Removed": obj({"removed": NAME, "sessions_revoked": INT,
                    "servers_stopped": {"type": "array", "items": STR},
                    "files": STR, "versions": INT, "mirror": STR, "reserved": BOOL}),
    "Paused": obj({"paused": BOOL, "server": ref("Server")}),
    "Resumed": obj({"resumed": BOOL, "server": ref("Server")}),
    "Token": obj({"id": STR, "note": STR, "created": TIME, "expires": TIME,
                  "last_used": TIME, "scopes": SCOPE_LIST}),
    "TokenPage": page_of("Token"),
    "NewToken": obj({"note": {"type": "string", "maxLength": MAX_NOTE},
                     "expires_in": {"type": "integer", "minimum": 0, "maximum": MAX_EXPIRY,
                                    "description": "seconds; 0: never"},
                     "scopes": {**SCOPE_LIST, "minItems": 1}}, required=()),
    "CreatedToken": obj({"token": {"type": "string", "description": "shown only this once"},
                         "info": ref("Token")}),
    "Event": obj({"id": STR, "time": {"type": "number"}, "kind": STR, "user": STR,
                  "detail": STR}),
    "EventPage": obj({"items": {"type": "array", "items": ref("Event")},
                      "last": {"type": "string", "description": "the cursor: pass it as "
                                                                "`after` for what follows"}}),
    "HistoryFile": obj({"path": STR, "present": BOOL}, required=("path", "present"),
                       additionalProperties=True),
    "HistoryFilePage": page_of("HistoryFile"),
    "Version": obj({"rev": STR, "time": {"type": "number"}, "author": STR, "message": STR,
                    "change": STR, "path": STR, "from_path": STR}),
    "VersionPage": page_of("Version"),
    "Share": obj({"server": {"type": "string", "description": "the server key: the owner's "
                             "name (default server) or OWNER--SERVER"},
                  "owner": NAME, "kind": {"enum": ["user", "group"]}, "guest": NAME,
                  "mode": {"enum": ["rw", "view"]}, "by": STR, "created": TIME}),
    "SharePage": page_of("Share"),
    "NewShare": obj({"user": NAME, "group": NAME,
                     "mode": {"enum": ["rw", "view"], "description": "rw (default): the "
                              "same JupyterLab, running code; view: reading only, enforced "
                              "by the proxy"}}, required=(), minProperties=1),
    "SharesRemoved": obj({"removed": {"type": "array", "items": ref("Share")}}),
    "VersionContent": obj({"path": STR, "rev": STR, "encoding": {"enum": ["utf-8", "base64"]},
                           "content": STR, "size": INT}),
}
