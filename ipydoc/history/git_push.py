"""``git push`` of a user's ``main`` with a credential that never reaches argv or a URL,
and what a failed push means: the remote refused it (the user must act) or it may work
later (retry).

The token goes to git as an ``http.extraHeader`` (HTTP basic, user ``x-access-token``, as
GitHub documents for tokens) through ``GIT_CONFIG_*`` environment variables; prompts are
off, so a refused credential fails at once instead of asking for a user name.  Shared by
the site mirror (:mod:`.mirror`) and users' own repositories (:mod:`.user_repo`).
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from urllib.parse import urlsplit

from ipydoc.history.repo import GitError, GitRepo

#: Substrings of git's messages (lower case) → the reason shown to the user.  A push that
#: fails with one of these would fail again the same way until someone changes something.
REFUSALS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("could not read username", "authentication failed", "returned error: 401",
      "invalid username or password", "bad credentials"),
     "the authorization was refused (revoked or expired token)"),
    (("returned error: 403", "permission to", "denied to", "write access"),
     "the authorization does not allow pushing to this repository"),
    (("not found", "returned error: 404", "does not appear to be a git repository"),
     "the repository does not exist (deleted, renamed, or not visible to this token)"),
    (("protected branch", "hook declined", "[remote rejected]"),
     "the repository refused the push (protected branch or a rule of the repository)"),
    (("non-fast-forward", "fetch first", "[rejected]"),
     "the repository has commits that are not in this history (non-fast-forward); "
     "ipydoc never force-pushes"),
)


@dataclass(frozen=True)
class PushFailed(Exception):
    """A failed push: ``refused`` when retrying cannot help, with a reason for people."""

    reason: str
    refused: bool
    detail: str = ""

    def __str__(self) -> str:
        return self.reason


def auth_env(url: str, token: str) -> dict[str, str]:
    """The environment that gives git ``token`` for an http(s) ``url`` (empty otherwise)."""
    if not token or urlsplit(url).scheme not in ("http", "https"):
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
            "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}",
            "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "SSH_ASKPASS": ""}


def classify(message: str) -> tuple[bool, str]:
    """(refused, reason) for git's message of a failed push."""
    low = message.lower()
    for needles, reason in REFUSALS:
        if any(n in low for n in needles):
            return True, reason
    return False, "the repository could not be reached (will retry)"


def push_main(repo: GitRepo, url: str, token: str, timeout: float = 300) -> None:
    """Push ``main`` to ``url`` (never forced).  Raises :class:`PushFailed` (blocking:
    call it in a thread)."""
    try:
        repo.run("push", url, "refs/heads/main:refs/heads/main", env=auth_env(url, token),
                 timeout=timeout)
    except GitError as e:
        text = str(e).replace(token, "***") if token else str(e)
        refused, reason = classify(text)
        raise PushFailed(reason, refused, text[:500]) from None
    except (OSError, subprocess.SubprocessError) as e:  # timeout, git missing
        raise PushFailed("git could not run the push (will retry)", False,
                         type(e).__name__) from None
