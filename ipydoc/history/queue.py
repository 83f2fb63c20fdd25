"""Noting saves, the per-user queue in Redis, and the worker that drains it in order.

**What is seen.**  The proxy calls :meth:`HistoryQueue.note` (through the gate) when a
user's server answers.  Successful (2xx) ``PUT`` (save, upload, new folder), ``PATCH``
(rename or move), ``DELETE`` on ``/user/NAME/api/contents/PATH`` (``/api/...`` on
``NAME.<domain>`` in subdomain mode) and ``POST`` on ``.../PATH/checkpoints/ID`` (revert to
a checkpoint, which rewrites the file) are recorded; everything else (reads, checkpoint
creation and deletion) is not.

**The queue.**  Each change is appended (``RPUSH``) to the Redis list
``ipydoc:history-queue:NAME`` as soon as the response head is seen, before anything else
is done for it; the appends of one user are chained, so they land in the order the
saves happened.  One worker per user drains the list in order and removes an entry only
after its commit is written, so a daemon killed at any point (right after a save
included) commits it after restart: at start every non-empty queue is drained.
Nothing waits for git, but the end of the save's response waits for its entry to be in
Redis (``note`` returns that Deferred; the proxy holds the answer until it fires, at
most 5 s): once the browser has seen a save succeed, its version cannot be lost.  When
the user's server is not running the queue waits (entries are kept) and drains at its
next start.

**Coalescing.**  A save is committed once it is ``history.coalesce_seconds`` old; if a
later save of the same file is queued by then (with no rename or delete of it in
between), the earlier entry is dropped and the later one's commit says how many saves it
covers.  Content is read when the commit is made, so coalesced saves lose nothing that
was still on disk.

**Named servers** (issue 19).  A user has one history whatever server saved: a save seen
on ``/user/NAME/SERVER/api/contents/...`` (the gate passes the server key) goes to NAME's
queue with ``"server": SERVER`` in its entry, and its commit message names the server.
The files are read from whichever of NAME's servers runs (the same volume).

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

**Several daemons.**  A worker drains a queue only while it holds the lease
``history:NAME`` (:mod:`ipydoc.state.leases`, renewed every third of ``cluster.lease_ttl``,
and once more right before each entry is popped), so two daemons never commit the same
head.  Every ``cluster.sweep_interval`` seconds each daemon lists the non-empty queues
(SCAN) and kicks those it is not draining; the kick returns at once where the lease is
held.  A daemon killed mid-drain thus has its queues drained elsewhere within
``lease_ttl + sweep_interval`` seconds.  If it had committed the head but not popped it,
the next worker reads the same content, and :meth:`ipydoc.history.repo.GitRepo.commit`
makes no commit for a tree equal to HEAD's: the save is in history exactly once.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import unquote

from twisted.internet import defer, task
from twisted.logger import Logger

from ipydoc.config.history import HistorySection
from ipydoc.history.commits import Recorder
from ipydoc.history.contents import Contents, StoreSource, UserServers, reach
from ipydoc.history.errors import HistoryError, Hostile, Transient
from ipydoc.history.repo import GitError, check_path
from ipydoc.names import split_server_key
from ipydoc.state.leases import Lease, LeaseKeeper, history_lease

_CHECKPOINT = re.compile(r"^(.*)/checkpoints(?:/([\w-]+))?$")
SWEEP = 2.0            # seconds between looks for queues whose server came back
FULL_EVENT_EVERY = 60.0  # seconds between history-queue-full events of one user
DEAD_EVENTS = 10       # history-dead-letter events per user and minute; then one summary


#: The methods whose answers may say a file changed.
CHANGING_METHODS = frozenset({b"PUT", b"PATCH", b"DELETE", b"POST"})


def saved_change(prefix: str, method: bytes, path: bytes, code: int,
                 body: bytes | None = None) -> dict[str, Any] | None:
    """The queue entry for a response of a user's server whose contents API is at
    ``prefix``, or None when the response changed no file (see "What is seen")."""
    if not 200 <= code < 300 or method not in CHANGING_METHODS:
        return None
    raw_prefix = prefix.encode()
    if not path.startswith(raw_prefix):
        return None
    try:
        rel = unquote(path[len(raw_prefix):].decode("ascii"), errors="strict").strip("/")
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
    return entry


class HistoryQueue:
    """The queues of all users and their workers (one per user, started by :meth:`kick`)."""

    log = Logger()

    def __init__(self, cfg: HistorySection, store_source: StoreSource,
                 servers: UserServers, contents: Contents, recorder: Recorder,
                 reactor: Any, lease_ttl: float = 10.0, sweep_interval: float = 5.0) -> None:
        self.cfg = cfg
        self.lease_ttl = lease_ttl              # cluster.lease_ttl
        self.sweep_interval = sweep_interval    # cluster.sweep_interval
        self._store_source = store_source
        self.servers = servers
        self.contents = contents
        self.recorder = recorder
        self.reactor = reactor
        self.running = False
        self._full: dict[str, tuple[float, int]] = {}   # user → (last event, refused since)
        self._dead_events: dict[str, tuple[float, int]] = {}  # user → (window start, count)
        self._tails: dict[str, defer.Deferred[str]] = {}   # ordered appends per user
        self._workers: dict[str, defer.Deferred[None]] = {}
        self._dirty: set[str] = set()
        self._waiting: set[str] = set()
        self._merged: dict[tuple[str, str], int] = {}
        self._sweeper: task.LoopingCall | None = None
        self._orphans: task.LoopingCall | None = None

    @property
    def store(self) -> Any:
        return self._store_source.store

    async def start(self) -> int:
        """Drain every non-empty queue, and look every ``SWEEP`` seconds for queues whose
        server came back; the number of queues found."""
        self.running = True
        owners = await self.store.history_queue_owners()
        for name in owners:
            self.kick(name)
        self._sweeper = task.LoopingCall(self._sweep)
        self._sweeper.clock = self.reactor
        self._sweeper.start(SWEEP, now=False)
        self._orphans = task.LoopingCall(self._sweep_orphans)
        self._orphans.clock = self.reactor
        self._orphans.start(self.sweep_interval, now=False)
        return len(owners)

    def stop(self) -> None:
        self.running = False
        for loop in (self._sweeper, self._orphans):
            if loop is not None and loop.running:
                loop.stop()

    def _sweep_orphans(self) -> defer.Deferred[None]:
        """Kick every non-empty queue this daemon does not drain (another daemon's that
        died, or one seen by no worker yet); the lease sorts out who drains it."""
        async def sweep() -> None:
            for name in await self.store.history_queue_owners():
                if name not in self._workers:
                    self.kick(name)
        return defer.Deferred.fromCoroutine(sweep()).addErrback(
            lambda f: self.log.warn("history: looking for queues to drain: {e}",
                                    e=f.getErrorMessage()))

    def forget(self, name: str) -> None:
        """Drop what is held in memory for ``name`` (its history is being purged)."""
        self._waiting.discard(name)
        self._full.pop(name, None)
        for key in [k for k in self._merged if k[0] == name]:
            self._merged.pop(key, None)

    def _sweep(self) -> None:
        for name in list(self._waiting):
            if reach(self.servers, name) is not None:
                self._waiting.discard(name)
                self.kick(name)

    # -- seeing saves ----------------------------------------------------------------------
    def wants_body(self, user: str, method: bytes, path: bytes, code: int) -> bool:
        """Renames: the proxy hands over the answer, whose model names the new path."""
        return (self.cfg.enabled and method == b"PATCH" and 200 <= code < 300
                and path.startswith(self.contents.prefix(user).encode()))

    def note(self, user: str, method: bytes, path: bytes, code: int,
             body: bytes | None = None) -> defer.Deferred[str] | None:
        """A response from the server ``user`` (a server key; called by the gate,
        synchronously); ``body`` is a rename's answer when the proxy could keep it.  The
        entry goes to the owner's queue, naming the server when it is a named one."""
        if method not in CHANGING_METHODS:  # most answers: no prefix built for them
            return None
        entry = saved_change(self.contents.prefix(user), method, path, code, body)
        if entry is None:
            return None
        owner, server = split_server_key(user)
        if server:
            entry["server"] = server
        return self.enqueue(owner, entry)

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
        lease = await self.store.take_lease(history_lease(name), self.lease_ttl)
        if lease is None:
            return  # another daemon drains it (the sweep looks again)
        keeper = LeaseKeeper(self.store, lease, self.lease_ttl, self.reactor)
        try:
            await self._drain_leased(name, lease, keeper)
        finally:
            await keeper.release()

    async def _pop(self, name: str, lease: Lease) -> bool:
        """Pop the head, only while the lease is surely ours (renewed just now)."""
        if not await self.store.renew_lease(lease, self.lease_ttl):
            self.log.warn("history: lost the lease on {name}'s queue; another daemon "
                          "goes on with it", name=name)
            return False
        await self.store.history_drop(name)
        return True

    async def _drain_leased(self, name: str, lease: Lease, keeper: LeaseKeeper) -> None:
        while self.running and not keeper.lost:
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
                    if not await self._pop(name, lease):
                        return
                    continue
            route = reach(self.servers, name, str(head.get("server") or ""))
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
                await self.recorder.apply(name, head, route,
                                          saves=self._merged.get((name, path), 1))
            except Hostile as e:
                self.log.warn("history: {op} {path} of {name}: the server's answer is refused "
                              "({why}); moved to the dead letters", op=op, path=path,
                              name=name, why=e)
                await self._dead(name, raw, head, str(e), tries)
                continue
            except (HistoryError, ValueError) as e:  # refused by the server, or by us
                self.log.warn("history: {op} {path} of {name} not recorded: {why}",
                              op=op, path=path, name=name, why=e)
                await self.store.add_event("history-failed", name, f"{op} {path}: {e}"[:500])
            except Exception as e:  # noqa: BLE001 - Transient, git, or nobody foresaw it
                if isinstance(e, Transient):
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
            if not await self._pop(name, lease):
                return

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
        if reach(self.servers, name) is None:
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


def _entry(raw: str) -> dict[str, Any]:
    """A queue entry as stored; anything else reads as ``invalid`` (and is dead-lettered)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return {"op": "invalid", "path": ""}
    return entry if isinstance(entry, dict) else {"op": "invalid", "path": ""}


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
