"""What the hub's pages count: logins by provider and outcome (``docs/metrics.md``).

``provider`` is ``local`` (the password form) or a configured provider's id (a few at
most); ``outcome`` one of :data:`OUTCOMES`.  No user name is a label: failed logins
carry whatever name was typed.
"""

from __future__ import annotations

from prometheus_client import Counter

LOGINS = Counter("ipydoc_logins", "Login attempts by provider (local or the provider's id) "
                 "and outcome", ["provider", "outcome"])

#: ``ok``; ``refused`` (wrong name or password, or the provider said no); ``paused``
#: (login limits: account or address paused); ``disabled`` (the account is disabled).
OUTCOMES = ("ok", "refused", "paused", "disabled")


def login(provider: str, outcome: str) -> None:
    LOGINS.labels(provider, outcome).inc()
