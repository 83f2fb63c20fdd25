"""``client_lines``: the header lines a browser gets for a server's answer, made in one
pass and remembered per line.  A remembered line gives what making it again gives; what
depends on the request (a cookie made ``Secure``, a service worker's scope in path mode)
is never remembered; the answers it cannot make byte for byte as the usual way does are
left to that way; and the memory stays bounded however many new lines a server sends.
(That the lines are the usual way's, byte for byte, is tests/proxy/test_whole_answers.py.)
"""

from __future__ import annotations

from ipydoc.proxy import answer_head
from ipydoc.proxy.answer_head import client_lines
from ipydoc.proxy.backend import parse_head
from ipydoc.proxy.gate import Forward

TOKEN = b"tok-2718281828"
PATH_MODE = Forward("alice", "http://127.0.0.1:1", TOKEN.decode())
OWN_ORIGIN = Forward("alice", "http://127.0.0.1:1", TOKEN.decode(), own_origin=True)
HEAD = (b"HTTP/1.1 200 OK\r\nServer: TornadoServer/6.6.1\r\ncontent-type: application/json"
        b"\r\nEtag: \"e1\"\r\nKeep-Alive: timeout=5\r\nProxy-Thing: x\r\n"
        b"Service-Worker-Allowed: /\r\nSet-Cookie: _xsrf=abc; Path=/user/alice/\r\n"
        b"Content-Length: 2")


def lines(raw: bytes, fwd: Forward = PATH_MODE, secure: bool = False) -> bytes | None:
    head, _, _ = parse_head(raw, False)
    return client_lines(head, fwd, TOKEN, secure)


def test_the_lines_a_browser_gets() -> None:
    answer_head._LINES.clear()
    assert lines(HEAD) == (b"Server: TornadoServer/6.6.1\r\nContent-Type: application/json\r\n"
                           b"ETag: \"e1\"\r\nSet-Cookie: _xsrf=abc; Path=/user/alice/\r\n"
                           b"Content-Length: 2\r\n")
    assert b"Service-Worker-Allowed: /\r\n" in lines(HEAD, OWN_ORIGIN)
    assert b"Set-Cookie: _xsrf=abc; Path=/user/alice/; Secure\r\n" in lines(HEAD, secure=True)


def test_a_remembered_line_gives_what_making_it_again_gives() -> None:
    answer_head._LINES.clear()
    first = lines(HEAD)
    remembered = len(answer_head._LINES)
    assert remembered == 6  # all but the two that depend on the request
    for fwd, secure in [(PATH_MODE, False), (OWN_ORIGIN, True), (PATH_MODE, True)]:
        again = lines(HEAD, fwd, secure)
        answer_head._LINES.clear()
        assert again == lines(HEAD, fwd, secure)
    assert lines(HEAD) == first


def test_answers_it_cannot_make_alike_are_left_to_the_usual_way() -> None:
    answer_head._LINES.clear()
    for extra in [b"X-Echo: a" + TOKEN,                        # scrubbed value by value
                  b"Set-Cookie: t=" + TOKEN,
                  b"Etag: \"e2\"",                             # a name twice: grouped
                  b"Connection: X-Private",                    # names other headers
                  b"Strict-Transport-Security: max-age=1"]:  # replaced in place
        assert lines(HEAD + b"\r\n" + extra) is None
    assert lines(HEAD) is not None


def test_the_memory_stays_bounded() -> None:
    answer_head._LINES.clear()
    for n in range(3 * answer_head._LINES_MAX):
        lines(HEAD + b"\r\nX-New: %d" % n)
        assert len(answer_head._LINES) <= answer_head._LINES_MAX
    answer_head._LINES.clear()
    long = b"X-Long: " + b"v" * (answer_head._VALUE_KEPT + 1)
    assert lines(HEAD + b"\r\n" + long).endswith(long + b"\r\n")
    assert all(len(value) <= answer_head._VALUE_KEPT for _, value in answer_head._LINES)
