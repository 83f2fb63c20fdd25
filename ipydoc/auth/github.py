"""GitHub OAuth login, restricted to organisations, teams and/or listed users.

Authorisation-code flow with ``state`` (kept server-side, :mod:`.login_state`).  With the
person's token, scope ``read:org`` when an organisation or team decides, GitHub's API is
asked at every login:

- organisation: ``GET {api}/user/memberships/orgs/{org}``, ``state`` must be ``active``;
- team: ``GET {api}/orgs/{org}/teams/{slug}/memberships/{login}``, ``state`` ``active``.

The same team check maps teams to ipydoc groups (``group_teams``, issue 19): the
:class:`Identity` carries the groups of the teams the person is an active member of, and
the login syncs them (:meth:`ipydoc.state.groups.Groups.sync_provider_groups`).

Membership must be confirmed: a pending invitation, a 404, a 403 (e.g. the organisation
has not approved this OAuth app), a GitHub error or an unexpected answer all deny, each
with its own reason.  The account belongs to the numeric GitHub id (logins can be renamed);
the ipydoc name is the lower-cased login through the one name validator.  ``url`` and
``api_url`` make GitHub Enterprise work (``https://HOST`` and ``https://HOST/api/v3``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from ipydoc.auth.base import HTTP, Identity, Refused
from ipydoc.config.auth import GithubAuth
from ipydoc.names import InvalidName, validate_name

PROVIDER_ERROR = "GitHub could not complete the login; try again later."
MEMBER, NOT_MEMBER, PENDING, UNKNOWN = "member", "not a member", "pending", "unknown"


class GithubProvider:
    id = "github"

    def __init__(self, settings: GithubAuth, secret: str, http: HTTP) -> None:
        self.settings = settings
        self.display_name = settings.display_name
        self._secret = secret
        self.http = http
        self.url = settings.url.rstrip("/")
        self.api = settings.api_url.rstrip("/")

    @property
    def scope(self) -> str:
        s = self.settings
        return "read:org" if (s.orgs or s.teams or s.admin_teams or s.group_teams) else ""

    async def authorize_url(self, redirect_uri: str, state: str, nonce: str,
                            challenge: str) -> str:
        return f"{self.url}/login/oauth/authorize?" + urlencode({
            "client_id": self.settings.client_id, "redirect_uri": redirect_uri,
            "scope": self.scope, "state": state, "allow_signup": "false"})

    # -- the "connect" flow of a user's own history repository (scope repo; issue 18) --------
    def repo_authorize_url(self, redirect_uri: str, state: str) -> str:
        """The authorization of pushing to (and creating) the person's repositories."""
        return f"{self.url}/login/oauth/authorize?" + urlencode({
            "client_id": self.settings.client_id, "redirect_uri": redirect_uri,
            "scope": "repo", "state": state, "allow_signup": "false"})

    async def repo_token(self, code: str, redirect_uri: str) -> str:
        """The token of a connect flow's ``code`` (raises :class:`Refused`)."""
        return await self._exchange(code, redirect_uri)

    async def _exchange(self, code: str, redirect_uri: str) -> str:
        """An authorization ``code`` for its access token (raises :class:`Refused`)."""
        s = self.settings
        status, data = await self._call(
            "POST", f"{self.url}/login/oauth/access_token", "token",
            data={"client_id": s.client_id, "client_secret": self._secret, "code": code,
                  "redirect_uri": redirect_uri})
        if status != 200 or not isinstance(data, dict) or \
                not isinstance(data.get("access_token"), str):
            error = data.get("error") if isinstance(data, dict) else data
            raise Refused(PROVIDER_ERROR, f"token exchange: HTTP {status}, "
                                          f"error {str(error)[:80]!r}")
        return data["access_token"]

    async def _call(self, method: str, url: str, what: str, **kw: Any) -> tuple[int, Any]:
        try:
            reply = await self.http.request(method, url, **kw)
        except Exception as e:  # noqa: BLE001 - any transport failure
            return 0, f"{what}: {e.__class__.__name__}"
        return reply.code, reply.json()

    async def complete(self, code: str, redirect_uri: str, nonce: str,
                       verifier: str) -> Identity:
        s = self.settings
        access_token = await self._exchange(code, redirect_uri)
        auth = {"Authorization": f"Bearer {access_token}",
                "X-GitHub-Api-Version": "2022-11-28"}
        status, user = await self._call("GET", f"{self.api}/user", "user", headers=auth)
        if status != 200 or not isinstance(user, dict) or \
                not isinstance(user.get("login"), str) or not isinstance(user.get("id"), int):
            raise Refused(PROVIDER_ERROR, f"GET /user: HTTP {status}")
        login = user["login"]
        allowed, why = await self._allowed(login, auth)
        if not allowed:
            raise Refused(why, f"GitHub user {login}: {why}")
        try:
            name = validate_name(login.lower())
        except InvalidName as e:
            raise Refused(f"Your GitHub login {login} cannot be a user name here: {e}.",
                          f"GitHub login {login!r} is not a valid name") from None
        admin = None
        if s.admin_users or s.admin_teams:
            admin = login.lower() in {u.lower() for u in s.admin_users}
            for team in s.admin_teams:
                if admin:
                    break
                admin = (await self._team(team, login, auth))[0] == MEMBER
        return Identity(self.id, str(user["id"]), name, admin, f"GitHub login {login}",
                        await self._groups(login, auth))

    async def _groups(self, login: str, auth: dict[str, str]) -> tuple[str, ...] | None:
        """The ipydoc groups of ``group_teams`` whose team ``login`` is an active member
        of; None (no change to memberships) when none is configured or GitHub could not
        confirm one of them (a passing error must not take groups away)."""
        mapping = self.settings.group_teams
        if not mapping:
            return None
        groups = set()
        for team, group in mapping.items():
            result, _ = await self._team(team, login, auth)
            if result == UNKNOWN:
                return None
            if result == MEMBER:
                groups.add(group)
        return tuple(sorted(groups))

    async def _membership(self, url: str, auth: dict[str, str]) -> tuple[str, str]:
        """(MEMBER/NOT_MEMBER/PENDING/UNKNOWN, detail) from one membership endpoint."""
        status, data = await self._call("GET", url, "membership", headers=auth)
        if status == 200 and isinstance(data, dict):
            state = data.get("state")
            if state == "active":
                return MEMBER, ""
            if state == "pending":
                return PENDING, ""
            return UNKNOWN, f"state {str(state)[:20]!r}"
        if status == 404:
            return NOT_MEMBER, ""
        return UNKNOWN, f"HTTP {status}" if status else str(data)

    async def _org(self, org: str, auth: dict[str, str]) -> tuple[str, str]:
        return await self._membership(f"{self.api}/user/memberships/orgs/{quote(org)}", auth)

    async def _team(self, team: str, login: str, auth: dict[str, str]) -> tuple[str, str]:
        org, _, slug = team.partition("/")
        return await self._membership(
            f"{self.api}/orgs/{quote(org)}/teams/{quote(slug)}/memberships/{quote(login)}", auth)

    async def _allowed(self, login: str, auth: dict[str, str]) -> tuple[bool, str]:
        """Whether any rule lets ``login`` in; else the reason in plain words."""
        s = self.settings
        if login.lower() in {u.lower() for u in s.users}:
            return True, ""
        seen: list[tuple[str, str, str]] = []
        for org in s.orgs:
            result, detail = await self._org(org, auth)
            if result == MEMBER:
                return True, ""
            seen.append((f"the GitHub organisation {org}", result, detail))
        for team in s.teams:
            result, detail = await self._team(team, login, auth)
            if result == MEMBER:
                return True, ""
            seen.append((f"the GitHub team {team}", result, detail))
        for what, result, detail in seen:
            if result == UNKNOWN:
                return False, (f"GitHub could not confirm that you are a member of {what} "
                               f"({detail}); try again later or ask an administrator.")
        for what, result, _ in seen:
            if result == PENDING:
                return False, (f"Your invitation to {what} is still pending: accept it on "
                               "GitHub, then log in again.")
        if not seen:
            return False, "Your GitHub account is not on this site's list of users."
        return False, ("You are not a member of " + " or ".join(w for w, _, _ in seen)
                       + ", which this site requires.")
