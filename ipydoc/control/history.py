"""Control commands on users' file history: list files and versions, restore a version,
and the changes the history worker gave up on."""

from __future__ import annotations

import json

from ipydoc.control import commands as c
from ipydoc.control.base import ControlBase, page, responder
from ipydoc.control.collaborators import HistoryReader
from ipydoc.history.errors import HistoryError, NoSuchVersion
from ipydoc.history.repo import check_path


class HistoryCommands(ControlBase):
    """Users' file history (``NOT_AVAILABLE`` when history is switched off)."""

    def _history(self) -> HistoryReader:
        history = self.context.history
        if history is None:
            raise c.NotAvailable("history is switched off (history.enabled = false)")
        return history

    @responder(c.HistoryList)
    async def history_list(self, name: str, path: str, offset: int, limit: int) -> dict:
        history = self._history()
        await self._user(name)
        if not path:
            items = await history.files(name)
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


