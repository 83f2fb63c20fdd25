"""``[metrics]``: Prometheus metrics (``docs/metrics.md``), never open by default.

Two ways to serve them, both off unless set: ``listen`` (a listener of its own that
answers only ``/metrics``; bind it to loopback or a private address) and ``token_file``
(the public site answers ``GET /hub/metrics`` to ``Authorization: Bearer <token>``).
The token file is checked here (readable, not world-readable, long enough) so a
mistake stops the daemon at start rather than leaving scrapes failing with 401.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from ipydoc.config.endpoints import check_endpoint
from ipydoc.config.errors import ConfigError

#: Shortest bearer token accepted (characters): a guessable token would open the metrics,
#: which name no user by default but do describe the site's load.
MIN_TOKEN_LENGTH = 16


@dataclass
class MetricsSection:
    listen: str = ""
    token_file: str = ""
    per_user: bool = False


def read_token(path: str) -> str:
    """The bearer token in ``path`` (surrounding whitespace stripped); ConfigError naming
    ``metrics.token_file`` when it cannot be used."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        token = p.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"metrics.token_file: cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"metrics.token_file: {path} is not UTF-8 text") from None
    if mode & stat.S_IROTH:
        raise ConfigError(f"metrics.token_file: {path} is readable by everyone; "
                          f"chmod o-r {path} (e.g. 0600 or 0640)")
    if not token:
        raise ConfigError(f"metrics.token_file: {path} is empty")
    if len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"metrics.token_file: the token in {path} is shorter than "
                          f"{MIN_TOKEN_LENGTH} characters (make one with "
                          "`openssl rand -hex 32`)")
    if any(c.isspace() for c in token):
        raise ConfigError(f"metrics.token_file: the token in {path} contains whitespace")
    return token


def validate(m: MetricsSection) -> None:
    if m.listen:
        check_endpoint("metrics.listen", m.listen)
    if m.token_file:
        read_token(m.token_file)
