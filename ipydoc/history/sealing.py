"""Users' repository credentials, encrypted at rest (Fernet: AES-128-CBC + HMAC-SHA256).

The key is derived from the daemon's signing secret (``state_dir/secret``, 0600) with
HMAC-SHA256 and a label of its own, so it needs no file of its own: several daemons on
one state directory share it as they share the secret, and ``ipydoc backup`` keeps it
with the secret.  Redis holds only ciphertext: a copy of Redis (a backup, a replica) does
not give away a user's token without the state directory as well.  A new signing secret
only means users link their repository again (:class:`Unreadable`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken

#: What the derived key is for; another label gives an unrelated key.
KEY_LABEL = b"ipydoc: users' repository credentials"


class Unreadable(Exception):
    """The ciphertext was not made with this key (the signing secret changed)."""


class Sealer:
    """Seals and opens credentials with the state directory's key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def from_secret(cls, secret: bytes) -> Sealer:
        """The sealer of the daemon whose signing secret is ``secret``."""
        key = hmac.new(secret, KEY_LABEL, hashlib.sha256).digest()
        return cls(base64.urlsafe_b64encode(key))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, ValueError, UnicodeError):
            raise Unreadable("the stored credential cannot be read with this key") from None
