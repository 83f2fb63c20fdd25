"""``[auth]``: sessions, login limits, the password form, and the login providers' tables
``[auth.github]`` and ``[auth.oidc.<id>]``.  :mod:`ipydoc.config.types` parses the provider
tables with the same strictness as every other table (unknown key → error naming it);
:func:`validate` checks what types cannot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ipydoc.config.errors import ConfigError
from ipydoc.names import InvalidName, validate_name

PROVIDER_ID = re.compile(r"[a-z][a-z0-9-]{0,30}")
DEFAULT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "ES512", "EdDSA"]


@dataclass
class GithubAuth:
    client_id: str = ""
    client_secret: str = ""
    client_secret_file: str = ""
    url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    orgs: list[str] = field(default_factory=list)
    teams: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    admin_users: list[str] = field(default_factory=list)
    admin_teams: list[str] = field(default_factory=list)
    # GitHub team ("org/team-slug") -> ipydoc group, synced at each login (issue 19)
    group_teams: dict[str, str] = field(default_factory=dict)
    display_name: str = "GitHub"


@dataclass
class OidcAuth:
    issuer: str = ""
    client_id: str = ""
    client_secret: str = ""
    client_secret_file: str = ""
    scopes: list[str] = field(default_factory=lambda: ["openid", "email", "profile"])
    username_claim: str = "preferred_username"
    allow: dict[str, list[str]] = field(default_factory=dict)
    allow_all: bool = False
    require_email_verified: bool = True
    admin_claim: str = ""
    admin_values: list[str] = field(default_factory=list)
    # ipydoc groups from a claim, synced at each login (issue 19): "" = none
    groups_claim: str = ""
    groups_prefix: str = ""    # only values starting with it, the prefix removed
    groups_map: dict[str, str] = field(default_factory=dict)  # value -> group; set: only these
    algorithms: list[str] = field(default_factory=lambda: list(DEFAULT_ALGORITHMS))
    leeway: float = 30.0
    jwks_refetch_interval: float = 30.0
    display_name: str = ""


@dataclass
class AuthSection:
    session_lifetime: int = 14 * 24 * 3600
    stop_on_logout: bool = True
    start_on_login: bool = True
    login_attempts_per_account: int = 5
    login_attempts_per_address: int = 50
    login_window: int = 900
    # Provider logins (/hub/oauth/<id>/start) in progress at once, site-wide, and started
    # per client address in ten minutes (0: no per-address limit); ipydoc.auth.login_state.
    oauth_pending_max: int = 10_000
    oauth_starts_per_address: int = 100
    local: bool = True
    github: GithubAuth | None = None
    oidc: dict[str, OidcAuth] = field(default_factory=dict)


def _url(key: str, value: str) -> None:
    """https, or http on loopback only (a test provider): tokens never cross a network
    in clear."""
    u = urlsplit(value)
    loopback = (u.hostname or "") in ("localhost", "127.0.0.1", "::1")
    if not u.netloc or not (u.scheme == "https" or (u.scheme == "http" and loopback)):
        raise ConfigError(f"{key} must be an https:// URL (http:// only on localhost), "
                     f"not {value!r}")


def read_secret(key: str, secret: str, secret_file: str) -> str:
    """The client secret from the table or its file (one of them, not both)."""
    if secret and secret_file:
        raise ConfigError(f"{key}.client_secret and client_secret_file: set only one")
    if secret_file:
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"{key}.client_secret_file: cannot read {secret_file}: "
                         f"{e.strerror}") from None
    if not secret:
        raise ConfigError(f"{key}.client_secret (or client_secret_file) must be set")
    return secret


def _team(key: str, value: str) -> None:
    org, _, slug = value.partition("/")
    if not org or not slug or "/" in slug:
        raise ConfigError(f"{key} entries are \"org/team-slug\", not {value!r}")


def _group(key: str, group: str) -> None:
    try:
        validate_name(group)
    except InvalidName as e:
        raise ConfigError(f"{key}: the group name {group!r} is not valid: {e}") from None


def validate(auth: AuthSection) -> None:
    """ConfigError naming the first key of ``[auth]`` (or a provider table) that cannot
    be used."""
    if auth.session_lifetime <= 0:
        raise ConfigError("auth.session_lifetime must be positive (seconds)")
    for key in ("login_attempts_per_account", "login_attempts_per_address"):
        if getattr(auth, key) < 0:
            raise ConfigError(f"auth.{key} must be 0 (no limit) or positive")
    if auth.login_window <= 0:
        raise ConfigError("auth.login_window must be positive (seconds)")
    if auth.oauth_pending_max <= 0:
        raise ConfigError("auth.oauth_pending_max must be positive (logins in progress)")
    if auth.oauth_starts_per_address < 0:
        raise ConfigError("auth.oauth_starts_per_address must be 0 (no limit) or positive")
    _validate_providers(auth)
    if not auth.local and auth.github is None and not auth.oidc:
        raise ConfigError("auth.local = false needs a login provider ([auth.github] or "
                          "[auth.oidc.NAME])")


def _validate_providers(auth: AuthSection) -> None:
    if auth.github is not None:
        g, k = auth.github, "auth.github"
        if not g.client_id:
            raise ConfigError(f"{k}.client_id must be set")
        read_secret(k, g.client_secret, g.client_secret_file)
        _url(f"{k}.url", g.url)
        _url(f"{k}.api_url", g.api_url)
        if not (g.orgs or g.teams or g.users):
            raise ConfigError(f"{k}: set orgs, teams or users: who may log in")
        for t in g.teams:
            _team(f"{k}.teams", t)
        for t in g.admin_teams:
            _team(f"{k}.admin_teams", t)
        for t, group in g.group_teams.items():
            _team(f"{k}.group_teams", t)
            _group(f"{k}.group_teams.{t}", group)
    for pid, o in auth.oidc.items():
        k = f"auth.oidc.{pid}"
        if not PROVIDER_ID.fullmatch(pid) or pid == "github":
            raise ConfigError(f"[{k}]: a provider id is lower-case letters, digits and hyphens "
                         "(and not 'github')")
        for key in ("issuer", "client_id", "username_claim"):
            if not getattr(o, key):
                raise ConfigError(f"{k}.{key} must be set")
        _url(f"{k}.issuer", o.issuer)
        read_secret(k, o.client_secret, o.client_secret_file)
        if "openid" not in o.scopes:
            raise ConfigError(f"{k}.scopes must contain \"openid\"")
        if not o.allow and not o.allow_all:
            raise ConfigError(f"{k}: set allow (e.g. allow.groups = [\"lab\"]) or, to let in "
                         "everyone with an account at the provider, allow_all = true")
        if (o.groups_prefix or o.groups_map) and not o.groups_claim:
            raise ConfigError(f"{k}.groups_claim must be set when groups_prefix or groups_map is")
        for value, group in o.groups_map.items():
            _group(f"{k}.groups_map.{value}", group)
        if o.admin_values and not o.admin_claim:
            raise ConfigError(f"{k}.admin_claim must be set when admin_values is")
        if not o.algorithms or any(a.lower() == "none" or a.startswith("HS")
                                   for a in o.algorithms):
            raise ConfigError(f"{k}.algorithms must list asymmetric JWS algorithms "
                         "(never none or HS*)")
        if o.leeway < 0 or o.jwks_refetch_interval < 0:
            raise ConfigError(f"{k}.leeway and jwks_refetch_interval must be 0 or more (seconds)")
