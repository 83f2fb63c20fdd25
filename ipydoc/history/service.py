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
(``type=file&format=base64``), so it works for any backend and image.  The user's server
is hostile (its owner can replace it by any program), so it is read with the bounded
client of :mod:`ipydoc.proxy.fetch` (no ``treq``): ``Accept-Encoding: identity`` and no
other ``Content-Encoding`` accepted, a byte budget on the body (``max_file_size`` as
base64 plus room for the model, small for the other reads), one deadline of
``history.fetch_timeout`` for the whole exchange, and only a JSON object of the expected
shape is used.  At most ``READ_SLOTS`` file reads run at once over all users, which bounds
the memory they take.  Files larger
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

**Poisoned entries.**  Before each try the entry's attempt count is written back into
the queue (Redis), so a try that kills the daemon still counts after restart.  An entry
whose answer breaks a rule (over budget, an encoding not asked for, past the deadline, not
a contents model) or that fails ``history.max_attempts`` times (the server errs, is
unreachable while running, or something unexpected) moves atomically to the dead letters
``ipydoc:history-dead:NAME`` (the newest 100 are kept) with its reason and an event
``history-dead-letter`` (``DEAD_EVENTS`` a minute per user, then one saying the rest are
only listed, so a server cannot flood the shared events stream); the worker goes on with
the next entry and the other users' workers never wait for it.  Admins
see them with ``ipydoc history dead-letters NAME`` (and the user on the history page).

**Queue cap.**  The queue holds at most ``history.max_queue`` entries per user (a server
that answers every save at once could otherwise fill Redis as fast as the proxy carries
saves).  The append is one Redis script: when the queue is full a save of a path that is
already queued (as its newest change, not at the head) is dropped, since that queued
save's read happens later and covers it; any other change is not recorded, with an event
``history-queue-full`` (at most one a minute per user, with the count) and a log line.
Nothing already queued is ever removed, and the save itself reaches the server as always.

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

from ipydoc.backends.httppool import quiet_pool
from ipydoc.config.load import HistorySection, parse_size
from ipydoc.history.nbdiff import FileDiff, file_diff
from ipydoc.history.repo import Change, GitError, GitRepo, Version, blob_id, check_path
from ipydoc.proxy.fetch import Fetcher, FetchError, FetchResponse

_CHECKPOINT = re.compile(r"^(.*)/checkpoints(?:/([\w-]+))?$")
SWEEP = 2.0            # seconds between looks for queues whose server came back
RENAME_CANDIDATES = 20
MODEL_BUDGET = 1024 * 1024         # a contents model without content
LISTING_BUDGET = 16 * 1024 * 1024  # a folder listing (thousands of entries)
READ_SLOTS = 4         # file reads at once over all users (each up to ~3x its budget)
FULL_EVENT_EVERY = 60.0  # seconds between history-queue-full events of one user
DEAD_EVENTS = 10       # history-dead-letter events per user and minute; then one summary


class HistoryError(Exception):
    """A history request that cannot be done; the message is for people."""


class NoSuchVersion(HistoryError):
    pass


class _Transient(Exception):
    """The server could not be read right now (stopped, restarting, 5xx): retry later."""


