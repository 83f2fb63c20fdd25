"""A provider's signing keys (its JWKS), cached, with key rotation.

Providers rotate keys by publishing a new one and signing with it: an ID token whose
``kid`` is not in the cached set makes one refetch of the JWKS, at most once per
``refetch_interval`` seconds (a token cannot make ipydoc hammer the provider), and the
key is looked up again.  Keys come from PyJWT (``jwt.PyJWKSet``, with ``cryptography``),
a maintained JOSE implementation, rather than hand-written key parsing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import jwt


class KeyNotFound(Exception):
    """No key of the provider's key set matches the token."""


class KeySet:
    def __init__(self, fetch: Callable[[], Awaitable[dict[str, Any]]],
                 now: Callable[[], float], refetch_interval: float) -> None:
        self._fetch = fetch
        self._now = now
        self.refetch_interval = refetch_interval
        self._keys: list[tuple[dict[str, Any], jwt.PyJWK]] = []
        self._fetched_at: float | None = None
        self.fetches = 0

    async def _refresh(self) -> None:
        data = await self._fetch()
        keys = []
        for raw in data.get("keys", []) if isinstance(data, dict) else []:
            if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
                continue
            try:
                keys.append((raw, jwt.PyJWK.from_dict(raw)))
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue  # a key type this PyJWT does not know: skip it, keep the rest
        self._keys = keys
        self._fetched_at = self._now()
        self.fetches += 1

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        matches = [k for raw, k in self._keys if (kid is None or raw.get("kid") == kid)
                   and raw.get("alg", alg) == alg]
        if kid is None and len(matches) != 1:
            return None  # without a kid only a one-key set is unambiguous
        return matches[0] if matches else None

    async def key_for(self, kid: str | None, alg: str) -> jwt.PyJWK:
        """The key that signed a token with header ``kid``/``alg``."""
        if self._fetched_at is None:
            await self._refresh()
        key = self._find(kid, alg)
        if key is None and self._now() - (self._fetched_at or 0) >= self.refetch_interval:
            await self._refresh()  # rotated: the new key is published by now
            key = self._find(kid, alg)
        if key is None:
            raise KeyNotFound(f"no key {kid!r} in the provider's key set")
        return key
