"""Answers the proxy gives itself: the gate's replies and short error pages.

Errors are one sentence, in JSON when the caller is JupyterLab's API client (it shows
``message``), in plain text otherwise; never a traceback.
"""

from __future__ import annotations

import json
from typing import Protocol

from twisted.web.iweb import IRequest

from ipydoc.proxy.gate import Reply


class Finishing(Protocol):
    """What the proxy needs from the site's request besides ``IRequest``."""

    def end_response(self) -> None:
        """Finish now, or as soon as the client's body is in."""


MESSAGES = {
    400: "The request could not be forwarded.",
    500: "Internal error in the proxy.",
    502: "Your Jupyter server is not answering; it may be starting or may have stopped.",
    504: "Your Jupyter server took too long to answer.",
}


def wants_json(request: IRequest) -> bool:
    """JSON for API paths, or when the client prefers JSON over HTML."""
    if b"/api/" in request.path:
        return True
    accept = b",".join(request.requestHeaders.getRawHeaders(b"accept") or ()).lower()
    json_at, html_at = accept.find(b"json"), accept.find(b"html")
    return json_at >= 0 and (html_at < 0 or json_at < html_at)


def error_reply(request: IRequest, code: int, message: str | None = None) -> Reply:
    """A :class:`Reply` for a proxy error, shaped for whoever asked."""
    text = message or MESSAGES.get(code, "Proxy error.")
    if wants_json(request):
        body = json.dumps({"status": code, "message": text}).encode()
        return Reply(code, body, "application/json")
    return Reply(code, text.encode() + b"\n")


def write_reply(request: IRequest, reply: Reply) -> None:
    """Send ``reply`` as the whole response, unless one has already started."""
    if request.startedWriting or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(reply.code)
    request.responseHeaders.setRawHeaders(b"content-type", [reply.content_type.encode()])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    for name, value in reply.headers.items():
        request.responseHeaders.setRawHeaders(name.encode(), [value.encode()])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(reply.body)])
    request.write(reply.body)
    request.end_response()
