"""The page of a user's own history repository (``/hub/repository/NAME``, issue 18):
link one, see how pushes go, try again after a refusal, unlink.

Two ways to link (:mod:`ipydoc.history.user_repo` keeps and pushes the link):

* **GitHub** (offered when ``[auth.github]`` is set and the account belongs to a GitHub
  identity): a separate authorization with the ``repo`` scope.  Its ``state`` is kept
  server-side and bound to this browser exactly like a login's
  (:mod:`ipydoc.auth.login_state`, counted against the same limits); the callback is
  ``/hub/oauth/github/callback/repository``, under the login callback registered with
  GitHub (GitHub accepts a redirect URI below the registered one).  The callback also
  checks that the GitHub account that authorized is the one the ipydoc account belongs
  to, then creates the chosen repository if missing (private unless unticked).
* **A pasted token** for one repository (a GitHub fine-grained token with "Contents:
  write", or any https git host's token) and its URL.  The token comes only in a POST
  body, never back on a page.

Every action is a form POST with the session's CSRF token and a same-site ``Origin``;
unlinking asks for confirmation like every destructive action.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Protocol
from urllib.parse import urlencode

from klein import Klein
from twisted.internet import reactor as global_reactor
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access.cookies import read_cookie
from ipydoc.access.login_limits import client_group
from ipydoc.access.origin import request_origin
from ipydoc.access.sessions import Session
from ipydoc.auth import login_state
from ipydoc.auth.base import Provider, Refused
from ipydoc.edge.request_args import arg
from ipydoc.history.errors import HistoryError
from ipydoc.history.github_repos import REPO_NAME, GitHubRepos
from ipydoc.web.pages import Pages, RedisDown, redis_down
from ipydoc.web.provider_pages import binding_cookie

CALLBACK = "/hub/oauth/github/callback/repository"
FLOW = "github-repo"  # the login-state "provider" of a connect flow
NOTICES = {"linked": "Your repository is linked; your history is being pushed there.",
           "unlinked": "Your repository is unlinked and its authorization deleted here.",
           "retry": "Pushing again."}


class UserRepoLinks(Protocol):
    """What the page does with links (:class:`ipydoc.history.user_repo.UserRepos`)."""

    async def state(self, name: str) -> dict[str, str]: ...

    async def link(self, name: str, url: str, token: str, via: str,
                   login: str = "") -> None: ...

    async def unlink(self, name: str, by: str = "") -> bool: ...

    async def retry(self, name: str) -> None: ...


class HistoryRepoPages:
    app = Klein()
    app.handle_errors(RedisDown)(redis_down)
    log = Logger()

    def __init__(self, pages: Pages, links: UserRepoLinks | None,
                 providers: Mapping[str, Provider], *, reactor: Any = None,
                 limits: login_state.Limits = login_state.Limits(), base_url: str = "") -> None:
        self.pages = pages
        self.links = links  # None: history or history.user_repos is off
        self.github: Any = providers.get("github")
        self.reactor = reactor if reactor is not None else global_reactor
        self.limits = limits
        self.base_url = base_url.rstrip("/")

    async def _session(self, request: IRequest, name: str) -> Session | bytes:
        session = await self.pages.owner_session(request, name)
        if isinstance(session, Session) and self.links is None:
            return self.pages.error(request, 404, "Not available", "Linking a repository of "
                                    "your own is switched off on this site.", session)
        return session

    async def _github_user(self, name: str) -> bool:
        binding = await self.pages.store.identity_binding(name)
        return self.github is not None and bool(binding) and binding.get("provider") == "github"

    def _page(self, name: str) -> str:
        return f"/hub/repository/{name}"

    async def _render(self, request: IRequest, session: Session, error: str = "",
                      code: int = 200, url: str = "") -> bytes:
        assert self.links is not None
        name = session.user
        return self.pages.render(
            request, "history_repo.html", code, user=name, csrf=session.csrf, page="history",
            is_admin=await self.pages.is_admin(name), link=await self.links.state(name),
            github=await self._github_user(name), error=error, url=url,
            notice=NOTICES.get(arg(request, "done"), ""), back=f"/hub/history/{name}",
            action=self._page(name))

    @app.route("/repository/<name>", methods=["GET"])
    async def page(self, request: IRequest, name: str) -> bytes:
        session = await self._session(request, name)
        if not isinstance(session, Session):
            return session
        return await self._render(request, session)

    async def _form(self, request: IRequest, name: str) -> Session | bytes:
        session = await self._session(request, name)
        if isinstance(session, Session) and not self.pages.post_allowed(request, session.csrf):
            return self.pages.expired_form(request, session)
        return session

    @app.route("/repository/<name>/token", methods=["POST"])
    async def link_token(self, request: IRequest, name: str) -> bytes:
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        assert self.links is not None
        if b"token=" in request.uri:  # a secret in a URL lands in logs and histories
            return await self._render(request, session, "Send the token in the form, never "
                                      "in the address.", 400)
        url = arg(request, "url")
        try:
            await self.links.link(name, url, arg(request, "token"), "token")
        except HistoryError as e:
            return await self._render(request, session, str(e), 400, url=url)
        return self.pages.redirect(request, self._page(name) + "?done=linked")

    @app.route("/repository/<name>/github", methods=["POST"])
    async def github_start(self, request: IRequest, name: str) -> bytes:
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        repo, private = arg(request, "repo").strip(), arg(request, "private") == "1"
        if not await self._github_user(name):
            return await self._render(request, session, "Linking through GitHub needs an "
                                      "account that logs in with GitHub.", 400)
        if not REPO_NAME.match(repo):
            return await self._render(request, session, "That is not a repository name "
                                      "(letters, digits, . - _).", 400)
        redirect_uri = (self.base_url or request_origin(request)) + CALLBACK
        nxt = json.dumps({"name": name, "repo": repo, "private": private})
        state, cookie, record = login_state.new_login(FLOW, nxt, redirect_uri)
        full = await login_state.save(self.pages.store, state, record, self.limits,
                                      client_group(request))
        if full is not None:
            request.setHeader(b"Retry-After", str(full.retry_after).encode())
            return await self._render(request, session, full.message, 429)
        binding_cookie(request, cookie, login_state.TTL_SECONDS)
        return self.pages.redirect(request, self.github.repo_authorize_url(redirect_uri, state))

    @app.route("/oauth/github/callback/repository", methods=["GET"])
    async def github_callback(self, request: IRequest) -> bytes:
        pages = self.pages
        session = await pages.user_session(request)
        if not isinstance(session, Session):
            return session
        record = await login_state.take(pages.store, arg(request, "state"))
        cookie = (read_cookie(request, login_state.BINDING_COOKIE) or b"").decode(
            "ascii", "replace")
        binding_cookie(request, "", 0)
        try:
            wanted = json.loads(record.next) if record and record.provider == FLOW else {}
        except ValueError:
            wanted = {}
        if not wanted or not login_state.bound_to(record, cookie) or \
                wanted.get("name") != session.user or self.links is None or \
                not await self._github_user(session.user):
            return pages.error(request, 403, "Not linked", "This authorization has expired "
                               "or was started elsewhere; start again from your repository "
                               "page.", session)
        name = session.user
        if arg(request, "error") or not arg(request, "code"):
            return await self._render(request, session, "GitHub did not authorize ipydoc to "
                                      "push to your repositories; nothing was linked.", 403)
        try:
            token = await self.github.repo_token(arg(request, "code"), record.redirect_uri)
            api = GitHubRepos(self.github.api, self.reactor)
            account = await api.account(token)
            binding = await pages.store.identity_binding(name) or {}
            if str(account.id) != binding.get("subject"):
                raise HistoryError("The GitHub account that authorized is not the one you "
                                   "log in with; nothing was linked.")
            made = await api.ensure(token, account.login, wanted["repo"],
                                    bool(wanted.get("private", True)))
            url = f"{self.github.url}/{account.login}/{wanted['repo']}.git"
            await self.links.link(name, url, token, "github", account.login)
        except Refused as e:
            self.log.info("repository link of {name}: {detail}", name=name, detail=e.detail)
            return await self._render(request, session, e.reason, 502)
        except HistoryError as e:
            return await self._render(request, session, str(e), 409)
        if made:
            await pages.store.add_event("history-repo-created", name,
                                        f"{account.login}/{wanted['repo']} (GitHub)")
        return pages.redirect(request, self._page(name) + "?done=linked")

    @app.route("/repository/<name>/retry", methods=["POST"])
    async def retry(self, request: IRequest, name: str) -> bytes:
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        assert self.links is not None
        await self.links.retry(name)
        return self.pages.redirect(request, self._page(name) + "?done=retry")

    @app.route("/repository/<name>/unlink", methods=["POST"])
    async def unlink(self, request: IRequest, name: str) -> bytes:
        session = await self._form(request, name)
        if not isinstance(session, Session):
            return session
        assert self.links is not None
        if arg(request, "confirmed") != "1":
            return self.pages.confirm(
                request, session, title="Unlink your repository?",
                message="ipydoc stops pushing to it and deletes its authorization here "
                        "(revoke it at the host too if you no longer need it). The "
                        "repository and your history here are kept.",
                action=self._page(name) + "/unlink", button="Unlink", fields={},
                back=self._page(name))
        await self.links.unlink(name, session.user)
        return self.pages.redirect(request, self._page(name) + "?" +
                                   urlencode({"done": "unlinked"}))
