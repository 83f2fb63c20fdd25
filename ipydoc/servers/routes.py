"""The route table: where each running server answers, as the proxy sees it.

The server manager owns the table (a plain dict, name → :class:`Route`) and shares it with
the reconciler; Redis holds the same routes for restarts.  Entries are dropped
synchronously when a server goes away, so the very next request goes to the start page.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    url: str
    token: str
    id: str = ""     # the container's id: events about another container leave it alone
    paused: bool = False        # frozen: the first request resumes it (servers.pausing)
    paused_since: float = 0.0   # unix time; the oldest paused server makes room first


Routes = dict[str, Route]
