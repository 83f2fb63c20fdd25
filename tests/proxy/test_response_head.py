"""``parse_head`` remembers the header lines it has checked (``backend._LINES``): a line
seen before gives exactly what checking it again would, framing lines still frame, a bad
line is refused however many good ones came before, and the memory stays bounded even
when a hostile server sends new lines every time."""

from __future__ import annotations

import pytest

from ipydoc.proxy import backend
from ipydoc.proxy.backend import BadResponse, parse_head

HEAD = (b"HTTP/1.1 200 OK\r\nServer: TornadoServer/6.4\r\nContent-Type: application/json\r\n"
        b"Date: Tue, 01 Dec 2026 20:00:00 GMT\r\nX-Content-Type-Options:  nosniff \r\n"
        b"Connection: keep-alive, X-Private\r\nContent-Length: 17\r\n"
        b"Set-Cookie: _xsrf=abc; Path=/user/alice/")


def fields(raw: bytes, no_body: bool = False) -> tuple:
    head, framing, length = parse_head(raw, no_body)
    return (head.code, head.phrase, head.headers, head.lowers, head.keep_alive,
            head.connection, head.length, framing, length)


def test_a_remembered_line_gives_what_checking_it_again_gives() -> None:
    backend._LINES.clear()
    first = fields(HEAD)  # every line checked, then remembered
    assert len(backend._LINES) == 7
    again = fields(HEAD)  # every line remembered
    backend._LINES.clear()
    assert again == first == fields(HEAD)
    code, _, headers, lowers, keep_alive, connection, length, _, _ = first
    assert (code, keep_alive, length) == (200, True, 17)
    assert connection == frozenset({b"keep-alive", b"x-private"})
    assert headers[3] == (b"X-Content-Type-Options", b"nosniff")  # value stripped
    assert lowers == [name.lower() for name, _ in headers]


def test_remembered_framing_lines_still_frame() -> None:
    backend._LINES.clear()
    fields(HEAD)
    other = HEAD.replace(b"Content-Length: 17", b"Content-Length: 4")
    assert fields(other)[6] == 4
    with pytest.raises(BadResponse, match="conflicting Content-Length"):
        parse_head(HEAD + b"\r\nContent-Length: 4", False)  # both lines remembered now
    closing = HEAD.replace(b"Connection: keep-alive, X-Private", b"Connection: close")
    assert fields(closing)[4] is False


@pytest.mark.parametrize("bad", [b"X-A : spaced", b" folded", b"No-Colon", b": no-name",
                                 b"X\x7fA: del in name"])
def test_a_bad_line_is_refused_after_any_number_of_good_ones(bad: bytes) -> None:
    backend._LINES.clear()
    for _ in range(3):
        fields(HEAD)
    with pytest.raises(BadResponse, match="bad header line"):
        parse_head(HEAD + b"\r\n" + bad, False)
    assert bad not in backend._LINES
    with pytest.raises(BadResponse, match="bad header line"):
        parse_head(HEAD + b"\r\n" + bad, False)  # and again


def test_the_memory_is_bounded_when_every_line_is_new() -> None:
    backend._LINES.clear()
    for i in range(3 * backend._LINES_MAX):
        head, _, _ = parse_head(b"HTTP/1.1 204 No Content\r\nX-Nonce: %d" % i, False)
        assert head.headers == [(b"X-Nonce", b"%d" % i)]
        assert len(backend._LINES) <= backend._LINES_MAX
    backend._LINES.clear()
    long_line = b"X-Long: " + b"v" * backend._LINE_KEPT
    head, _, _ = parse_head(b"HTTP/1.1 204 No Content\r\n" + long_line, False)
    assert head.headers == [(b"X-Long", b"v" * backend._LINE_KEPT)]
    assert not backend._LINES  # checked, not kept


@pytest.mark.parametrize("bad", [b"\r", b"\n", b"\x00"])
def test_a_bare_cr_lf_or_nul_is_refused_in_the_reason_phrase_and_in_values(bad: bytes) -> None:
    """The reason phrase is written back to the client as is: the one look at the whole
    head covers it as it covers every header value."""
    backend._LINES.clear()
    fields(HEAD)  # every line remembered: the look does not depend on checking lines
    with pytest.raises(BadResponse, match="bad header value"):
        parse_head(HEAD.replace(b"200 OK", b"200 O" + bad + b"K"), False)
    with pytest.raises(BadResponse, match="bad header value"):
        parse_head(HEAD.replace(b"nosniff", b"no" + bad + b"sniff"), False)


def test_the_client_lines_kept_on_a_head_are_those_made_afresh_in_every_context() -> None:
    """``client_lines`` keeps its answer on the head with what it depended on (token, own
    origin, https): switching between those gives what a freshly parsed head gives."""
    from ipydoc.proxy.answer_head import client_lines
    from ipydoc.proxy.gate import Forward

    token = b"tok-2718"
    plain = HEAD.replace(b"Connection: keep-alive, X-Private\r\n", b"")
    heads = [HEAD, plain,  # (HEAD names a header in Connection: always the usual way)
             plain.replace(b"Set-Cookie: _xsrf=abc; Path=/user/alice/",
                           b"Service-Worker-Allowed: /"),
             plain + b"\r\nX-T: " + token]
    contexts = [(Forward("alice", "http://s:1", token.decode(), own_origin=own), tok, secure)
                for own in (False, True) for tok in (token, b"other-token", b"")
                for secure in (False, True)]
    for raw in heads:
        afresh = {(id(fwd), tok, secure): client_lines(parse_head(raw, False)[0], fwd, tok,
                                                       secure)
                  for fwd, tok, secure in contexts}
        assert len(set(afresh.values())) > 1 or raw == heads[0]  # the context matters
        for first in contexts:  # every context right after every other, on one head
            for fwd, tok, secure in contexts:
                head, _, _ = parse_head(raw, False)
                client_lines(head, *first)
                assert client_lines(head, fwd, tok, secure) == afresh[id(fwd), tok, secure]
