"""``[server]``: where the daemon listens (plain, TLS, systemd sockets), its public URL,
path or subdomain routing, the client limits and the proxies whose forwarded headers are
believed.  Only the forms are checked here; the daemon reads the certificate files itself
(:mod:`ipydoc.edge.certificates`), as it may be able to read them where the CLI, reading
this same file, cannot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ipydoc.config.endpoints import check_endpoint
from ipydoc.config.errors import ConfigError
from ipydoc.config.types import ONE_OR_MANY
from ipydoc.edge.forwarding import UNIX, parse_network
from ipydoc.edge.listen_spec import parse_listen
from ipydoc.edge.routing import DomainError, check_domain


@dataclass
class ServerSection:
    listen: list[str] = field(default_factory=lambda: ["tcp:8000:interface=127.0.0.1"],
                              metadata=ONE_OR_MANY)
    state_dir: str = "/var/lib/ipydoc"
    public_url: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_certs: list[list[str]] = field(default_factory=list)
    redirect_listen: list[str] = field(default_factory=list, metadata=ONE_OR_MANY)
    hsts: int = 0
    hsts_include_subdomains: bool = False
    routing: str = "path"
    domain: str = ""
    # Client limits (ipydoc.edge.limits): seconds, bytes, header lines.
    client_header_timeout: float = 30.0
    client_body_timeout: float = 60.0
    client_idle_timeout: float = 120.0
    client_send_timeout: float = 120.0
    max_header_size: int = 16384
    max_headers: int = 100
    # "daemon" (a line per request in the daemon's log), "off", or a file path.
    access_log: str = "daemon"
    # Peers whose X-Forwarded-For/-Proto are believed (addresses, CIDRs, "unix").
    trusted_proxies: list[str] = field(default_factory=list)
    # Seconds a stopping daemon lets requests in flight finish (ipydoc.edge.drain); 0: none.
    drain_timeout: float = 10.0


def validate(s: ServerSection) -> None:
    """ConfigError naming the first key of ``[server]`` that cannot be used."""
    if not s.listen:
        raise ConfigError("server.listen must name at least one endpoint")
    for spec in s.listen:
        if not spec.startswith(("ssl:", "tls:")):  # TLS entries: _validate_tls
            check_endpoint("server.listen", spec)
    _validate_tls(s)
    _validate_limits(s)
    if s.access_log not in ("daemon", "off") and not os.path.isabs(s.access_log):
        raise ConfigError("server.access_log must be \"daemon\", \"off\" or an absolute file "
                          f"path, not {s.access_log!r}")
    if s.public_url:
        u = urlsplit(s.public_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ConfigError("server.public_url must look like https://host[:port]")
    _validate_trusted_proxies(s)
    _validate_routing(s)


def _validate_tls(s: ServerSection) -> None:
    tls_listeners = 0
    for spec in s.listen:
        try:
            tls = parse_listen(spec)
        except ValueError as e:
            raise ConfigError(f"server.listen: {e}") from None
        if tls is None:
            continue
        tls_listeners += 1
        check_endpoint(f"server.listen (TLS entry {spec!r})", tls.endpoint)
        if not tls.cert and not s.tls_cert:
            raise ConfigError(f"server.tls_cert (and tls_key) must be set for the TLS listener "
                              f"{spec!r}, or the entry must name its own with privateKey=")
    if s.tls_key and not s.tls_cert:
        raise ConfigError("server.tls_key is set but server.tls_cert is not")
    for i, pair in enumerate(s.tls_certs):
        if len(pair) not in (1, 2) or not all(pair):
            raise ConfigError(f"server.tls_certs[{i}] must be [\"CERT.pem\", \"KEY.pem\"] "
                              "(or [\"BOTH.pem\"])")
    for key in ("tls_cert", "tls_certs"):
        if getattr(s, key) and not tls_listeners:
            raise ConfigError(f"server.{key} is set but no server.listen entry is ssl: or "
                              "tls: (e.g. \"ssl:443\"), so it would not be used")
    for spec in s.redirect_listen:
        if spec.startswith(("ssl:", "tls:")):
            raise ConfigError(f"server.redirect_listen: {spec!r}: the redirect listeners are "
                              "plain HTTP (e.g. tcp:80)")
        check_endpoint("server.redirect_listen", spec)
    https_public = urlsplit(s.public_url).scheme == "https"
    if s.redirect_listen and not (tls_listeners or https_public):
        raise ConfigError("server.redirect_listen needs a TLS listener (an ssl: entry in "
                          "server.listen) or an https server.public_url to redirect to")
    if s.hsts < 0:
        raise ConfigError("server.hsts must be 0 (off) or a max-age in seconds")
    if s.hsts and not tls_listeners:
        raise ConfigError("server.hsts needs a TLS listener (an ssl: entry in server.listen); "
                          "behind a TLS-terminating proxy, set HSTS there")


def _validate_limits(s: ServerSection) -> None:
    """Client limits (ipydoc.edge.limits)."""
    for key in ("client_header_timeout", "client_body_timeout", "client_idle_timeout",
                "client_send_timeout"):
        if getattr(s, key) <= 0:
            raise ConfigError(f"server.{key} must be positive (seconds)")
    if not 0 <= s.drain_timeout <= 3600:
        raise ConfigError("server.drain_timeout must be between 0 (no drain: close every "
                          "connection at once) and 3600 seconds")
    if s.max_header_size < 1024:
        raise ConfigError("server.max_header_size must be at least 1024 (bytes)")
    if s.max_headers < 8:
        raise ConfigError("server.max_headers must be at least 8")


def _validate_trusted_proxies(s: ServerSection) -> None:
    for entry in s.trusted_proxies:
        if entry.strip().lower() == UNIX:
            continue
        try:
            parse_network(entry)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies: {entry!r} is not an IP address, a "
                              "CIDR block (e.g. \"10.0.0.0/8\") or \"unix\"") from None


def _validate_routing(s: ServerSection) -> None:
    if s.routing not in ("path", "subdomain"):
        raise ConfigError(f"server.routing must be 'path' or 'subdomain', not {s.routing!r}")
    if s.routing == "path":
        return
    if not s.domain:
        raise ConfigError("server.domain must be set when server.routing = 'subdomain' "
                          "(e.g. \"notebooks.example.org\")")
    try:
        check_domain(s.domain)
    except DomainError as e:
        raise ConfigError(f"server.domain: {e}") from None
    if s.public_url and (urlsplit(s.public_url).hostname or "") != s.domain.lower():
        raise ConfigError("server.public_url must be on server.domain in subdomain mode "
                          f"(https://{s.domain.lower()}[:port])")
