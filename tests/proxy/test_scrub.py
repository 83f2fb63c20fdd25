"""The token scrubber removes the secret however the body is chunked."""

import random

import pytest

from ipydoc.proxy.scrub import Scrubber, is_textual

SECRET = b"0123456789abcdef" * 4


def run(body: bytes, cuts: list[int]) -> bytes:
    s = Scrubber(SECRET)
    out, last = [], 0
    for c in sorted(cuts) + [len(body)]:
        out.append(s.feed(body[last:c]))
        last = c
    out.append(s.flush())
    return b"".join(out)


@pytest.mark.parametrize("seed", range(200))
def test_every_chunking_removes_every_copy(seed):
    rnd = random.Random(seed)
    parts = [bytes(rnd.choice(b"0123456789abcdefxyz<>\"") for _ in range(rnd.randrange(0, 90)))
             for _ in range(5)]
    body = SECRET.join(parts)
    cuts = [rnd.randrange(0, len(body) + 1) for _ in range(rnd.randrange(0, 8))]
    expected = body.replace(SECRET, b"")
    while SECRET in expected:  # removal can join two halves into a new copy
        expected = expected.replace(SECRET, b"")
    got = run(body, cuts)
    assert SECRET not in got
    assert got == expected


def test_text_without_secret_is_unchanged_and_prefix_is_released():
    body = b"page ends with the start of the secret: " + SECRET[:20]
    assert run(body, [5, 30, 45]) == body


def test_textual_types():
    assert is_textual(b"text/html; charset=UTF-8")
    assert is_textual(b"application/json")
    assert not is_textual(b"application/octet-stream")
    assert not is_textual(b"image/png")
