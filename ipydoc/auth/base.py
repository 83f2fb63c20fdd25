"""What every login provider offers the hub: :class:`Identity`, :class:`Refused`, the
:class:`Provider` protocol, and the one HTTP helper they share.

A provider turns a login into an :class:`Identity` or raises :class:`Refused` with a
reason in plain words for the person (shown on the login page) and a detail for the log
(never a token, code or secret).  HTTP goes through treq with a timeout and a size cap:
a slow or huge answer from a provider is a refusal, not a hung login.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import treq
from twisted.internet import defer

from ipydoc.backends.capped_body import read_capped

TIMEOUT = 15.0
MAX_BODY = 1 << 20


class Refused(Exception):
    """The login is refused: ``reason`` is for the person, ``detail`` for the log."""

    def __init__(self, reason: str, detail: str = "", name: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail or reason
        self.name = name


@dataclass(frozen=True)
class Identity:
    provider: str
    subject: str  # the provider's stable id of the person
    name: str  # the validated ipydoc name derived from it
    admin: bool | None  # None: the provider has no admin rule, leave the flag alone
    detail: str = ""  # for the event log, e.g. the GitHub login
    # ipydoc groups the provider reports (mapped teams / claim values); None: it manages
    # no groups, or could not tell this time (memberships are left as they are)
    groups: tuple[str, ...] | None = None


class Provider(Protocol):
    id: str
    display_name: str

    async def authorize_url(self, redirect_uri: str, state: str, nonce: str,
                            challenge: str) -> str: ...

    async def complete(self, code: str, redirect_uri: str, nonce: str,
                       verifier: str) -> Identity: ...


@dataclass
class Reply:
    code: int
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


class HTTP:
    """Small JSON-over-HTTPS helper for the providers (one place for timeouts/caps)."""

    def __init__(self, reactor: Any, agent: Any = None) -> None:
        self.reactor = reactor
        self.client = treq.client.HTTPClient(agent) if agent is not None else treq

    async def request(self, method: str, url: str, **kw: Any) -> Reply:
        headers = {"Accept": "application/json", "User-Agent": "ipydoc",
                   **kw.pop("headers", {})}
        d = self.client.request(method, url, headers=headers, timeout=TIMEOUT,
                                reactor=self.reactor, **kw)
        response = await d
        body = await defer.Deferred.fromCoroutine(read_capped(response, MAX_BODY))
        return Reply(response.code, body)
