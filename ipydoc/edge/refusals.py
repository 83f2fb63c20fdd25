"""The log of refused requests: one line per refusal, with the client's address and why.

A flood of bad requests must not flood the log: at most ``REFUSAL_LINES_PER_SECOND``
lines a second, the rest counted and summed up in one line (``suppressed K``) a few
seconds later.  The strict front end (:mod:`ipydoc.edge.request_rules`) and the site's
hub body cap (:mod:`ipydoc.edge.site`) both log through it.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

#: Lines about refused requests logged per second at most; the rest are counted.
REFUSAL_LINES_PER_SECOND = 10
#: How long after the first suppressed line the count of suppressed ones is logged.
REFUSAL_SUMMARY_SECONDS = 5.0


class RefusalLog:
    """Logs refused requests (client address, status, reason), rate-limited.

    Fixed one-second windows: the first ``per_second`` refusals of a window get a line
    each; later ones only bump a counter, and one timer (set when the first is
    suppressed, not per refusal) logs ``suppressed K`` ``summary_after`` seconds later.
    """

    log = Logger()

    def __init__(self, clock: Any, per_second: int = REFUSAL_LINES_PER_SECOND,
                 summary_after: float = REFUSAL_SUMMARY_SECONDS) -> None:
        self._clock = clock
        self._per_second = per_second
        self._summary_after = summary_after
        self._window = -1
        self._lines = 0
        self.suppressed = 0
        self._summary: Any = None

    def refused(self, client: str, code: int, reason: str) -> None:
        window = int(self._clock.seconds())
        if window != self._window:
            self._window, self._lines = window, 0
        if self._lines < self._per_second:
            self._lines += 1
            self.log.info("refused a request from {client}: {code} {reason}",
                          client=client, code=code, reason=reason)
            return
        self.suppressed += 1
        if self._summary is None:
            self._summary = self._clock.callLater(self._summary_after, self._sum_up)

    def _sum_up(self) -> None:
        self._summary = None
        count, self.suppressed = self.suppressed, 0
        if count:
            self.log.warn("suppressed {count} more lines about refused requests in the last "
                          "{s:g} s (more than {n} a second)",
                          count=count, s=self._summary_after, n=self._per_second)

    def stop(self) -> None:
        """Log what is still counted (on shutdown) and cancel the timer."""
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
            self._sum_up()


def client_address(channel: Any) -> str:
    """``host:port`` of the connection's peer (for log lines; ``?`` if unknown)."""
    try:
        peer = channel.transport.getPeer()
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"
    host, port = getattr(peer, "host", None), getattr(peer, "port", None)
    if host is None:
        return str(getattr(peer, "name", None) or "unix")
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
