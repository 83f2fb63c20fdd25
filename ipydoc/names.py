"""The one user-name validator.

A name is checked once, where it enters (login form, CLI, control channel, URL), and
everything else (container name, volume name, DNS label, URL path segment, Redis key
part) is derived from the validated value.  The pattern is the intersection of what all
of those accept: lower-case ASCII letters and digits, single hyphens inside, starting
with a letter, at most 32 characters.  No ``--`` so no name can look like a punycode
label (``xn--``); no ``.``, ``_``, ``:`` or ``/`` so it can never split a key or path.
"""

from __future__ import annotations

import re

MAX_LENGTH = 32
_PATTERN = re.compile(r"[a-z](?:[a-z0-9]|-(?=[a-z0-9]))*")


class InvalidName(ValueError):
    """A user name that does not match the pattern; the message says why."""


def validate_name(value: object) -> str:
    """Return ``value`` if it is a valid user name, else raise :class:`InvalidName`."""
    return _checked(value, "user name", MAX_LENGTH)


def _checked(value: object, what: str, max_length: int) -> str:
    """``value`` if it is a string that follows the one pattern within ``max_length``
    characters, else InvalidName saying why (``what``: "user name", "server name")."""
    if not isinstance(value, str):
        raise InvalidName(f"a {what} must be a string")
    if not value:
        raise InvalidName(f"a {what} must not be empty")
    if len(value) > max_length:
        raise InvalidName(f"a {what} has at most {max_length} characters")
    if not _PATTERN.fullmatch(value):
        raise InvalidName(
            f"a {what} uses only lower-case letters a-z, digits and single hyphens, "
            "starts with a letter and does not end with a hyphen"
        )
    return value


def normalize_login(value: str) -> str:
    """What a person typed into a login form, lower-cased and stripped, then validated."""
    return validate_name(value.strip().lower())


# -- Named servers (issue 19 §1) ---------------------------------------------------------
#
# A user's default server is identified by the user name itself; a named server by the
# *server key* ``USER--SERVER``.  Neither part may contain ``--``, so the split is unique,
# and the key is still a DNS label (at most 32 + 2 + MAX_SERVER_LENGTH = 63 characters), a
# container/service name part and a Redis key part.  Everything that identified a server
# by its user name (records, routes, activity, containers) takes the key instead; what
# belongs to the person (account, files, history, tokens) stays under the owner's name.

#: Longest server name: keeps ``USER--SERVER`` within a 63-character DNS label.
MAX_SERVER_LENGTH = 29
SERVER_KEY_SEPARATOR = "--"
#: First path segments of a Jupyter server (``/user/NAME/<segment>``) a named server may
#: not take, so ``/user/alice/lab`` is always the default server's JupyterLab.
RESERVED_SERVER_NAMES = frozenset({
    "api", "lab", "tree", "notebooks", "edit", "files", "view", "static", "custom",
    "nbconvert", "kernelspecs", "terminals", "doc", "login", "logout", "hub", "user",
    "voila", "nbextensions", "metrics", "extensions", "lsp", "jupyterlab", "retro",
    "services", "proxy", "server", "servers",
})


def validate_server_name(value: object) -> str:
    """Return ``value`` if it is a valid name for a named server, else InvalidName.

    The user-name rule, at most :data:`MAX_SERVER_LENGTH` characters, and not one of
    Jupyter's own top-level paths."""
    if not isinstance(value, str) or not value:
        raise InvalidName("a server name must be a non-empty string")
    _checked(value, "server name", MAX_SERVER_LENGTH)
    if value in RESERVED_SERVER_NAMES:
        raise InvalidName(f"{value!r} is one of Jupyter's own paths; choose another name")
    return value


def server_key(user: str, server: str = "") -> str:
    """The key of ``user``'s server ``server`` ("" = the default server: the user name)."""
    validate_name(user)
    if not server:
        return user
    return f"{user}{SERVER_KEY_SEPARATOR}{validate_server_name(server)}"


def split_server_key(key: str) -> tuple[str, str]:
    """``(user, server)`` of a server key ("" for the default server); InvalidName if
    ``key`` is neither a user name nor ``USER--SERVER``."""
    if not isinstance(key, str):
        raise InvalidName("a server key must be a string")
    user, sep, server = key.partition(SERVER_KEY_SEPARATOR)
    validate_name(user)
    if sep:
        validate_server_name(server)
    return user, server


def validate_server_key(key: object) -> str:
    """``key`` if it is a valid server key (a user name or ``USER--SERVER``)."""
    split_server_key(key)  # type: ignore[arg-type]
    return key  # type: ignore[return-value]


def owner_of(key: str) -> str:
    """The user who owns the server ``key``."""
    return split_server_key(key)[0]
