"""The history service: every save the proxy sees becomes a commit; restores; the mirror.

This module only wires the parts and is the one interface the rest of ipydoc uses:

* :mod:`ipydoc.history.queue` — noting saves, the per-user queue in Redis (order,
  coalescing, the cap, dead letters) and the worker that drains it;
* :mod:`ipydoc.history.commits` — one queue entry to one commit (renames found by content);
* :mod:`ipydoc.history.contents` — reading and writing files on the user's (hostile)
  server, within budgets;
* :mod:`ipydoc.history.repo` — the git repositories;
* :mod:`ipydoc.history.reader` — files, versions, diff, restore;
* :mod:`ipydoc.history.mirror` — the push to ``history.remote``;
* :mod:`ipydoc.history.user_repo` — the push to each user's own repository.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from ipydoc.config.history import HistorySection
from ipydoc.history.commits import Recorder
from ipydoc.history.contents import Contents, StoreSource, UserServers
from ipydoc.history.mirror import Pusher
from ipydoc.history.queue import CHANGING_METHODS, HistoryQueue
from ipydoc.history.reader import HistoryReader
from ipydoc.history.repo import GitRepo, Repositories, Version
from ipydoc.history.sealing import Sealer
from ipydoc.history.user_repo import UserRepos


class History(Service):
    name = "history"
    log = Logger()
    #: The answers the proxy shows it (:class:`ipydoc.access.collaborators.SaveObserver`).
    methods = CHANGING_METHODS

    def __init__(self, cfg: HistorySection, state_dir: Path, store_source: StoreSource,
                 manager: UserServers, reactor: Any, secret: bytes, lease_ttl: float = 10.0,
                 sweep_interval: float = 5.0) -> None:
        self.cfg = cfg
        self.root = state_dir / "history"
        self.repos = Repositories(self.root, cfg.git, reactor)
        self.contents = Contents(cfg, manager, store_source, reactor)
        self.pusher = Pusher(cfg, self.repos, store_source, reactor) if cfg.remote else None
        self.user_repos = UserRepos(
            self.repos, store_source, Sealer.from_secret(secret), reactor,
            cfg.push_backoff_max, cfg.user_repo_allow_http) if cfg.user_repos else None
        recorder = Recorder(self.repos, self.contents, on_commit=self._committed)
        # lease_ttl, sweep_interval: [cluster] (several daemons; ipydoc.history.queue)
        self.queue = HistoryQueue(cfg, store_source, manager, self.contents, recorder, reactor,
                                  lease_ttl=lease_ttl, sweep_interval=sweep_interval)
        self.reader = HistoryReader(cfg, self.repos, store_source, manager, self.contents,
                                    self.queue.enqueue)

    def _committed(self, name: str) -> None:
        """After each commit: push to the site mirror and to the user's own repository."""
        if self.pusher is not None:
            self.pusher.soon(name)
        if self.user_repos is not None:
            self.user_repos.soon(name)

    def repo(self, name: str) -> GitRepo:
        return self.repos.repo(name)

    def forget(self, name: str) -> None:
        """Drop what this process holds for ``name`` before its history is purged
        (:mod:`ipydoc.control.removal` deletes the repository and the Redis keys), so no retry or
        push of the old history runs after the name is free."""
        self.queue.forget(name)
        if self.pusher is not None:
            self.pusher.forget(name)
        if self.user_repos is not None:
            self.user_repos.forget(name)

    # -- service ---------------------------------------------------------------------------
    def startService(self) -> defer.Deferred[None]:
        super().startService()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        queues = await self.queue.start()
        if self.pusher is not None:
            await self.pusher.resume()
        if self.user_repos is not None:
            await self.user_repos.resume()
        self.log.info("history: {n} queues to drain; repositories in {root}",
                      n=queues, root=self.root)

    def stopService(self) -> None:
        super().stopService()
        self.queue.stop()
        if self.pusher is not None:
            self.pusher.stop()
        if self.user_repos is not None:
            self.user_repos.stop()

    # -- seeing saves (the gate) -----------------------------------------------------------
    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        return self.queue.wants_body(user, method, path, code)

    def note(self, user: str, method: bytes, path: bytes, code: int,
             body: bytes | None = None) -> defer.Deferred[str] | None:
        return self.queue.note(user, method, path, code, body)

    # -- reading history (pages, control channel) -----------------------------------------
    async def files(self, name: str) -> list[dict[str, Any]]:
        return await self.reader.files(name)

    async def versions(self, name: str, path: str) -> list[Version]:
        return await self.reader.versions(name, path)

    async def queued(self, name: str) -> int:
        return await self.reader.queued(name)

    async def dead_letters(self, name: str) -> list[dict[str, Any]]:
        return await self.reader.dead_letters(name)

    async def diff(self, name: str, path: str, a: str = "", b: str = "") -> dict[str, Any]:
        return await self.reader.diff(name, path, a, b)

    async def restore(self, name: str, path: str, rev: str, by: str = "") -> str:
        return await self.reader.restore(name, path, rev, by)
