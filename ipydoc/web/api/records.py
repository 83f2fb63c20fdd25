"""``/hub/api/users/{name}/history…`` (files with a history, versions of one file, one
version's content) and ``/hub/api/events`` (the event log, as ``ipydoc events`` reads it).

History is as private as the files: the owner, or an admin with the ``admin`` scope (what
``ipydoc history`` gives the site's operators; a grading tool reads submissions this way).
Paths and revisions are checked before git sees them (:func:`ipydoc.history.repo.
check_path`, hex revisions).
"""

from __future__ import annotations

import base64
import re
from typing import Any

from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.repo import GitError, check_path
from ipydoc.web.api.call import Call, Shared, paged
from ipydoc.web.api.errors import ApiError
from ipydoc.web.history_pages import HistoryReader

_REV = re.compile(r"^[0-9a-fA-F]{4,40}$")
_EVENT_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")


class RecordHandlers:
    def __init__(self, shared: Shared, history: HistoryReader | None) -> None:
        self.shared = shared
        self.reader = history  # None: history.enabled = false

    def _history(self) -> HistoryReader:
        if self.reader is None:
            raise ApiError("unavailable", "history is switched off on this site "
                                          "(history.enabled)")
        return self.reader

    @staticmethod
    def _path(query: dict[str, Any]) -> str:
        path = query.get("path", "")
        try:
            check_path(path)
        except ValueError as e:
            raise ApiError("invalid_field", f"path: {e}") from None
        return path

    async def files(self, call: Call) -> dict[str, Any]:
        history = self._history()
        name = (await self.shared.user(call.params["name"])).name
        return paged(await history.files(name), call.query)

    async def versions(self, call: Call) -> dict[str, Any]:
        history = self._history()
        name = (await self.shared.user(call.params["name"])).name
        path = self._path(call.query)
        try:
            items = [v.as_dict() for v in await history.versions(name, path)]
        except (GitError, HistoryError):
            items = []
        if not items:
            raise ApiError("not_found", f"{path} has no history")
        return paged(items, call.query)

    async def version(self, call: Call) -> dict[str, Any]:
        history = self._history()
        name = (await self.shared.user(call.params["name"])).name
        path = self._path(call.query)
        rev = call.query.get("rev", "")
        if not _REV.match(rev):
            raise ApiError("invalid_field", "rev must be 4 to 40 hex digits")
        try:
            at, data = await history.reader.raw(name, path, rev.lower())
        except (NoSuchVersion, GitError) as e:
            raise ApiError("not_found", str(e) or f"no version {rev} of {path}") from None
        try:
            content, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            content, encoding = base64.b64encode(data).decode("ascii"), "base64"
        return {"path": at, "rev": rev.lower(), "encoding": encoding, "content": content,
                "size": len(data)}

    async def events(self, call: Call) -> dict[str, Any]:
        store, q, who = self.shared.store, call.query, call.who
        user = q.get("user", "")
        if not who.acts_as_admin:
            if user and user != who.name:
                raise ApiError("forbidden", "only administrators read other users' events")
            user = who.name
        kinds = {k for k in q.get("kind", "").split(",") if k}
        limit = q.get("limit", 100)

        def keep(e: dict[str, Any]) -> bool:
            return (not user or e.get("user") == user) and (not kinds or e.get("kind") in kinds)

        after = q.get("after", "")
        if not after:
            # The newest, filtered: read further back than ``limit`` when filtering.
            recent = await store.recent_events(limit if not (user or kinds) else 10_000)
            items = [e for e in recent if keep(e)][:limit]
            items.reverse()
            last = items[-1]["id"] if items else await store.last_event_id()
            return {"items": [_event(e) for e in items], "last": last or ""}
        if not _EVENT_ID.match(after):
            raise ApiError("invalid_field", f"after must be an event id, not {after!r}")
        items, cursor = [], after
        for _ in range(20):  # bounded: at most 20 batches of ``limit`` are scanned
            batch = await store.events_after(cursor, limit)
            if not batch:
                break
            cursor = batch[-1]["id"]
            items += [e for e in batch if keep(e)]
            if len(items) >= limit or len(batch) < limit:
                break
        items = items[:limit]
        if len(items) == limit:
            cursor = items[-1]["id"]
        return {"items": [_event(e) for e in items], "last": cursor}


def _event(e: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(e.get("id", "")), "time": float(e.get("time", 0)),
            "kind": str(e.get("kind", "")), "user": str(e.get("user", "")),
            "detail": str(e.get("detail", ""))}
