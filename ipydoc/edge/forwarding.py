"""Who the client is, and whether it used https, when a proxy stands in front of us.

Behind a TLS-terminating reverse proxy (nginx, a load balancer) every connection comes
from the proxy over plain HTTP: without help the daemon would set cookies without
``Secure``, count every failed login against the proxy's one address (one guesser then
pauses logins for everyone) and log the proxy as the client.

* ``server.public_url`` says how browsers reach the site.  When it is ``https://`` every
  request counts as secure (:meth:`ipydoc.edge.site.SiteRequest.isSecure`): every cookie
  is ``Secure`` and named ``__Host-...`` (:mod:`ipydoc.access.cookies`), whatever the last hop.
* ``server.trusted_proxies`` (addresses or CIDR blocks; ``"unix"`` for a unix-socket
  listener) names the peers whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are
  believed.  The client is the **rightmost address in X-Forwarded-For that is not a
  trusted proxy**: everything left of it was written by the client itself and proves
  nothing.  From any other peer these headers are ignored, and the proxy never passes a
  client's own ``X-Forwarded-*`` on to a user's server (:mod:`ipydoc.proxy.headers`).

The believed address replaces the request's client address as soon as its headers are in
(``SiteRequest.gotLength``), so the login limits (:mod:`ipydoc.access.login_limits`), the access
log and the ``X-Forwarded-For`` sent to a user's server all use it without knowing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.web.iweb import IRequest

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: The ``trusted_proxies`` entry for peers on a unix-socket listener (nginx on this host).
UNIX = "unix"


def parse_network(text: str) -> Network:
    """``"10.0.0.1"``, ``"10.0.0.0/8"`` or ``"fd00::/8"`` as a network; ValueError if not."""
    return ipaddress.ip_network(text.strip(), strict=False)


def parse_forwarded_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """One X-Forwarded-For element as an address (``[v6]``, ``[v6]:port`` and ``v4:port``
    as some proxies write them), or None if it is not one (``unknown``, a name, junk)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # v4:port (a bare v6 has at least two colons)
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class Forwarding:
    """The rules for one site: which peers are proxies, and whether the site is https."""

    trusted: tuple[Network, ...] = ()
    trust_unix: bool = False
    public_https: bool = False

    @classmethod
    def from_settings(cls, trusted_proxies: Sequence[str], public_url: str = "") -> Forwarding:
        """From ``server.trusted_proxies`` and ``server.public_url`` (already validated)."""
        entries = [t.strip() for t in trusted_proxies]
        return cls(tuple(parse_network(t) for t in entries if t.lower() != UNIX),
                   any(t.lower() == UNIX for t in entries),
                   urlsplit(public_url).scheme == "https")

    @cached_property
    def applies(self) -> bool:
        """Whether :meth:`apply` can change anything (else a request need not be shown)."""
        return bool(self.trusted) or self.trust_unix or self.public_https

    def trusts(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(ip.version == net.version and ip in net for net in self.trusted)

    def _trusts_peer(self, peer: Any) -> bool:
        if isinstance(peer, UNIXAddress):
            return self.trust_unix
        ip = parse_forwarded_address(str(getattr(peer, "host", "")))
        return ip is not None and self.trusts(ip)

    def client(self, forwarded_for: Iterable[bytes]) -> str | None:
        """The rightmost untrusted address of the X-Forwarded-For chain sent by a trusted
        peer; if every listed address is a trusted proxy, the leftmost of them.  None
        when the header is empty or the element to believe is not an address (then the
        peer itself is the best we know)."""
        chain = [e for v in forwarded_for for e in v.decode("latin-1").split(",") if e.strip()]
        found = None
        for element in reversed(chain):
            ip = parse_forwarded_address(element)
            if ip is None:
                return found
            found = str(ip)
            if not self.trusts(ip):
                break
        return found

    def apply(self, request: IRequest) -> None:
        """Put the believed client address and scheme on ``request`` (headers are in)."""
        secure = self.public_https
        peer = request.getClientAddress()
        if (self.trusted or self.trust_unix) and self._trusts_peer(peer):
            headers = request.requestHeaders
            real = self.client(headers.getRawHeaders(b"x-forwarded-for") or ())
            if real is not None:
                kind = IPv6Address if ":" in real else IPv4Address
                request.client = kind("TCP", real, 0)
            proto = b",".join(headers.getRawHeaders(b"x-forwarded-proto") or ())
            if proto.rpartition(b",")[2].strip().lower() == b"https":
                secure = True
        if secure:
            request.forwarded_https = True
