"""Control commands on users' file history: list files (deleted ones too) and versions
(followed through renames), restore a version, export the whole history as a git bundle
(in chunks, so it works over ``control.listen_tls`` too), and the changes the history
worker gave up on."""

from __future__ import annotations

import json
from typing import IO, Any

from twisted.internet import threads

from ipydoc.control import commands as c
from ipydoc.control.base import ControlBase, page, responder
from ipydoc.control.collaborators import HistoryReader
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.repo import GitError, check_path


class HistoryCommands(ControlBase):
    """Users' file history (``NOT_AVAILABLE`` when history is switched off)."""

    _exports: dict[str, tuple[IO[bytes], int, str]]   # open bundles of this connection

    def _history(self) -> HistoryReader:
        history = self.context.history
        if history is None:
            raise c.NotAvailable("history is switched off (history.enabled = false)")
        return history

    @responder(c.HistoryList)
    async def history_list(self, name: str, path: str, offset: int, limit: int,
                           deleted: bool = False) -> dict:
        history = self._history()
        await self._user(name)
        if not path:
            items = await history.files(name)
            if deleted:
                items = sorted((f for f in items if not f["present"]),
                               key=lambda f: -float(f["deleted"] or 0))
        else:
            try:
                check_path(path)
            except ValueError as e:
                raise c.InvalidInput(str(e)) from None
            items = [v.as_dict() for v in await history.versions(name, path)]
            if not items:
                raise c.NotFound(f"{path} has no history for {name}")
        return {"items": page(items, offset, limit), "total": len(items)}

    @responder(c.HistoryRestore)
    async def history_restore(self, name: str, path: str, rev: str) -> dict:
        history = self._history()
        await self._user(name)
        try:
            check_path(path)
        except ValueError as e:
            raise c.InvalidInput(str(e)) from None
        try:
            full = await history.restore(name, path, rev.lower(), by=f"admin ({self.peer()})")
        except NoSuchVersion as e:
            raise c.NotFound(str(e)) from None
        except HistoryError as e:
            raise c.ControlError(str(e)) from None
        self.log.info("control: restored {path} of {name} to {rev} (by {peer})", path=path,
                      name=name, rev=full[:8], peer=self.peer())
        return {"result": json.dumps({"name": name, "path": path, "rev": full})}

    @responder(c.HistoryExport)
    async def history_export(self, name: str, offset: int) -> dict:
        history = self._history()
        await self._user(name)
        exports = self.__dict__.setdefault("_exports", {})
        if offset <= 0 or name not in exports:
            self._close_export(name)
            try:
                exports[name] = await threads.deferToThread(history.repo(name).bundle_file)
            except GitError as e:
                raise c.NotFound(f"{name} has no history to export ({e})") from None
            offset = 0
            self.log.info("control: export of the history of {name} ({size} bytes, by "
                          "{peer})", name=name, size=exports[name][1], peer=self.peer())
        f, size, sha = exports[name]
        f.seek(offset)
        data = f.read(c.PAGE_BYTES)
        nxt = offset + len(data)
        if nxt >= size or not data:
            self._close_export(name)
            nxt = -1
        return {"data": data, "next": nxt, "size": size, "sha256": sha}

    def _close_export(self, name: str) -> None:
        found = self.__dict__.get("_exports", {}).pop(name, None)
        if found is not None:
            found[0].close()

    def connectionLost(self, reason: Any) -> None:
        for name in list(self.__dict__.get("_exports", {})):
            self._close_export(name)
        super().connectionLost(reason)

    @responder(c.HistoryDeadLetters)
    async def history_dead_letters(self, name: str, offset: int, limit: int) -> dict:
        history = self._history()
        await self._user(name)
        items = [{"op": str((d.get("entry") or {}).get("op", "")),
                  "path": str((d.get("entry") or {}).get("path", "")),
                  "reason": str(d.get("reason", "")), "time": d.get("time"),
                  "attempts": d.get("attempts", 0)}
                 for d in await history.dead_letters(name)]
        return {"items": page(items, offset, limit), "total": len(items)}


