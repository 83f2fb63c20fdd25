"""The history service: every save the proxy sees becomes a commit; restores; the mirror.

**What is seen.**  The proxy calls :meth:`History.note` (through ``UserGate.saw_response``)
when a user's server answers.  Successful (2xx) ``PUT`` (save, upload, new folder),
``PATCH`` (rename or move), ``DELETE`` on ``/user/NAME/api/contents/PATH`` (``/api/...``
on ``NAME.<domain>`` in subdomain mode) and ``POST``
on ``.../PATH/checkpoints/ID`` (revert to a checkpoint, which rewrites the file) are
recorded; everything else (reads, checkpoint creation and deletion) is not.

**The queue.**  Each change is appended (``RPUSH``) to the Redis list
``ipydoc:history-queue:NAME`` as soon as the response head is seen, before anything else
is done for it; the appends of one user are chained, so they land in the order the
saves happened.  One worker per user drains the list in order and removes an entry only
after its commit is written, so a daemon killed at any point (right after a save
included) commits it after restart: at start every non-empty queue is drained.
Nothing waits for git, but the end of the save's response waits for its entry to be in
Redis (``note`` returns that Deferred; the proxy holds the answer until it fires, at
most 5 s): once the browser has seen a save succeed, its version cannot be lost.

**Coalescing.**  A save is committed once it is ``history.coalesce_seconds`` old; if a
later save of the same file is queued by then (with no rename or delete of it in
between), the earlier entry is dropped and the later one's commit says how many saves it
covers.  Content is read when the commit is made, so coalesced saves lose nothing that
was still on disk.

**Content.**  Read through the server's contents API with the server token
(``type=file&format=base64``), so it works for any backend and image.  Files larger
than ``history.max_file_size`` (default 10 MiB) are not versioned (event
``history-skipped``); a notebook output larger than ``history.max_output_size`` (1 MiB)
is replaced in the versioned copy by a short stream output saying so (the user's own
file keeps it).  Notebooks are otherwise stored byte for byte as saved, so diffs and
restores are exact.  Binary files within the cap are stored as they are.  When the user's
server is not running the queue waits (entries are kept) and drains at its next start.

**Renames.**  The new path of a ``PATCH`` is in the request body, which the proxy streams
and does not keep; but the server answers with the renamed file's model, and the proxy
hands the gate that small answer (``wants_body``/``saw_body``), so a rename or a move to
another folder is recorded as a move (``Rename A to B``) with its history.  Should the
answer not be seen (longer than 64 KiB, broken off), the service lists the old path's
folder and looks for the file by content (or a folder by its entries); not found, it
records the old path as removed and versions the file at its next save.

**Restore.**  :meth:`History.restore` writes the old version back through the contents
API (``PUT``, as a save) and queues it, so it becomes a new commit (``Restore P to
version R``); history is never rewritten.

**Mirror.**  With ``history.remote`` set (a URL or path with ``{name}``), each user's
``main`` is pushed there after commits (``git push``, never forced: the mirror must not be
written by anyone else).  A failing push is retried with exponential backoff (1 s doubling
to ``history.push_backoff_max``), is recorded as a ``history-push-failed`` event and in
``ipydoc:history-push:NAME`` (shown on the history page), and never delays saves or
commits; recovery is the event ``history-push-ok``.  With ``history.create_repo`` the
repository is first created with ``POST {api_url}/orgs/{api_org}/repos`` (private; HTTP
422 "already exists" is fine).  HTTPS credentials go to git as an ``http.extraHeader``
through ``GIT_CONFIG_*`` environment variables, never on a command line or in a URL.
Not done: pushing with the user's own OAuth token (ipydoc has no OAuth login yet).
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import treq
from twisted.application.service import Service
from twisted.internet import defer, task, threads
from twisted.logger import Logger
from twisted.web.client import Agent

from ipydoc.config import HistorySection, parse_size
from ipydoc.history.nbdiff import FileDiff, file_diff
from ipydoc.history.repo import Change, GitError, GitRepo, Version, blob_id, check_path
from ipydoc.httppool import quiet_pool

_CHECKPOINT = re.compile(r"^(.*)/checkpoints(?:/([\w-]+))?$")
SWEEP = 2.0            # seconds between looks for queues whose server came back
MAX_ATTEMPTS = 10      # tries of one entry against a server that answers with errors
RENAME_CANDIDATES = 20


class HistoryError(Exception):
    """A history request that cannot be done; the message is for people."""


class NoSuchVersion(HistoryError):
    pass


class _Transient(Exception):
    """The server could not be read right now (stopped, restarting, 5xx): retry later."""


class History(Service):
    name = "history"
    log = Logger()

    def __init__(self, cfg: HistorySection, state_dir: Path, store_source: Any, manager: Any,
                 reactor: Any) -> None:
        self.cfg = cfg
        self.root = state_dir / "history"
        self._store_source = store_source
        self.manager = manager
        self.reactor = reactor
        self.max_file = parse_size(cfg.max_file_size)
        self.max_output = parse_size(cfg.max_output_size)
        self._http = treq.client.HTTPClient(
            Agent(reactor, connectTimeout=10, pool=quiet_pool(reactor, persistent=False)))
        self._tails: dict[str, defer.Deferred[None]] = {}   # ordered appends per user
        self._workers: dict[str, defer.Deferred[None]] = {}
        self._dirty: set[str] = set()
        self._waiting: set[str] = set()
        self._merged: dict[tuple[str, str], int] = {}
        self._attempts: dict[str, int] = {}
        self._sweeper: task.LoopingCall | None = None
        self.pusher = Pusher(self) if cfg.remote else None

    @property
    def store(self) -> Any:
        return self._store_source.store

    def repo(self, name: str) -> GitRepo:
        return GitRepo(self.root / f"{name}.git", self.cfg.git)

    def _thread(self, fn: Any, *args: Any, **kw: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(),
                                         fn, *args, **kw)

    # -- service ---------------------------------------------------------------------------
    def startService(self) -> defer.Deferred[None]:
        super().startService()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        return defer.Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        owners = await self.store.history_queue_owners()
        for name in owners:
            self.kick(name)
        self._sweeper = task.LoopingCall(self._sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(SWEEP, now=False)
        if self.pusher is not None:
            await self.pusher.resume()
        self.log.info("history: {n} queues to drain; repositories in {root}",
                      n=len(owners), root=self.root)

    def stopService(self) -> None:
        super().stopService()
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        if self.pusher is not None:
            self.pusher.stop()

    def _sweep(self) -> None:
        for name in list(self._waiting):
            if name in self.manager.routes:
                self._waiting.discard(name)
                self.kick(name)

    # -- seeing saves ----------------------------------------------------------------------
    def _contents(self, user: str) -> str:
        """The contents API's path on ``user``'s server (its base URL depends on routing)."""
        base = self.manager.base_url(user) if self.manager is not None else f"/user/{user}/"
        return f"{base}api/contents/"

    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        """Renames: the proxy hands over the answer, whose model names the new path."""
        return (self.cfg.enabled and method == b"PATCH" and 200 <= code < 300
                and path.startswith(self._contents(user).encode()))

    def note(self, user: str, method: bytes, path: bytes, code: int,
             body: bytes | None = None) -> defer.Deferred[None] | None:
        """A response from ``user``'s server (called by the gate, synchronously); ``body``
        is a rename's answer when the proxy could keep it."""
        if not 200 <= code < 300 or method not in (b"PUT", b"PATCH", b"DELETE", b"POST"):
            return None
        prefix = self._contents(user).encode()
        if not path.startswith(prefix):
            return None
        try:
            rel = unquote(path[len(prefix):].decode("ascii"), errors="strict").strip("/")
        except (UnicodeDecodeError, ValueError):
            return None
        op = {b"PUT": "save", b"PATCH": "rename", b"DELETE": "delete"}.get(method)
        m = _CHECKPOINT.match("/" + rel)
        if m:
            if method != b"POST" or not m.group(2):
                return None  # creating or deleting a checkpoint changes no file
            rel, op = m.group(1).strip("/"), "save"  # revert to a checkpoint
        if op is None or not rel:
            return None
        try:
            check_path(rel)
        except ValueError:
            return None
        entry: dict[str, Any] = {"op": op, "path": rel, "time": time.time()}
        moved_to = _model_path(body) if op == "rename" else None
        if moved_to:
            entry["to"] = moved_to
        return self.enqueue(user, entry)

    def enqueue(self, user: str, entry: dict[str, Any]) -> defer.Deferred[None]:
        """Append ``entry`` to ``user``'s queue after the appends before it; then drain."""
        before = self._tails.get(user) or defer.succeed(None)
        done: defer.Deferred[None] = defer.Deferred()

        def append(_: Any) -> defer.Deferred[None]:
            d = defer.Deferred.fromCoroutine(self.store.history_enqueue(user, entry))
            d.addCallback(lambda _: self.kick(user))
            d.addErrback(lambda f: self.log.failure("history: queueing a save of {u}", f, u=user))
            return d

        before.addBoth(append).addBoth(lambda _: done.callback(None))
        self._tails[user] = done

        def forget(_: Any) -> None:
            if self._tails.get(user) is done:
                del self._tails[user]
        done.addCallback(forget)
        return done

    def kick(self, name: str) -> None:
        self._dirty.add(name)
        if name in self._workers or not self.running:
            return
        d = defer.Deferred.fromCoroutine(self._drain(name))
        self._workers[name] = d

        def ended(result: Any) -> None:
            self._workers.pop(name, None)
            if hasattr(result, "getErrorMessage"):
                self.log.failure("history: draining the queue of {name}", result, name=name)
        d.addBoth(ended)

    # -- the worker ------------------------------------------------------------------------
    async def _sleep(self, seconds: float) -> None:
        await task.deferLater(self.reactor, max(0.0, seconds), lambda: None)

    async def _drain(self, name: str) -> None:
        while self.running:
            self._dirty.discard(name)
            entries = await self.store.history_peek(name, 200)
            if not entries:
                if name in self._dirty:
                    continue
                return
            head = entries[0]
            op, path = head.get("op"), str(head.get("path", ""))
            if op == "save":
                wait = float(head.get("time", 0)) + self.cfg.coalesce_seconds - time.time()
                if wait > 0:
                    await self._sleep(min(wait, self.cfg.coalesce_seconds))
                    continue
                if _superseded(entries):
                    key = (name, path)
                    self._merged[key] = self._merged.get(key, 1) + 1
                    await self.store.history_drop(name)
                    continue
            route = self.manager.routes.get(name)
            if route is None and op != "delete":
                self._waiting.add(name)  # drained when the server runs again
                return
            try:
                await self._apply(name, head, route)
            except _Transient as e:
                tries = self._attempts[name] = self._attempts.get(name, 0) + 1
                if tries < MAX_ATTEMPTS:
                    self.log.info("history: {name}'s server cannot be read ({why}); retrying",
                                  name=name, why=e)
                    if name not in self.manager.routes:
                        self._waiting.add(name)
                        return
                    await self._sleep(min(30.0, 0.5 * 2 ** tries))
                    continue
                await self.store.add_event("history-failed", name, f"{op} {path}: {e}")
            except (HistoryError, GitError, ValueError) as e:
                self.log.warn("history: {op} {path} of {name} not recorded: {why}",
                              op=op, path=path, name=name, why=e)
                await self.store.add_event("history-failed", name, f"{op} {path}: {e}"[:500])
            self._attempts.pop(name, None)
            self._merged.pop((name, path), None)
            await self.store.history_drop(name)

    async def _apply(self, name: str, entry: dict[str, Any], route: Any) -> None:
        op, path = entry.get("op"), check_path(str(entry.get("path", "")))
        when = float(entry.get("time") or time.time())
        repo = self.repo(name)
        commit: str | None = None
        if op == "save":
            data = await self._read_file(name, route, path)
            if data is None:
                return
            n = self._merged.get((name, path), 1)
            message = entry.get("message") or f"Save {path}" + (f" ({n} saves)" if n > 1 else "")
            commit = await self._thread(self._commit_blob, repo, path, data, name, message, when)
        elif op == "delete":
            commit = await self._thread(repo.commit, [Change(path)], author=name,
                                        message=f"Delete {path}", when=when)
        elif op == "rename" and entry.get("to"):
            commit = await self._move(name, repo, path, check_path(str(entry["to"])), when)
        elif op == "rename":
            commit = await self._rename(name, route, repo, path, when)
        else:
            raise HistoryError(f"unknown queue entry {entry!r}")
        if commit and self.pusher is not None:
            self.pusher.soon(name)

    @staticmethod
    def _commit_blob(repo: GitRepo, path: str, data: bytes, name: str, message: str,
                     when: float) -> str | None:
        return repo.commit([Change(path, repo.write_blob(data))], author=name, message=message,
                           when=when)

    # -- reading from the user's server ----------------------------------------------------
    def _url(self, name: str, route: Any, path: str) -> str:
        return f"{route.url}{self._contents(name)}{quote(path)}"

    async def _get(self, name: str, route: Any, path: str, **params: str) -> dict[str, Any] | None:
        try:
            r = await self._http.get(self._url(name, route, path), params=params, timeout=60,
                                     headers={"Authorization": f"token {route.token}"})
            body = await r.content()
        except Exception as e:  # noqa: BLE001 - connection refused, reset, timeout
            raise _Transient(type(e).__name__) from None
        if r.code == 404:
            return None
        if r.code >= 500 or r.code in (401, 403):  # 403: the token changed (restart)
            raise _Transient(f"HTTP {r.code}")
        if r.code != 200:
            raise HistoryError(f"the server answered HTTP {r.code} reading {path}")
        return json.loads(body)

    async def _read_file(self, name: str, route: Any, path: str) -> bytes | None:
        """The file's bytes as versioned (outputs trimmed), or None: gone, a folder, too big."""
        model = await self._get(name, route, path, content="0")
        if model is None or model.get("type") == "directory":
            return None
        size = model.get("size")
        if isinstance(size, int) and size > self.max_file:
            await self._skipped(name, path, size)
            return None
        model = await self._get(name, route, path, type="file", format="base64", content="1")
        if model is None:
            return None
        content = model.get("content") or ""
        data = (base64.b64decode(content) if model.get("format") == "base64"
                else content.encode("utf-8"))
        if len(data) > self.max_file:
            await self._skipped(name, path, len(data))
            return None
        return self.trim(path, data)

    async def _skipped(self, name: str, path: str, size: int) -> None:
        await self.store.add_event("history-skipped", name,
                                   f"{path}: {size} bytes is over history.max_file_size "
                                   f"({self.cfg.max_file_size}); not versioned")

    def trim(self, path: str, data: bytes) -> bytes:
        """``data`` with notebook outputs over ``max_output_size`` replaced by a note."""
        if not path.endswith(".ipynb") or len(data) <= self.max_output:
            return data
        try:
            nb = json.loads(data)
            cells = nb["cells"]
        except (ValueError, KeyError, TypeError):
            return data
        trimmed = False
        for cell in cells:
            outputs = cell.get("outputs") if isinstance(cell, dict) else None
            for i, out in enumerate(outputs or []):
                size = len(json.dumps(out))
                if size > self.max_output:
                    outputs[i] = {"output_type": "stream", "name": "stdout", "text": [
                        f"[ipydoc history: an output of {size} bytes is not kept in the "
                        f"history (history.max_output_size = {self.cfg.max_output_size})]\n"]}
                    trimmed = True
        if not trimmed:
            return data
        return (json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode()

    async def _move(self, name: str, repo: GitRepo, old: str, new: str,
                    when: float) -> str | None:
        """A rename or move whose new path the server's answer named."""
        if old == new or not await self._thread(repo.entries, old):
            return None  # never versioned: it will be at its next save
        return await self._thread(repo.commit, [], moves=[(old, new)], author=name,
                                  message=f"Rename {old} to {new}", when=when)

    async def _rename(self, name: str, route: Any, repo: GitRepo, old: str,
                      when: float) -> str | None:
        """A rename whose answer was not seen: find the new path by content."""
        tracked = await self._thread(repo.entries, old)
        if not tracked:
            return None  # never versioned: it will be at its next save
        parent = str(PurePosixPath(old).parent)
        parent = "" if parent == "." else parent
        listing = await self._get(name, route, parent, type="directory", content="1")
        children = (listing or {}).get("content") or []
        known = set(await self._thread(repo.files))
        known_dirs = {str(p) for k in known for p in PurePosixPath(k).parents}
        new = None
        if len(tracked) == 1 and tracked[0][2] == old:
            blob = tracked[0][1]
            ext = PurePosixPath(old).suffix
            files = [c for c in children if c.get("type") != "directory"
                     and c.get("path") not in known]
            files.sort(key=lambda c: PurePosixPath(str(c.get("path"))).suffix != ext)
            for c in files[:RENAME_CANDIDATES]:
                data = await self._read_file(name, route, str(c["path"]))
                if data is not None and blob_id(data) == blob:
                    new = str(c["path"])
                    break
        else:
            names = {e[2][len(old) + 1:].split("/", 1)[0] for e in tracked}
            dirs = [c for c in children if c.get("type") == "directory"
                    and c.get("path") not in known_dirs]
            for c in dirs[:RENAME_CANDIDATES]:
                inner = await self._get(name, route, str(c["path"]), type="directory",
                                        content="1")
                have = {str(x.get("name")) for x in (inner or {}).get("content") or []}
                if names <= have:
                    new = str(c["path"])
                    break
        if new is not None:
            return await self._thread(repo.commit, [], moves=[(old, check_path(new))],
                                      author=name, message=f"Rename {old} to {new}", when=when)
        return await self._thread(
            repo.commit, [Change(old)], author=name, when=when,
            message=f"Rename {old} (moved to another folder: recorded as removed here)")

    # -- reading history (pages, control channel) -----------------------------------------
    async def files(self, name: str) -> list[dict[str, Any]]:
        summary = await self._thread(self.repo(name).summary)
        return sorted(summary.values(), key=lambda i: (not i["present"], str(i["path"])))

    async def versions(self, name: str, path: str) -> list[Version]:
        return await self._thread(self.repo(name).log, check_path(path))

    async def queued(self, name: str) -> int:
        return await self.store.history_queued(name)

    async def diff(self, name: str, path: str, a: str = "", b: str = "") -> dict[str, Any]:
        """The diff of ``path`` from version ``a`` to ``b``; ``b`` defaults to the newest
        version of the file, ``a`` to the one before ``b``."""
        check_path(path)
        repo = self.repo(name)
        versions = await self._thread(repo.log, path)
        if not versions:
            raise NoSuchVersion(f"{path} has no history")
        rb = await self._thread(repo.resolve, b) if b else versions[0].rev
        if rb is None:
            raise NoSuchVersion(f"no version {b}")
        if a:
            ra = await self._thread(repo.resolve, a)
            if ra is None:
                raise NoSuchVersion(f"no version {a}")
        else:
            revs = [v.rev for v in versions]
            ra = revs[revs.index(rb) + 1] if rb in revs and revs.index(rb) + 1 < len(revs) \
                else None
        old = await self._thread(repo.read, ra, path) if ra else None
        new = await self._thread(repo.read, rb, path)
        result: FileDiff = file_diff(path, old, new)
        return {"a": ra, "b": rb, "diff": result}

    async def restore(self, name: str, path: str, rev: str, by: str = "") -> str:
        """Write version ``rev`` of ``path`` back to the user's server; the full rev."""
        check_path(path)
        repo = self.repo(name)
        full = await self._thread(repo.resolve, rev)
        if full is None:
            raise NoSuchVersion(f"no version {rev} in the history of {name}")
        data = await self._thread(repo.read, full, path)
        if data is None:
            raise NoSuchVersion(f"{path} does not exist in version {full[:8]}")
        route = self.manager.routes.get(name)
        if route is None:
            raise HistoryError(f"the server of {name} is not running: start it, then restore")
        model: dict[str, Any]
        if path.endswith(".ipynb"):
            try:
                model = {"type": "notebook", "format": "json", "content": json.loads(data)}
            except ValueError:
                model = {"type": "file", "format": "base64",
                         "content": base64.b64encode(data).decode()}
        else:
            try:
                model = {"type": "file", "format": "text", "content": data.decode("utf-8")}
            except UnicodeDecodeError:
                model = {"type": "file", "format": "base64",
                         "content": base64.b64encode(data).decode()}
        try:
            r = await self._http.put(self._url(name, route, path), json=model, timeout=120,
                                     headers={"Authorization": f"token {route.token}"})
            body = await r.content()
        except Exception as e:  # noqa: BLE001
            raise HistoryError(f"the server of {name} could not be reached: "
                               f"{type(e).__name__}") from None
        if r.code not in (200, 201):
            why = ""
            try:
                why = json.loads(body).get("message", "")
            except ValueError:
                pass
            raise HistoryError(f"the server refused the restore: HTTP {r.code} {why}".strip())
        await self.enqueue(name, {"op": "save", "path": path, "time": time.time() -
                                  self.cfg.coalesce_seconds,
                                  "message": f"Restore {path} to version {full[:8]}"})
        await self.store.add_event("history-restore", name,
                                   f"{path} to {full[:8]}" + (f" by {by}" if by else ""))
        return full


def _model_path(body: bytes | None) -> str | None:
    """The ``path`` of a contents-API model (a rename's answer), if it is a safe one."""
    if not body:
        return None
    try:
        path = json.loads(body).get("path")
        return check_path(path.strip("/")) if isinstance(path, str) else None
    except (ValueError, AttributeError):
        return None


def _superseded(entries: list[dict[str, Any]]) -> bool:
    """Is the head save followed by another save of the same file, with no rename or
    delete of it (or of a folder holding it) in between?"""
    path = str(entries[0].get("path", ""))
    for later in entries[1:]:
        other = str(later.get("path", ""))
        if later.get("op") == "save":
            if other == path:
                return True
        elif other == path or path.startswith(other + "/") or other.startswith(path + "/"):
            return False
    return False


class Pusher:
    """Pushes users' ``main`` to the mirror: one push at a time per user, retried with
    backoff, state in Redis and events."""

    log = Logger()

    def __init__(self, history: History) -> None:
        self.h = history
        self.cfg = history.cfg
        self._busy: set[str] = set()
        self._again: set[str] = set()
        self._timers: dict[str, Any] = {}
        self._failures: dict[str, int] = {}

    def url(self, name: str) -> str:
        return self.cfg.remote.replace("{name}", name)

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    async def resume(self) -> None:
        """At start: push every repository the mirror is behind on."""
        for repo_dir in sorted(self.h.root.glob("*.git")):
            name = repo_dir.name[:-4]
            head = await self.h._thread(self.h.repo(name).head)
            state = await self.h.store.history_push_state(name)
            if head and state.get("rev") != head:
                self.soon(name)

    def soon(self, name: str) -> None:
        if name in self._busy:
            self._again.add(name)
            return
        timer = self._timers.get(name)
        if timer is not None and timer.active():
            return  # a retry is scheduled; it pushes the newest commit anyway
        self._busy.add(name)
        d = defer.Deferred.fromCoroutine(self._push(name))
        d.addErrback(lambda f: self.log.failure("history: pushing {name}", f, name=name))

    async def _push(self, name: str) -> None:
        try:
            self._again.discard(name)
            store = self.h.store
            state = await store.history_push_state(name)
            try:
                if self.cfg.create_repo and state.get("created") != "1":
                    await self._create(name)
                    await store.set_history_push_state(name, created=1)
                repo = self.h.repo(name)
                head = await self.h._thread(repo.head)
                if head is None:
                    return
                await self.h._thread(self._git_push, repo, name)
            except (GitError, HistoryError, OSError) as e:
                failures = self._failures[name] = self._failures.get(name, 0) + 1
                delay = min(float(self.cfg.push_backoff_max), 2.0 ** (failures - 1))
                why = _scrub(str(e), self.cfg.remote_token)[:500]
                await store.set_history_push_state(name, state="failing", error=why,
                                                   attempts=failures)
                await store.add_event("history-push-failed", name,
                                      f"attempt {failures}, next in {delay:g}s: {why}")
                self.log.warn("history: push of {name} failed ({why}); retry in {d}s",
                              name=name, why=why, d=delay)
                self._timers[name] = self.h.reactor.callLater(delay, self._retry, name)
                return
            failed_before = self._failures.pop(name, 0)
            await store.set_history_push_state(name, state="ok", rev=head, error="",
                                               attempts=0)
            if failed_before:
                await store.add_event("history-push-ok", name,
                                      f"pushed {head[:8]} after {failed_before} failed attempts")
        finally:
            self._busy.discard(name)
            if name in self._again and name not in self._timers:
                self.soon(name)

    def _retry(self, name: str) -> None:
        self._timers.pop(name, None)
        self.soon(name)

    def _git_push(self, repo: GitRepo, name: str) -> None:
        env: dict[str, str] = {}
        token = self.cfg.remote_token
        if token and urlsplit(self.url(name)).scheme in ("http", "https"):
            basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
            env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                   "GIT_CONFIG_VALUE_0": f"Authorization: Basic {basic}"}
        repo.run("push", "--quiet", "--porcelain", self.url(name),
                 "refs/heads/main:refs/heads/main", env=env, timeout=300)

    async def _create(self, name: str) -> None:
        repo_name = self.url(name).rstrip("/").rsplit("/", 1)[-1]
        repo_name = repo_name[:-4] if repo_name.endswith(".git") else repo_name
        url = f"{self.cfg.api_url.rstrip('/')}/orgs/{quote(self.cfg.api_org)}/repos"
        try:
            r = await self.h._http.post(url, json={
                "name": repo_name, "private": True, "auto_init": False,
                "description": f"ipydoc history of {name}"}, timeout=60, headers={
                "Authorization": f"Bearer {self.cfg.remote_token}",
                "Accept": "application/vnd.github+json", "User-Agent": "ipydoc"})
            body = await r.content()
        except Exception as e:  # noqa: BLE001
            raise HistoryError(f"creating the repository: {type(e).__name__}") from None
        if r.code in (201, 422):  # 422: it exists already
            return
        try:
            why = json.loads(body).get("message", "")
        except (ValueError, AttributeError):
            why = ""
        raise HistoryError(f"creating the repository {repo_name}: HTTP {r.code} {why}".strip())


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
