"""Configuration: one TOML file, every key known, typed and defaulted.

A mistake in the file stops the daemon before it does anything, with a message that names
the key (``spawn.start_timeout must be a number``), because a typo silently ignored is a
setting silently not applied.  The example ``etc/ipydoc.toml`` documents every key; keep
the two in step.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from ipydoc.config.auth import GithubAuth, OidcAuth

DEFAULT_CONFIG_PATHS = ("/etc/ipydoc/ipydoc.toml", "etc/ipydoc.toml")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and key."""


@dataclass
class ServerSection:
    listen: list[str] = field(default_factory=lambda: ["tcp:8000:interface=127.0.0.1"])
    state_dir: str = "/var/lib/ipydoc"
    public_url: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_certs: list[list[str]] = field(default_factory=list)
    redirect_listen: list[str] = field(default_factory=list)
    hsts: int = 0
    hsts_include_subdomains: bool = False
    routing: str = "path"
    domain: str = ""
    # Client limits (ipydoc.edge.request_rules): seconds, bytes, header lines.
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


@dataclass
class ProxySection:
    backend_connect_timeout: float = 10.0
    backend_response_timeout: float = 300.0


@dataclass
class RedisSection:
    url: str = ""
    command: str = "redis-server"


@dataclass
class ControlSection:
    socket: str = ""
    listen_tls: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""


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


@dataclass
class SpawnSection:
    backend: str = "docker"
    image: str = "quay.io/jupyter/base-notebook:latest"
    start_timeout: float = 120.0
    mem_limit: str = "2G"
    cpu_limit: float = 1.0
    pids_limit: int = 1024
    images: list[str] = field(default_factory=list)
    concurrency: int = 4
    max_running: int = 0


@dataclass
class CullSection:
    idle_timeout: float = 0.0
    max_age: float = 0.0
    interval: float = 60.0
    ignore_kernel_activity: bool = False
    exempt_admins: bool = False


@dataclass
class DockerSection:
    host: str = ""
    instance: str = "ipydoc"
    storage: str = "volume"
    volume_prefix: str = "ipydoc-home-"
    bind_root: str = ""
    notebook_dir: str = "/home/jovyan"
    cmd: list[str] = field(default_factory=lambda: ["jupyter", "lab"])
    stop_timeout: int = 10
    # Isolation (ipydoc.backends.docker_network): the users' bridge network, where servers
    # cannot reach each other nor the host (but for host_access ports); "{instance}" is
    # replaced by docker.instance; "" = Docker's default bridge, NOT isolated.
    network: str = "{instance}-users"
    egress: str = "allow"
    host_access: list[int] = field(default_factory=list)

    @property
    def network_name(self) -> str:
        return self.network.replace("{instance}", self.instance)


@dataclass
class HistorySection:
    enabled: bool = True
    coalesce_seconds: float = 5.0
    max_file_size: str = "10M"
    max_output_size: str = "1M"
    git: str = "git"
    remote: str = ""
    remote_token: str = ""
    create_repo: bool = False
    api_url: str = "https://api.github.com"
    api_org: str = ""
    push_backoff_max: float = 300.0
    max_queue: int = 1000
    fetch_timeout: float = 60.0
    max_attempts: int = 10


@dataclass
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    redis: RedisSection = field(default_factory=RedisSection)
    control: ControlSection = field(default_factory=ControlSection)
    auth: AuthSection = field(default_factory=AuthSection)
    spawn: SpawnSection = field(default_factory=SpawnSection)
    docker: DockerSection = field(default_factory=DockerSection)
    cull: CullSection = field(default_factory=CullSection)
    history: HistorySection = field(default_factory=HistorySection)
    proxy: ProxySection = field(default_factory=ProxySection)
    path: str = ""

    @property
    def state_path(self) -> Path:
        return Path(self.server.state_dir)

    @property
    def control_socket(self) -> Path:
        return Path(self.control.socket) if self.control.socket else self.state_path / "control.sock"

    @property
    def mem_limit_bytes(self) -> int | None:
        return parse_size(self.spawn.mem_limit) if self.spawn.mem_limit else None


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"2G"`` → bytes.  Units are binary (as Docker reads them)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512M or 2G)")
    scale = 1024 ** " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * scale)


