"""The API's one error shape, ``{"error": {"status": N, "code": "...", "message": "..."}}``,
and the codes it uses (listed once here: the OpenAPI document and docs/api.md show them).

A handler raises :class:`ApiError`; :mod:`.app` turns it (and Redis outages and anything
unexpected) into that body, so no failure of the API answers in another shape.
"""

from __future__ import annotations

from typing import Any

#: code → (HTTP status, when it is used)
CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "the body is not one JSON object"),
    "unknown_field": (400, "the body or query has a field the endpoint does not take"),
    "invalid_field": (400, "a field has the wrong type or value"),
    "invalid_name": (400, "a user name breaks the name rule"),
    "unauthorized": (401, "no credential, or an invalid, expired or revoked token"),
    "forbidden": (403, "the credential's user may not do this (another user's things, "
                       "a disabled account, not an admin)"),
    "missing_scope": (403, "the token's scopes do not include the one the endpoint needs"),
    "csrf": (403, "a cookie request that changes state without the CSRF token or from "
                  "another site (Origin)"),
    "not_found": (404, "no such user, server, token, version or endpoint"),
    "method_not_allowed": (405, "the path exists but not with this method"),
    "conflict": (409, "the request contradicts the current state (e.g. the user exists, "
                      "is disabled, the server is busy)"),
    "payload_too_large": (413, "the body is over the API's limit"),
    "unsupported_media_type": (415, "a body that is not application/json"),
    "internal": (500, "the daemon failed; its log says why"),
    "backend_error": (502, "the container engine failed the action"),
    "unavailable": (503, "Redis is unavailable, or the feature is switched off"),
}


class ApiError(Exception):
    """A failure to answer with the one error shape."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or CODES[code][0]
        self.message = message


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message}}
