"""``[cluster]``: several daemons over one Redis (leases and their takeover bound).

Every daemon runs the cluster machinery, one daemon included (it costs a Redis key per
start and a pub/sub connection); these knobs only set how fast a dead daemon's work is
taken over (docs/several-daemons.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError


@dataclass
class ClusterSection:
    #: Seconds a start or history lease outlives its holder (renewed every third of it):
    #: a daemon killed mid-start or mid-commit is taken over after at most this long.
    lease_ttl: float = 10.0
    #: Seconds between two looks, on every daemon, for history queues nobody drains
    #: (their daemon died): saves it saw are committed within lease_ttl + this.
    sweep_interval: float = 5.0


def validate(c: ClusterSection) -> None:
    if not 1.0 <= c.lease_ttl <= 600.0:
        raise ConfigError("cluster.lease_ttl must be between 1 and 600 (seconds)")
    if not 0.5 <= c.sweep_interval <= 600.0:
        raise ConfigError("cluster.sweep_interval must be between 0.5 and 600 (seconds)")
