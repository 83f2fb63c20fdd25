"""Turning one queue entry into a commit: a save (content read when the commit is made),
a delete, a rename.

**Renames.**  The new path of a ``PATCH`` is in the request body, which the proxy streams
and does not keep; but the server answers with the renamed file's model, and the proxy
hands the gate that small answer (``wants_body``/``saw_body``), so a rename or a move to
another folder is recorded as a move (``Rename A to B``) with its history.  Should the
answer not be seen (longer than 64 KiB, broken off), the old path's folder is listed and
the file looked for by content (or a folder by its entries); not found, the old path is
recorded as removed and the file versioned at its next save.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

from ipydoc.history.contents import LISTING_BUDGET, Contents, children
from ipydoc.history.errors import HistoryError
from ipydoc.history.repo import Change, GitRepo, Repositories, blob_id, check_path

RENAME_CANDIDATES = 20


class Recorder:
    """Commits queue entries to the user's repository; ``on_commit(name)`` after each
    commit (the mirror push)."""

    def __init__(self, repos: Repositories, contents: Contents,
                 on_commit: Callable[[str], None] | None = None) -> None:
        self.repos = repos
        self.contents = contents
        self.on_commit = on_commit

    async def apply(self, name: str, entry: dict[str, Any], route: Any, saves: int = 1) -> None:
        """Commit ``entry`` (``saves``: how many saves a coalesced save covers)."""
        op, path = entry.get("op"), check_path(str(entry.get("path", "")))
        when = float(entry.get("time") or time.time())
        # Which of the user's servers saved it (issue 19): named in the message.
        on = f" (server {entry['server']})" if isinstance(entry.get("server"), str) \
            and entry.get("server") else ""
        repo = self.repos.repo(name)
        thread = self.repos.thread
        commit: str | None = None
        if op == "save":
            data = await self.contents.read_file(name, route, path)
            if data is None:
                return
            message = entry.get("message") or f"Save {path}" + (
                f" ({saves} saves)" if saves > 1 else "") + on
            commit = await thread(_commit_blob, repo, path, data, name, message, when)
        elif op == "delete":
            commit = await thread(repo.commit, [Change(path)], author=name,
                                  message=f"Delete {path}{on}", when=when)
        elif op == "rename" and entry.get("to"):
            commit = await self._move(name, repo, path, check_path(str(entry["to"])), when)
        elif op == "rename":
            commit = await self._rename(name, route, repo, path, when)
        else:
            raise HistoryError(f"unknown queue entry {entry!r}")
        if commit and self.on_commit is not None:
            self.on_commit(name)

    async def _move(self, name: str, repo: GitRepo, old: str, new: str,
                    when: float) -> str | None:
        """A rename or move whose new path the server's answer named."""
        if old == new or not await self.repos.thread(repo.entries, old):
            return None  # never versioned: it will be at its next save
        return await self.repos.thread(repo.commit, [], moves=[(old, new)], author=name,
                                       message=f"Rename {old} to {new}", when=when)

    async def _rename(self, name: str, route: Any, repo: GitRepo, old: str,
                      when: float) -> str | None:
        """A rename whose answer was not seen: find the new path by content."""
        thread = self.repos.thread
        tracked = await thread(repo.entries, old)
        if not tracked:
            return None  # never versioned: it will be at its next save
        parent = str(PurePosixPath(old).parent)
        parent = "" if parent == "." else parent
        listing = await self.contents.get(name, route, parent, LISTING_BUDGET,
                                          type="directory", content="1")
        entries = children(listing)
        known = set(await thread(repo.files))
        known_dirs = {str(p) for k in known for p in PurePosixPath(k).parents}
        new = None
        if len(tracked) == 1 and tracked[0][2] == old:
            blob = tracked[0][1]
            ext = PurePosixPath(old).suffix
            files = [c for c in entries if c.get("type") != "directory"
                     and c.get("path") not in known]
            files.sort(key=lambda c: PurePosixPath(str(c.get("path"))).suffix != ext)
            for c in files[:RENAME_CANDIDATES]:
                data = await self.contents.read_file(name, route, str(c["path"]))
                if data is not None and blob_id(data) == blob:
                    new = str(c["path"])
                    break
        else:
            names = {e[2][len(old) + 1:].split("/", 1)[0] for e in tracked}
            dirs = [c for c in entries if c.get("type") == "directory"
                    and c.get("path") not in known_dirs]
            for c in dirs[:RENAME_CANDIDATES]:
                inner = await self.contents.get(name, route, str(c["path"]), LISTING_BUDGET,
                                                type="directory", content="1")
                have = {str(x.get("name")) for x in children(inner)}
                if names <= have:
                    new = str(c["path"])
                    break
        if new is not None:
            return await thread(repo.commit, [], moves=[(old, check_path(new))],
                                author=name, message=f"Rename {old} to {new}", when=when)
        return await thread(
            repo.commit, [Change(old)], author=name, when=when,
            message=f"Rename {old} (moved to another folder: recorded as removed here)")


def _commit_blob(repo: GitRepo, path: str, data: bytes, name: str, message: str,
                 when: float) -> str | None:
    return repo.commit([Change(path, repo.write_blob(data))], author=name, message=message,
                       when=when)
