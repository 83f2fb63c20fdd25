"""The sharing rule (issue 19 §3): may user U use server KEY, and how.

:meth:`ShareRule.access` answers ``owner`` (U owns KEY: :func:`ipydoc.names.owner_of`),
``rw`` (a guest working in the same JupyterLab, running code), ``view`` (a guest who may
read but not change or run anything) or None (no share: 403).  A user shared with
directly and through a group gets the larger mode.

**View is enforced by the proxy**, not by JupyterLab's UI (:func:`view_refusal`): a view
guest's requests are GET and HEAD only, and no WebSocket (kernels, terminals, events), so
they can open JupyterLab, browse and read files and notebooks, and download, but every
save, rename, delete, kernel or terminal start is refused with 403 before it reaches the
server.  JupyterLab shows those refusals as errors; nothing of the owner's changes.

The gate asks on every request of a non-owner, so revoking a share takes effect at once.
A server's share table (one Redis hash) is cached here, in memory only: emptied for KEY
whenever this daemon changes KEY's shares (:meth:`ipydoc.state.shares.Shares.
on_shares_changed`) or another daemon says so on the bus (``shares-changed KEY``), and
entirely when the bus reconnects.  A read racing a change is not cached (a generation
counter), so the cache never outlives a change it might have missed.  Group memberships
are not cached: a server shared with a group costs its guests one read per request
(``user-groups:{name}``), so leaving the group cuts access at the next request (and the
store tells the servers shared with the group changed, so open exchanges are cut too).

:func:`add_share`, :func:`remove_share` and :func:`remove_all_shares` are the one way
shares change (CLI, home page, REST API): checked, then recorded as ``share`` /
``unshare`` events.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from ipydoc.access import metrics
from ipydoc.access.collaborators import StoreSource
from ipydoc.access.lru import LRU
from ipydoc.access.verdicts import json_reply
from ipydoc.names import InvalidName, owner_of, server_key, validate_name
from ipydoc.proxy.gate import Reply
from ipydoc.proxy.headers import is_websocket_upgrade
from ipydoc.state.shares import KINDS, MODES, Share
from ipydoc.state.store import Store

OWNER, RW, VIEW = "owner", "rw", "view"
_RANK = {VIEW: 1, RW: 2}
VIEW_METHODS = frozenset({b"GET", b"HEAD"})
MAX_CACHED = 10_000   # server tables; the least recently used dropped when full
MAX_SEEN = 100_000    # (credential, server) pairs already recorded as guest sessions
_GUEST_REQUESTS = {m: metrics.GUEST_REQUESTS.labels(m) for m in (RW, VIEW)}


def view_refusal(request: IRequest) -> Reply | None:
    """The 403 of a view guest's request that could change or run something, else None."""
    if request.method not in VIEW_METHODS or is_websocket_upgrade(request):
        metrics.GUEST_REFUSALS.inc()
        return json_reply(403, "this server is shared with you view-only: reading is "
                               "allowed, changing files and running code are not")
    return None


class ShareRule:
    """Who may use a server besides its owner, from ``store_source.store``'s shares."""

    log = Logger()

    def __init__(self, store_source: StoreSource) -> None:
        self._store_source = store_source
        self._tables: LRU[str, dict[str, str]] = LRU(MAX_CACHED)
        self._generation = 0
        self._seen: set[tuple[str, str]] = set()
        self._watched: Store | None = None
        self._listeners: list[Callable[[str], Any]] = []

    # -- the rule -------------------------------------------------------------------------
    async def access(self, user: str, key: str) -> str | None:
        """``owner``, ``rw``, ``view`` or None for ``user`` on server ``key``."""
        try:
            if owner_of(key) == user:
                return OWNER
        except InvalidName:
            return None
        store = self._watch()
        table = self._tables.get(key)
        if table is None:
            generation = self._generation
            table = await store.share_table(key)
            if generation == self._generation:
                self._tables.put(key, table)
        best = table.get(f"user:{user}")
        if best != RW and any(f.startswith("group:") for f in table):
            for group in await store.user_groups(user):
                mode = table.get(f"group:{group}")
                if mode is not None and _RANK[mode] > _RANK.get(best or "", 0):
                    best = mode
        return best

    async def may_enter(self, user: str, key: str) -> bool:
        """Is ``user`` a guest of server ``key`` (any mode): may they sign in at its host
        in subdomain mode?  Every request there is checked again."""
        return await self.access(user, key) in (RW, VIEW)

    def guest_seen(self, user: str, key: str, mode: str, credential: str, how: str) -> None:
        """A guest's request went through: the first per credential and server (site-wide)
        is a ``guest-session`` event.  Never delays the request."""
        _GUEST_REQUESTS[mode].inc()
        if (credential, key) in self._seen:
            return
        if len(self._seen) >= MAX_SEEN:
            self._seen.clear()
        self._seen.add((credential, key))
        d = Deferred.fromCoroutine(self._record_guest(user, key, mode, credential, how))
        d.addErrback(lambda f: self.log.failure("recording a guest session", f))

    async def _record_guest(self, user: str, key: str, mode: str, credential: str,
                            how: str) -> None:
        store = self._store_source.store
        if await store.first_guest_visit(key, credential):
            await store.add_event("guest-session", owner_of(key),
                                  f"guest={user} server={key} mode={mode} via={how}")

    # -- changes ----------------------------------------------------------------------------
    def on_change(self, listener: Callable[[str], Any]) -> None:
        """``listener(key)`` after server ``key``'s shares changed, here or elsewhere
        (the gate cuts what a revoked guest has open)."""
        self._listeners.append(listener)

    def watch(self) -> None:
        """Follow changes from now on (the store exists once Redis is up)."""
        self._watch()

    def _watch(self) -> Store:
        store = self._store_source.store
        if store is not self._watched:
            self._tables.clear()
            store.on_shares_changed(self._changed)
            if store.bus is not None:
                store.bus.listen(self._told)
                store.bus.on_connected(lambda again: self._forget_all() if again else None)
            self._watched = store
        return store

    def _told(self, kind: str, name: str) -> None:
        if kind == "shares-changed" and name:
            self._changed(name)

    def _forget_all(self) -> None:
        self._generation += 1
        self._tables.clear()

    def _changed(self, key: str) -> None:
        self._generation += 1
        self._tables.pop(key)
        self._seen = {(c, k) for c, k in self._seen if k != key}
        for listener in list(self._listeners):
            try:
                result = listener(key)
            except Exception:  # noqa: BLE001 - one listener must not starve the others
                self.log.failure("share change listener")
                continue
            if isinstance(result, Deferred):
                result.addErrback(lambda f: self.log.failure("share change listener", f))


