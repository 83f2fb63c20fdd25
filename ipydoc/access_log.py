"""The access log line, without secrets that travel in URLs.

An OAuth/OIDC callback carries a one-time ``code`` and the ``state`` in its query, and
some clients put ``token=`` in a query; twisted.web's combined log format would write them
to the log (the request line and the Referer).  Their values are replaced by ``…`` before the line is formatted.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.web.http import combinedLogFormatter

SECRET_PARAMS = re.compile(
    rb"([?&](?:code|state|token|access_token|id_token|_csrf)=)[^&#\s]*", re.IGNORECASE)


def scrub_uri(uri: bytes) -> bytes:
    return SECRET_PARAMS.sub(rb"\1...", uri)


class _Scrubbed:
    """The request as the formatter sees it, with its URI scrubbed."""

    def __init__(self, request: Any) -> None:
        self._request = request
        self.uri = scrub_uri(request.uri)

    def getHeader(self, name: bytes) -> bytes | None:  # noqa: N802 - IRequest's name
        value = self._request.getHeader(name)
        return scrub_uri(value) if value and name.lower() == b"referer" else value

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def log_formatter(timestamp: str, request: Any) -> str:
    return combinedLogFormatter(timestamp, _Scrubbed(request))
