"""One strict user-name pattern, safe as DNS label, container name, path and Redis key part."""

import re

import pytest

from ipydoc.names import (
    MAX_SERVER_LENGTH,
    InvalidName,
    normalize_login,
    owner_of,
    server_key,
    split_server_key,
    validate_name,
    validate_server_name,
)

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


def test_server_keys_round_trip_and_fit_a_dns_label():
    user, server = "a" * 32, "b" * MAX_SERVER_LENGTH
    key = server_key(user, server)
    assert split_server_key(key) == (user, server) and owner_of(key) == user
    assert len(key) <= 63
    assert server_key("alice") == "alice" and split_server_key("alice") == ("alice", "")


@pytest.mark.parametrize("key", ["alice--lab", "alice--", "--gpu", "alice--gpu--x",
                                 "alice---x", "Alice--gpu", "alice--" + "b" * 30, "a:b--c"])
def test_bad_server_keys_are_refused(key):
    with pytest.raises(InvalidName):
        split_server_key(key)


@pytest.mark.parametrize("name", ["api", "static", "lab", "", "x" * 30, "gpu-", None])
def test_bad_server_names_are_refused(name):
    with pytest.raises(InvalidName):
        validate_server_name(name)
