"""Answers the proxy gives itself: the gate's replies and short error pages.

Errors are one sentence, in JSON when the caller is JupyterLab's API client (it shows
``message``), a small HTML page when a browser navigates (with a way to start the
server when it is the server that is missing), plain text otherwise; never a traceback.
"""

from __future__ import annotations

import html
import json
from typing import Protocol

from twisted.web.iweb import IRequest

from ipydoc.proxy.gate import Reply
from ipydoc.proxy.headers import wants_html


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

#: Page titles for browsers; 502 is what a stopped or vanished container looks like.
TITLES = {
    400: "Bad request",
    404: "Not found",
    500: "Something went wrong",
    502: "Your server is not running",
    504: "Your server is not answering",
}

#: Where the server a request goes to is started (the gate's
#: :attr:`~ipydoc.proxy.gate.Forward.start_url`, a callable taking the request): the
#: proxy sets it on the request, so an error page can offer it; it is only worked out if
#: that page is shown.
START_ATTR = "_ipydoc_start_url"

#: The ``Server`` header of every answer the daemon writes itself.
SERVER = b"ipydoc"


def error_page(code: int, message: str, start_url: str | None, retry: str | None) -> bytes:
    """A self-contained page (no template, no script) for a proxy error."""
    title = TITLES.get(code, "Proxy error")
    actions = []
    if start_url and code in (502, 504):
        actions.append(f'<a class="button" id="start" href="{html.escape(start_url)}">'
                       "Start or check my server</a>")
    if retry:
        actions.append(f'<a class="button" id="retry" href="{html.escape(retry)}">Try again</a>')
    actions.append('<a href="/hub/home">Home</a>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)} · ipydoc</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;"
        "padding:0 1em}.button{display:inline-block;padding:.4em 1em;margin-right:.6em;"
        "border-radius:4px;background:#1a5fb4;color:#fff;text-decoration:none}</style>"
        f'</head><body><main><h1>{html.escape(title)}</h1>'
        f'<p id="message">{html.escape(message)}</p>'
        f'<p class="actions">{"".join(actions)}</p>'
        f"<p><small>HTTP {code}</small></p></main></body></html>\n"
    ).encode()


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
    if wants_html(request):
        start = getattr(request, START_ATTR, None)
        start_url = start(request) if start is not None else None
        retry = request.uri.decode("latin-1") if request.method in (b"GET", b"HEAD") \
            and code in (502, 504) else None
        return Reply(code, error_page(code, text, start_url, retry), "text/html; charset=utf-8")
    return Reply(code, text.encode() + b"\n")


def write_reply(request: IRequest, reply: Reply) -> None:
    """Send ``reply`` as the whole response, unless one has already started.  Its
    ``Server`` says ``ipydoc``, never a library and its version."""
    if request.startedWriting or getattr(request, "_disconnected", False):
        return
    request.setResponseCode(reply.code)
    request.responseHeaders.setRawHeaders(b"server", [SERVER])
    request.responseHeaders.setRawHeaders(b"content-type", [reply.content_type.encode()])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    for name, value in reply.headers.items():
        request.responseHeaders.setRawHeaders(name.encode(), [value.encode()])
    request.responseHeaders.setRawHeaders(b"content-length", [b"%d" % len(reply.body)])
    request.write(reply.body)
    request.end_response()
