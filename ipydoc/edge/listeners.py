"""What the public side listens with, assembled from ``[server]`` (used by ipydoc/tap.py).

Plain entries serve the site as is; TLS entries (:mod:`ipydoc.edge.listen_spec`) serve it
behind TLS with certificates from :mod:`ipydoc.edge.certificates`, and the site's
requests get HSTS (:mod:`ipydoc.edge.hsts`) when configured; ``redirect_listen``
entries serve the redirect to https (:mod:`ipydoc.edge.https_redirect`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.application.service import Service

from ipydoc.edge.certificates import CertFiles, CertReloader, CertStore, wrap
from ipydoc.edge.hsts import hsts_value, with_hsts
from ipydoc.edge.https_redirect import redirect_site
from ipydoc.edge.listen_spec import https_port, parse_listen


def edge_listeners(server_cfg: Any, site: Any, reactor: Any
                   ) -> tuple[list[tuple[str, str, Any]], Service | None]:
    """What the public side listens with, from ``[server]``.

    Returns ``(description, plain endpoint string, factory)`` for every ``listen`` entry
    (TLS ones wrapped) and ``redirect_listen`` entry, and the SIGHUP reloader (None without
    TLS).  Sets HSTS on ``site``'s requests when ``hsts`` is on.  Raises CertificateError
    when a certificate or key cannot be used.
    """
    s = server_cfg
    parsed = [(spec, parse_listen(spec)) for spec in s.listen]
    default = CertFiles(s.tls_cert, s.tls_key, "server.tls_cert") if s.tls_cert else None
    own = {spec: CertFiles(t.cert, t.key, f"server.listen {spec!r}")
           for spec, t in parsed if t is not None and t.cert}
    extra = [CertFiles(pair[0], pair[1] if len(pair) > 1 else "", f"server.tls_certs[{i}]")
             for i, pair in enumerate(s.tls_certs)]
    any_tls = any(t is not None for _, t in parsed)
    store = CertStore([*([default] if default else []), *own.values(), *extra]) \
        if any_tls else None

    out: list[tuple[str, str, Any]] = []
    for spec, tls in parsed:
        if tls is None or store is None:
            out.append((spec, spec, site))
            continue
        files = own.get(spec) or default
        assert files is not None  # config: a TLS entry without its own needs tls_cert
        out.append((f"{spec} (TLS)", tls.endpoint, wrap(site, store, files)))
    if store is not None and s.hsts:
        value = hsts_value(s.hsts, s.hsts_include_subdomains)
        if hasattr(site, "use_hsts"):  # the ProxySite: both front ends
            site.use_hsts(value)
        else:
            site.requestFactory = with_hsts(site.requestFactory, value)
    if s.redirect_listen:
        port = https_port(s.public_url, s.listen)
        fallback = urlsplit(s.public_url).hostname or getattr(s, "domain", "") or ""
        redirect = redirect_site(port, fallback, reactor)
        out += [(f"{spec} (redirect to https, port {port})", spec, redirect)
                for spec in s.redirect_listen]
    return out, (CertReloader(store, reactor) if store is not None else None)