# -- changing shares: the one path of the CLI, the owner's page and the REST API ----------
class ShareError(Exception):
    """A share that cannot be made or removed; ``status`` 400 (bad input), 404 (no such
    user, group, server or share)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def share_target(owner: str, server: str = "") -> str:
    """The server key of ``owner``'s server ``server`` ("" = the default), checked."""
    try:
        return server_key(owner, server)
    except InvalidName as e:
        raise ShareError(f"invalid server: {e}") from None


def _guest(kind: str, guest: str) -> None:
    if kind not in KINDS:
        raise ShareError(f"a share is with a user or a group, not {kind!r}")
    try:
        validate_name(guest)
    except InvalidName as e:
        raise ShareError(f"invalid {kind} name {guest!r}: {e}") from None


async def add_share(store: Store, key: str, kind: str, guest: str, mode: str,
                    by: str) -> tuple[Share, bool]:
    """Share server ``key`` with the user or group ``guest`` in ``mode`` (or change the
    mode); a ``share`` event.  (the share, whether anything changed)."""
    owner = owner_of(key)
    _guest(kind, guest)
    if mode not in MODES:
        raise ShareError(f"mode is {' or '.join(MODES)}, not {mode!r}")
    if await store.get_user(owner) is None:
        raise ShareError(f"no user {owner}", 404)
    if key != owner and await store.get_server(key) is None:
        raise ShareError(f"{owner} has no server {key.split('--', 1)[1]} (a named "
                         f"server exists once it has been started)", 404)
    if kind == "user":
        if guest == owner:
            raise ShareError("a server is not shared with its owner")
        if await store.get_user(guest) is None:
            raise ShareError(f"no user {guest}", 404)
    elif await store.get_group(guest) is None:
        raise ShareError(f"no group {guest}", 404)
    changed = await store.add_share(key, kind, guest, mode, by)
    if changed:
        await store.add_event("share", owner, f"server={key} guest={kind}:{guest} "
                                              f"mode={mode} by={by}")
    share = next(s for s in await store.server_shares(key)
                 if s.kind == kind and s.guest == guest)
    return share, changed


async def remove_share(store: Store, key: str, kind: str, guest: str, by: str) -> bool:
    """Revoke one share (an ``unshare`` event; the guest's open connections to ``key``
    are cut by the gate); False if there was none."""
    _guest(kind, guest)
    old = [s for s in await store.server_shares(key) if s.kind == kind and s.guest == guest]
    if not await store.remove_share(key, kind, guest):
        return False
    await store.add_event("unshare", owner_of(key), f"server={key} guest={kind}:{guest} "
                                                    f"mode={old[0].mode if old else '?'} by={by}")
    return True


async def remove_all_shares(store: Store, key: str, by: str) -> list[Share]:
    """Revoke every share of server ``key`` (one ``unshare`` event each)."""
    gone = await store.remove_server_shares(key)
    for s in gone:
        await store.add_event("unshare", s.owner, f"server={key} guest={s.kind}:{s.guest} "
                                                  f"mode={s.mode} by={by}")
    return gone
