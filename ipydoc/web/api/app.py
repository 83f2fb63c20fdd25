"""The Klein page group of ``/hub/api/``: every request is matched against the endpoint
table (:mod:`.endpoints`), authenticated and authorized (:mod:`.auth`), its query and
body read (:mod:`.body`), and handed to its handler; every failure leaves as the one
error shape (:mod:`.errors`), Redis outages and unexpected errors included."""

from __future__ import annotations

import json
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc import __version__
from ipydoc.access.tokens import TokenCheck
from ipydoc.edge.routing import Routing
from ipydoc.state.redis_service import UNAVAILABLE
from ipydoc.web.api import metrics
from ipydoc.web.api.auth import CHALLENGE, Authenticator, authorize
from ipydoc.web.api.body import read_body, read_query
from ipydoc.web.api.call import Call, Shared
from ipydoc.web.api.endpoints import PREFIX, Endpoint, match
from ipydoc.web.api.errors import ApiError, error_body
from ipydoc.web.api.openapi import document
from ipydoc.web.api.records import RecordHandlers
from ipydoc.web.api.servers import ServerHandlers
from ipydoc.web.api.shares import ShareHandlers
from ipydoc.web.api.tokens import TokenHandlers
from ipydoc.web.api.users import AccountRemoval, UserHandlers
from ipydoc.web.history_pages import HistoryReader
from ipydoc.web.pages import Pages, RedisDown

HEADERS = {
    b"Cache-Control": b"no-store",
    b"X-Content-Type-Options": b"nosniff",
    b"Content-Security-Policy": b"default-src 'none'; frame-ancestors 'none'",
}


METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class MetaHandlers:
    def __init__(self) -> None:
        self._document = json.dumps(document()).encode()

    async def root(self, call: Call) -> dict[str, Any]:
        return {"version": __version__, "openapi": PREFIX + "/openapi.json"}

    async def openapi(self, call: Call) -> bytes:
        call.request.setHeader(b"Content-Type", b"application/json")
        return self._document


class ApiPages:
    app = Klein()
    log = Logger()

    def __init__(self, pages: Pages, routing: Routing,
                 history: HistoryReader | None = None,
                 removal: AccountRemoval | None = None) -> None:
        self.pages = pages
        shared = Shared(pages, routing)
        self.auth = Authenticator(pages, TokenCheck(pages.sessions))
        self.groups: dict[str, Any] = {
            "meta": MetaHandlers(), "users": UserHandlers(shared, removal),
            "servers": ServerHandlers(shared), "records": RecordHandlers(shared, history),
            "tokens": TokenHandlers(shared), "shares": ShareHandlers(shared)}

    @app.route("/api/<path:rest>", methods=METHODS, endpoint="api")
    async def serve_below(self, request: IRequest, rest: str) -> bytes:
        return await self.serve(request)

    @app.route("/api", methods=METHODS, endpoint="api_root")
    async def serve(self, request: IRequest) -> bytes:
        for k, v in HEADERS.items():
            request.setHeader(k, v)
        matched: list[Endpoint] = []
        try:
            return await self._answer(request, matched)
        finally:
            metrics.answered(matched[0].handler.replace(".", "_") if matched else "unmatched",
                             request.code)

    async def _answer(self, request: IRequest, matched: list[Endpoint]) -> bytes:
        try:
            return await self._serve(request, matched)
        except ApiError as e:
            return self._error(request, e.status, e.code, e.message)
        except RedisDown as e:
            self.log.warn("api: redis unavailable on {path}: {e}",
                          path=request.path.decode("latin-1"), e=e)
            request.setHeader(b"Retry-After", b"5")
            return self._error(request, 503, "unavailable", UNAVAILABLE)
        except Exception:
            self.log.failure("api: {method} {path} failed", method=request.method,
                             path=request.path.decode("latin-1"))
            return self._error(request, 500, "internal", "the daemon failed; see its log")

    async def _serve(self, request: IRequest, matched: list[Endpoint]) -> bytes:
        path = request.path.decode("utf-8", errors="replace")
        below = path[len(PREFIX):]
        method = request.method.decode("ascii", errors="replace")
        endpoint, params, allowed = match(method, below)
        if endpoint is None:
            if allowed:
                request.setHeader(b"Allow", ", ".join(sorted(set(allowed))).encode())
                raise ApiError("method_not_allowed", f"{path} takes {', '.join(allowed)}")
            raise ApiError("not_found", f"no API endpoint {path}")
        matched.append(endpoint)
        caller = await self.auth.caller(request, endpoint)
        authorize(caller, endpoint, params)
        query = read_query(request, endpoint)
        body = read_body(request, endpoint)
        group, _, name = endpoint.handler.partition(".")
        result = await getattr(self.groups[group], name)(
            Call(request, endpoint, caller, params, query, body))
        if endpoint.stream:
            return result
        if endpoint.response is None:
            request.setResponseCode(endpoint.status)
            return b""
        return self._json(request, endpoint.status, result)

    @staticmethod
    def _json(request: IRequest, status: int, value: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(value).encode()

    def _error(self, request: IRequest, status: int, code: str, message: str) -> bytes:
        if status == 401:
            request.setHeader(b"WWW-Authenticate", CHALLENGE)
        return self._json(request, status, error_body(status, code, message))
