"""The login providers configured in ``[auth]``, built once at daemon start.

The one place that knows every kind of provider: a new kind is a module beside
:mod:`ipydoc.auth.github` and :mod:`ipydoc.auth.oidc` and two lines here.
"""

from __future__ import annotations

from typing import Any

from ipydoc.auth.base import HTTP, Provider
from ipydoc.auth.github import GithubProvider
from ipydoc.auth.oidc import OidcProvider
from ipydoc.config.auth import AuthSection, read_secret


def build(auth: AuthSection, reactor: Any) -> dict[str, Provider]:
    """The configured providers by id, in the order the login page shows them."""
    http = HTTP(reactor)
    providers: dict[str, Provider] = {}
    if auth.github is not None:
        g = auth.github
        providers["github"] = GithubProvider(
            g, read_secret("auth.github", g.client_secret, g.client_secret_file), http)
    for pid, o in auth.oidc.items():
        providers[pid] = OidcProvider(
            pid, o, read_secret(f"auth.oidc.{pid}", o.client_secret, o.client_secret_file),
            http, reactor.seconds)
    return providers
