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
    if not isinstance(value, str):
        raise InvalidName("a user name must be a string")
    if not value:
        raise InvalidName("a user name must not be empty")
    if len(value) > MAX_LENGTH:
        raise InvalidName(f"a user name has at most {MAX_LENGTH} characters")
    if not _PATTERN.fullmatch(value):
        raise InvalidName(
            "a user name uses only lower-case letters a-z, digits and single hyphens, "
            "starts with a letter and does not end with a hyphen"
        )
    return value


def normalize_login(value: str) -> str:
    """What a person typed into a login form, lower-cased and stripped, then validated."""
    return validate_name(value.strip().lower())
