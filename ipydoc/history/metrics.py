"""What the history counts, and its queue as the metrics refresher sees it in Redis
(``docs/metrics.md``).

The queue gauges are snapshots (:func:`refresh_history`, called by
:mod:`ipydoc.servers.metrics_refresh` every few seconds): saves waiting to be
committed, site-wide, and the commit lag, the age of the oldest of them: how far the
history is behind what users saved.  Push counters are this daemon's.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Gauge

PUSH_FAILURES = Counter("ipydoc_history_mirror_push_failures",
                        "Failed pushes of users' histories to history.remote")
PUSHES = Counter("ipydoc_history_mirror_pushes", "Successful pushes to history.remote")
USER_REPO_PUSHES = Counter("ipydoc_history_user_repo_pushes",
                           "Pushes to users' own repositories, by outcome "
                           "(ok, failed: retried, refused: stopped until the user acts)",
                           ["outcome"])

QUEUE = Gauge("ipydoc_history_queue_length",
              "Saves seen by the proxy and not yet committed (site-wide)")
QUEUE_USERS = Gauge("ipydoc_history_queue_users", "Users with saves waiting to be committed")
LAG = Gauge("ipydoc_history_commit_lag_seconds",
            "Age of the oldest save not yet committed (0 when none waits)")
USER_QUEUE = Gauge("ipydoc_user_history_queue_length",
                   "Saves of the user not yet committed (metrics.per_user)", ["user"])


async def refresh_history(store: Any, per_user: bool = False, now: float | None = None) -> None:
    """Queue length and commit lag from ``store`` (:class:`ipydoc.state.store.Store`).

    One SCAN for the users with a queue, then two short reads per such user: queues are
    empty most of the time, so this stays small."""
    owners = await store.history_queue_owners()
    total = 0
    oldest: float | None = None
    lengths: dict[str, int] = {}
    for name in owners:
        n = await store.history_queued(name)
        if not n:
            continue
        lengths[name] = n
        total += n
        head = await store.history_peek(name, 1)
        stamp = float(head[0].get("time") or 0) if head else 0.0
        if stamp > 0 and (oldest is None or stamp < oldest):
            oldest = stamp
    now = time.time() if now is None else now
    QUEUE.set(total)
    QUEUE_USERS.set(len(lengths))
    LAG.set(max(0.0, now - oldest) if oldest is not None else 0.0)
    USER_QUEUE.clear()
    if per_user:
        for name, n in lengths.items():
            USER_QUEUE.labels(name).set(n)
