"""The lean front end's request-head reader: accept the plain case, hand over the rest.

The lean front end (:mod:`ipydoc.edge.lean_channel`) only serves request heads that
every strict rule of :mod:`ipydoc.edge.request_rules` would let through unchanged, and
whose framing is the simple one; for anything else it hands the connection to the
twisted.web channel, which then refuses (400/431/501) or serves it exactly as before.
So the verdict on a malformed request is always the strict channel's own, and this
module only has to be *conservative*: it never accepts what the strict channel refuses.

Accepted here:

* the head ends with CRLF CRLF and has no other CR or LF than the CRLF line ends (no
  bare LF, no bare CR), is at most ``max_header_size`` bytes whole and has fewer than
  ``max_headers`` header lines;
* the request line is ``token SP target SP HTTP/1.1``, the target a path of printable
  ASCII (origin-form);
* every header line is ``token ":" value`` (no obs-fold, no space before the colon), the
  value without NUL; exactly one ``Host``;
* no ``Transfer-Encoding``, no ``Expect``, no ``Upgrade`` (those go to twisted.web),
  at most one ``Content-Length``, all digits and at most 18 of them.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web.http_headers import Headers

from ipydoc.proxy.headers import FastHeaders, add_checked

#: RFC 9110 tchar, as bytes values.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                   b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
#: Largest Content-Length in decimal digits (as request_rules.MAX_LENGTH_DIGITS).
MAX_LENGTH_DIGITS = 18
#: Lower-cased header names whose presence sends the request to twisted.web.
_HANDED_OVER = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
#: What a request target's bytes may be (as twisted.web's ``_parseRequestLine``).
_TARGET_OK = frozenset(range(33, 127))


@dataclass
class Head:
    """A request head the lean front end serves itself."""

    method: bytes
    uri: bytes
    headers: Headers
    length: int
    size: int  # bytes of the head, final CRLF CRLF included
    #: The header lines as received (after the request line): the key under which the
    #: next request on the connection may reuse ``headers``, ``length`` and ``close``.
    block: bytes = b""
    #: ``Connection: close`` asked for, as twisted.web's ``checkPersistence`` reads it
    #: (the first ``Connection`` line, split on spaces).
    close: bool = False


#: ``read_head`` results besides a :class:`Head`.
INCOMPLETE = "incomplete"
HAND_OVER = "hand over"


def read_head(buffer: bytes | bytearray, max_size: int, max_headers: int,
              last: Head | None = None) -> Head | str:
    """The head at the start of ``buffer``: a :class:`Head`, :data:`INCOMPLETE` (wait for
    more bytes) or :data:`HAND_OVER` (not the plain case: twisted.web decides).

    ``last``: the previous head accepted on this connection.  A client sends the same
    header lines request after request (a browser's API calls, a poller); when they are
    byte for byte ``last``'s, its checked, parsed headers are reused, not parsed again.
    They are shared, so nobody may change a lean request's headers (nobody does)."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > max_size or buffer[:2] == b"\r\n":
            return HAND_OVER
        # a bare LF or CR already in: twisted.web refuses it now, not at the head's end
        if b"\n" in buffer or b"\r" in buffer[:-1]:
            rest = bytes(buffer).replace(b"\r\n", b"")
            if b"\n" in rest or b"\r" in rest[:-1]:
                return HAND_OVER
        return INCOMPLETE
    size = end + 4
    if size > max_size:
        return HAND_OVER
    head = bytes(buffer[:end])
    if head.count(b"\n") != head.count(b"\r") or head.count(b"\r\n") != head.count(b"\n"):
        return HAND_OVER  # a bare LF or CR somewhere
    request_line, _, block = head.partition(b"\r\n")
    parts = request_line.split(b" ")
    if len(parts) != 3:
        return HAND_OVER
    method, uri, version = parts
    if version != b"HTTP/1.1" or not method or not _TCHAR.issuperset(method) \
            or uri[:1] != b"/" or not _TARGET_OK.issuperset(uri):
        return HAND_OVER
    if last is not None and block == last.block:  # the same lines: the same verdict
        return Head(method, uri, last.headers, last.length, size, block, last.close)
    lines = block.split(b"\r\n")
    if len(lines) >= max_headers:  # request line + header lines: count < max_headers
        return HAND_OVER
    checked: list[tuple[bytes, bytes]] = []
    length = -1
    hosts = 0
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or not _TCHAR.issuperset(name):
            return HAND_OVER  # obs-fold (leading SP/HT), a space before ':', junk
        value = value.strip(b" \t")
        if value.find(b"\x00") != -1:  # (``find``, not ``in``: docs/front_end.md)
            return HAND_OVER
        lower = name.lower()
        if lower in _HANDED_OVER:
            return HAND_OVER
        if lower == b"content-length":
            if length >= 0 or not value.isdigit() \
                    or len(value.lstrip(b"0")) > MAX_LENGTH_DIGITS:
                return HAND_OVER
            length = int(value)
        elif lower == b"host":
            hosts += 1
        checked.append((name, value))
    if hosts != 1:
        return HAND_OVER
    headers = FastHeaders()
    add_checked(headers, checked)  # no CR or LF (above), no NUL
    connection = headers.getRawHeaders(b"connection")
    close = bool(connection) and b"close" in [t.lower() for t in connection[0].split(b" ")]
    return Head(method, uri, headers, max(length, 0), size, block, close)
