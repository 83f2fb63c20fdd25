"""The read side of history, for the pages and the control channel: files (deleted ones
too), versions, diffs, the queue's state, restore, downloads.

**Renames.**  A file's versions follow it through renames and moves
(:meth:`GitRepo.log <ipydoc.history.repo.GitRepo.log>`); every version is read at the path
the file had then (:meth:`HistoryReader.path_at`), so diffs, downloads and restores work
across a rename.

**Restore.**  :meth:`HistoryReader.restore` writes the old version back to the file's
*current* path (for a deleted file: the path it had) through the contents API (``PUT``,
as a save) and queues it, so it becomes a new commit (``Restore P to version R``);
history is never rewritten.

**Bundle.**  :meth:`HistoryReader.bundle` (:meth:`GitRepo.bundle_file
<ipydoc.history.repo.GitRepo.bundle_file>`) hands back the open bundle file, already
unlinked: it is streamed from disk, never held in memory, and nothing is left behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO, Any

from twisted.internet import defer

from ipydoc.config.history import HistorySection
from ipydoc.history.contents import Contents, StoreSource, UserServers, reach
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.nbdiff import FileDiff, file_diff
from ipydoc.history.repo import GitError, Repositories, Version, check_path

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

    async def path_at(self, name: str, path: str, rev: str,
                      versions: list[Version] | None = None) -> str:
        """The path that the file now at ``path`` had in commit ``rev`` (renames undone)."""
        repo = self.repos.repo(name)
        versions = versions if versions is not None else await self.versions(name, path)
        for v in versions:
            if v.rev == rev:
                return v.path or path
        at = path
        for v in versions:  # newest first: undo each rename that came after rev
            if v.change != "R" or not v.from_path:
                continue
            if await self.repos.thread(repo.is_ancestor, v.rev, rev):
                break
            at = v.from_path
        return at

    async def _read(self, name: str, path: str, rev: str,
                    versions: list[Version] | None = None) -> tuple[str, bytes | None]:
        at = await self.path_at(name, path, rev, versions)
        return at, await self.repos.thread(self.repos.repo(name).read, rev, at)

    async def diff(self, name: str, path: str, a: str = "", b: str = "") -> dict[str, Any]:
        """The diff of ``path`` from version ``a`` to ``b``; ``b`` defaults to the newest
        version of the file, ``a`` to the one before ``b`` (across renames)."""
        check_path(path)
        repo = self.repos.repo(name)
        thread = self.repos.thread
        versions = await self.versions(name, path)
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
        old = (await self._read(name, path, ra, versions))[1] if ra else None
        new = (await self._read(name, path, rb, versions))[1]
        result: FileDiff = file_diff(path, old, new)
        return {"a": ra, "b": rb, "diff": result}

    async def raw(self, name: str, path: str, rev: str) -> tuple[str, bytes]:
        """Version ``rev`` of the file now (or last) at ``path``: (the path it had then,
        its bytes, as committed)."""
        check_path(path)
        full = await self.repos.thread(self.repos.repo(name).resolve, rev)
        if full is None:
            raise NoSuchVersion(f"no version {rev} in the history of {name}")
        at, data = await self._read(name, path, full)
        if data is None:
            raise NoSuchVersion(f"{path} does not exist in version {full[:8]}")
        return at, data

    async def bundle(self, name: str) -> tuple[IO[bytes], int, str]:
        """The whole history of ``name`` as a git bundle: (the open file, already
        unlinked; its size; its sha256).  The caller closes it."""
        repo = self.repos.repo(name)
        try:
            return await self.repos.thread(repo.bundle_file)
        except GitError as e:
            raise NoSuchVersion(f"{name} has no history to bundle ({e})") from None

    async def restore(self, name: str, path: str, rev: str, by: str = "") -> str:
        """Write version ``rev`` of the file now (or last) at ``path`` back to ``path`` on
        the user's server; the full rev."""
        check_path(path)
        repo = self.repos.repo(name)
        full = await self.repos.thread(repo.resolve, rev)
        if full is None:
            raise NoSuchVersion(f"no version {rev} in the history of {name}")
        _at, data = await self._read(name, path, full)
        if data is None:
            raise NoSuchVersion(f"{path} does not exist in version {full[:8]}")
        route = reach(self.servers, name)  # any of the user's servers: one volume
        if route is None:
            raise HistoryError(f"the server of {name} is not running: start it, then restore")
        if "/" in path:
            await self.contents.make_folders(name, route, path)
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

