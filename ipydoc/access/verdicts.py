"""What the steps of the access ladder produce: who holds a credential, the answers the
gate gives in place of a user's server, and when a browser gets a page.

Browsers navigating get redirects (to the login, the handoff, the start page); API
clients and WebSockets get a status with a one-sentence JSON ``message`` (JupyterLab
shows it).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from twisted.web.iweb import IRequest

from ipydoc.proxy.gate import Reply
from ipydoc.proxy.headers import wants_html

PAGE_METHODS = (b"GET", b"HEAD")


def wants_page(request: IRequest) -> bool:
    """A browser navigating: it may be sent elsewhere instead of getting an error."""
    return request.method in PAGE_METHODS and wants_html(request)


def json_reply(code: int, message: str, **extra: Any) -> Reply:
    body = json.dumps({"status": code, "message": message, **extra}).encode()
    return Reply(code, body, "application/json")


def redirect(location: str) -> Reply:
    return Reply(302, b"", "text/plain; charset=utf-8", {"Location": location})


class Holder(NamedTuple):
    """Who a request's credential belongs to (step 2 of :mod:`ipydoc.access.ladder`).
    (A tuple: one is made per request, and a frozen dataclass costs twice as much.)"""

    user: str
    #: The Redis key that let it through (the session's, or the personal token's): the
    #: proxy's open exchanges are cut by it when it is revoked.
    credential: str
    #: A browser's cookie (the ``Origin`` rule applies, pages may be redirected), not a
    #: personal token (an API client: never a page, no ``Origin`` to check).
    browser: bool = True
    #: A personal token's hash, for its ``last_used``.
    token_digest: str = ""
