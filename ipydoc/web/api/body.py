"""Reading what a client sends: the JSON body (``application/json`` only, at most
:data:`MAX_BODY` bytes, one object, checked against the endpoint's schema) and the query
parameters the endpoint declares (any other is refused, so a typo is not silently
ignored).

The check understands the subset of JSON Schema that :mod:`.schemas` uses for bodies
(closed objects of strings, booleans, integers and arrays of enums, with their bounds):
small and strict, and the same dict the OpenAPI document shows.
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.web.iweb import IRequest

from ipydoc.web.api.endpoints import Endpoint, Param
from ipydoc.web.api.errors import ApiError
from ipydoc.web.api.schemas import SCHEMAS

MAX_BODY = 16 * 1024

_TYPES: dict[str, tuple[type, ...]] = {"string": (str,), "boolean": (bool,),
                                       "integer": (int,), "array": (list,), "object": (dict,)}


def read_body(request: IRequest, endpoint: Endpoint) -> dict[str, Any]:
    """The checked JSON body (``{}`` for an endpoint that takes none and got none)."""
    raw = _raw(request)
    if endpoint.body is None:
        if raw.strip():
            raise ApiError("unknown_field", f"{endpoint.method} {endpoint.full_path} takes no "
                                            "body")
        return {}
    if not raw.strip():
        value: Any = {}
    else:
        kind = (request.getHeader(b"content-type") or b"").split(b";")[0].strip().lower()
        if kind != b"application/json":
            raise ApiError("unsupported_media_type",
                           "send the body as JSON with Content-Type: application/json")
        try:
            value = json.loads(raw)
        except ValueError as e:
            raise ApiError("invalid_json", f"the body is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ApiError("invalid_json", "the body must be one JSON object")
    check(SCHEMAS[endpoint.body], value, "body")
    return value


def _raw(request: IRequest) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    raw = content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError("payload_too_large", f"a body is at most {MAX_BODY} bytes")
    return raw


def check(schema: dict[str, Any], value: Any, where: str) -> None:
    """Raise ``unknown_field`` / ``invalid_field`` where ``value`` breaks ``schema``."""
    if "enum" in schema:
        if value not in schema["enum"]:
            raise ApiError("invalid_field", f"{where} must be one of "
                                            f"{', '.join(map(str, schema['enum']))}")
        return
    kind = schema.get("type")
    if isinstance(kind, str):
        ok = isinstance(value, _TYPES[kind]) and not (kind == "integer"
                                                       and isinstance(value, bool))
        if not ok:
            raise ApiError("invalid_field", f"{where} must be a{'n' if kind[0] in 'aeio' else ''}"
                                            f" {kind}")
    if kind == "object":
        props = schema.get("properties", {})
        unknown = sorted(set(value) - set(props))
        if unknown and schema.get("additionalProperties") is False:
            raise ApiError("unknown_field", f"unknown field {unknown[0]!r} in the {where} "
                                            f"(known: {', '.join(props) or 'none'})")
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            raise ApiError("invalid_field", f"the {where} needs {missing[0]!r}")
        if len(value) < schema.get("minProperties", 0):
            raise ApiError("invalid_field", f"the {where} must set at least one of "
                                            f"{', '.join(props)}")
        for k, v in value.items():
            if k in props:
                check(props[k], v, k)
    elif kind == "string":
        if len(value) > schema.get("maxLength", len(value)):
            raise ApiError("invalid_field", f"{where} is at most {schema['maxLength']} "
                                            "characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise ApiError("invalid_field", f"{where} has the wrong form")
    elif kind == "integer":
        if value < schema.get("minimum", value) or value > schema.get("maximum", value):
            raise ApiError("invalid_field", f"{where} must be between {schema.get('minimum')} "
                                            f"and {schema.get('maximum')}")
    elif kind == "array":
        if len(value) < schema.get("minItems", 0):
            raise ApiError("invalid_field", f"{where} must not be empty")
        if schema.get("uniqueItems") and len(set(map(json.dumps, value))) != len(value):
            raise ApiError("invalid_field", f"{where} lists an item twice")
        for item in value:
            check(schema.get("items", {}), item, f"an item of {where}")


def read_query(request: IRequest, endpoint: Endpoint) -> dict[str, Any]:
    """The declared query parameters, converted; unknown or repeated ones are refused."""
    declared = {p.name: p for p in endpoint.query}
    out: dict[str, Any] = {}
    for key, values in (request.args or {}).items():
        name = key.decode("utf-8", errors="replace")
        param = declared.get(name)
        if param is None:
            raise ApiError("unknown_field", f"unknown query parameter {name!r} (known: "
                                            f"{', '.join(declared) or 'none'})")
        if len(values) != 1:
            raise ApiError("invalid_field", f"give the query parameter {name} once")
        out[name] = _convert(param, values[0].decode("utf-8", errors="replace"))
    return out


def _convert(param: Param, text: str) -> Any:
    if param.kind == "integer":
        if not text.isdigit() or len(text) > 12:
            raise ApiError("invalid_field", f"{param.name} must be a whole number")
        number = int(text)
        if (param.minimum is not None and number < param.minimum) or \
                (param.maximum is not None and number > param.maximum):
            raise ApiError("invalid_field", f"{param.name} must be between {param.minimum} "
                                            f"and {param.maximum}")
        return number
    if param.kind == "boolean":
        if text not in ("true", "false"):
            raise ApiError("invalid_field", f"{param.name} must be true or false")
        return text == "true"
    return text
