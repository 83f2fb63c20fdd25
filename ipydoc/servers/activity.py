"""When each user's server last had traffic through the proxy.

Kept in memory and written to Redis in batches (the daemon's ``activity`` timer takes
it every few seconds), so traffic costs no Redis write per request.  The culler reads
both: what is not yet written counts too.
"""

from __future__ import annotations

import time


class Activity:
    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def saw(self, user: str) -> None:
        """Bytes moved for ``user``'s server just now."""
        self._seen[user] = time.time()

    def last(self, user: str) -> float | None:
        """When ``user``'s server last had traffic not yet written to Redis."""
        return self._seen.get(user)

    def take(self) -> dict[str, float]:
        """The stamps since the last take (to write to Redis), and forget them."""
        stamps, self._seen = self._seen, {}
        return stamps
