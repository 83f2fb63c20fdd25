"""Reading one query or form argument of a request, the same way everywhere.

twisted.web puts query and ``application/x-www-form-urlencoded`` arguments together in
``request.args`` as lists of bytes.  Pages and the gate want one text value: the first
one, decoded as UTF-8 (bad bytes replaced, never an exception), or ``""`` when absent.
"""

from __future__ import annotations

from twisted.web.iweb import IRequest


def arg(request: IRequest, key: str) -> str:
    """The first value of argument ``key`` as text, ``""`` if there is none."""
    values = request.args.get(key.encode()) or [b""]
    return values[0].decode("utf-8", errors="replace")