def _check_type(key: str, value: Any, hint: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{key} must be {expected}, not {type(value).__name__} {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise bad("a string")
    elif hint in (GithubAuth | None, OidcAuth):
        if not isinstance(value, dict):
            raise bad("a table")
        table = (OidcAuth if hint is OidcAuth else GithubAuth)()
        _fill(table, key, value)
        value = table
    elif hint == dict[str, OidcAuth]:
        if not isinstance(value, dict):
            raise bad("a table of tables")
        value = {k: _check_type(f"{key}.{k}", v, OidcAuth) for k, v in value.items()}
    elif hint == dict[str, list[str]]:
        if not isinstance(value, dict):
            raise bad("a table of lists of strings")
        value = {k: _check_type(f"{key}.{k}", v, list[str]) for k, v in value.items()}
    elif hint == list[int]:
        if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise bad("a list of whole numbers")
    elif hint == list[str]:
        if isinstance(value, str) and key in ("server.listen", "server.redirect_listen"):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
    elif hint == list[list[str]]:
        if not isinstance(value, list) or not all(
                isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value):
            raise bad("a list of lists of strings")
    return value


def _validate(cfg: Config) -> None:
    from twisted.internet import endpoints, reactor

    if not cfg.server.listen:
        raise ConfigError("server.listen must name at least one endpoint")
    for spec in cfg.server.listen:
        if not spec.startswith(("ssl:", "tls:")):  # TLS entries: _validate_tls
            _check_endpoint("server.listen", spec, endpoints, reactor)
    _validate_tls(cfg.server, endpoints, reactor)
    _validate_limits(cfg)
    if cfg.server.access_log not in ("daemon", "off") and not os.path.isabs(cfg.server.access_log):
        raise ConfigError("server.access_log must be \"daemon\", \"off\" or an absolute file "
                          f"path, not {cfg.server.access_log!r}")
    c = cfg.control
    if c.listen_tls:
        if c.listen_tls.split(":", 1)[0] in ("ssl", "tls"):
            raise ConfigError("control.listen_tls is a plain stream endpoint such as "
                              "'tcp:9443'; ipydoc adds TLS from control.tls_cert and tls_key")
        _check_endpoint("control.listen_tls", c.listen_tls, endpoints, reactor)
        for key in ("tls_cert", "tls_key", "tls_client_ca"):
            if not getattr(c, key):
                raise ConfigError(f"control.{key} must be set when control.listen_tls is set")
    if cfg.server.public_url:
        u = urlsplit(cfg.server.public_url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ConfigError("server.public_url must look like https://host[:port]")
    _validate_trusted_proxies(cfg.server)
    _validate_routing(cfg.server)
    if cfg.redis.url and urlsplit(cfg.redis.url).scheme not in ("redis", "unix"):
        raise ConfigError("redis.url must be redis://HOST:PORT/DB or unix:///PATH?db=N (or empty)")
    if cfg.spawn.backend not in ("docker",):
        raise ConfigError(f"spawn.backend must be 'docker', not {cfg.spawn.backend!r}")
    if not cfg.spawn.image:
        raise ConfigError("spawn.image must name an image")
    if cfg.spawn.start_timeout <= 0:
        raise ConfigError("spawn.start_timeout must be positive")
    if cfg.spawn.concurrency < 1:
        raise ConfigError("spawn.concurrency must be at least 1")
    if cfg.spawn.max_running < 0:
        raise ConfigError("spawn.max_running must be 0 (no cap) or positive")
    if any(not i for i in cfg.spawn.images):
        raise ConfigError("spawn.images must not contain empty names")
    for key in ("idle_timeout", "max_age"):
        if getattr(cfg.cull, key) < 0:
            raise ConfigError(f"cull.{key} must be 0 (off) or positive (seconds)")
    if cfg.cull.interval <= 0:
        raise ConfigError("cull.interval must be positive (seconds)")
    if cfg.spawn.cpu_limit < 0:
        raise ConfigError("spawn.cpu_limit must be 0 (no limit) or positive")
    if cfg.spawn.mem_limit:
        try:
            parse_size(cfg.spawn.mem_limit)
        except ValueError as e:
            raise ConfigError(f"spawn.mem_limit: {e}") from None
    if cfg.auth.session_lifetime <= 0:
        raise ConfigError("auth.session_lifetime must be positive (seconds)")
    for key in ("login_attempts_per_account", "login_attempts_per_address"):
        if getattr(cfg.auth, key) < 0:
            raise ConfigError(f"auth.{key} must be 0 (no limit) or positive")
    if cfg.auth.login_window <= 0:
        raise ConfigError("auth.login_window must be positive (seconds)")
    if cfg.auth.oauth_pending_max <= 0:
        raise ConfigError("auth.oauth_pending_max must be positive (logins in progress)")
    if cfg.auth.oauth_starts_per_address < 0:
        raise ConfigError("auth.oauth_starts_per_address must be 0 (no limit) or positive")
    if cfg.docker.storage not in ("volume", "bind"):
        raise ConfigError("docker.storage must be 'volume' or 'bind'")
    if cfg.docker.storage == "bind" and not cfg.docker.bind_root:
        raise ConfigError("docker.bind_root must be set when docker.storage = 'bind'")
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", cfg.docker.instance):
        raise ConfigError("docker.instance must be lower-case letters, digits and hyphens")
    if not cfg.docker.cmd:
        raise ConfigError("docker.cmd must not be empty")
    if not cfg.docker.notebook_dir.startswith("/"):
        raise ConfigError("docker.notebook_dir must be an absolute path")
    _validate_isolation(cfg.docker)
    _validate_history(cfg.history)
    _validate_login_providers(cfg.auth)


def _validate_isolation(d: DockerSection) -> None:
    name = d.network_name
    if name in ("bridge", "host", "none", "default"):
        raise ConfigError(f"docker.network = {name!r} is one of Docker's own networks, where "
                          "users' servers reach each other or the host; name a network for "
                          "ipydoc to create (default \"{instance}-users\"), or \"\" for the "
                          "legacy layout (not isolated)")
    if name and not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}", name):
        raise ConfigError(f"docker.network must be a Docker network name (letters, digits, "
                          f"'_', '.', '-'; \"{{instance}}\" allowed), not {d.network!r}")
    if d.egress not in ("allow", "deny"):
        raise ConfigError(f"docker.egress must be 'allow' or 'deny', not {d.egress!r}")
    for port in d.host_access:
        if not 1 <= port <= 65535:
            raise ConfigError(f"docker.host_access: {port} is not a TCP port (1-65535)")
    if not name and (d.egress != "allow" or d.host_access):
        raise ConfigError("docker.egress and docker.host_access need docker.network: on "
                          "Docker's default bridge (docker.network = \"\") nothing is isolated")


def _validate_login_providers(auth: AuthSection) -> None:
    from ipydoc.config import auth as settings
    settings.validate(auth)
    if not auth.local and auth.github is None and not auth.oidc:
        raise ConfigError("auth.local = false needs a login provider ([auth.github] or "
                          "[auth.oidc.NAME])")


def _validate_trusted_proxies(s: ServerSection) -> None:
    from ipydoc.edge.forwarding import UNIX, parse_network

    for entry in s.trusted_proxies:
        if entry.strip().lower() == UNIX:
            continue
        try:
            parse_network(entry)
        except ValueError:
            raise ConfigError(f"server.trusted_proxies: {entry!r} is not an IP address, a "
                              "CIDR block (e.g. \"10.0.0.0/8\") or \"unix\"") from None


def _validate_routing(s: ServerSection) -> None:
    from ipydoc.edge.routing import DomainError, check_domain

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


def _validate_tls(s: ServerSection, endpoints: Any, reactor: Any) -> None:
    """The forms only: the certificate files are read by the daemon (ipydoc/edge/tls.py),
    which may be able to read them where the CLI, reading this same file, cannot."""
    from ipydoc.edge.tls import parse_listen

    tls_listeners = 0
    for spec in s.listen:
        try:
            tls = parse_listen(spec)
        except ValueError as e:
            raise ConfigError(f"server.listen: {e}") from None
        if tls is None:
            continue
        tls_listeners += 1
        _check_endpoint(f"server.listen (TLS entry {spec!r})", tls.endpoint, endpoints, reactor)
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
        _check_endpoint("server.redirect_listen", spec, endpoints, reactor)
    https_public = urlsplit(s.public_url).scheme == "https"
    if s.redirect_listen and not (tls_listeners or https_public):
        raise ConfigError("server.redirect_listen needs a TLS listener (an ssl: entry in "
                          "server.listen) or an https server.public_url to redirect to")
    if s.hsts < 0:
        raise ConfigError("server.hsts must be 0 (off) or a max-age in seconds")
    if s.hsts and not tls_listeners:
        raise ConfigError("server.hsts needs a TLS listener (an ssl: entry in server.listen); "
                          "behind a TLS-terminating proxy, set HSTS there")


def _validate_limits(cfg: Config) -> None:
    """Client and backend limits (ipydoc.edge.request_rules, the proxy's timeouts)."""
    for section, key in (("server", "client_header_timeout"), ("server", "client_body_timeout"),
                         ("server", "client_idle_timeout"), ("server", "client_send_timeout"),
                         ("proxy", "backend_connect_timeout"),
                         ("proxy", "backend_response_timeout")):
        if getattr(getattr(cfg, section), key) <= 0:
            raise ConfigError(f"{section}.{key} must be positive (seconds)")
    if cfg.server.max_header_size < 1024:
        raise ConfigError("server.max_header_size must be at least 1024 (bytes)")
    if cfg.server.max_headers < 8:
        raise ConfigError("server.max_headers must be at least 8")


def _validate_history(h: HistorySection) -> None:
    for key in ("max_file_size", "max_output_size"):
        try:
            parse_size(getattr(h, key))
        except ValueError as e:
            raise ConfigError(f"history.{key}: {e}") from None
    if h.coalesce_seconds < 0:
        raise ConfigError("history.coalesce_seconds must be 0 or more")
    if h.push_backoff_max < 1:
        raise ConfigError("history.push_backoff_max must be at least 1 (seconds)")
    if h.max_queue < 1:
        raise ConfigError("history.max_queue must be at least 1 (entries per user)")
    if h.fetch_timeout <= 0:
        raise ConfigError("history.fetch_timeout must be positive (seconds)")
    if h.max_attempts < 1:
        raise ConfigError("history.max_attempts must be at least 1")
    if h.remote and "{name}" not in h.remote:
        raise ConfigError("history.remote must contain {name}, e.g. "
                          "https://github.com/ORG/{name}.git")
    if h.create_repo and not (h.remote and h.api_org and h.remote_token):
        raise ConfigError("history.create_repo needs history.remote, api_org and remote_token")


def _check_endpoint(key: str, spec: str, endpoints: Any, reactor: Any) -> None:
    if spec.startswith("systemd:"):
        # The descriptor exists only in the process systemd started; the CLI reads this
        # same file, so check the form here and leave the descriptor to the daemon.
        opts = dict(part.split("=", 1) for part in spec.split(":")[1:] if "=" in part)
        if opts.get("domain") not in ("INET", "INET6", "UNIX") or \
                ("index" in opts) == ("name" in opts) or \
                ("index" in opts and not opts["index"].isdigit()):
            raise ConfigError(f"{key}: bad endpoint string {spec!r}: use "
                              "systemd:domain=INET:index=N (or :name=NAME)")
        return
    try:
        endpoints.serverFromString(reactor, spec)
    except Exception as e:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"{key}: bad endpoint string {spec!r}: {e}") from None


def _fill(section: Any, name: str, table: dict[str, Any]) -> None:
    """Set the keys of the TOML ``table`` named ``name`` on the dataclass ``section``."""
    hints = get_type_hints(type(section))
    for key, v in table.items():
        if key not in hints:
            raise ConfigError(
                f"unknown key {name}.{key} (known in [{name}]: {', '.join(hints)})"
            )
        setattr(section, key, _check_type(f"{name}.{key}", v, hints[key]))


def from_dict(data: dict[str, Any], path: str = "") -> Config:
    """Build and validate a Config from parsed TOML."""
    cfg = Config(path=path)
    sections = {f.name: f for f in fields(Config) if f.name != "path"}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sections)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        _fill(getattr(cfg, name), name, value)
    _validate(cfg)
    return cfg


def load(path: str | os.PathLike[str]) -> Config:
    """Read, check and return the configuration at ``path``; ConfigError names the problem."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such configuration file") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    try:
        return from_dict(data, str(p.resolve()))
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def find_config(explicit: str | None) -> str:
    """The config path: ``--config``, else ``$IPYDOC_CONFIG``, else the first default that exists."""
    if explicit:
        return explicit
    if os.environ.get("IPYDOC_CONFIG"):
        return os.environ["IPYDOC_CONFIG"]
    for candidate in DEFAULT_CONFIG_PATHS:
        if Path(candidate).is_file():
            return candidate
    raise ConfigError(
        "no configuration file: pass --config FILE or set IPYDOC_CONFIG "
        f"(looked for {', '.join(DEFAULT_CONFIG_PATHS)})"
    )
