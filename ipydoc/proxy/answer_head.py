"""Which of a server's answer headers reach the browser, and those lines made in one pass.

The rules (:func:`keep_response_header`, hop-by-hop, the token) are the proxy's, whatever
the front end.  The usual way applies them header by header onto the request's
``Headers``, which the front end then writes out again as lines: four passes over the
same dozen headers for every answer.  :func:`client_lines` makes the lines the client
gets in one pass instead, byte for byte what the usual way writes (Twisted's canonical
names, one line per value; tests/proxy/test_whole_answers.py compares the two), for the
answers where that is simple, and says None for the others, which take the usual way.
A server sends mostly the same lines answer after answer, so each plain line is made once
and remembered (bounded, keyed by the exact name and value).
"""

from __future__ import annotations

from ipydoc.proxy.backend import ResponseHead
from ipydoc.proxy.gate import Forward
from ipydoc.proxy.headers import (
    HOP_BY_HOP,
    canonical_name,
    is_hub_cookie,
    own_host_cookie,
    secure_cookie,
)

#: Response headers :func:`keep_response_header` may refuse (lower-cased).
CHECKED = frozenset({b"set-cookie", b"service-worker-allowed"})

#: (name, value) as :func:`ipydoc.proxy.backend.parse_head` gives it → the client's line
#: (``b""``: never passed on).  Only lines whose fate depends on nothing but their bytes;
#: bounded in count (emptied when full) and in size (values up to :data:`_VALUE_KEPT`).
_LINES: dict[tuple[bytes, bytes], bytes] = {}
_LINES_MAX = 2048
_VALUE_KEPT = 256


def keep_response_header(lower: bytes, value: bytes, fwd: Forward) -> bool:
    """Whether a response header (lower-cased name, not hop-by-hop) from a user's server
    may reach the browser.

    No ``Set-Cookie`` with a ``Domain`` (it would reach the hub and other users' hosts)
    or with the name of a hub cookie (in path mode the server shares the hub's origin: it
    could plant a session of its choosing).  No ``Service-Worker-Allowed`` in path mode: a
    service worker registered under ``/user/NAME/`` must not widen its scope to ``/`` and
    so control the hub's pages.
    """
    if lower == b"set-cookie":
        return own_host_cookie(value) and not is_hub_cookie(value)
    if lower == b"service-worker-allowed":
        return fwd.own_origin
    return True


def client_lines(head: ResponseHead, fwd: Forward, token: bytes, secure: bool) -> bytes | None:
    """The header lines the client gets for ``head`` (each ending in CRLF, joined), or
    None when the answer takes the usual way: a name sent twice (Twisted groups the
    values of a name), a ``Connection`` naming other headers, the server token anywhere
    in the head (scrubbed value by value), or a server's own HSTS (the front end
    replaces it in place).  ``secure``: the client's request was https.

    The answer depends on nothing else, so it is kept on ``head`` for the next answer
    with the same head (:meth:`ipydoc.proxy.backend.BackendConnection._got_head`)."""
    own_origin = fwd.own_origin
    memo = head.client_memo
    if memo is not None and memo[0] == token and memo[1] == own_origin and memo[2] == secure:
        return memo[3]
    lines = _client_lines(head, fwd, token, secure)
    head.client_memo = (token, own_origin, secure, lines)
    return lines


def _client_lines(head: ResponseHead, fwd: Forward, token: bytes, secure: bool) -> bytes | None:
    """:func:`client_lines`, made."""
    lowers = head.lowers
    # (``find``, not ``in``: docs/front_end.md, "bytes in bytes")
    if head.connection or (token and head.raw.find(token) != -1) \
            or len(set(lowers)) != len(lowers):
        return None
    known = _LINES.get
    out = []
    for pair, lower in zip(head.headers, lowers):
        line = known(pair)
        if line is None:
            line = _client_line(pair, lower, fwd, secure)
            if line is None:
                return None
        out.append(line)
    return b"".join(out)


def _client_line(pair: tuple[bytes, bytes], lower: bytes, fwd: Forward,
                 secure: bool) -> bytes | None:
    """One header's line for the client (``b""``: dropped; None: take the usual way);
    remembered when it depends on its bytes alone."""
    name, value = pair
    if lower in CHECKED:  # depends on the request (path mode, https): made every time
        if not keep_response_header(lower, value, fwd):
            return b""
        if secure and lower == b"set-cookie":
            value = secure_cookie(value)
        return canonical_name(name) + b": " + value + b"\r\n"
    if lower == b"strict-transport-security":
        return None
    if lower in HOP_BY_HOP or lower.startswith(b"proxy-"):
        line = b""
    else:
        line = canonical_name(name) + b": " + value + b"\r\n"
    if len(value) <= _VALUE_KEPT:
        if len(_LINES) >= _LINES_MAX:
            _LINES.clear()
        _LINES[pair] = line
    return line
