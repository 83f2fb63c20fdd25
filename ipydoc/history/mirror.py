"""The mirror: each user's history pushed to a remote repository.

With ``history.remote`` set (a URL or path with ``{name}``), each user's ``main`` is pushed
there after commits (``git push``, never forced: the mirror must not be written by anyone
else).  A failing push is retried with exponential backoff (1 s doubling to
``history.push_backoff_max``), is recorded as a ``history-push-failed`` event and in
``ipydoc:history-push:NAME`` (shown on the history page), and never delays saves or
commits; recovery is the event ``history-push-ok``.  With ``history.create_repo`` the
repository is first created with ``POST {api_url}/orgs/{api_org}/repos`` (private; HTTP
422 "already exists" is fine).  HTTPS credentials go to git as an ``http.extraHeader``
through ``GIT_CONFIG_*`` environment variables, never on a command line or in a URL.
Users' own repositories, with their own credentials, are :mod:`.user_repo`.

The GitHub API is a trusted service, not a user's server, so it is called with ``treq``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import treq
from twisted.logger import Logger
from twisted.web.client import Agent

from ipydoc.backends.httppool import quiet_pool
from ipydoc.config.history import HistorySection
from ipydoc.history import metrics
from ipydoc.history.contents import StoreSource
from ipydoc.history.errors import HistoryError
from ipydoc.history.git_push import auth_env
from ipydoc.history.push_schedule import PushSchedule, Retry
from ipydoc.history.repo import GitError, GitRepo, Repositories


class Pusher:
    """Pushes users' ``main`` to the mirror: one push at a time per user, retried with
    backoff, state in Redis and events."""

    log = Logger()

    def __init__(self, cfg: HistorySection, repos: Repositories, store_source: StoreSource,
                 reactor: Any) -> None:
        self.cfg = cfg
        self.repos = repos
        self._store_source = store_source
        self.reactor = reactor
        # one push at a time per user, coalescing, backoff (shared with .user_repo)
        self.schedule = PushSchedule(self._push, reactor, cfg.push_backoff_max)
        self._client: Any = None

    @property
    def store(self) -> Any:
        return self._store_source.store

    @property
    def _http(self) -> Any:
        """treq, for the GitHub API (a trusted service, not a user's server)."""
        if self._client is None:
            self._client = treq.client.HTTPClient(Agent(
                self.reactor, connectTimeout=10,
                pool=quiet_pool(self.reactor, persistent=False)))
        return self._client

    def url(self, name: str) -> str:
        return self.cfg.remote.replace("{name}", name)

    def stop(self) -> None:
        self.schedule.stop()

    def forget(self, name: str) -> None:
        """No retry of ``name``'s push after its history is purged."""
        self.schedule.forget(name)

    async def resume(self) -> None:
        """At start: push every repository the mirror is behind on."""
        for name in self.repos.names():
            head = await self.repos.thread(self.repos.repo(name).head)
            state = await self.store.history_push_state(name)
            if head and state.get("rev") != head:
                self.soon(name)

    def soon(self, name: str) -> None:
        self.schedule.soon(name)

    async def _push(self, name: str) -> None:
        store = self.store
        state = await store.history_push_state(name)
        try:
            if self.cfg.create_repo and state.get("created") != "1":
                await self._create(name)
                await store.set_history_push_state(name, created=1)
            repo = self.repos.repo(name)
            head = await self.repos.thread(repo.head)
            if head is None:
                return
            await self.repos.thread(self._git_push, repo, name)
        except (GitError, HistoryError, OSError) as e:
            metrics.PUSH_FAILURES.inc()
            failures = self.schedule.failures[name] = self.schedule.failures.get(name, 0) + 1
            delay = self.schedule.delay(name)
            why = _scrub(str(e), self.cfg.remote_token)[:500]
            await store.set_history_push_state(name, state="failing", error=why,
                                               attempts=failures)
            await store.add_event("history-push-failed", name,
                                  f"attempt {failures}, next in {delay:g}s: {why}")
            self.log.warn("history: push of {name} failed ({why}); retry in {d}s",
                          name=name, why=why, d=delay)
            raise Retry() from None
        metrics.PUSHES.inc()
        failed_before = self.schedule.failures.pop(name, 0)
        await store.set_history_push_state(name, state="ok", rev=head, error="",
                                           attempts=0)
        if failed_before:
            await store.add_event("history-push-ok", name,
                                  f"pushed {head[:8]} after {failed_before} failed attempts")

    def _git_push(self, repo: GitRepo, name: str) -> None:
        env = auth_env(self.url(name), self.cfg.remote_token)  # shared with user_repo
        repo.run("push", "--quiet", "--porcelain", self.url(name),
                 "refs/heads/main:refs/heads/main", env=env, timeout=300)

    async def _create(self, name: str) -> None:
        repo_name = self.url(name).rstrip("/").rsplit("/", 1)[-1]
        repo_name = repo_name[:-4] if repo_name.endswith(".git") else repo_name
        url = f"{self.cfg.api_url.rstrip('/')}/orgs/{quote(self.cfg.api_org)}/repos"
        try:
            r = await self._http.post(url, json={
                "name": repo_name, "private": True, "auto_init": False,
                "description": f"ipydoc history of {name}"}, timeout=60, headers={
                "Authorization": f"Bearer {self.cfg.remote_token}",
                "Accept": "application/vnd.github+json", "User-Agent": "ipydoc"})
            body = await r.content()
        except Exception as e:  # noqa: BLE001
            raise HistoryError(f"creating the repository: {type(e).__name__}") from None
        if r.code in (201, 422):  # 422: it exists already
            return
        try:
            why = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            why = ""
        raise HistoryError(f"creating the repository {repo_name}: HTTP {r.code} {why}".strip())


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
