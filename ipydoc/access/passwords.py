"""Password hashing with argon2id (argon2-cffi): memory-hard, salted, self-describing hashes.

Hashing costs 50-110 ms of CPU on purpose (argon2-cffi's defaults, RFC 9106's second
recommended parameters: 3 passes over 64 MiB; ~108 ms on the 2-core test machine), so it
runs in a thread, never on the reactor.  A hash made with older parameters is still
verified (argon2 encodes them).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from twisted.internet import threads

_hasher = PasswordHasher()

# Verified when the user does not exist, so a wrong name costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("ipydoc-no-such-user")

MIN_LENGTH = 8


class WeakPassword(ValueError):
    pass


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True if ``password`` matches ``stored`` (None: no such user, still costs the same)."""
    return await threads.deferToThread(_verify, stored, password)


async def hash_password_async(password: str) -> str:
    return await threads.deferToThread(hash_password, password)
