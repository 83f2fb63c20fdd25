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

DEFAULT_CONFIG_PATHS = ("/etc/ipydoc/ipydoc.toml", "etc/ipydoc.toml")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the file and key."""


@dataclass
class ServerSection:
    listen: list[str] = field(default_factory=lambda: ["tcp:8000:interface=127.0.0.1"])
    state_dir: str = "/var/lib/ipydoc"
    public_url: str = ""


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
    elif hint == list[str]:
        if isinstance(value, str) and key == "server.listen":
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings")
    return value


def _validate(cfg: Config) -> None:
    from twisted.internet import endpoints, reactor

    if not cfg.server.listen:
        raise ConfigError("server.listen must name at least one endpoint")
    for spec in cfg.server.listen:
        _check_endpoint("server.listen", spec, endpoints, reactor)
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
    _validate_history(cfg.history)


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


def from_dict(data: dict[str, Any], path: str = "") -> Config:
    """Build and validate a Config from parsed TOML."""
    cfg = Config(path=path)
    sections = {f.name: f for f in fields(Config) if f.name != "path"}
    for name, value in data.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sections)})")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        section = getattr(cfg, name)
        hints = get_type_hints(type(section))
        for key, v in value.items():
            if key not in hints:
                raise ConfigError(
                    f"unknown key {name}.{key} (known in [{name}]: {', '.join(hints)})"
                )
            setattr(section, key, _check_type(f"{name}.{key}", v, hints[key]))
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
