"""FastHeaders answers exactly as Twisted's Headers does, for every way the proxy and the
gate read headers: bytes and str names, any case, names never seen before, defaults."""

from __future__ import annotations

import secrets

import pytest
from twisted.web.http_headers import Headers

from ipydoc.proxy.headers import FastHeaders, add_checked

LINES = [(b"Host", b"example.org"), (b"content-type", b"text/plain"), (b"X-CUSTOM", b"1"),
         (b"x-custom", b"2"), (b"ETAG", b'"abc"'), (b"Set-Cookie", b"a=1"),
         (b"set-cookie", b"b=2")]


def both() -> tuple[Headers, FastHeaders]:
    plain, fast = Headers(), FastHeaders()
    for name, value in LINES:
        plain.addRawHeader(name, value)
    add_checked(fast, LINES)
    return plain, fast


@pytest.mark.parametrize("name", [b"host", b"HOST", "Host", b"content-type", "content-type",
                                  b"x-custom", b"etag", b"set-cookie", b"absent", "absent",
                                  b"x-never-seen-" + secrets.token_hex(4).encode()])
def test_reads_match_twisted(name: bytes | str) -> None:
    plain, fast = both()
    assert fast.getRawHeaders(name) == plain.getRawHeaders(name)
    assert fast.getRawHeaders(name, ["default"]) == plain.getRawHeaders(name, ["default"])
    assert fast.hasHeader(name) == plain.hasHeader(name)
    fast.removeHeader(name)
    plain.removeHeader(name)
    assert list(fast.getAllRawHeaders()) == list(plain.getAllRawHeaders())


def test_the_whole_table_and_its_canonical_names_match_twisted() -> None:
    plain, fast = both()
    assert list(fast.getAllRawHeaders()) == list(plain.getAllRawHeaders())
    assert dict(fast.getAllRawHeaders())[b"ETag"] == [b'"abc"']  # Twisted's own casing
    fast.setRawHeaders(b"content-length", [b"12"])
    plain.setRawHeaders(b"content-length", [b"12"])
    assert list(fast.getAllRawHeaders()) == list(plain.getAllRawHeaders())
    assert fast.copy().getRawHeaders(b"x-custom") == [b"1", b"2"]
    assert isinstance(fast.copy(), FastHeaders)


def test_a_bad_name_is_refused_as_twisted_refuses_it() -> None:
    from twisted.web.http_headers import InvalidHeaderName

    with pytest.raises(InvalidHeaderName):
        Headers().getRawHeaders(b"bad name")
    with pytest.raises(InvalidHeaderName):
        FastHeaders().getRawHeaders(b"bad name")
