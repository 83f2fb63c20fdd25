"""How big a request head may be and how fast a client must send and read.

All configurable (``[server]`` in etc/ipydoc.toml); enforced by
:class:`ipydoc.edge.request_rules.StrictChannel`:

* ``header_timeout``: a request head must be complete this long after its first byte
  (or after the connection opened), however steadily it trickles in (slowloris) → 408;
* ``body_timeout``: the longest silence while we are *reading* a request body; time
  the proxy holds the client back (gate deciding, backend slow to read) does not count;
* ``idle_timeout``: a keep-alive connection with no request under way is closed;
* ``send_timeout``: a client that leaves its response unread (our send buffer full and
  not draining) this long is disconnected, which also aborts the backend request;
* ``max_header_size`` bytes and ``max_headers`` lines in a request head, else 431.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestLimits:
    """Sizes and timeouts for client connections (``[server]`` in the configuration)."""

    header_timeout: float = 30.0
    body_timeout: float = 60.0
    idle_timeout: float = 120.0
    send_timeout: float = 120.0
    max_header_size: int = 16384
    max_headers: int = 100
