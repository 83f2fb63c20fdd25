"""What the server manager and culler count, and the snapshot of servers and users that
the metrics refresher (:mod:`ipydoc.servers.metrics_refresh`) takes from Redis
(``docs/metrics.md``).

Counters and the spawn histogram move where the thing happens (:mod:`.manager`,
:mod:`.culler`).  The gauges are snapshots: a scrape must not wait on Redis, so
:func:`refresh_servers` sets them every few seconds and a scrape reads the last values.
Read from Redis, they are site-wide (several daemons all report the same numbers), except
the start queue, which is this daemon's.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from ipydoc.state.servers import SERVER_STATES

SPAWN = Histogram(
    "ipydoc_spawn_duration_seconds", "Server starts, from the request to the outcome "
    "(queue wait included), by outcome: started, or the kind of failure (failed, timeout, "
    "exited, stopped, limit, superseded, ...)", ["outcome"],
    buckets=(0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0,
             180.0, 300.0))
CULLED = Counter("ipydoc_culled_servers", "Servers stopped by the culler, by reason "
                 "(idle: cull.idle_timeout, max_age: cull.max_age)", ["reason"])

PRESTARTS = Counter(
    "ipydoc_login_page_prestarts", "Starts considered for a returning browser's login page "
    "(spawn.prestart_on_login), by outcome: started, unused (stopped again: no login within "
    "spawn.prestart_grace), or why not (no-account, not-stopped, full, cooldown)",
    ["outcome"])
PAUSED = Counter("ipydoc_paused_servers", "Servers paused (cull.pause_after or "
                 "`ipydoc server pause`)")
RESUME = Histogram(
    "ipydoc_resume_duration_seconds", "Resumes of paused servers, from the first request "
    "to the server thawed, by trigger (proxy, token, page, cli)", ["trigger"],
    buckets=(0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0))

SERVERS = Gauge("ipydoc_servers", "Server records in Redis by state (site-wide)", ["state"])
START_QUEUE = Gauge("ipydoc_start_queue_length",
                    "Starts waiting for a free start slot (spawn.concurrency) on this daemon")
STARTS_ACTIVE = Gauge("ipydoc_starts_in_progress",
                      "Starts holding a start slot on this daemon right now")
#: Windows of :data:`ACTIVE_USERS`, label → seconds.
WINDOWS = (("5m", 300.0), ("1h", 3600.0), ("24h", 86400.0))
ACTIVE_USERS = Gauge("ipydoc_active_users", "Users whose server saw proxied traffic "
                     "within the window (site-wide)", ["window"])

# metrics.per_user: one series per user (small sites only).
USER_UP = Gauge("ipydoc_user_server_running",
                "1 if the user's server runs, else 0 (metrics.per_user)", ["user"])
USER_IDLE = Gauge("ipydoc_user_idle_seconds", "Seconds since the user's server last saw "
                  "proxied traffic (metrics.per_user)", ["user"])


def spawn_finished(outcome: str, seconds: float) -> None:
    SPAWN.labels(outcome).observe(seconds)


def paused() -> None:
    PAUSED.inc()


def resumed(trigger: str, seconds: float) -> None:
    RESUME.labels(trigger).observe(seconds)


def culled(reason: str) -> None:
    """``reason`` is the culler's sentence; only its kind becomes a label."""
    CULLED.labels("max_age" if "cull.max_age" in reason else "idle").inc()


async def refresh_servers(store: Any, queue: Any, per_user: bool = False,
                          now: float | None = None) -> None:
    """Servers by state, start queue, active users (and per-user series) from ``store``
    (:class:`ipydoc.state.store.Store`) and the manager's ``queue``."""
    START_QUEUE.set(len(queue))
    STARTS_ACTIVE.set(queue.active)
    states = await store.server_states()  # one reply: this runs every few seconds
    activity = await store.activity()
    now = time.time() if now is None else now
    by_state = Tally(states.values())
    for state in SERVER_STATES:
        SERVERS.labels(state).set(by_state.get(state, 0))
    for label, seconds in WINDOWS:
        ACTIVE_USERS.labels(label).set(sum(1 for t in activity.values() if now - t <= seconds))
    USER_UP.clear()
    USER_IDLE.clear()
    if per_user:
        for name, state in states.items():
            USER_UP.labels(name).set(1 if state == "running" else 0)
            if state == "running" and name in activity:
                USER_IDLE.labels(name).set(max(0.0, now - activity[name]))
