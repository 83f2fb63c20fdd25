"""What can go wrong in history, by who must act: people (:class:`HistoryError`), the
worker's retry (:class:`Transient`) or its dead letters (:class:`Hostile`)."""

from __future__ import annotations


class HistoryError(Exception):
    """A history request that cannot be done; the message is for people."""


class NoSuchVersion(HistoryError):
    pass


class Transient(Exception):
    """The server could not be read right now (stopped, restarting, 5xx): retry later."""


class Hostile(Exception):
    """The server's answer broke a rule (budget, encoding, deadline, shape): reading it
    again would break it again, so the entry goes to the dead letters at once."""