class _Hostile(Exception):
    """The server's answer broke a rule (budget, encoding, deadline, shape): reading it
    again would break it again, so the entry goes to the dead letters at once."""


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
        self._fetch = Fetcher(reactor, connect_timeout=10)
        self._read_slots = defer.DeferredSemaphore(READ_SLOTS)
        self._full: dict[str, tuple[float, int]] = {}   # user → (last event, refused since)
        self._dead_events: dict[str, tuple[float, int]] = {}  # user → (window start, count)
        self._tails: dict[str, defer.Deferred[None]] = {}   # ordered appends per user
        self._workers: dict[str, defer.Deferred[None]] = {}
        self._dirty: set[str] = set()
        self._waiting: set[str] = set()
        self._merged: dict[tuple[str, str], int] = {}
        self._sweeper: task.LoopingCall | None = None
        self.pusher = Pusher(self) if cfg.remote else None

    @property
    def store(self) -> Any:
        return self._store_source.store

    def repo(self, name: str) -> GitRepo:
        return GitRepo(self.root / f"{name}.git", self.cfg.git)

    def forget(self, name: str) -> None:
        """Drop what this process holds for ``name`` before its history is purged
        (:mod:`ipydoc.control.removal` deletes the repository and the Redis keys), so no retry or
        push of the old history runs after the name is free."""
        self._waiting.discard(name)
        self._full.pop(name, None)
        for key in [k for k in self._merged if k[0] == name]:
            self._merged.pop(key, None)
        if self.pusher is not None:
            timer = self.pusher._timers.pop(name, None)
            if timer is not None and timer.active():
                timer.cancel()
            self.pusher._failures.pop(name, None)

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
             body: bytes | None = None) -> defer.Deferred[str] | None:
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

    def enqueue(self, user: str, entry: dict[str, Any]) -> defer.Deferred[str]:
        """Append ``entry`` to ``user``'s queue after the appends before it; then drain.

        Fires with ``queued``, ``coalesced`` or ``full`` (see "Queue cap" above), or
        ``error`` when Redis could not be written."""
        before = self._tails.get(user) or defer.succeed(None)
        done: defer.Deferred[str] = defer.Deferred()

        async def append() -> str:
            outcome = await self.store.history_enqueue(user, entry, self.cfg.max_queue)
            if outcome == "full":
                await self._queue_full(user, entry)
            self.kick(user)
            return outcome

        def run(_: Any) -> defer.Deferred[str]:
            d = defer.Deferred.fromCoroutine(append())

            def failed(f: Any) -> str:
                self.log.failure("history: queueing a save of {u}", f, u=user)
                return "error"
            return d.addErrback(failed)

        before.addBoth(run).addBoth(done.callback)
        self._tails[user] = done

        def forget(outcome: str) -> str:
            if self._tails.get(user) is done:
                del self._tails[user]
            return outcome
        done.addCallback(forget)
        return done

    async def _queue_full(self, user: str, entry: dict[str, Any]) -> None:
        """A change refused by the full queue: logged, and an event at most once a minute."""
        last, refused = self._full.get(user, (0.0, 0))
        refused += 1
        now = self.reactor.seconds()
        self.log.warn("history: the queue of {u} is full (history.max_queue = {cap}); "
                      "{op} {path} is not recorded", u=user, cap=self.cfg.max_queue,
                      op=entry.get("op"), path=entry.get("path"))
        if now - last < FULL_EVENT_EVERY:
            self._full[user] = (last, refused)
            return
        self._full[user] = (now, 0)
        await self.store.add_event(
            "history-queue-full", user,
            (f"{refused} change(s) not recorded, the last {entry.get('op')} "
             f"{entry.get('path')}: the queue holds history.max_queue = "
             f"{self.cfg.max_queue} entries not yet committed")[:500])

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
            raws = await self.store.history_peek_raw(name, 200)
            if not raws:
                if name in self._dirty:
                    continue
                return
            entries = [_entry(r) for r in raws]
            head, raw = entries[0], raws[0]
            op, path = head.get("op"), str(head.get("path", ""))
            if op not in ("save", "rename", "delete"):
                await self._dead(name, raw, head, "not a queue entry ipydoc wrote", 0)
                continue
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
            # Count the try in Redis before making it: a try that takes the daemon down
            # still counts after the restart, so a poisoned entry cannot loop forever.
            tries = int(head.get("attempts") or 0) + 1
            if tries > self.cfg.max_attempts:
                await self._dead(name, raw, head, f"gave up after {tries - 1} attempts: "
                                 f"{head.get('error') or 'no reason recorded'}", tries - 1)
                continue
            raw = await self._rewrite_head(name, raw, head, attempts=tries)
            if raw is None:
                continue  # the queue changed under us (purge): look again
            try:
                await self._apply(name, head, route)
            except _Hostile as e:
                self.log.warn("history: {op} {path} of {name}: the server's answer is refused "
                              "({why}); moved to the dead letters", op=op, path=path,
                              name=name, why=e)
                await self._dead(name, raw, head, str(e), tries)
                continue
            except (HistoryError, ValueError) as e:  # refused by the server, or by us
                self.log.warn("history: {op} {path} of {name} not recorded: {why}",
                              op=op, path=path, name=name, why=e)
                await self.store.add_event("history-failed", name, f"{op} {path}: {e}"[:500])
            except Exception as e:  # noqa: BLE001 - _Transient, git, or nobody foresaw it
                if isinstance(e, _Transient):
                    why = str(e)
                elif isinstance(e, GitError):
                    why = f"git: {e}"
                else:
                    self.log.failure("history: {op} {path} of {name} failed", op=op,
                                     path=path, name=name)
                    why = f"internal error {type(e).__name__}"
                if await self._retry_later(name, raw, head, tries, why):
                    continue
                return
            self._merged.pop((name, path), None)
            await self.store.history_drop(name)

    async def _rewrite_head(self, name: str, raw: str, head: dict[str, Any],
                            **changes: Any) -> str | None:
        """Store ``changes`` in the queue's oldest entry (``head``, read as ``raw``)."""
        head.update(changes)
        new = json.dumps(head)
        return new if await self.store.history_replace_head(name, raw, new) else None

    async def _retry_later(self, name: str, raw: str, head: dict[str, Any], tries: int,
                           why: str) -> bool:
        """After a failed try: True to try again now (after a backoff), False to stop
        until the server runs again.  The last allowed try dead-letters the entry."""
        if tries >= self.cfg.max_attempts:
            await self._dead(name, raw, head, f"gave up after {tries} attempts: {why}", tries)
            return True
        if await self._rewrite_head(name, raw, head, error=why[:200]) is None:
            return True
        self.log.info("history: {name}'s server cannot be read ({why}); retrying",
                      name=name, why=why)
        if name not in self.manager.routes:
            self._waiting.add(name)
            return False
        await self._sleep(min(30.0, 0.5 * 2 ** tries))
        return True

    async def _dead(self, name: str, raw: str, head: dict[str, Any], why: str,
                    tries: int) -> None:
        """Give up on the queue's oldest entry: to the dead letters, with an event."""
        path = str(head.get("path", ""))
        self._merged.pop((name, path), None)
        if not await self.store.history_dead_letter(name, raw, why[:500], tries):
            return
        # A server can make every save a dead letter: its events must not flood the
        # events stream (capped, shared by everyone), so a user gets DEAD_EVENTS a minute.
        now = self.reactor.seconds()
        start, count = self._dead_events.get(name, (now, 0))
        if now - start >= 60.0:
            start, count = now, 0
        count += 1
        self._dead_events[name] = (start, count)
        if count <= DEAD_EVENTS:
            await self.store.add_event("history-dead-letter", name,
                                       f"{head.get('op')} {path}: {why}"[:500])
        elif count == DEAD_EVENTS + 1:
            await self.store.add_event(
                "history-dead-letter", name, f"more than {DEAD_EVENTS} changes a minute are "
                f"dead letters; the rest this minute are listed by `ipydoc history "
                f"dead-letters {name}` only")

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

    async def _fetch_contents(self, name: str, route: Any, path: str, budget: int,
                              params: dict[str, str]) -> FetchResponse:
        try:
            return await self._fetch.get(
                self._url(name, route, path), params=params, max_body=budget,
                timeout=self.cfg.fetch_timeout,
                headers={"Authorization": f"token {route.token}"})
        except FetchError as e:
            if e.budget:
                raise _Hostile(f"reading {path}: {e}") from None
            raise _Transient(str(e)) from None  # refused, reset: restarting, or stopped

    async def _get(self, name: str, route: Any, path: str, budget: int = MODEL_BUDGET,
                   **params: str) -> dict[str, Any] | None:
        """A contents-API model (a JSON object), None for 404; the answer is bounded."""
        r = await self._fetch_contents(name, route, path, budget, params)
        if r.code == 404:
            return None
        if r.code >= 500 or r.code in (401, 403):  # 403: the token changed (restart)
            raise _Transient(f"HTTP {r.code}")
        if r.code != 200:
            raise HistoryError(f"the server answered HTTP {r.code} reading {path}")
        try:
            model = r.json()
        except FetchError as e:
            raise _Hostile(f"reading {path}: {e}") from None
        if not isinstance(model, dict):
            raise _Hostile(f"reading {path}: the answer is not a contents model")
        return model

    async def _read_file(self, name: str, route: Any, path: str) -> bytes | None:
        """The file's bytes as versioned (outputs trimmed), or None: gone, a folder, too big."""
        model = await self._get(name, route, path, content="0")
        if model is None or model.get("type") == "directory":
            return None
        size = model.get("size")
        if isinstance(size, int) and size > self.max_file:
            await self._skipped(name, path, size)
            return None
        # base64 of max_file_size plus room for the model around it
        budget = self.max_file * 4 // 3 + MODEL_BUDGET
        async with self._read_slots:
            model = await self._get(name, route, path, budget, type="file",
                                    format="base64", content="1")
            if model is None:
                return None
            content = model.get("content") or ""
            if not isinstance(content, str):
                raise _Hostile(f"reading {path}: the content is not a string")
            try:
                data = (base64.b64decode(content)  # jupyter_server wraps its lines
                        if model.get("format") == "base64" else content.encode("utf-8"))
            except (ValueError, UnicodeEncodeError):
                raise _Hostile(f"reading {path}: the content is not valid base64") from None
            del model, content
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
        listing = await self._get(name, route, parent, LISTING_BUDGET, type="directory",
                                  content="1")
        children = _children(listing)
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
                inner = await self._get(name, route, str(c["path"]), LISTING_BUDGET,
                                        type="directory", content="1")
                have = {str(x.get("name")) for x in _children(inner)}
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

    async def dead_letters(self, name: str) -> list[dict[str, Any]]:
        """Changes given up on (newest first): ``entry``, ``reason``, ``time``,
        ``attempts``."""
        return await self.store.history_dead_letters(name)

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
            r = await self._fetch.request(
                "PUT", self._url(name, route, path), body=json.dumps(model).encode(),
                max_body=MODEL_BUDGET, timeout=max(120.0, self.cfg.fetch_timeout),
                headers={"Authorization": f"token {route.token}",
                         "Content-Type": "application/json"})
        except FetchError as e:
            raise HistoryError(f"the server of {name} could not be reached or answered "
                               f"badly: {e}") from None
        if r.code not in (200, 201):
            why = ""
            try:
                answer = r.json()
                why = str(answer.get("message", ""))[:200] if isinstance(answer, dict) else ""
            except FetchError:
                pass
            raise HistoryError(f"the server refused the restore: HTTP {r.code} {why}".strip())
        queued = await self.enqueue(name, {"op": "save", "path": path, "time": time.time() -
                                           self.cfg.coalesce_seconds,
                                           "message": f"Restore {path} to version {full[:8]}"})
        if queued in ("full", "error"):
            raise HistoryError(f"{path} was restored to version {full[:8]} on the server, "
                               "but the history queue is full: the restore is not versioned")
        await self.store.add_event("history-restore", name,
                                   f"{path} to {full[:8]}" + (f" by {by}" if by else ""))
        return full


def _entry(raw: str) -> dict[str, Any]:
    """A queue entry as stored; anything else reads as ``invalid`` (and is dead-lettered)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return {"op": "invalid", "path": ""}
    return entry if isinstance(entry, dict) else {"op": "invalid", "path": ""}


def _children(listing: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The entries of a folder's model that are objects (the server is not trusted)."""
    content = (listing or {}).get("content")
    return [c for c in content if isinstance(c, dict)] if isinstance(content, list) else []


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
        self._client: Any = None

    @property
    def _http(self) -> Any:
        """treq, for the GitHub API (a trusted service, not a user's server)."""
        if self._client is None:
            self._client = treq.client.HTTPClient(Agent(
                self.h.reactor, connectTimeout=10,
                pool=quiet_pool(self.h.reactor, persistent=False)))
        return self._client

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
            r = await self._http.post(url, json={
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
