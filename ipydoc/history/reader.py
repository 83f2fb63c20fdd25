"""The read side of history, for the pages and the control channel: files, versions,
diffs, the queue's state, and restore.

**Restore.**  :meth:`HistoryReader.restore` writes the old version back through the
contents API (``PUT``, as a save) and queues it, so it becomes a new commit (``Restore P
to version R``); history is never rewritten.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from ipydoc.config.history import HistorySection
from ipydoc.history.contents import Contents, StoreSource, UserServers
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.nbdiff import FileDiff, file_diff
from ipydoc.history.repo import Repositories, Version, check_path

Enqueue = Callable[[str, dict[str, Any]], defer.Deferred[str]]


class HistoryReader:
    """What people ask of a user's history; ``enqueue`` versions a restore."""

    def __init__(self, cfg: HistorySection, repos: Repositories, store_source: StoreSource,
                 servers: UserServers, contents: Contents, enqueue: Enqueue) -> None:
        self.cfg = cfg
        self.repos = repos
        self._store_source = store_source
        self.servers = servers
        self.contents = contents
        self.enqueue = enqueue

    @property
    def store(self) -> Any:
        return self._store_source.store

    async def files(self, name: str) -> list[dict[str, Any]]:
        summary = await self.repos.thread(self.repos.repo(name).summary)
        return sorted(summary.values(), key=lambda i: (not i["present"], str(i["path"])))

    async def versions(self, name: str, path: str) -> list[Version]:
        return await self.repos.thread(self.repos.repo(name).log, check_path(path))

    async def queued(self, name: str) -> int:
        return await self.store.history_queued(name)

    async def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Changes given up on (newest first): ``entry``, ``reason``, ``time``,
        ``attempts``."""
        return await self.store.history_dead_letters(name)

    async def diff(self, name: str, path: str, a: str = "", b: str = "") -> dict[str, Any]:
        """The diff of ``path`` from version ``a`` to ``b``; ``b`` defaults to the newest
        version of the file, ``a`` to the one before ``b``."""
        check_path(path)
        repo = self.repos.repo(name)
        thread = self.repos.thread
        versions = await thread(repo.log, path)
        if not versions:
            raise NoSuchVersion(f"{path} has no history")
        rb = await thread(repo.resolve, b) if b else versions[0].rev
        if rb is None:
            raise NoSuchVersion(f"no version {b}")
        if a:
            ra = await thread(repo.resolve, a)
            if ra is None:
                raise NoSuchVersion(f"no version {a}")
        else:
            revs = [v.rev for v in versions]
            ra = revs[revs.index(rb) + 1] if rb in revs and revs.index(rb) + 1 < len(revs) \
                else None
        old = await thread(repo.read, ra, path) if ra else None
        new = await thread(repo.read, rb, path)
        result: FileDiff = file_diff(path, old, new)
        return {"a": ra, "b": rb, "diff": result}

    async def restore(self, name: str, path: str, rev: str, by: str = "") -> str:
        """Write version ``rev`` of ``path`` back to the user's server; the full rev."""
        check_path(path)
        repo = self.repos.repo(name)
        full = await self.repos.thread(repo.resolve, rev)
        if full is None:
            raise NoSuchVersion(f"no version {rev} in the history of {name}")
        data = await self.repos.thread(repo.read, full, path)
        if data is None:
            raise NoSuchVersion(f"{path} does not exist in version {full[:8]}")
        route = self.servers.routes.get(name)
        if route is None:
            raise HistoryError(f"the server of {name} is not running: start it, then restore")
        await self.contents.write(name, route, path, data)
        queued = await self.enqueue(name, {"op": "save", "path": path, "time": time.time() -
                                           self.cfg.coalesce_seconds,
                                           "message": f"Restore {path} to version {full[:8]}"})
        if queued in ("full", "error"):
            raise HistoryError(f"{path} was restored to version {full[:8]} on the server, "
                               "but the history queue is full: the restore is not versioned")
        await self.store.add_event("history-restore", name,
                                   f"{path} to {full[:8]}" + (f" by {by}" if by else ""))
        return full
