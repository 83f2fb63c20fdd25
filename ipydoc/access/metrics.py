"""What the access layer counts (prometheus_client, the default registry)."""

from __future__ import annotations

from prometheus_client import Counter

SESSION_CACHE_EVICTIONS = Counter(
    "ipydoc_session_cache_evictions",
    "Validated sessions dropped from the in-memory cache to keep it bounded "
    "(least recently used first; expiry and logout are not counted)")

GUEST_REQUESTS = Counter(
    "ipydoc_guest_requests",
    "Requests the gate let through to a server shared with their user (issue 19 §3), by "
    "the share's mode", ["mode"])
GUEST_REFUSALS = Counter(
    "ipydoc_guest_refusals",
    "Requests of view-only guests refused because they could change or run something "
    "(a method other than GET/HEAD, or a WebSocket)")
SHARE_CUTS = Counter(
    "ipydoc_share_cut_exchanges",
    "Open exchanges (WebSockets, streams) of guests closed because their share was "
    "revoked or turned view-only")

NAMED_LOOKUPS = Counter(
    "ipydoc_named_server_lookups",
    "Path-mode requests whose second path segment could name a named server (issue 19 "
    "§1) that is neither routed nor starting on this daemon, so Redis was asked; by what "
    "it turned out to be (named: a stopped or remote named server; default: not a server "
    "name of the user's).  A plain request to a running server never counts here",
    ["result"])
