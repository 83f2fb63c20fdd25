"""What the access layer counts (prometheus_client, the default registry)."""

from __future__ import annotations

from prometheus_client import Counter

SESSION_CACHE_EVICTIONS = Counter(
    "ipydoc_session_cache_evictions",
    "Validated sessions dropped from the in-memory cache to keep it bounded "
    "(least recently used first; expiry and logout are not counted)")
