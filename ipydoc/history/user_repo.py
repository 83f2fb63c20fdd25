"""Users' own repositories: each user's history pushed, with their own credential, to a
repository they linked (issue 18), beside the site mirror (:mod:`.mirror`).

A link is made from the hub (:mod:`ipydoc.web.history_repo_pages`): a GitHub
authorization with the ``repo`` scope and a repository created if missing, or a pasted
fine-grained token for one repository and its https URL.  The credential is sealed
(:mod:`.sealing`) before it reaches Redis (:mod:`ipydoc.state.user_repos`) and is only
opened in memory to push; it is never shown again, logged, or put in argv or a URL
(:mod:`.git_push`).

Pushing follows the mirror: after each commit, one push at a time per user, commits
during a push coalesced into one more (:mod:`.push_schedule`).  A push that may pass
later (5xx, network) is retried with backoff (``history.push_backoff_max``) and recorded
as ``history-push-failed``.  A push the remote *refused* (authorization revoked,
repository gone, protected branch, non-fast-forward) sets the status ``refused`` with the
reason, records ``history-push-refused``, and stops: nothing is pushed to that link until
the user links again or presses "try again".  Unlinking deletes the credential.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from twisted.logger import Logger

from ipydoc.history import metrics
from ipydoc.history.contents import StoreSource
from ipydoc.history.errors import HistoryError
from ipydoc.history.git_push import PushFailed, push_main
from ipydoc.history.push_schedule import PushSchedule, Retry
from ipydoc.history.repo import Repositories
from ipydoc.history.sealing import Sealer, Unreadable

MAX_TOKEN = 1000
#: What the page may show of a link (never ``secret``).
SHOWN = ("url", "via", "login", "status", "error", "rev", "attempts", "linked", "updated")


def check_remote(url: str, allow_http: bool = False) -> str:
    """``url`` if it can be a pasted remote: https (http only with
    ``history.user_repo_allow_http``), a host, a path, no user info, query or fragment."""
    url = url.strip()
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise HistoryError("That is not a repository URL.") from None
    schemes = ("https", "http") if allow_http else ("https",)
    if u.scheme not in schemes:
        raise HistoryError("The repository URL must start with https://.")
    if not u.hostname or u.username or u.password or "@" in u.netloc:
        raise HistoryError("The repository URL must name a host and hold no user name or "
                           "password (paste the token in its own field).")
    if u.query or u.fragment or len(u.path.strip("/")) < 1 or len(url) > 500 or \
            any(c.isspace() or ord(c) < 32 for c in url):
        raise HistoryError("That is not a repository URL (e.g. "
                           "https://github.com/you/notebooks.git).")
    return url


def check_token(token: str) -> str:
    token = token.strip()
    if not token or len(token) > MAX_TOKEN or any(c.isspace() or ord(c) < 33 or ord(c) > 126
                                                  for c in token):
        raise HistoryError("That is not a token.")
    return token


class UserRepos:
    """Links, unlinks and pushes users' own repositories."""

    log = Logger()

    def __init__(self, repos: Repositories, store_source: StoreSource, sealer: Sealer,
                 reactor: Any, backoff_max: float, allow_http: bool = False) -> None:
        self.repos = repos
        self._store_source = store_source
        self.sealer = sealer
        self.allow_http = allow_http
        self.schedule = PushSchedule(self._push, reactor, backoff_max)

    @property
    def store(self) -> Any:
        return self._store_source.store

    # -- what the pages do -----------------------------------------------------------------
    async def state(self, name: str) -> dict[str, str]:
        """The link as the page shows it (no credential); empty when there is none."""
        link = await self.store.user_repo(name)
        return {k: link.get(k, "") for k in SHOWN} if link else {}

    async def link(self, name: str, url: str, token: str, via: str, login: str = "") -> None:
        """Link ``name``'s repository (replacing a link they had) and push at once."""
        token = check_token(token)
        if via == "token":
            url = check_remote(url, self.allow_http)
        await self.store.link_user_repo(name, url, via, login, self.sealer.seal(token))
        await self.store.add_event("history-repo-linked", name, f"{via}: {url}")
        self.log.info("history: {name} linked {url} ({via})", name=name, url=url, via=via)
        self.schedule.now(name)

    async def unlink(self, name: str, by: str = "") -> bool:
        self.schedule.forget(name)
        gone = await self.store.unlink_user_repo(name)
        if gone:
            await self.store.add_event("history-repo-unlinked", name, f"by {by or name}")
        return gone

    async def retry(self, name: str) -> None:
        """The user's "try again": a refused link is pushed once more."""
        link = await self.store.user_repo(name)
        if link:
            await self.store.set_user_repo_state(name, link.get("secret", ""),
                                                 status="pending", error="")
            self.schedule.now(name)

    # -- pushing -----------------------------------------------------------------------------
    def soon(self, name: str) -> None:
        """After a commit (``Recorder.on_commit``)."""
        self.schedule.soon(name)

    def forget(self, name: str) -> None:
        self.schedule.forget(name)

    def stop(self) -> None:
        self.schedule.stop()

    async def resume(self) -> None:
        """At start: push every linked repository that is behind (not the refused ones)."""
        for name in await self.store.user_repo_names():
            link = await self.store.user_repo(name)
            if link and link.get("status") != "refused":
                head = await self.repos.thread(self.repos.repo(name).head)
                if head and head != link.get("rev"):
                    self.soon(name)

    async def _push(self, name: str) -> None:
        store = self.store
        link = await store.user_repo(name)
        if not link or link.get("status") == "refused":
            return  # not linked, or stopped until the user acts
        repo = self.repos.repo(name)
        head = await self.repos.thread(repo.head)
        if head is None or head == link.get("rev"):
            return
        sealed, url = link.get("secret", ""), link.get("url", "")
        try:
            token = self.sealer.open(sealed)
            await self.repos.thread(push_main, repo, url, token)
        except Unreadable:
            await self._refused(name, sealed, url, "the stored authorization cannot be read "
                                "(the key file changed); link the repository again")
            return
        except PushFailed as e:
            if e.refused:
                await self._refused(name, sealed, url, e.reason)
                return
            await self._failed(name, sealed, url, e)
            raise Retry() from None
        metrics.USER_REPO_PUSHES.labels("ok").inc()
        failed_before = self.schedule.failures.pop(name, 0)
        if await store.set_user_repo_state(name, sealed, status="ok", rev=head, error="",
                                           attempts=0) and failed_before:
            await store.add_event("history-push-ok", name, f"own repository {url}: pushed "
                                  f"{head[:8]} after {failed_before} failed attempts")

    async def _refused(self, name: str, sealed: str, url: str, reason: str) -> None:
        metrics.USER_REPO_PUSHES.labels("refused").inc()
        self.schedule.failures.pop(name, None)
        if await self.store.set_user_repo_state(name, sealed, status="refused", error=reason):
            await self.store.add_event("history-push-refused", name, f"{url}: {reason}")
            self.log.warn("history: push of {name} to their repository refused: {why}",
                          name=name, why=reason)

    async def _failed(self, name: str, sealed: str, url: str, e: PushFailed) -> None:
        metrics.USER_REPO_PUSHES.labels("failed").inc()
        failures = self.schedule.failures[name] = self.schedule.failures.get(name, 0) + 1
        delay = self.schedule.delay(name)
        if await self.store.set_user_repo_state(name, sealed, status="failing", error=e.reason,
                                                attempts=failures):
            await self.store.add_event("history-push-failed", name, f"own repository {url}: "
                                       f"attempt {failures}, next in {delay:g}s: {e.detail}")
        self.log.warn("history: push of {name} to their repository failed ({why}); retry in "
                      "{d}s", name=name, why=e.detail, d=delay)
