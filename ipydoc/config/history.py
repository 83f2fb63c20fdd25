"""``[history]``: the git history of every notebook save and its optional push to a
remote (ipydoc.history)."""

from __future__ import annotations

from dataclasses import dataclass

from ipydoc.config.errors import ConfigError
from ipydoc.config.types import parse_size


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
    user_repos: bool = True  # users may link a repository of their own (issue 18)
    user_repo_allow_http: bool = False  # pasted repository URLs may be http:// (tests, LAN)


def validate(h: HistorySection) -> None:
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
