"""Removing an account without handing its files to the next person who takes the name.

Everything a user owns outside Redis is found by the name alone: the volume
``{volume_prefix}NAME`` (or the directory ``bind_root/NAME``), the history repository
``<state_dir>/history/NAME.git`` with its queued saves, and the mirror
``history.remote`` with ``{name}``.  So when ``ipydoc user remove NAME`` keeps the files
(the default: removing an account must not destroy work by accident), any later account
of that name -- made by an admin, or by the first GitHub or OIDC login of someone whose
login is ``NAME`` -- would get all of it.

**The rule: a removal that keeps files reserves the name.**  The removal writes
``ipydoc:removed:NAME`` (when, by whom, what is kept, and the account's own fields) in the
same Redis transaction that deletes the account, and every script that creates an account
(:data:`ipydoc.state.users.ADD_USER_SCRIPT`, :data:`ipydoc.state.identities.CREATE_SCRIPT`)
refuses a reserved name -- the identity that owned the account included, so a person an
admin removed does not come back by logging in.  The reservation ends in one of two ways:

* ``ipydoc user purge NAME`` deletes the files, the history repository, the history queue,
  dead letters and mirror state, the identity binding and the reservation; then the name
  is free and a new account starts empty.  (``user remove --purge`` does the same at once.)
* ``ipydoc user restore NAME`` brings the same account back (same password hash or
  identity binding, same creation time, so its GitHub/OIDC binding is valid again) with
  its files and history.

**Why not archive instead** (move the data under a name no account can take and free the
name at once)?  Docker volumes cannot be renamed: an archive would be a full copy through a
helper container (slow, double the disk, and half-done on a full disk); a mirror on GitHub
may not be ours to rename; and a restore would have to move everything back.  A
reservation moves nothing, cannot half-fail, and makes ``restore`` exact; its cost -- the
name stays taken until an admin decides -- is said in every answer of the CLI.

The mirror repository itself is on another server and is never deleted by ipydoc; a purge
says so, and a new account of the name will not push over it (pushes are never forced).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ipydoc.backends.base import Backend
from ipydoc.control.collaborators import HistoryReader, StateService
from ipydoc.history.repo import GitError, GitRepo
from ipydoc.names import InvalidName, validate_name
from ipydoc.state.store import Store

log = Logger()


class AccountExists(Exception):
    """The name is a live account (purge and restore are for removed ones)."""


class NotRestorable(Exception):
    """The reservation was made for files found without an account: nothing to restore."""


def _count_versions(path: Path, git: str) -> int:
    repo = GitRepo(path, git)
    if not repo.exists():
        return 0
    try:
        return int(repo.run("rev-list", "--count", "main", ok=(0, 128)).decode().strip() or 0)
    except (GitError, ValueError, OSError):
        return 0


def _rmtree(path: Path) -> bool:
    """Delete ``path`` for good; False if it was not there."""
    if not os.path.lexists(path):
        return False
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ENOENT:
            return False
        raise
    return True


def _orphan_candidates(history_root: Path) -> set[str]:
    return {p.name[:-4] for p in history_root.glob("*.git")} if history_root.is_dir() \
        else set()


class Removal:
    """Remove, purge and restore accounts for the control channel, and reserve at start
    the names whose files outlived their accounts.

    ``mirror`` is ``history.remote`` (with ``{name}``), ``git`` the git command; both are
    read only to describe what is kept.
    """

    def __init__(self, state: StateService, backend: Backend, history: HistoryReader | None,
                 reactor: IReactorThreads, state_path: Path, mirror: str = "",
                 git: str = "git") -> None:
        self.state = state
        self.backend = backend
        self.history = history
        self.reactor = reactor
        self.state_path = Path(state_path)
        self.mirror = mirror
        self.git = git

    @property
    def store(self) -> Store:
        store = self.state.store
        assert store is not None, "removal runs only once Redis is up"
        return store

    def _thread(self, fn: Any, *args: Any) -> Any:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def history_dir(self, name: str) -> Path:
        """Where ``name``'s history repository is (also when history is switched off)."""
        if self.history is not None:
            return Path(self.history.repo(name).path)
        return self.state_path / "history" / f"{name}.git"

    def _mirror(self, name: str) -> str:
        return self.mirror.replace("{name}", name) if self.mirror else ""

    async def kept(self, name: str) -> dict[str, Any]:
        """What of ``name`` would be kept: ``files``, ``versions``, ``mirror``."""
        versions = await self._thread(_count_versions, self.history_dir(name), self.git)
        push = await self.store.history_push_state(name)
        return {"files": self.backend.files_of(name), "versions": versions,
                "mirror": self._mirror(name) if push.get("rev") else ""}

    async def reserve(self, user: Any, by: str) -> dict[str, Any]:
        """Delete ``user``'s account (server already stopped) and reserve the name."""
        kept = await self.kept(user.name)
        record = {"removed": repr(time.time()), "by": by, "files": kept["files"],
                  "versions": str(kept["versions"]), "mirror": kept["mirror"],
                  "password": user.password_hash, "admin": "1" if user.admin else "0",
                  "disabled": "1" if user.disabled else "0", "created": repr(user.created)}
        await self.store.remove_user(user.name, record)
        return kept

    async def purge_data(self, name: str) -> dict[str, Any]:
        """Delete ``name``'s files, history repository and every record that refers to
        them (the caller has stopped the server).  Raises BackendError if the backend
        cannot delete the files; nothing after that step is done then."""
        kept = await self.kept(name)
        await self.backend.purge(name)
        if self.history is not None:
            try:
                self.history.forget(name)  # pending retries and pushes of the old repository
            except Exception:  # noqa: BLE001 - only in-memory state; the purge goes on
                log.failure("history: forgetting {name}", name=name)
        kept["history_deleted"] = await self._thread(_rmtree, self.history_dir(name))
        await self.store.forget_removed(name)
        log.info("purged the files and history of {name}", name=name)
        return kept

    async def purge_removed(self, name: str, by: str) -> dict[str, Any]:
        """``ipydoc user purge``: for a name with no account (reserved, or leftovers of a
        removal made before reservations existed)."""
        reservation = await self.store.get_reservation(name)
        # reserved (kept as it is, if it was) while the leftovers go: no account is made
        # with the name half-way through
        if not await self.store.reserve_free_name(name, time.time(), by,
                                                  self.backend.files_of(name), 0):
            raise AccountExists(name)
        result = await self.purge_data(name)
        result["reserved"] = reservation is not None
        return result

    async def restore(self, name: str) -> dict[str, Any] | None:
        """Bring the removed account back; None when there is no reservation."""
        reservation = await self.store.get_reservation(name)
        done = await self.store.restore_user(name)
        if done == 0:
            raise AccountExists(name)
        if reservation is not None and not reservation.get("password"):
            raise NotRestorable(name)
        if done != 1 or reservation is None:
            return None
        return {"restored": name, "files": reservation.get("files", ""),
                "versions": int(reservation.get("versions") or 0),
                "admin": reservation.get("admin") == "1",
                "disabled": reservation.get("disabled") == "1",
                "external": reservation.get("password", "").startswith("!")}

    async def reserve_orphans(self) -> list[str]:
        """At start: reserve the names whose history repository (or bind directory) exists
        with no account and no reservation -- left by ``user remove`` of an older ipydoc,
        which did not reserve -- so an upgrade does not hand them to the next account of
        the name.  (Volumes are not listed here: a user with files almost always has a
        history too.)"""
        store = self.store
        root = self.history_dir("x").parent
        names = await self._thread(_orphan_candidates, root) \
            | await self.backend.users_with_files()
        reserved = []
        for name in sorted(names):
            try:
                validate_name(name)
            except InvalidName:
                continue
            if await store.get_user(name) is not None or \
                    await store.get_reservation(name) is not None:
                continue
            versions = await self._thread(_count_versions, self.history_dir(name), self.git)
            if await store.reserve_free_name(
                    name, time.time(), "found at start (removed by an older ipydoc)",
                    self.backend.files_of(name), versions):
                reserved.append(name)
        if reserved:
            log.warn("reserved {n} names whose files outlived their accounts ({names}): "
                     "`ipydoc user purge NAME --yes` frees one", n=len(reserved),
                     names=", ".join(reserved[:20]))
        return reserved


def kept_text(kept: dict[str, Any]) -> str:
    """What a removal kept, for people: ``volume X, history (3 versions), mirror URL``."""
    parts = [kept.get("files") or "files"]
    n = int(kept.get("versions") or 0)
    parts.append(f"history ({n} version{'s' if n != 1 else ''})" if n else "no history")
    if kept.get("mirror"):
        parts.append(f"mirror {kept['mirror']}")
    return ", ".join(parts)


def reserved_message(name: str, reservation: dict[str, str]) -> str:
    """Why ``name`` cannot be given to a new account, and what an admin can do."""
    return (f"the name {name} belonged to a removed account whose files are kept "
            f"({kept_text(reservation)}); purge them with `ipydoc user purge {name} --yes` "
            f"or restore the account with `ipydoc user restore {name}`")
