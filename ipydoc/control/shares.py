"""Control commands on shares of a server (issue 19 §3): add, remove, list.

The checks and events are :mod:`ipydoc.access.shares`' (the same path as the owner's page
and the REST API); here names are validated where they enter and each change is logged
with who asked.  A revoked guest's open connections are closed by the gate as soon as the
store says the shares changed (on this daemon and, over the bus, the others).
"""

from __future__ import annotations

import json

from ipydoc.access.shares import (
    ShareError,
    add_share,
    remove_all_shares,
    remove_share,
    share_target,
)
from ipydoc.control import commands as c
from ipydoc.control.base import ControlBase, checked_name, page, responder


def _control_error(e: ShareError) -> c.ControlError:
    return c.NotFound(e.message) if e.status == 404 else c.InvalidInput(e.message)


class ShareCommands(ControlBase):
    """Shares: who may use a server besides its owner."""

    def _key(self, owner: str, server: str) -> str:
        try:
            return share_target(checked_name(owner), server)
        except ShareError as e:
            raise _control_error(e) from None

    @responder(c.ShareAdd)
    async def share_add(self, owner: str, server: str, kind: str, guest: str,
                        mode: str) -> dict:
        key = self._key(owner, server)
        try:
            share, changed = await add_share(self.store, key, kind, guest, mode,
                                             f"cli:{self.peer()}")
        except ShareError as e:
            raise _control_error(e) from None
        if changed:
            self.log.info("control: share {key} with {kind} {guest} ({mode}) (by {peer})",
                          key=key, kind=kind, guest=guest, mode=mode, peer=self.peer())
        return {"result": json.dumps({**share.public(), "changed": changed})}

    @responder(c.ShareRemove)
    async def share_remove(self, owner: str, server: str, kind: str, guest: str) -> dict:
        key = self._key(owner, server)
        by = f"cli:{self.peer()}"
        if not guest:
            gone = [s.public() for s in await remove_all_shares(self.store, key, by)]
        else:
            old = [s.public() for s in await self.store.server_shares(key)
                   if s.kind == kind and s.guest == guest]
            try:
                removed = await remove_share(self.store, key, kind, guest, by)
            except ShareError as e:
                raise _control_error(e) from None
            if not removed:
                raise c.NotFound(f"{key} is not shared with the {kind} {guest}")
            gone = old
        self.log.info("control: unshare {key}: {n} share(s) (by {peer})", key=key,
                      n=len(gone), peer=self.peer())
        return {"result": json.dumps({"removed": gone})}

    @responder(c.ShareList)
    async def share_list(self, offset: int, limit: int, owner: str | None = None,
                         guest: str | None = None) -> dict:
        if owner:
            shares = await self.store.owner_shares(checked_name(owner))
        elif guest:
            shares = await self.store.shared_with(checked_name(guest))
        else:
            shares = await self.store.all_shares()
        items = [s.public() for s in shares]
        return {"items": page(items, offset, limit), "total": len(items)}
