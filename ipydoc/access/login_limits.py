"""Failed-login limits per account and per client address, counted in Redis over a window.

Argon2 makes each guess slow; limits make guessing hopeless.  Every failed login counts
against the account name typed (normalised, whether or not the account exists, so the
limiter never tells which names exist) and against the client address (IPv6 grouped by
/64, the block one subscriber usually gets).  Once either count reaches its limit, logins
for that account, or from that address, are refused until the window ends -- even with
the right password, or the guessing would simply go on -- with HTTP 429 and the time
left, and without running argon2 at all (an attack costs no CPU then).  A success clears
the account's count, not the address's: one known account must not let an address go on
guessing others.  An admin's ``ipydoc user passwd`` clears the account's count too.

Counts are fixed windows: the first failure starts the key's expiry; refused attempts do
not extend it, so the owner waits at most one window after the guessing stops (the
counters: :mod:`ipydoc.state.login_limits`).

Behind a reverse proxy every connection comes from the proxy: list it in
``server.trusted_proxies`` and the address counted is the client's, from the proxy's
``X-Forwarded-For`` (:mod:`ipydoc.edge.forwarding` puts it on the request before this reads
it).  From any other peer that header is ignored, or a guesser would pick a new
"address" for every attempt.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from twisted.web.iweb import IRequest

from ipydoc.access.collaborators import StoreSource


def address_group(host: str) -> str:
    """The unit an address is limited as: an IPv4 address, or an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "local"  # a unix socket: whoever is on this machine
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def client_group(request: IRequest) -> str:
    """The group of the request's client address: behind a trusted proxy, the client that
    proxy names (ipydoc.edge.forwarding), else the peer."""
    return address_group(str(getattr(request.getClientAddress(), "host", "")))


def _wait_text(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True)
class LimitSettings:
    per_account: int = 5  # failures of one account name per window; 0: no limit
    per_address: int = 50  # failures from one address (IPv6: /64) per window; 0: no limit
    window: int = 900  # seconds

    @classmethod
    def from_auth(cls, auth: Any) -> LimitSettings:
        return cls(auth.login_attempts_per_account, auth.login_attempts_per_address,
                   auth.login_window)


@dataclass(frozen=True)
class Refusal:
    """Why a login is refused for now, and for how long."""

    scope: str  # "account" or "address"
    retry_after: int  # seconds

    @property
    def message(self) -> str:
        who = "this account" if self.scope == "account" else "your network address"
        return (f"Too many failed logins for {who}. For your safety logins are paused: "
                f"try again in {_wait_text(self.retry_after)}.")


class LoginLimits:
    """Reads and counts failed logins (the counters: :mod:`ipydoc.state.login_limits`);
    ``store_source.store`` is the store once Redis is up."""

    def __init__(self, store_source: StoreSource, settings: LimitSettings) -> None:
        self._source = store_source
        self.settings = settings

    def _scopes(self, name: str | None) -> tuple[str | None, list[tuple[str, int]]]:
        """The account counted (None: not counted) and the (scope, limit) of each counter,
        in the store's order: account, then address."""
        s = self.settings
        account = name if name and s.per_account > 0 else None
        scopes = [("account", s.per_account)] if account else []
        if s.per_address > 0:
            scopes.append(("address", s.per_address))
        return account, scopes

    async def _verdict(self, count: bool, name: str | None, group: str) -> Refusal | None:
        account, scopes = self._scopes(name)
        if not scopes:
            return None
        store, window = self._source.store, self.settings.window
        group_or_none = group if self.settings.per_address > 0 else None
        if count:
            counts = await store.count_login_failure(account, group_or_none, window)
        else:
            counts = await store.login_failures(account, group_or_none, window)
        for (scope, limit), (n, ttl) in zip(scopes, counts):
            if n >= limit:
                return Refusal(scope, max(1, ttl if ttl > 0 else window))
        return None

    async def check(self, name: str | None, group: str) -> Refusal | None:
        """A refusal if the account or the address has used up its failures."""
        return await self._verdict(False, name, group)

    async def failed(self, name: str | None, group: str) -> Refusal | None:
        """Count one failure; a refusal if that used up the account's or address's."""
        return await self._verdict(True, name, group)

    async def succeeded(self, name: str) -> None:
        await self._source.store.clear_login_failures(name)
