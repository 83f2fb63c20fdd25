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
Not done: pushing with the user's own OAuth token.

The GitHub API is a trusted service, not a user's server, so it is called with ``treq``.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urlsplit

import treq
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.client import Agent

from ipydoc.backends.httppool import quiet_pool
from ipydoc.config.history import HistorySection
from ipydoc.history import metrics
from ipydoc.history.contents import StoreSource
from ipydoc.history.errors import HistoryError
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
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._timers: dict[str, Any] = {}
        self._failures: dict[str, int] = {}
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
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def forget(self, name: str) -> None:
        """No retry of ``name``'s push after its history is purged."""
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()
        self._failures.pop(name, None)

    async def resume(self) -> None:
        """At start: push every repository the mirror is behind on."""
        for name in self.repos.names():
            head = await self.repos.thread(self.repos.repo(name).head)
            state = await self.store.history_push_state(name)
            if head and state.get("rev") != head:
                self.soon(name)

    def soon(self, name: str) -> None:
        if name in self._busy:
            self._again.add(name)
            return
        timer = self._timers.get(name)
        if timer is not None and timer.active():
            return  # a retry is scheduled; it pushes the newest commit anyway
        self._busy.add(name)
        d = defer.Deferred.fromCoroutine(self._push(name))
        d.addErrback(lambda f: self.log.failure("history: pushing {name}", f, name=name))

    async def _push(self, name: str) -> None:
        try:
            self._again.discard(name)
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
                failures = self._failures[name] = self._failures.get(name, 0) + 1
                delay = min(float(self.cfg.push_backoff_max), 2.0 ** (failures - 1))
                why = _scrub(str(e), self.cfg.remote_token)[:500]
                await store.set_history_push_state(name, state="failing", error=why,
                                                   attempts=failures)
                await store.add_event("history-push-failed", name,
                                      f"attempt {failures}, next in {delay:g}s: {why}")
                self.log.warn("history: push of {name} failed ({why}); retry in {d}s",
                              name=name, why=why, d=delay)
                self._timers[name] = self.reactor.callLater(delay, self._retry, name)
                return
            metrics.PUSHES.inc()
            failed_before = self._failures.pop(name, 0)
            await store.set_history_push_state(name, state="ok", rev=head, error="",
                                               attempts=0)
            if failed_before:
                await store.add_event("history-push-ok", name,
                                      f"pushed {head[:8]} after {failed_before} failed attempts")
        finally:
            self._busy.discard(name)
            if name in self._again and name not in self._timers:
                self.soon(name)

    def _retry(self, name: str) -> None:
        self._timers.pop(name, None)
        self.soon(name)

    def _git_push(self, repo: GitRepo, name: str) -> None:
        env: dict[str, str] = {}
        token = self.cfg.remote_token
        if token and urlsplit(self.url(name)).scheme in ("http", "https"):
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                   "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}
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
