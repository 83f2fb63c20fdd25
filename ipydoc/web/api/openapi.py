"""The OpenAPI 3.1 description of ``/hub/api/``, written from :data:`.endpoints.ENDPOINTS`
and :data:`.schemas.SCHEMAS` (the same definitions the router and the body checks use)."""

from __future__ import annotations

from typing import Any

from ipydoc import __version__
from ipydoc.web.api.endpoints import ENDPOINTS, PREFIX, Endpoint
from ipydoc.web.api.errors import CODES
from ipydoc.web.api.schemas import SCHEMAS, ref

SCOPE_TEXT = {
    "": "Public.",
    "any": "Any credential.",
    "read": "Scope `read` on your own things; `admin` (as an admin) on another user's.",
    "servers": "Scope `servers` on your own things; `admin` (as an admin) on another "
               "user's.",
    "admin": "Administrators only, with the `admin` scope.",
}


def _error_statuses(endpoint: Endpoint) -> list[int]:
    out = {500, 503}
    if endpoint.scope:
        out |= {401, 403}
    if "{" in endpoint.path:
        out |= {400, 404}
    if endpoint.query or endpoint.body:
        out.add(400)
    if endpoint.body:
        out |= {413, 415}
    if endpoint.changes_state:
        out |= {409, 502}
    return sorted(out)


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "description": SCOPE_TEXT[endpoint.scope],
        "tags": [endpoint.tag] if endpoint.tag else [],
        "x-scope": endpoint.scope,
    }
    if endpoint.scope:
        op["security"] = [{"token": []}, {"cookie": []}]
    else:
        op["security"] = [{}]
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in endpoint.pattern.groupindex]
    for p in endpoint.query:
        schema: dict[str, Any] = {"type": p.kind}
        if p.minimum is not None:
            schema["minimum"] = p.minimum
        if p.maximum is not None:
            schema["maximum"] = p.maximum
        params.append({"name": p.name, "in": "query", "required": False,
                       "description": p.description, "schema": schema})
    if params:
        op["parameters"] = params
    if endpoint.body:
        op["requestBody"] = {"required": False, "content": {
            "application/json": {"schema": ref(endpoint.body)}}}
    responses: dict[str, Any] = {}
    if endpoint.response:
        responses[str(endpoint.status)] = {"description": "OK", "content": {
            "application/json": {"schema": ref(endpoint.response)}}}
    elif endpoint.stream:
        responses[str(endpoint.status)] = {"description": "OK", "content": {
            endpoint.stream: {"schema": {"type": "string"} if endpoint.stream != "application/json"
                              else {"type": "object"}}}}
    else:
        responses[str(endpoint.status)] = {"description": "Done (no body)"}
    for status in _error_statuses(endpoint):
        responses[str(status)] = {"$ref": f"#/components/responses/E{status}"}
    op["responses"] = responses
    return op


def document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.full_path, {})[endpoint.method.lower()] = _operation(endpoint)
    statuses = sorted({status for status, _ in CODES.values()})
    return {
        "openapi": "3.1.0",
        "info": {"title": "ipydoc hub API", "version": __version__,
                 "description": "The hub's REST API; see docs/api.md. Every failure answers "
                                "with the Error schema; its `code` is one of: "
                                + "; ".join(f"`{c}` ({s}): {why}" for c, (s, why) in
                                            CODES.items())},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "`token ipd_...` or `Bearer ipd_...`: a personal "
                                         "token from /hub/token or this API"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "ipydoc-session",
                           "description": "the hub's login session; state changes also need "
                                          "`X-CSRF-Token` and a same-site Origin"},
            },
            "responses": {f"E{s}": {
                "description": ", ".join(c for c, (cs, _) in CODES.items() if cs == s),
                "content": {"application/json": {"schema": ref("Error")}}}
                for s in statuses},
        },
    }


#: Where ``document()`` is served (for the router's table check).
OPENAPI_PATH = PREFIX + "/openapi.json"
