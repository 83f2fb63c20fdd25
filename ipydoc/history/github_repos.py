"""The GitHub REST calls of linking a user's own repository: who the token belongs to,
whether the repository exists, creating it (private by default).

GitHub (or GitHub Enterprise, ``[auth.github] api_url``) is a trusted service, not a
user's server, so it is called with ``treq``, with a deadline and a size cap.  The
user's token is sent as a header only; errors never repeat it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import treq
from twisted.web.client import Agent

from ipydoc.backends.capped_body import BodyTooLarge, read_capped
from ipydoc.backends.httppool import quiet_pool
from ipydoc.history.errors import HistoryError

TIMEOUT = 30.0
MAX_BODY = 1 << 20
#: GitHub's rule for repository names (letters, digits, ``.``, ``-``, ``_``; not ``.``/``..``).
REPO_NAME = re.compile(r"^(?!\.\.?$)[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class Account:
    login: str
    id: int


class GitHubRepos:
    """Calls ``api_url`` with a user's token."""

    def __init__(self, api_url: str, reactor: Any) -> None:
        self.api = api_url.rstrip("/")
        self._http = treq.client.HTTPClient(Agent(
            reactor, connectTimeout=10, pool=quiet_pool(reactor, persistent=False)))

    async def _call(self, method: str, path: str, token: str,
                    body: dict[str, Any] | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "ipydoc",
                   "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28"}
        try:
            r = await self._http.request(method, self.api + path, json=body, headers=headers,
                                         timeout=TIMEOUT)
            data = await read_capped(r, MAX_BODY)
        except BodyTooLarge:
            raise HistoryError("GitHub's answer was too large.") from None
        except Exception as e:  # noqa: BLE001 - any transport failure
            raise HistoryError(f"GitHub could not be reached ({type(e).__name__}); "
                               "try again later.") from None
        try:
            return r.code, json.loads(data)
        except ValueError:
            return r.code, None

    async def account(self, token: str) -> Account:
        code, user = await self._call("GET", "/user", token)
        if code != 200 or not isinstance(user, dict) or not isinstance(user.get("login"), str) \
                or not isinstance(user.get("id"), int):
            raise HistoryError(f"GitHub did not accept the authorization (HTTP {code}).")
        return Account(user["login"], user["id"])

    async def ensure(self, token: str, owner: str, repo: str, private: bool = True) -> bool:
        """Make ``owner/repo`` if it does not exist; True if it was made now."""
        if not REPO_NAME.match(repo):
            raise HistoryError("That is not a repository name (letters, digits, . - _).")
        code, _ = await self._call("GET", f"/repos/{quote(owner)}/{quote(repo)}", token)
        if code == 200:
            return False
        if code != 404:
            raise HistoryError(f"GitHub could not look up {owner}/{repo} (HTTP {code}).")
        code, answer = await self._call("POST", "/user/repos", token, {
            "name": repo, "private": private, "auto_init": False,
            "description": "My notebook history (ipydoc)"})
        if code == 201:
            return True
        why = answer.get("message", "") if isinstance(answer, dict) else ""
        raise HistoryError(f"GitHub did not create {owner}/{repo} (HTTP {code} {why})."
                           .replace(" )", ")"))
