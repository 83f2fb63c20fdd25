"""One strict user-name pattern, safe as DNS label, container name, path and Redis key part."""

import re

import pytest

from ipydoc.names import InvalidName, normalize_login, validate_name

GOOD = ["alice", "bob", "a", "x1", "jean-luc", "a1-b2-c3", "z" * 32]
BAD = ["", "Alice", "1alice", "-alice", "alice-", "al--ice", "xn--80ak6aa92e", "al_ice",
       "al.ice", "al:ice", "al/ice", "..", "al%2fice", "alice ", " alice", "ålice", "al\nice",
       "a" * 33, "alice\x00", "ＡＬＩＣＥ"]


@pytest.mark.parametrize("name", GOOD)
def test_accepts(name):
    assert validate_name(name) == name
    # what the name becomes elsewhere stays valid there
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name)       # DNS label
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", f"ipydoc-{name}")   # container name
    assert ":" not in name and "/" not in name


@pytest.mark.parametrize("name", BAD)
def test_rejects(name):
    with pytest.raises(InvalidName):
        validate_name(name)


def test_rejects_non_strings():
    with pytest.raises(InvalidName):
        validate_name(None)
    with pytest.raises(InvalidName):
        validate_name(b"alice")


def test_login_form_normalises_case_and_spaces():
    assert normalize_login("  Alice ") == "alice"
    with pytest.raises(InvalidName):
        normalize_login("al ice")
